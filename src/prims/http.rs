//! HTTP: GET and POST JSON with timeouts, and waiting until a URL answers.

use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::Map;
use rhai::INT;

use super::{error, opt_env, opt_int, PrimResult};
use crate::run::Run;

const DEFAULT_TIMEOUT_SECS: i64 = 30;

struct Request<'a> {
    method: reqwest::Method,
    url: &'a str,
    body: Option<serde_json::Value>,
    options: Map,
}

fn send(run: &Run, request: Request<'_>) -> PrimResult<Map> {
    let timeout = opt_int(&request.options, "timeout")?.unwrap_or(DEFAULT_TIMEOUT_SECS);
    let headers = opt_env(&request.options, "headers")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout.max(1).unsigned_abs()))
        .build()
        .map_err(|e| error(format!("HTTP client: {e}")))?;
    let mut builder = client.request(request.method.clone(), request.url);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = request.body {
        builder = builder.json(&body);
    }
    let what = format!("{} {}", request.method, request.url);
    let response = run.block_on(&what, async move {
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    })?;
    let (status, text) = response.map_err(|e| error(format!("{what}: {e}")))?;
    let mut map = Map::new();
    map.insert("status".into(), INT::from(status).into());
    map.insert("ok".into(), (200..300).contains(&status).into());
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        map.insert("json".into(), crate::value::from_json(&json));
    }
    map.insert("body".into(), text.into());
    Ok(map)
}

fn wait_until(run: &Run, url: &str, timeout_secs: i64) -> PrimResult<INT> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs.max(0).unsigned_abs());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| error(format!("HTTP client: {e}")))?;
    loop {
        let attempt = run.block_on(&format!("waiting for {url}"), client.get(url).send())?;
        let last = match attempt {
            Ok(response) if response.status().as_u16() < 500 => {
                return Ok(INT::from(response.status().as_u16()))
            }
            Ok(response) => format!("status {}", response.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(error(format!(
                "{url} did not answer within {timeout_secs} s (last: {last})"
            )));
        }
        run.block_on("waiting", tokio::time::sleep(Duration::from_millis(500)))?;
    }
}

#[export_module]
pub mod api {
    /// GETs a URL. Returns `#{status, ok, body, json}` (`json` when the body parses).
    #[rhai_fn(name = "get", return_raw)]
    pub fn get(ctx: NativeCallContext, url: &str) -> Result<Map, Box<EvalAltResult>> {
        get_with(ctx, url, Map::new())
    }

    /// GETs a URL with options: `#{timeout: 10, headers: #{"X-Vault-Token": secret}}`.
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_with(
        ctx: NativeCallContext,
        url: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        let request = super::Request {
            method: reqwest::Method::GET,
            url,
            body: None,
            options,
        };
        super::send(&Run::of(&ctx), request)
    }

    /// POSTs a value as JSON. Mutating: planned, not sent, in a dry run.
    #[rhai_fn(name = "post_json", return_raw)]
    pub fn post_json(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
    ) -> Result<Map, Box<EvalAltResult>> {
        post_json_with(ctx, url, body, Map::new())
    }

    /// POSTs a value as JSON with options (`timeout`, `headers`).
    #[rhai_fn(name = "post_json", return_raw)]
    pub fn post_json_with(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        if !run.mutate("http::post_json", format!("POST JSON to {url}")) {
            let mut planned = Map::new();
            planned.insert("status".into(), Dynamic::from(0 as INT));
            planned.insert("ok".into(), true.into());
            planned.insert("body".into(), "".into());
            return Ok(planned);
        }
        let request = super::Request {
            method: reqwest::Method::POST,
            url,
            body: Some(crate::value::to_json(&body)),
            options,
        };
        super::send(&run, request)
    }

    /// Waits until a URL answers with a status below 500; returns the status. Fails after
    /// `timeout_secs` naming the last error.
    #[rhai_fn(return_raw)]
    pub fn wait_until(
        ctx: NativeCallContext,
        url: &str,
        timeout_secs: INT,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::wait_until(&Run::of(&ctx), url, timeout_secs)
    }
}
