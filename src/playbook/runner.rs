//! Running a playbook: bind parameters, open the journal, build the engine, evaluate, report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Map, Scope};
use serde::Serialize;
use serde_json::{json, Value};

use super::flags::RunFlags;
use super::journal::{self, CompletedStep, Journal, RunRecord};
use super::lock::{Holder, LockError, StackLock};
use super::{params, ParamType, Playbook};
use crate::engine::{self, diagnostics};
use crate::error::{Error, Result};
use crate::locations;
use crate::run::{Action, Run, RunOptions, StepGate, StepReport, Verdict};
use crate::sandbox::Sandbox;
use crate::secrets;

/// What to run and how.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// A playbook name or path; with `resume`, defaults to the one that run used.
    pub target: Option<String>,
    /// `-p key=value` pairs as given.
    pub params: Vec<(String, String)>,
    pub options: RunOptions,
    /// The id of an earlier run to finish.
    pub resume: Option<String>,
    /// Directories allowed beyond the defaults (`--allow-path`).
    pub allow_paths: Vec<PathBuf>,
    /// How long to wait for the stack lock another run holds (`--wait-lock`); refuse at once
    /// when `None`.
    pub wait_lock: Option<std::time::Duration>,
    /// `print` goes to stderr (stdout is reserved for the JSON report).
    pub print_to_stderr: bool,
    /// Holds each top-level step until the REPL lets it go.
    pub gate: Option<Gate>,
    /// Errors the playbook raised are shown at their source position too (`--verbose`).
    pub verbose: bool,
}

/// A [`StepGate`] handed to a run.
#[derive(Clone)]
pub struct Gate(pub Arc<dyn StepGate>);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failed,
    Refused,
    Interrupted,
}

/// Everything an operator (or a script reading `--json`) wants to know after a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub playbook: String,
    pub version: String,
    pub dry_run: bool,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
    /// Mutating actions in order: the plan in a dry run, what was done otherwise.
    pub actions: Vec<Action>,
    /// The playbook's final value.
    pub result: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where in the playbook or stdlib the error was raised: `file:line:col`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_at: Option<String>,
    /// The exit status the playbook chose (monitoring plugin output), for a successful run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    pub journal: PathBuf,
}

