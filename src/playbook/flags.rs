//! The flags of `runbook run` that a `--resume` carries over from the run it finishes: recorded
//! in each attempt's `run_start`, restored on resume, overridden by any given again.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

/// The flags an attempt ran with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    /// `--yes`
    pub yes: bool,
    /// `--allow-exec`
    pub allow_exec: bool,
    /// `--allow-path`, absolute (a resume may start in another directory).
    pub allow_paths: Vec<PathBuf>,
    /// `--timeout`
    pub timeout: Option<Duration>,
    /// `--wait-lock`
    pub wait_lock: Option<Duration>,
}

impl RunFlags {
    /// The flags given now, on top of those an earlier attempt recorded: a switch given now is
    /// on; a value given now replaces the recorded one (all `--allow-path`s together).
    pub fn over(self, recorded: &RunFlags) -> RunFlags {
        RunFlags {
            yes: self.yes || recorded.yes,
            allow_exec: self.allow_exec || recorded.allow_exec,
            allow_paths: if self.allow_paths.is_empty() {
                recorded.allow_paths.clone()
            } else {
                self.allow_paths
            },
            timeout: self.timeout.or(recorded.timeout),
            wait_lock: self.wait_lock.or(recorded.wait_lock),
        }
    }

    /// As recorded in the journal; durations as `5m`, like they are typed.
    pub fn to_json(&self) -> Value {
        let duration = |d: Option<Duration>| d.map(|d| humantime::format_duration(d).to_string());
        json!({
            "yes": self.yes,
            "allow_exec": self.allow_exec,
            "allow_paths": self.allow_paths,
            "timeout": duration(self.timeout),
            "wait_lock": duration(self.wait_lock),
        })
    }

    /// Read back from a journal; anything missing (a journal from before flags were recorded)
    /// is off or unset.
    pub fn from_json(value: &Value) -> RunFlags {
        let duration = |key: &str| {
            value[key]
                .as_str()
                .and_then(|text| humantime::parse_duration(text).ok())
        };
        RunFlags {
            yes: value["yes"] == true,
            allow_exec: value["allow_exec"] == true,
            allow_paths: value["allow_paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(PathBuf::from)
                .collect(),
            timeout: duration("timeout"),
            wait_lock: duration("wait_lock"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> RunFlags {
        RunFlags {
            yes: true,
            allow_exec: true,
            allow_paths: vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")],
            timeout: Some(Duration::from_secs(600)),
            wait_lock: Some(Duration::from_secs(30)),
        }
    }

    #[test]
    fn nothing_given_keeps_every_recorded_flag() {
        assert_eq!(RunFlags::default().over(&recorded()), recorded());
    }

    #[test]
    fn flags_given_again_override() {
        let given = RunFlags {
            allow_paths: vec![PathBuf::from("/srv/c")],
            timeout: Some(Duration::from_secs(5)),
            ..RunFlags::default()
        };
        let merged = given.over(&recorded());
        assert!(merged.yes && merged.allow_exec);
        assert_eq!(merged.allow_paths, vec![PathBuf::from("/srv/c")]);
        assert_eq!(merged.timeout, Some(Duration::from_secs(5)));
        assert_eq!(merged.wait_lock, Some(Duration::from_secs(30)));

        let given = RunFlags {
            yes: true,
            ..RunFlags::default()
        };
        assert!(given.over(&RunFlags::default()).yes);
    }

    #[test]
    fn round_trips_through_the_journal_and_reads_old_journals() {
        let flags = recorded();
        let json = flags.to_json();
        assert_eq!(json["timeout"], "10m");
        assert_eq!(json["wait_lock"], "30s");
        assert_eq!(RunFlags::from_json(&json), flags);
        assert_eq!(RunFlags::from_json(&Value::Null), RunFlags::default());
    }
}
