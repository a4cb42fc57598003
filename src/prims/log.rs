//! Logging to stderr, with every secret value masked. Stdout is kept for results and `--json`.

use std::io::Write;

use rhai::plugin::*;

/// The kind of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
    /// A step starting.
    Step,
    /// A dry-run plan entry.
    Plan,
}

/// Writes one line to stderr: `HH:MM:SS` and the message, redacted.
pub fn emit(level: Level, message: &str) {
    let time = chrono::Local::now().format("%H:%M:%S");
    let message = crate::secrets::redact(message);
    let line = match level {
        Level::Info => format!("{time}   {message}"),
        Level::Warn => format!("{time}   warning: {message}"),
        Level::Error => format!("{time}   error: {message}"),
        Level::Step => format!("{time} ==> {message}"),
        Level::Plan => format!("{time}   [dry run] {message}"),
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn text(value: &Dynamic) -> String {
    if value.is_string() {
        value.to_string()
    } else {
        crate::value::to_json(value).to_string()
    }
}

#[export_module]
pub mod api {
    /// Logs a line to stderr (maps and lists are shown as JSON; secrets stay masked).
    pub fn info(message: Dynamic) {
        super::emit(super::Level::Info, &super::text(&message));
    }

    /// Logs a warning to stderr.
    pub fn warn(message: Dynamic) {
        super::emit(super::Level::Warn, &super::text(&message));
    }

    /// Logs an error to stderr (it does not stop the playbook: use `throw` for that).
    pub fn error(message: Dynamic) {
        super::emit(super::Level::Error, &super::text(&message));
    }
}