/// Runs a playbook to its end. `Err` means it never started (usage, compile, parameters);
/// a playbook that started and failed returns a report with that outcome.
pub fn run(request: RunRequest) -> Result<RunReport> {
    let started = Instant::now();
    let Prepared {
        playbook,
        given,
        run_id,
        resumed,
        attempt,
        flags,
    } = prepare(&request)?;
    let bound = params::bind(&playbook.header, &given).map_err(Error::Usage)?;
    // Held until this function returns, whichever way; before the run is built, so waiting
    // for it does not count against --timeout.
    let _stack_lock = stack_lock(&playbook, &bound, &run_id, &request.options, &flags)?;

    let options = RunOptions {
        assume_yes: flags.yes,
        allow_exec: flags.allow_exec,
        timeout: flags.timeout,
        ..request.options.clone()
    };
    let sandbox = sandbox(&flags.allow_paths);
    let script_params = script_params(&playbook, &bound, &sandbox)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let run = Run::new(
        run_id.clone(),
        options,
        sandbox,
        runtime.handle().clone(),
        None,
        resumed,
    );
    if let Some(Gate(gate)) = &request.gate {
        run.set_gate(gate.clone());
    }
    let engine = engine::build(&run, request.print_to_stderr);
    let mut scope = Scope::new();
    scope.push_constant("params", script_params);
    scope.push_constant("run", run_info(&run, &playbook));
    let file = playbook.file_name();
    run.remember_source(&file, &playbook.source.text);
    let mut ast = engine
        .compile_with_scope(&scope, &playbook.source.text)
        .map_err(|e| Error::Compile(diagnostics::render_parse(&file, &playbook.source.text, &e)))?;
    ast.set_source(file.as_str());
    check_params(&engine, &mut scope, &ast)?;

    let mut journal = Journal::open(&run_id)?;
    journal
        .record(
            "run_start",
            json!({
                "run_id": run_id,
                "attempt": attempt,
                "playbook": playbook.header.name,
                "version": playbook.header.version.to_string(),
                "sha256": playbook.sha256,
                "source": file,
                "target": request.target.clone().unwrap_or_else(|| playbook.header.name.clone()),
                "params": bound.values,
                "given": given.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "dry_run": request.options.dry_run,
                "flags": flags.to_json(),
            }),
            true,
        )
        .map_err(|e| Error::io("cannot write the journal", e))?;
    let journal_path = journal.path().clone();
    run.attach_journal(journal);
    watch_signals(runtime.handle(), &run);

    // Entered, so primitives can build tokio futures (timers, sockets) on the script thread.
    let entered = runtime.enter();
    let evaluated = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
    run.finish();
    drop(entered);
    let steps = run.step_reports();
    let (outcome, result, error, error_at) = match &evaluated {
        Ok(value) => (Outcome::Success, crate::value::to_json(value), None, None),
        Err(err) => {
            let failed_step = steps
                .iter()
                .rev()
                .take_while(|s| s.outcome == "failed" || s.outcome == "interrupted")
                .last()
                .map(|s| s.name.clone());
            let outcome = match run.verdict() {
                Some(Verdict::Refused(_)) => Outcome::Refused,
                Some(Verdict::Interrupted) => Outcome::Interrupted,
                Some(Verdict::TimedOut(_)) | None => Outcome::Failed,
            };
            let failure =
                diagnostics::eval_error(&file, err, failed_step.as_deref(), &|name: &str| {
                    run.source_text(name)
                });
            let message = secrets::redact(&failure.render(request.verbose));
            (outcome, Value::Null, Some(message), failure.location)
        }
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    run.journal(
        "run_end",
        json!({"outcome": outcome, "duration_ms": duration_ms, "error": error, "error_at": error_at}),
        true,
    );
    Ok(RunReport {
        run_id,
        playbook: playbook.header.name.clone(),
        version: playbook.header.version.to_string(),
        dry_run: request.options.dry_run,
        outcome,
        duration_ms,
        steps,
        actions: run.actions(),
        result,
        error,
        error_at,
        exit_status: run.exit_status(),
        journal: journal_path,
    })
}

/// The roots a run may touch: the working directory, the state directory, and `--allow-path`s.
pub fn sandbox(allow_paths: &[PathBuf]) -> Sandbox {
    Sandbox::new(
        [
            std::env::current_dir().unwrap_or_default(),
            locations::state_dir(),
        ]
        .into_iter()
        .chain(allow_paths.iter().cloned()),
    )
}

/// A run about to start: its playbook, parameters and flags, new or taken from the run it resumes.
struct Prepared {
    playbook: Playbook,
    /// `-p` pairs: the earlier run's, overridden by those given now.
    given: Vec<(String, String)>,
    run_id: String,
    /// Steps earlier attempts completed.
    resumed: BTreeMap<String, CompletedStep>,
    attempt: usize,
    /// The flags given now, over the earlier attempt's.
    flags: RunFlags,
}

/// The flags as given on this command line; relative paths made absolute for the journal.
fn given_flags(request: &RunRequest) -> RunFlags {
    RunFlags {
        yes: request.options.assume_yes,
        allow_exec: request.options.allow_exec,
        allow_paths: request
            .allow_paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect(),
        timeout: request.options.timeout,
        wait_lock: request.wait_lock,
    }
}

/// Finds the playbook and, when resuming, checks the earlier run and takes its parameters
/// and flags.
fn prepare(request: &RunRequest) -> Result<Prepared> {
    let Some(resume_id) = &request.resume else {
        let target = request.target.as_deref().ok_or_else(|| {
            Error::Usage("name a playbook to run (see `runbook list`), or --resume RUN_ID".into())
        })?;
        let playbook = Playbook::load(target)?;
        let run_id = journal::new_run_id(&playbook.header.name);
        return Ok(Prepared {
            playbook,
            given: request.params.clone(),
            run_id,
            resumed: BTreeMap::new(),
            attempt: 1,
            flags: given_flags(request),
        });
    };
    let record = RunRecord::load(resume_id)?;
    if record.start["dry_run"] == true {
        return Err(Error::Usage(format!(
            "run {resume_id} was a dry run; it changed nothing, so there is nothing to resume"
        )));
    }
    if record.outcome() == "success" {
        return Err(Error::Usage(format!(
            "run {resume_id} already succeeded; there is nothing to resume"
        )));
    }
    let target = match &request.target {
        Some(t) => t.clone(),
        None => record.start["target"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let playbook = Playbook::load(&target)?;
    let recorded_sha = record.start["sha256"].as_str().unwrap_or_default();
    if playbook.sha256 != recorded_sha {
        return Err(Error::Refused(format!(
            "playbook {} changed since run {resume_id} (sha256 {} then, {} now); a resume must run the same \
             file: restore it, or start a new run",
            playbook.file_name(),
            short(recorded_sha),
            short(&playbook.sha256)
        )));
    }
    // The last attempt's parameters (each attempt records what it ran with), overridden by
    // any given now.
    let mut given: Vec<(String, String)> = record.last_start()["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string())))
        .filter(|(k, _)| !request.params.iter().any(|(n, _)| n == k))
        .collect();
    given.extend(request.params.iter().cloned());
    let flags = given_flags(request).over(&RunFlags::from_json(&record.last_start()["flags"]));
    Ok(Prepared {
        playbook,
        given,
        run_id: resume_id.clone(),
        resumed: record.completed,
        attempt: record.attempts + 1,
        flags,
    })
}

/// Takes the lock of the stack a `locks: stack` playbook acts on; a dry run, which changes
/// nothing, takes none.
fn stack_lock(
    playbook: &Playbook,
    bound: &params::Bound,
    run_id: &str,
    options: &RunOptions,
    flags: &RunFlags,
) -> Result<Option<StackLock>> {
    if !playbook.header.locks_stack || options.dry_run {
        return Ok(None);
    }
    let Some(stack) = bound.values.get("stack").and_then(Value::as_str) else {
        return Ok(None);
    };
    if stack.is_empty() {
        return Ok(None);
    }
    let holder = Holder::this_process(run_id, &playbook.header.name);
    match StackLock::acquire(&locations::locks_dir(), stack, &holder, flags.wait_lock) {
        Ok(lock) => Ok(Some(lock)),
        Err(err @ LockError::Busy { .. }) => Err(Error::Refused(err.to_string())),
        Err(LockError::Io { path, source }) => Err(Error::io(
            format!(
                "cannot take the lock of stack `{stack}` ({})",
                path.display()
            ),
            source,
        )),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A playbook's own check of parameters that hold only together (`fn check_params(params)`),
/// run before anything is journaled or changed: what it throws is a usage error (exit 2).
fn check_params(engine: &rhai::Engine, scope: &mut Scope, ast: &rhai::AST) -> Result<()> {
    if !ast
        .iter_functions()
        .any(|f| f.name == "check_params" && f.params.len() == 1)
    {
        return Ok(());
    }
    let params = scope.get_value::<Map>("params").unwrap_or_default();
    let options = rhai::CallFnOptions::new()
        .eval_ast(false)
        .rewind_scope(true);
    engine
        .call_fn_with_options::<Dynamic>(options, scope, ast, "check_params", (params,))
        .map(|_| ())
        .map_err(|e| {
            Error::Usage(match *e {
                rhai::EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
                other => other.to_string(),
            })
        })
}

/// The `params` map scripts see: secrets resolved to `Secret`, paths allowed in the sandbox.
fn script_params(playbook: &Playbook, bound: &params::Bound, sandbox: &Sandbox) -> Result<Map> {
    let mut map = Map::new();
    for (name, value) in &bound.values {
        let kind = playbook.header.param(name).map(|p| p.kind);
        let dynamic = match (kind, value) {
            (Some(ParamType::Secret), Value::String(reference)) => {
                Dynamic::from(params::resolve_secret(name, reference).map_err(Error::Usage)?)
            }
            (Some(ParamType::Path), Value::String(path)) => {
                sandbox.allow(std::path::Path::new(path));
                Dynamic::from(path.clone())
            }
            _ => crate::value::from_json(value),
        };
        map.insert(name.as_str().into(), dynamic);
    }
    Ok(map)
}

fn run_info(run: &Arc<Run>, playbook: &Playbook) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), run.id.clone().into());
    map.insert("dry_run".into(), run.options.dry_run.into());
    map.insert("playbook".into(), playbook.header.name.clone().into());
    map.insert("version".into(), playbook.header.version.to_string().into());
    map
}

/// Ctrl-C and SIGTERM cancel the run: the script stops between operations, in-flight calls
/// are abandoned, and the journal stays resumable.
fn watch_signals(runtime: &tokio::runtime::Handle, run: &Arc<Run>) {
    let run = run.clone();
    runtime.spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        crate::prims::log::emit(
            crate::prims::log::Level::Warn,
            "interrupted: stopping after the current call",
        );
        run.cancel();
    });
}

/// Whether stdin is a terminal (confirmations can be asked).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}
