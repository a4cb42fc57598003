//! What a dry run can check: the objects a mutating call needs exist (after what the plan itself
//! creates or removes), so the plan fails where the run would.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rhai::plugin::*;

use super::*;
use crate::docker::{self, ContainerFilter};
use crate::prims::{error, PrimResult};
use crate::run::Run;

/// The engine objects a dry run keeps track of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Container,
    Image,
    Volume,
    Network,
}

/// What each dry run has planned so far: objects it would create (`true`) or remove
/// (`false`), so a later check sees the state the real run would meet.
type Plan = BTreeMap<(Kind, String), bool>;
static PLANNED: Mutex<BTreeMap<String, Plan>> = Mutex::new(BTreeMap::new());

pub(super) fn target(kind: Kind, name: &str) -> docker::Target {
    let name = name.to_string();
    match kind {
        Kind::Container => docker::Target::Container(name),
        Kind::Image => docker::Target::Image(name),
        Kind::Volume => docker::Target::Volume(name),
        Kind::Network => docker::Target::Network(name),
    }
}

/// Whether the object is there, as far as the plan knows, else as the engine says.
pub(super) fn exists_in_plan(ctx: &NativeCallContext, kind: Kind, name: &str) -> PrimResult<bool> {
    let run = Run::of(ctx);
    let planned = PLANNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&run.id)
        .and_then(|plan| plan.get(&(kind, name.to_string())).copied());
    if let Some(there) = planned {
        return Ok(there);
    }
    call(ctx, "checking the plan", |d| async move {
        match kind {
            Kind::Container => d.exists(name).await,
            Kind::Image => d.image_exists(name).await,
            Kind::Volume => d.volume_exists(name).await,
            Kind::Network => d.network_exists(name).await,
        }
    })
}

/// In a dry run, fails as the real run would when the object is not there.
pub(super) fn must_exist(ctx: &NativeCallContext, kind: Kind, name: &str) -> PrimResult<()> {
    if !Run::of(ctx).options.dry_run || exists_in_plan(ctx, kind, name)? {
        return Ok(());
    }
    Err(error(
        docker::DockerError::NotFound {
            target: target(kind, name),
        }
        .to_string(),
    ))
}

/// In a dry run, fails as the real run would when a container of that name exists already.
pub(super) fn must_be_new(ctx: &NativeCallContext, name: &str) -> PrimResult<()> {
    if Run::of(ctx).options.dry_run && exists_in_plan(ctx, Kind::Container, name)? {
        return Err(error(format!(
            "container `{name}`: the name is already in use by a container"
        )));
    }
    Ok(())
}

/// In a dry run, fails as the real run would when a container (running or not, and not
/// removed earlier in the plan) still uses the volume.
pub(super) fn must_be_free(ctx: &NativeCallContext, volume: &str) -> PrimResult<()> {
    let run = Run::of(ctx);
    if !run.options.dry_run {
        return Ok(());
    }
    let rows = call(ctx, "checking the plan", |d| async move {
        d.containers(&ContainerFilter::default()).await
    })?;
    let users: Vec<String> = rows
        .into_iter()
        .filter(|row| row.volumes.iter().any(|v| v == volume))
        .map(|row| row.name)
        .filter(|name| {
            PLANNED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&run.id)
                .and_then(|plan| plan.get(&(Kind::Container, name.clone())).copied())
                != Some(false)
        })
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(error(format!(
        "volume `{volume}`: in use by container {} (remove it first)",
        users.join(", ")
    )))
}

/// Records in a dry run's plan that the object would now be there (or gone).
pub(super) fn planned(ctx: &NativeCallContext, kind: Kind, name: &str, there: bool) {
    let run = Run::of(ctx);
    if run.options.dry_run {
        PLANNED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(run.id.clone())
            .or_default()
            .insert((kind, name.to_string()), there);
    }
}
