//! The primitives scripts call, one module per family, all registered here. `runbook doc`
//! generates the reference from the doc comments in these modules.

pub mod archive;
pub mod backup;
pub mod certs;
pub mod crypto;
pub mod docker;
pub mod dotenv;
pub mod env;
pub mod findings;
pub mod flow;
pub mod fs;
pub mod host;
pub mod http;
pub mod log;
pub mod manifest;
pub mod metrics;
pub mod migrations;
pub mod secret;
pub mod secrets;
pub mod text;
pub mod time;
pub mod vault;

use std::path::PathBuf;

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use crate::run::Run;

/// What a primitive returns to the script.
pub type PrimResult<T> = Result<T, Box<EvalAltResult>>;

/// A primitive's error: one sentence saying what failed and where.
pub fn error(message: impl Into<String>) -> Box<EvalAltResult> {
    message.into().into()
}

/// Resolves a path a script gave through the run's sandbox.
pub fn checked_path(run: &Run, path: &str) -> PrimResult<PathBuf> {
    run.sandbox.check(path).map_err(error)
}

/// Reads an optional string field of an options map.
pub fn opt_string(options: &Map, key: &str) -> PrimResult<Option<String>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) if v.is_string() => Ok(Some(v.to_string())),
        Some(v) => Err(error(format!(
            "option `{key}` must be a string, got {}",
            crate::value::kind(v)
        ))),
    }
}

/// Reads an optional integer field of an options map.
pub fn opt_int(options: &Map, key: &str) -> PrimResult<Option<i64>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v.as_int().map(Some).map_err(|_| {
            error(format!(
                "option `{key}` must be an integer, got {}",
                crate::value::kind(v)
            ))
        }),
    }
}

/// Reads an optional boolean field of an options map.
pub fn opt_bool(options: &Map, key: &str) -> PrimResult<Option<bool>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v.as_bool().map(Some).map_err(|_| {
            error(format!(
                "option `{key}` must be true or false, got {}",
                crate::value::kind(v)
            ))
        }),
    }
}

/// Reads a map of names to strings or secrets (an environment); secrets are exposed here,
/// for delivery to a process, and nowhere else.
pub fn opt_env(options: &Map, key: &str) -> PrimResult<Vec<(String, String)>> {
    let Some(value) = options.get(key).filter(|v| !v.is_unit()) else {
        return Ok(Vec::new());
    };
    let map = value
        .read_lock::<Map>()
        .ok_or_else(|| error(format!("option `{key}` must be a map of NAME: value")))?;
    map.iter()
        .map(|(name, v)| {
            Ok((
                name.to_string(),
                plain_or_secret(v, &format!("`{key}.{name}`"))?,
            ))
        })
        .collect()
}

/// A string or a Secret's plaintext, for delivery channels that keep secrets out of sight
/// (environment, stdin, 0600 files).
pub fn plain_or_secret(value: &Dynamic, what: &str) -> PrimResult<String> {
    if let Some(secret) = value.read_lock::<crate::secrets::Secret>() {
        return Ok(secret.expose().to_string());
    }
    if value.is_string() || value.is_int() || value.is_bool() || value.is_float() {
        return Ok(value.to_string());
    }
    Err(error(format!(
        "{what} must be a string or a secret, got {}",
        crate::value::kind(value)
    )))
}

/// Registers every primitive family into the engine.
pub fn register(engine: &mut Engine) {
    secret::register(engine);
    engine.register_global_module(rhai::exported_module!(secret::api).into());
    engine.register_global_module(rhai::exported_module!(flow::api).into());
    engine.register_global_module(rhai::exported_module!(text::api).into());
    engine.register_static_module("log", rhai::exported_module!(log::api).into());
    engine.register_static_module("time", rhai::exported_module!(time::api).into());
    engine.register_static_module("env", rhai::exported_module!(env::api).into());
    engine.register_static_module("fs", rhai::exported_module!(fs::api).into());
    engine.register_static_module("http", rhai::exported_module!(http::api).into());
    engine.register_static_module("host", rhai::exported_module!(host::api).into());
    engine.register_static_module("docker", docker::module().into());
    engine.register_static_module("crypto", rhai::exported_module!(crypto::api).into());
    engine.register_static_module("archive", rhai::exported_module!(archive::api).into());
    engine.register_static_module("manifest", rhai::exported_module!(manifest::api).into());
    engine.register_static_module("backup", rhai::exported_module!(backup::api).into());
    engine.register_static_module("migrations", rhai::exported_module!(migrations::api).into());
    engine.register_static_module("metrics", rhai::exported_module!(metrics::api).into());
    engine.register_static_module("certs", rhai::exported_module!(certs::api).into());
    engine.register_static_module("findings", rhai::exported_module!(findings::api).into());
    vault::register(engine);
    secrets::register(engine);
    engine.register_static_module("dotenv", rhai::exported_module!(dotenv::api).into());
}
