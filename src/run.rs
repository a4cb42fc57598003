//! One run of a playbook (or a REPL session): the state primitives share through the engine.
//! It knows whether this is a dry run, keeps the plan of mutating actions, journals steps,
//! hands back recorded results on `--resume`, and carries the stop signal (Ctrl-C, timeout).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, NativeCallContext, Position};
use serde::Serialize;
use serde_json::{json, Value};

use crate::playbook::journal::{CompletedStep, Journal};
use crate::prims::log;
use crate::sandbox::Sandbox;
use crate::secrets;

/// How a run was asked to behave.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Mutating primitives record what they would do and do not act.
    pub dry_run: bool,
    /// Answer yes to confirmations (`--yes`).
    pub assume_yes: bool,
    /// Host commands may be spawned (`--allow-exec`).
    pub allow_exec: bool,
    /// Stdin is a terminal, so confirmations can be asked.
    pub interactive: bool,
    /// Stop the run after this long (`--timeout`).
    pub timeout: Option<Duration>,
}

/// A mutating action: what the run did, or in a dry run what it would have done.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Action {
    /// The step it belongs to (`outer/inner` for nested steps), empty outside any step.
    pub step: String,
    /// The primitive, e.g. `fs::write_text`.
    pub action: String,
    /// What it does to what, in words.
    pub detail: String,
}

/// How one step went, for the report at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub key: String,
    pub name: String,
    /// `ok`, `failed`, `interrupted` or `resumed` (completed by an earlier attempt).
    pub outcome: String,
    pub duration_ms: u64,
    /// For a step completed by an earlier attempt: how long it took then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_ms: Option<u64>,
    pub result: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepReport {
    /// How long the step's work took, in whichever attempt did it.
    pub fn work_ms(&self) -> u64 {
        self.earlier_ms.unwrap_or(self.duration_ms)
    }
}

/// Why a run stopped other than by a script error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A confirmation was declined or impossible, or a dry run met an unplannable action.
    Refused(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// `--timeout` elapsed.
    TimedOut(Duration),
}

/// What a step call should do, decided from the journal of earlier attempts.
pub enum StepStart {
    /// Run the body; the key identifies the step in the journal.
    Fresh(String),
    /// Completed by an earlier attempt: hand back its recorded result.
    Resumed(Value),
}

#[derive(Default)]
struct Steps {
    stack: Vec<String>,
    seen: HashMap<String, usize>,
    reports: Vec<StepReport>,
}

type Cleanup = Box<dyn FnOnce() + Send>;

/// Lets the REPL hold a loaded playbook before each top-level step (`:next`, `:run`).
pub trait StepGate: Send + Sync {
    /// Called before a top-level step starts; `false` stops the run there (resumable).
    fn before(&self, step: &str) -> bool;
    /// Called when a top-level step has ended.
    fn after(&self, report: &StepReport);
}

