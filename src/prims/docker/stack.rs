//! Stacks: a stack's containers, volumes and networks in one call, started and stopped in
//! dependency order.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::*;
use crate::docker::{self, BatchOptions, ContainerFilter};
use crate::prims::{error, opt_int, PrimResult};
use crate::run::Run;

/// Starts or stops a stack's containers in dependency order; returns the names acted on.
fn stack_batch(
    ctx: &NativeCallContext,
    stack: &str,
    start: bool,
    options: &Map,
) -> PrimResult<Array> {
    let defaults = BatchOptions::default();
    let batch = BatchOptions {
        concurrency: opt_int(options, "concurrency")?
            .map(|n| usize::try_from(n).unwrap_or(1).max(1))
            .unwrap_or(defaults.concurrency),
        grace: opt_seconds(options, "grace")?,
        timeout: opt_seconds(options, "timeout")?.unwrap_or(defaults.timeout),
    };
    let filter = ContainerFilter {
        stack: Some(stack.to_string()),
        ..Default::default()
    };
    let mut rows = call(ctx, &format!("listing stack `{stack}`"), |d| async move {
        d.containers(&filter).await
    })?;
    let named = opt_names(options, "containers")?;
    if let Some(only) = &named {
        if let Some(missing) = only.iter().find(|n| !rows.iter().any(|r| &r.name == *n)) {
            return Err(error(format!(
                "container `{missing}` is not part of stack `{stack}`"
            )));
        }
        rows.retain(|r| only.contains(&r.name));
    }
    let waves = docker::batch_order(&rows).map_err(|e| error(format!("stack `{stack}`: {e}")))?;
    let (action, verb) = if start {
        ("docker::stack_start", "start")
    } else {
        ("docker::stack_stop", "stop")
    };
    // The plan lists the containers in the order the waves run: those named, like a single
    // start or stop, whatever their state (the state a dry run sees may be one it did not
    // change); otherwise those the batch acts on.
    let needed = |m: &docker::Member| {
        named.is_some()
            || if start {
                m.needs_start()
            } else {
                m.needs_stop()
            }
    };
    let ordered: Vec<&docker::Member> = if start {
        waves.iter().flatten().filter(|m| needed(m)).collect()
    } else {
        waves.iter().rev().flatten().filter(|m| needed(m)).collect()
    };
    let run = Run::of(ctx);
    let mut act = true;
    for member in &ordered {
        act &= run.mutate(
            action,
            format!("{verb} container `{}` of stack `{stack}`", member.name),
        );
    }
    let names: Array = ordered
        .iter()
        .map(|m| Dynamic::from(m.name.clone()))
        .collect();
    if act && !ordered.is_empty() {
        call(ctx, &format!("{verb} stack `{stack}`"), |d| async move {
            if start {
                d.start_waves(stack, &waves, &batch).await
            } else {
                d.stop_waves(stack, &waves, &batch).await
            }
        })?;
    }
    Ok(names)
}

#[export_module]
pub mod api {
    use super::*;

    /// A stack in one call: `#{name, containers, volumes, networks}` (rows as `containers`,
    /// `volumes` and `networks` return them).
    #[rhai_fn(return_raw)]
    pub fn stack(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let view = call(
            &ctx,
            "reading a stack",
            |d| async move { d.stack(name).await },
        )?;
        to_map(&view)
    }

    /// Starts a stack's stopped containers, dependencies first (`com.docker.compose.depends_on`,
    /// `runbook.order`), four at a time, waiting for those others need healthy; returns their names.
    #[rhai_fn(name = "stack_start", return_raw)]
    pub fn stack_start(ctx: NativeCallContext, stack: &str) -> Result<Array, Box<EvalAltResult>> {
        super::stack_batch(&ctx, stack, true, &Map::new())
    }

    /// Starts a stack with `#{concurrency: 4, timeout: 120}` (seconds to wait for a
    /// dependency), or only some of its containers with `containers: [names]` (in the same order).
    #[rhai_fn(name = "stack_start", return_raw)]
    pub fn stack_start_with(
        ctx: NativeCallContext,
        stack: &str,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::stack_batch(&ctx, stack, true, &options)
    }

    /// Stops a stack's running containers, dependants first, four at a time; returns their names.
    #[rhai_fn(name = "stack_stop", return_raw)]
    pub fn stack_stop(ctx: NativeCallContext, stack: &str) -> Result<Array, Box<EvalAltResult>> {
        super::stack_batch(&ctx, stack, false, &Map::new())
    }

    /// Stops a stack with `#{concurrency: 4, grace: 10}` (seconds before each container is
    /// killed; default: each container's own stop timeout), or only some of its containers with
    /// `containers: [names]`.
    #[rhai_fn(name = "stack_stop", return_raw)]
    pub fn stack_stop_with(
        ctx: NativeCallContext,
        stack: &str,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::stack_batch(&ctx, stack, false, &options)
    }
}
