//! `runbook run`: run a playbook and report how it went.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::playbook::params;
use crate::playbook::runner::{self, Outcome, RunReport, RunRequest};
use crate::run::RunOptions;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook run backup -p stack=shop
  runbook run dr -p stack=shop --dry-run
  runbook run restore -p stack=shop --yes --json
  runbook run backup -p stack=shop --wait-lock 10m
  runbook run --resume 20261122T164001Z-dr-3f2a")]
pub struct RunArgs {
    /// Playbook name (see `runbook list`) or path to a .rhai file.
    pub playbook: Option<String>,
    /// A parameter: `-p stack=shop` (repeatable). Secrets take env:NAME or file:PATH.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Act on nothing: print the plan of every change the run would make.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to confirmations of destructive steps (needed without a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Print the report as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
    /// Finish an interrupted or failed run: completed steps are skipped and hand back their
    /// results. Its parameters and flags (--yes, --allow-exec, --allow-path, --timeout,
    /// --wait-lock) apply again; those given again replace them.
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    /// Stop the run after this long, e.g. 30s, 10m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// When another run holds the stack's lock, wait this long for it (e.g. 5m) instead of
    /// refusing at once (exit 3).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_lock: Option<std::time::Duration>,
    /// Allow the playbook to run host commands (host::run).
    #[arg(long)]
    pub allow_exec: bool,
    /// Allow file access under this directory too (repeatable). The working directory, the
    /// state directory and directories given as path parameters are always allowed.
    #[arg(long, value_name = "DIR")]
    pub allow_path: Vec<PathBuf>,
    /// Show where in the playbook (or its stdlib) an error was raised: file:line:col and the line.
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 30s or 10m: {e}"))
}

/// Runs the playbook, prints the report, and turns its outcome into the exit code.
pub fn execute(args: RunArgs) -> Result<()> {
    let given = args
        .params
        .iter()
        .map(|p| params::split_assignment(p))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Usage)?;
    let request = RunRequest {
        target: args.playbook,
        params: given,
        options: RunOptions {
            dry_run: args.dry_run,
            assume_yes: args.yes,
            allow_exec: args.allow_exec,
            interactive: runner::stdin_is_terminal(),
            timeout: args.timeout,
        },
        resume: args.resume,
        allow_paths: args.allow_path,
        wait_lock: args.wait_lock,
        print_to_stderr: args.json,
        gate: None,
        verbose: args.verbose,
    };
    let report = runner::run(request)?;
    if args.json {
        super::print_json(&serde_json::to_value(&report).unwrap_or_default());
    } else if report.exit_status.is_none() {
        print_human(&report);
    } else if report.dry_run {
        // A playbook that chose its exit status (a findings report, monitoring plugin output)
        // speaks for itself; what a dry run would change is still said.
        print_plan(&report);
    }
    let message = || report.error.clone().unwrap_or_default();
    // After any failure a real run can be finished where it stopped; a dry run changed nothing.
    let resume = |how: &str| {
        if report.dry_run {
            message()
        } else {
            format!(
                "{}\nrun {} {how}; once the cause is fixed, finish it with: runbook run --resume {}",
                message(),
                report.run_id,
                report.run_id
            )
        }
    };
    match report.outcome {
        Outcome::Success => match report.exit_status {
            Some(code) if code != 0 => Err(Error::Status(code)),
            _ => Ok(()),
        },
        Outcome::Failed => Err(Error::Failed(resume("failed"))),
        Outcome::Refused => Err(Error::Refused(resume("was refused"))),
        Outcome::Interrupted => Err(Error::Interrupted(resume("was interrupted"))),
    }
}

fn print_plan(report: &RunReport) {
    if report.actions.is_empty() {
        println!("plan: no changes");
        return;
    }
    println!("plan ({} changes):", report.actions.len());
    for (i, action) in report.actions.iter().enumerate() {
        let step = if action.step.is_empty() {
            String::new()
        } else {
            format!("[{}] ", action.step)
        };
        println!("  {:>3}. {step}{}: {}", i + 1, action.action, action.detail);
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn print_human(report: &RunReport) {
    let outcome = serde_json::to_value(report.outcome).unwrap_or_default();
    println!(
        "{} {} v{}: {} in {}{}",
        report.run_id,
        report.playbook,
        report.version,
        outcome.as_str().unwrap_or("?"),
        seconds(report.duration_ms),
        if report.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    );
    if !report.steps.is_empty() {
        let width = report
            .steps
            .iter()
            .map(|s| s.key.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("  {:width$}  {:11}  {:>7}", "step", "outcome", "time");
        for step in &report.steps {
            println!(
                "  {:width$}  {:11}  {:>7}",
                step.key,
                step.outcome,
                seconds(step.duration_ms)
            );
        }
    }
    if report.dry_run {
        print_plan(report);
    }
    if !report.result.is_null() {
        println!(
            "result: {}",
            serde_json::to_string_pretty(&report.result).unwrap_or_default()
        );
    }
}
