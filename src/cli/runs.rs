//! `runbook runs` and `runbook log`: past runs, read back from their journals.

use serde_json::Value;

use crate::error::Result;
use crate::playbook::journal::{self, RunRecord};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show at most this many of the latest runs.
    #[arg(long, default_value_t = 20)]
    pub last: usize,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The run id (see `runbook runs`).
    pub run_id: String,
    /// Print the raw journal events as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Lists the latest runs with playbook, start, outcome and duration.
pub fn runs(args: RunsArgs) -> Result<()> {
    let ids = journal::run_ids();
    let ids = &ids[ids.len().saturating_sub(args.last)..];
    let records: Vec<Value> = ids
        .iter()
        .filter_map(|id| RunRecord::load(id).ok())
        .map(|r| r.summary())
        .collect();
    if args.json {
        super::print_json(&Value::Array(records));
        return Ok(());
    }
    println!(
        "{:40}  {:11}  {:8}  {:>8}  PLAYBOOK",
        "RUN", "OUTCOME", "ATTEMPTS", "TIME"
    );
    for r in &records {
        let time = r["duration_ms"]
            .as_u64()
            .map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        let outcome = format!(
            "{}{}",
            r["outcome"].as_str().unwrap_or("?"),
            if r["dry_run"] == true { "*" } else { "" }
        );
        println!(
            "{:40}  {:11}  {:8}  {:>8}  {} v{}",
            r["run_id"].as_str().unwrap_or(""),
            outcome,
            r["attempts"],
            time,
            r["playbook"].as_str().unwrap_or(""),
            r["version"].as_str().unwrap_or("")
        );
    }
    if records.iter().any(|r| r["dry_run"] == true) {
        println!("(* dry run)");
    }
    Ok(())
}

/// Prints the journal of one run.
pub fn log(args: LogArgs) -> Result<()> {
    let record = RunRecord::load(&args.run_id)?;
    for event in &record.events {
        if args.json {
            println!("{event}");
            continue;
        }
        let time = event["time"].as_str().unwrap_or("");
        let line = match event["event"].as_str().unwrap_or("") {
            "run_start" => format!(
                "start {} v{} (attempt {}, sha256 {}){} params {}",
                event["playbook"].as_str().unwrap_or(""),
                event["version"].as_str().unwrap_or(""),
                event["attempt"],
                event["sha256"]
                    .as_str()
                    .unwrap_or("")
                    .get(..12)
                    .unwrap_or(""),
                if event["dry_run"] == true {
                    " dry run"
                } else {
                    ""
                },
                event["params"]
            ),
            "step_start" => format!("step  {} started", event["key"].as_str().unwrap_or("")),
            "step_skipped" => format!(
                "step  {} skipped (done by an earlier attempt)",
                event["key"].as_str().unwrap_or("")
            ),
            "step_end" => format!(
                "step  {} {} in {} ms{}",
                event["key"].as_str().unwrap_or(""),
                event["outcome"].as_str().unwrap_or(""),
                event["duration_ms"],
                event["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            "action" => format!(
                "      {}: {}",
                event["action"].as_str().unwrap_or(""),
                event["detail"].as_str().unwrap_or("")
            ),
            "run_end" => format!(
                "end   {} in {} ms{}",
                event["outcome"].as_str().unwrap_or(""),
                event["duration_ms"],
                event["error"]
                    .as_str()
                    .map(|e| format!("\n{e}"))
                    .unwrap_or_default()
            ),
            other => format!("{other} {event}"),
        };
        println!("{time}  {line}");
    }
    if record.end.is_none() {
        println!("(the journal ends without a run end: the process was killed; `runbook run --resume {}` finishes it)", record.run_id);
    }
    Ok(())
}
