//! Steps and confirmations: the global functions that give a playbook its shape.

use std::io::{BufRead, Write};
use std::time::Instant;

use rhai::plugin::*;
use rhai::FnPtr;

use super::PrimResult;
use crate::run::{Run, StepStart};

fn step(ctx: &NativeCallContext, name: &str, body: &FnPtr) -> PrimResult<Dynamic> {
    let run = Run::of(ctx);
    run.check_stop()?;
    if name.trim().is_empty() || name.contains('/') {
        return Err(super::error(format!(
            "step name `{name}` must be non-empty and contain no `/`"
        )));
    }
    run.pass_gate(name)?;
    let key = match run.begin_step(name) {
        StepStart::Resumed(result) => {
            run.leave_gate();
            return Ok(crate::value::from_json(&result));
        }
        StepStart::Fresh(key) => key,
    };
    let started = Instant::now();
    let outcome = body.call_within_context::<Dynamic>(ctx, ());
    run.end_step(&key, started, &outcome);
    run.leave_gate();
    outcome
}

/// Reads one line from the terminal after showing a prompt on stderr.
fn ask(prompt: &str) -> PrimResult<String> {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| super::error(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim().to_string())
}

fn confirm(ctx: &NativeCallContext, question: &str) -> PrimResult<bool> {
    let run = Run::of(ctx);
    if run.options.dry_run {
        super::log::emit(super::log::Level::Plan, &format!("would ask: {question}"));
        return Ok(true);
    }
    if run.options.assume_yes {
        super::log::emit(super::log::Level::Info, &format!("{question} yes (--yes)"));
        return Ok(true);
    }
    if !run.options.interactive {
        return Err(run.refuse(format!(
            "needs confirmation: {question} No terminal to ask on; run with --yes to confirm"
        )));
    }
    match ask(&format!("{question} [y/N] "))?.to_lowercase().as_str() {
        "y" | "yes" => Ok(true),
        _ => Err(run.refuse(format!("not confirmed: {question}"))),
    }
}

fn confirm_typed(ctx: &NativeCallContext, question: &str, expected: &str) -> PrimResult<bool> {
    let run = Run::of(ctx);
    if run.options.dry_run {
        super::log::emit(
            super::log::Level::Plan,
            &format!("would ask to type `{expected}`: {question}"),
        );
        return Ok(true);
    }
    if !run.options.interactive {
        return Err(run.refuse(format!(
            "needs confirmation: {question} Type `{expected}` on a terminal (--yes does not answer this one)"
        )));
    }
    let answer = ask(&format!("{question}\nType `{expected}` to confirm: "))?;
    if answer == expected {
        Ok(true)
    } else {
        Err(run.refuse(format!(
            "not confirmed: typed `{answer}`, expected `{expected}`"
        )))
    }
}

fn confirm_typed_answered(
    ctx: &NativeCallContext,
    question: &str,
    expected: &str,
    answer: &str,
) -> PrimResult<bool> {
    if answer.is_empty() {
        return confirm_typed(ctx, question, expected);
    }
    let run = Run::of(ctx);
    if answer != expected {
        return Err(run.refuse(format!(
            "not confirmed: {question} The answer given is `{answer}`, expected `{expected}`"
        )));
    }
    super::log::emit(
        super::log::Level::Info,
        &format!("{question} `{expected}` (given in advance)"),
    );
    Ok(true)
}

#[export_module]
pub mod api {
    /// Runs `body` (a closure: `|| { ... }`) as a named step: logged, timed and journaled with
    /// its result. On `--resume`, a step that completed in an earlier attempt is skipped and
    /// its recorded result returned, so pass data between steps by return value.
    #[rhai_fn(return_raw)]
    pub fn step(
        ctx: NativeCallContext,
        name: &str,
        body: FnPtr,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        super::step(&ctx, name, &body)
    }

    /// Asks for confirmation before a destructive action: a y/N prompt on a terminal, `--yes`
    /// answers it in scripts; with neither, the run is refused (exit 3) rather than hang.
    #[rhai_fn(return_raw)]
    pub fn confirm(ctx: NativeCallContext, question: &str) -> Result<bool, Box<EvalAltResult>> {
        super::confirm(&ctx, question)
    }

    /// Asks the operator to type `expected` (e.g. the stack name) before a very destructive
    /// action. `--yes` does not answer it; without a terminal the run is refused (exit 3).
    #[rhai_fn(return_raw)]
    pub fn confirm_typed(
        ctx: NativeCallContext,
        question: &str,
        expected: &str,
    ) -> Result<bool, Box<EvalAltResult>> {
        super::confirm_typed(&ctx, question, expected)
    }

    /// `confirm_typed` answered in advance: `answer` (a script's `confirm` parameter) must equal
    /// `expected`, else the run is refused (exit 3); an empty or missing answer (`()`) asks
    /// on the terminal as `confirm_typed` does.
    #[rhai_fn(name = "confirm_typed", return_raw)]
    pub fn confirm_typed_answered(
        ctx: NativeCallContext,
        question: &str,
        expected: &str,
        answer: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let answer = if answer.is_unit() {
            String::new()
        } else {
            answer.to_string()
        };
        super::confirm_typed_answered(&ctx, question, expected, &answer)
    }

    /// How long each step of this run took so far, in order: `[#{step, name, outcome, ms}]`
    /// (`step` is the journal key, `outer/inner` for nested steps). A step completed by an
    /// earlier attempt (`--resume`) carries the time it took then, so timings add up over
    /// attempts.
    pub fn step_times(ctx: NativeCallContext) -> rhai::Array {
        Run::of(&ctx)
            .step_reports()
            .iter()
            .map(|report| {
                let mut row = rhai::Map::new();
                row.insert("step".into(), report.key.clone().into());
                row.insert("name".into(), report.name.clone().into());
                row.insert("outcome".into(), report.outcome.clone().into());
                let ms = rhai::INT::try_from(report.work_ms()).unwrap_or(rhai::INT::MAX);
                row.insert("ms".into(), ms.into());
                row.into()
            })
            .collect()
    }

    /// True when this is a dry run (mutating primitives only record what they would do).
    pub fn is_dry_run(ctx: NativeCallContext) -> bool {
        Run::of(&ctx).options.dry_run
    }

    /// The stdlib modules a playbook can import (`./stdlib/`, the config dir, built in) whose
    /// name starts with `prefix`, sorted: `modules("engine_")` lists the database engines, so
    /// a new engine is one new file.
    pub fn modules(prefix: &str) -> rhai::Array {
        crate::playbook::catalog::all_modules()
            .into_iter()
            .filter_map(std::result::Result::ok)
            .filter(|m| m.name.starts_with(prefix))
            .map(|m| m.name.into())
            .collect()
    }
}
