//! Time: now, timestamps for names, formatting, durations, and a sleep that Ctrl-C cancels.

use rhai::plugin::*;
use rhai::{FLOAT, INT};

use super::PrimResult;
use crate::run::Run;

/// The `YYYYMMDDTHHMMSSZ` form used in backup set and tag names: sortable, no colons.
pub const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

fn parse(text: &str) -> PrimResult<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    chrono::NaiveDateTime::parse_from_str(text, STAMP_FORMAT)
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| {
            super::error(format!(
                "`{text}` is not a time (RFC 3339 or {STAMP_FORMAT})"
            ))
        })
}

fn sleep(ctx: &NativeCallContext, seconds: f64) -> PrimResult<()> {
    if !(0.0..=86_400.0 * 7.0).contains(&seconds) {
        return Err(super::error(format!(
            "sleep of {seconds} s is out of range (0 to 7 days)"
        )));
    }
    let run = Run::of(ctx);
    run.block_on(
        "sleep",
        tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)),
    )
}

#[export_module]
pub mod api {
    /// Seconds since the Unix epoch.
    pub fn now() -> INT {
        chrono::Utc::now().timestamp()
    }

    /// Milliseconds since the Unix epoch (for timing work).
    pub fn now_ms() -> INT {
        chrono::Utc::now().timestamp_millis()
    }

    /// The current UTC time as `20261122T164001Z`, for names that sort by time.
    pub fn stamp() -> String {
        chrono::Utc::now().format(super::STAMP_FORMAT).to_string()
    }

    /// An epoch timestamp as RFC 3339 UTC (`2026-11-22T16:40:01Z`).
    pub fn iso(seconds: INT) -> String {
        chrono::DateTime::from_timestamp(seconds, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }

    /// Formats an epoch timestamp (UTC) with a strftime pattern, e.g. `"%Y-%m-%d"`.
    pub fn format(seconds: INT, pattern: &str) -> String {
        chrono::DateTime::from_timestamp(seconds, 0)
            .map(|t| t.format(pattern).to_string())
            .unwrap_or_default()
    }

    /// Parses an RFC 3339 time or a `stamp()` to epoch seconds.
    #[rhai_fn(return_raw)]
    pub fn parse(text: &str) -> Result<INT, Box<EvalAltResult>> {
        super::parse(text)
    }

    /// Parses a duration (`90`, `90s`, `5m`, `1h30m`, `7d`) to whole seconds.
    #[rhai_fn(return_raw)]
    pub fn seconds(text: &str) -> Result<INT, Box<EvalAltResult>> {
        crate::playbook::param::parse_duration(text).ok_or_else(|| {
            super::super::error(format!("`{text}` is not a duration like 90s, 5m or 1h30m"))
        })
    }

    /// Seconds as a human duration (`1h 30m`).
    pub fn human(seconds: INT) -> String {
        humantime::format_duration(std::time::Duration::from_secs(
            seconds.max(0).unsigned_abs(),
        ))
        .to_string()
    }

    /// Sleeps; Ctrl-C and `--timeout` interrupt it.
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_int(ctx: NativeCallContext, seconds: INT) -> Result<(), Box<EvalAltResult>> {
        super::sleep(&ctx, seconds as f64)
    }

    /// Sleeps for a fraction of seconds; Ctrl-C and `--timeout` interrupt it.
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_float(ctx: NativeCallContext, seconds: FLOAT) -> Result<(), Box<EvalAltResult>> {
        super::sleep(&ctx, seconds)
    }
}