/// The shared state of one run.
pub struct Run {
    pub id: String,
    pub options: RunOptions,
    pub sandbox: Sandbox,
    runtime: tokio::runtime::Handle,
    journal: Mutex<Option<Journal>>,
    actions: Mutex<Vec<Action>>,
    steps: Mutex<Steps>,
    resumed: BTreeMap<String, CompletedStep>,
    cancelled: AtomicBool,
    stop_tx: tokio::sync::watch::Sender<bool>,
    deadline: Option<Instant>,
    verdict: Mutex<Option<Verdict>>,
    sources: Mutex<HashMap<String, String>>,
    exit_status: Mutex<Option<i32>>,
    cleanups: Mutex<Vec<(String, Cleanup)>>,
    gate: Mutex<Option<Arc<dyn StepGate>>>,
    set_keys: Mutex<HashMap<String, crate::archive::SetKey>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Run {
    /// A run with the given journal (none for `check`, `doc` and detached engines) and the
    /// results of steps completed by earlier attempts.
    pub fn new(
        id: String,
        options: RunOptions,
        sandbox: Sandbox,
        runtime: tokio::runtime::Handle,
        journal: Option<Journal>,
        resumed: BTreeMap<String, CompletedStep>,
    ) -> Arc<Run> {
        let deadline = options.timeout.map(|t| Instant::now() + t);
        Arc::new(Run {
            id,
            options,
            sandbox,
            runtime,
            journal: Mutex::new(journal),
            actions: Mutex::default(),
            steps: Mutex::default(),
            resumed,
            cancelled: AtomicBool::new(false),
            stop_tx: tokio::sync::watch::channel(false).0,
            deadline,
            verdict: Mutex::new(None),
            sources: Mutex::default(),
            exit_status: Mutex::default(),
            cleanups: Mutex::default(),
            gate: Mutex::default(),
            set_keys: Mutex::default(),
        })
    }

    /// Keeps a backup set's data key for the rest of the run, under `id` (the SHA-256 of its
    /// `key.age`): a set's key is derived from the operator's key once per run.
    pub fn remember_set_key(&self, id: String, key: crate::archive::SetKey) {
        lock(&self.set_keys).insert(id, key);
    }

    /// A set key remembered under `id`.
    pub fn set_key(&self, id: &str) -> Option<crate::archive::SetKey> {
        lock(&self.set_keys).get(id).cloned()
    }

    /// The run a registered function was called from.
    pub fn of(ctx: &NativeCallContext) -> Arc<Run> {
        ctx.tag()
            .and_then(|tag| tag.clone().try_cast::<Arc<Run>>())
            .expect("every engine is built with its run as the default tag")
    }

    /// The tokio runtime primitives run their async calls on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Starts journaling (after the playbook compiled: a run that never started leaves no journal).
    pub fn attach_journal(&self, journal: Journal) {
        *lock(&self.journal) = Some(journal);
    }

    /// Stops journaling and hands the journal over (the REPL moves it to a rebuilt run).
    pub fn take_journal(&self) -> Option<Journal> {
        lock(&self.journal).take()
    }

    /// Appends an event to the journal, if this run has one. Journal write failures are
    /// reported once on stderr; they do not fail the work itself.
    pub fn journal(&self, event: &str, fields: Value, durable: bool) {
        let mut journal = lock(&self.journal);
        if let Some(j) = journal.as_mut() {
            if let Err(e) = j.record(event, fields, durable) {
                log::emit(
                    log::Level::Warn,
                    &format!("journal {} not written: {e}", j.path().display()),
                );
                *journal = None;
            }
        }
    }

    // ---- stopping ---------------------------------------------------------------------

    /// Cancels the run: the script stops at its next operation and in-flight calls return.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.set_verdict(Verdict::Interrupted);
        let _ = self.stop_tx.send(true);
    }

    /// Clears a cancellation (the REPL cancels one entry, not the session).
    pub fn reset_cancel(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
        *lock(&self.verdict) = None;
        let _ = self.stop_tx.send(false);
    }

    fn set_verdict(&self, verdict: Verdict) {
        let mut v = lock(&self.verdict);
        if v.is_none() {
            *v = Some(verdict);
        }
    }

    /// Why the run stopped, when it was not a plain script error.
    pub fn verdict(&self) -> Option<Verdict> {
        lock(&self.verdict).clone()
    }

