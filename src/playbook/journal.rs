//! The journal of a run: one JSON object per line in `<state>/runs/<run-id>/journal.jsonl`.
//! It observes steps (start, end, duration, outcome, result) and is what `--resume`,
//! `runbook runs` and `runbook log` read back. Every line passes through secret redaction.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::locations;
use crate::secrets;

/// An open journal being appended to.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the journal of `run_id` for appending.
    pub fn open(run_id: &str) -> Result<Journal> {
        let dir = locations::runs_dir().join(run_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create run directory {}", dir.display()), e))?;
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open journal {}", path.display()), e))?;
        Ok(Journal { file, path })
    }

    /// Where the journal is.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Appends one event, stamped with the time. `durable` fsyncs it (step ends, run ends),
    /// so a run killed right after still resumes from there.
    pub fn record(&mut self, event: &str, mut fields: Value, durable: bool) -> std::io::Result<()> {
        if let Value::Object(map) = &mut fields {
            map.insert("event".into(), event.into());
            map.insert(
                "time".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            );
        }
        let line = secrets::redact(&fields.to_string());
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        if durable {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// A step an earlier attempt completed: its result and how long it took then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletedStep {
    pub result: Value,
    pub duration_ms: u64,
}

/// A past run, read back from its journal.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub run_id: String,
    /// The `run_start` event of the first attempt.
    pub start: Value,
    /// Steps that completed, by step key, over all attempts.
    pub completed: BTreeMap<String, CompletedStep>,
    /// The last `run_end` event, if the run ended (a killed run has none).
    pub end: Option<Value>,
    pub attempts: usize,
    pub events: Vec<Value>,
}

impl RunRecord {
    /// Reads the journal of `run_id`. A torn last line (the process was killed mid-write) is ignored.
    pub fn load(run_id: &str) -> Result<RunRecord> {
        if run_id.is_empty() || run_id.contains('/') || run_id.starts_with('.') {
            return Err(Error::Usage(format!(
                "`{run_id}` is not a run id (see `runbook runs`)"
            )));
        }
        let path = locations::runs_dir().join(run_id).join("journal.jsonl");
        let file = File::open(&path).map_err(|_| {
            Error::Usage(format!(
                "no run `{run_id}` in {} (see `runbook runs`)",
                locations::runs_dir().display()
            ))
        })?;
        let mut record = RunRecord {
            run_id: run_id.to_string(),
            ..RunRecord::default()
        };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match event["event"].as_str() {
                Some("run_start") => {
                    record.attempts += 1;
                    if record.start.is_null() {
                        record.start = event.clone();
                    }
                    record.end = None;
                }
                Some("step_end") if event["outcome"] == "ok" => {
                    if let Some(key) = event["key"].as_str() {
                        let step = CompletedStep {
                            result: event["result"].clone(),
                            duration_ms: event["duration_ms"].as_u64().unwrap_or(0),
                        };
                        record.completed.insert(key.to_string(), step);
                    }
                }
                Some("run_end") => record.end = Some(event.clone()),
                _ => {}
            }
            record.events.push(event);
        }
        Ok(record)
    }

    /// The `run_start` event of the last attempt (what it ran with).
    pub fn last_start(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "run_start")
            .unwrap_or(&self.start)
    }

    /// The outcome of the last attempt: `success`, `failed`, `refused`, `interrupted`, or
    /// `killed` when the journal stops without an end.
    pub fn outcome(&self) -> &str {
        self.end
            .as_ref()
            .and_then(|e| e["outcome"].as_str())
            .unwrap_or("killed")
    }

    /// A one-line summary for `runbook runs`.
    pub fn summary(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "playbook": self.start["playbook"],
            "version": self.start["version"],
            "started": self.start["time"],
            "dry_run": self.start["dry_run"],
            "attempts": self.attempts,
            "outcome": self.outcome(),
            "duration_ms": self.end.as_ref().map(|e| e["duration_ms"].clone()).unwrap_or(Value::Null),
        })
    }
}

/// The ids of all recorded runs, oldest first (ids start with a UTC timestamp).
pub fn run_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(locations::runs_dir())
        .map(|entries| {
            entries
                .filter_map(std::result::Result::ok)
                .filter(|e| e.path().join("journal.jsonl").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A new run id: UTC time, playbook name and a random suffix, sortable by start.
pub fn new_run_id(playbook: &str) -> String {
    format!(
        "{}-{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        playbook,
        rand::random::<u16>()
    )
}