    /// The reason to stop now, if any; checked by the engine between operations.
    pub fn stop_reason(&self) -> Option<String> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Some("interrupted".into());
        }
        if let Some(deadline) = self.deadline {
            if Instant::now() >= deadline {
                let limit = self.options.timeout.unwrap_or_default();
                self.set_verdict(Verdict::TimedOut(limit));
                return Some(format!(
                    "stopped by --timeout after {}",
                    humantime::format_duration(limit)
                ));
            }
        }
        None
    }

    /// Returns an error when the run must stop.
    pub fn check_stop(&self) -> Result<(), Box<EvalAltResult>> {
        match self.stop_reason() {
            Some(reason) => Err(Box::new(EvalAltResult::ErrorTerminated(
                reason.into(),
                Position::NONE,
            ))),
            None => Ok(()),
        }
    }

    /// Runs an async call from the script thread, abandoning it when the run is cancelled or
    /// times out. `what` names the call in the error.
    pub fn block_on<F: Future>(&self, what: &str, fut: F) -> Result<F::Output, Box<EvalAltResult>> {
        self.check_stop()?;
        let mut stop = self.stop_tx.subscribe();
        let deadline = self.deadline.map(tokio::time::Instant::from_std);
        let outcome = self.runtime.block_on(async move {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                out = fut => Some(out),
                _ = stop.wait_for(|s| *s) => None,
                _ = timeout => None,
            }
        });
        outcome.ok_or_else(|| {
            let reason = self.stop_reason().unwrap_or_else(|| "interrupted".into());
            Box::new(EvalAltResult::ErrorTerminated(
                format!("{what}: {reason}").into(),
                Position::NONE,
            ))
        })
    }

    // ---- dry run and actions ----------------------------------------------------------

    /// Called by every mutating primitive before it acts. Records the action (the plan in a
    /// dry run, the journal in a real run) and returns whether to act.
    pub fn mutate(&self, action: &str, detail: impl Into<String>) -> bool {
        let entry = Action {
            step: lock(&self.steps).stack.join("/"),
            action: action.to_string(),
            detail: secrets::redact(&detail.into()),
        };
        if self.options.dry_run {
            log::emit(
                log::Level::Plan,
                &format!("would {}: {}", entry.action, entry.detail),
            );
        }
        self.journal("action", json!(entry), false);
        lock(&self.actions).push(entry);
        !self.options.dry_run
    }

    /// For a mutating primitive that cannot say what it would do: refuses in a dry run.
    pub fn refuse_in_dry_run(&self, action: &str, why: &str) -> Result<(), Box<EvalAltResult>> {
        if self.options.dry_run {
            return Err(self.refuse(format!(
                "{action} cannot be planned in a dry run ({why}); run without --dry-run to act"
            )));
        }
        Ok(())
    }

    /// A refusal: the run stops with exit code 3.
    pub fn refuse(&self, message: String) -> Box<EvalAltResult> {
        self.set_verdict(Verdict::Refused(message.clone()));
        message.into()
    }

    /// Sets the exit status of a run that succeeds (monitoring plugins report through it).
    pub fn set_exit_status(&self, code: i32) {
        *lock(&self.exit_status) = Some(code);
    }

    /// The exit status a playbook chose, if any.
    pub fn exit_status(&self) -> Option<i32> {
        *lock(&self.exit_status)
    }

    /// The actions recorded so far, in order.
    pub fn actions(&self) -> Vec<Action> {
        lock(&self.actions).clone()
    }

    // ---- steps ------------------------------------------------------------------------

    /// Enters a step: decides from earlier attempts whether it runs, journals its start.
    pub fn begin_step(&self, name: &str) -> StepStart {
        let mut steps = lock(&self.steps);
        let mut key = steps
            .stack
            .iter()
            .map(String::as_str)
            .chain([name])
            .collect::<Vec<_>>()
            .join("/");
        let count = steps.seen.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            key = format!("{key}#{count}");
        }
        if let Some(done) = self.resumed.get(&key) {
            steps.reports.push(StepReport {
                key: key.clone(),
                name: name.to_string(),
                outcome: "resumed".into(),
                duration_ms: 0,
                earlier_ms: Some(done.duration_ms),
                result: done.result.clone(),
                error: None,
            });
            drop(steps);
            log::emit(
                log::Level::Step,
                &format!("{name} (done by an earlier attempt, skipped)"),
            );
            self.journal("step_skipped", json!({"key": key, "step": name}), false);
            return StepStart::Resumed(done.result.clone());
        }
        steps.stack.push(name.to_string());
        drop(steps);
        log::emit(log::Level::Step, name);
        self.journal("step_start", json!({"key": key, "step": name}), false);
        StepStart::Fresh(key)
    }

    /// Leaves a step, journaling its outcome and result.
    pub fn end_step(
        &self,
        key: &str,
        started: Instant,
        outcome: &Result<Dynamic, Box<EvalAltResult>>,
    ) {
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut steps = lock(&self.steps);
        let name = steps.stack.pop().unwrap_or_default();
        let (label, result, error) = match outcome {
            Ok(value) => ("ok", crate::value::to_json(value), None),
            Err(err) => {
                let label = if self.verdict() == Some(Verdict::Interrupted) {
                    "interrupted"
                } else {
                    "failed"
                };
                (
                    label,
                    Value::Null,
                    Some(secrets::redact(&crate::engine::diagnostics::message(err))),
                )
            }
        };
        steps.reports.push(StepReport {
            key: key.to_string(),
            name: name.clone(),
            outcome: label.to_string(),
            duration_ms,
            earlier_ms: None,
            result: result.clone(),
            error: error.clone(),
        });
        drop(steps);
        self.journal(
            "step_end",
            json!({"key": key, "step": name, "outcome": label, "duration_ms": duration_ms, "result": result, "error": error}),
            true,
        );
    }

    /// Holds top-level steps at `gate` (the REPL stepping through a playbook).
    pub fn set_gate(&self, gate: Arc<dyn StepGate>) {
        *lock(&self.gate) = Some(gate);
    }

    /// Before a step: waits at the gate, if any, when the step is top-level. An error when the
    /// operator stopped the run there.
    pub fn pass_gate(&self, step: &str) -> Result<(), Box<EvalAltResult>> {
        let gate = lock(&self.gate).clone();
        match gate {
            Some(gate) if lock(&self.steps).stack.is_empty() && !gate.before(step) => {
                self.cancel();
                Err(Box::new(EvalAltResult::ErrorTerminated(
                    format!("stopped at the prompt before step `{step}`").into(),
                    Position::NONE,
                )))
            }
            _ => Ok(()),
        }
    }

    /// After a step: tells the gate, if any, how a top-level step went.
    pub fn leave_gate(&self) {
        let gate = lock(&self.gate).clone();
        let steps = lock(&self.steps);
        if let (Some(gate), true) = (gate, steps.stack.is_empty()) {
            if let Some(report) = steps.reports.last().cloned() {
                drop(steps);
                gate.after(&report);
            }
        }
    }

    /// The name of the innermost step running now.
    pub fn current_step(&self) -> Option<String> {
        lock(&self.steps).stack.last().cloned()
    }

    /// How each step went so far.
    pub fn step_reports(&self) -> Vec<StepReport> {
        lock(&self.steps).reports.clone()
    }

    // ---- sources (for error positions) and cleanups -----------------------------------

    /// Remembers the text of a compiled file so errors can show its lines.
    pub fn remember_source(&self, name: &str, text: &str) {
        lock(&self.sources).insert(name.to_string(), text.to_string());
    }

    /// The text of a compiled file.
    pub fn source_text(&self, name: &str) -> Option<String> {
        lock(&self.sources).get(name).cloned()
    }

    /// Registers work to do when the run ends, also on failure (revoke a token, remove a
    /// helper container). Runs in reverse order of registration.
    pub fn on_finish(&self, what: impl Into<String>, cleanup: impl FnOnce() + Send + 'static) {
        lock(&self.cleanups).push((what.into(), Box::new(cleanup)));
    }

    /// Runs the registered cleanups.
    pub fn finish(&self) {
        let cleanups = std::mem::take(&mut *lock(&self.cleanups));
        for (what, cleanup) in cleanups.into_iter().rev() {
            log::emit(log::Level::Info, &format!("cleanup: {what}"));
            cleanup();
        }
    }
}
