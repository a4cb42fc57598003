//! Docker: containers, exec, container specs, images, volumes and their data, networks and
//! stacks, through the engine's API (`DOCKER_HOST` honoured). Mutating calls plan in a dry run;
//! secrets reach containers through the exec environment, stdin or 0600 files only.
//!
//! One file per family, as `crate::docker` is split; [`module`] gathers them into the one
//! `docker::` module scripts see. What they share (the connection, calls, option readers)
//! lives here, the dry run's checks in `plan`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Map, INT};
use serde::Serialize;

use super::{error, opt_int, opt_string, PrimResult};
use crate::atomic_file::AtomicFile;
use crate::docker::{self, Docker, Labelled, StackView};
use crate::run::Run;
use crate::secrets::Secret;

mod containers;
mod exec;
mod files;
mod images;
mod networks;
mod plan;
mod specs;
mod stack;
mod volumes;

use plan::*;

/// One connection per run, made on first use.
static CONNECTIONS: Mutex<BTreeMap<String, Docker>> = Mutex::new(BTreeMap::new());

fn connection(run: &Run) -> PrimResult<Docker> {
    let mut connections = CONNECTIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(docker) = connections.get(&run.id) {
        return Ok(docker.clone());
    }
    let docker = run
        .block_on("connecting to the Docker engine", Docker::connect())?
        .map_err(|e| error(e.to_string()))?
        .for_run(&run.id);
    connections.insert(run.id.clone(), docker.clone());
    remove_helpers_at_end(run, docker.clone());
    Ok(docker)
}

/// How long the end of a run waits for an engine that went away, to remove its helpers.
const HELPER_PATIENCE: Duration = Duration::from_secs(60);

/// At the end of the run (also a failed or interrupted one), the helper containers whose
/// removal failed are removed, once the engine answers again.
fn remove_helpers_at_end(run: &Run, docker: Docker) {
    let runtime = run.runtime().clone();
    run.on_finish("remove leftover volume helper containers", move || {
        if !docker::leftovers_pending() {
            return;
        }
        let left = runtime.block_on(docker.remove_own_helpers(HELPER_PATIENCE));
        if !left.is_empty() {
            crate::prims::log::emit(
                crate::prims::log::Level::Warn,
                &format!(
                    "helper containers {} are left (the engine did not answer within {}s); the next run that touches their volumes removes them, or `runbook run doctor` shows them",
                    left.join(", "),
                    HELPER_PATIENCE.as_secs()
                ),
            );
        }
    });
}

/// Runs an engine call for the script, turning its error into one sentence.
fn call<T, F, Fut>(ctx: &NativeCallContext, what: &str, f: F) -> PrimResult<T>
where
    F: FnOnce(Docker) -> Fut,
    Fut: Future<Output = docker::Result<T>>,
{
    let run = Run::of(ctx);
    let docker = connection(&run)?;
    run.block_on(what, f(docker))?
        .map_err(|e| error(e.to_string()))
}

/// A mutating engine call: planned in a dry run, journaled and done otherwise.
fn change<F, Fut>(ctx: &NativeCallContext, action: &str, detail: String, f: F) -> PrimResult<()>
where
    F: FnOnce(Docker) -> Fut,
    Fut: Future<Output = docker::Result<()>>,
{
    if !Run::of(ctx).mutate(action, detail) {
        return Ok(());
    }
    call(ctx, action, f)
}

fn to_script<T: Serialize>(value: &T) -> PrimResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// An engine object (an inspect, a spec, a stack view) as a script map.
fn to_map<T: Serialize>(value: &T) -> PrimResult<Map> {
    to_script(value)?
        .try_cast::<Map>()
        .ok_or_else(|| error("the engine's answer is not an object"))
}

fn to_list<T: Serialize>(rows: &[T]) -> PrimResult<Array> {
    rows.iter().map(to_script).collect()
}

/// Label filters from `#{label: "k=v" or ["k", "k=v"], labels: #{k: v}}`.
fn label_filters(options: &Map) -> PrimResult<Vec<String>> {
    let mut labels = Vec::new();
    if let Some(value) = options.get("label").filter(|v| !v.is_unit()) {
        if value.is_string() {
            labels.push(value.to_string());
        } else if let Some(list) = value.read_lock::<Array>() {
            labels.extend(list.iter().map(ToString::to_string));
        } else {
            return Err(error(
                "option `label` must be a string (`key` or `key=value`) or a list of them",
            ));
        }
    }
    labels.extend(
        string_map(options, "labels")?
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    Ok(labels)
}

/// A map option of names to plain strings (labels, driver options).
fn string_map(options: &Map, key: &str) -> PrimResult<HashMap<String, String>> {
    let Some(value) = options.get(key).filter(|v| !v.is_unit()) else {
        return Ok(HashMap::new());
    };
    let map = value
        .read_lock::<Map>()
        .ok_or_else(|| error(format!("option `{key}` must be a map of name: value")))?;
    map.iter()
        .map(|(k, v)| {
            if v.is::<Secret>() {
                return Err(error(format!(
                    "option `{key}.{k}` is a secret: labels and options are visible to anyone who can inspect; pass it through exec instead"
                )));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A count of seconds a script gave (a grace period, a timeout).
fn seconds(value: INT, what: &str) -> PrimResult<Duration> {
    u64::try_from(value)
        .map(Duration::from_secs)
        .map_err(|_| error(format!("{what} must be zero or more seconds, got {value}")))
}

fn opt_seconds(options: &Map, key: &str) -> PrimResult<Option<Duration>> {
    opt_int(options, key)?
        .map(|s| seconds(s, &format!("option `{key}`")))
        .transpose()
}

/// An optional list of names (`containers: ["a", "b"]`).
fn opt_names(options: &Map, key: &str) -> PrimResult<Option<Vec<String>>> {
    let Some(value) = options.get(key).filter(|v| !v.is_unit()) else {
        return Ok(None);
    };
    let list = value
        .read_lock::<Array>()
        .ok_or_else(|| error(format!("option `{key}` must be a list of names")))?;
    Ok(Some(list.iter().map(ToString::to_string).collect()))
}

/// A 0600 file under a temporary name (it may hold a dump or a volume's secrets), with its
/// directory created.
fn create_file(target: &std::path::Path) -> std::io::Result<AtomicFile> {
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    AtomicFile::create(target, 0o600)
}

/// Splits `options` into the primitive's own keys and the submap under `key` (`seal` or
/// `unseal`) that goes to the archive pipeline.
fn split_options(options: &Map, key: &str, own: &[&str]) -> PrimResult<(Map, Map)> {
    let mut rest = options.clone();
    let inner = match rest.remove(key).filter(|v| !v.is_unit()) {
        None => Map::new(),
        Some(v) => v
            .try_cast::<Map>()
            .ok_or_else(|| error(format!("option `{key}` must be a map of archive options")))?,
    };
    let mut archive = inner;
    for name in rest.keys().cloned().collect::<Vec<_>>() {
        if !own.contains(&name.as_str()) {
            archive.insert(name.clone(), rest.remove(&name).unwrap_or_default());
        }
    }
    Ok((rest, archive))
}

fn create_parent(target: &std::path::Path, file: &str) -> PrimResult<()> {
    match target.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|e| error(format!("cannot create the directory of {file}: {e}"))),
        None => Ok(()),
    }
}

/// Volumes or networks: a stack's (from its view: labelled, or used by its containers) or
/// the engine's, carrying the filter's labels either way.
fn stack_or_labelled<T, F, Fut>(
    ctx: &NativeCallContext,
    filter: &Map,
    what: &str,
    of_stack: fn(StackView) -> Vec<T>,
    all: F,
) -> PrimResult<Array>
where
    T: Serialize + Labelled,
    F: FnOnce(Docker, Vec<String>) -> Fut,
    Fut: Future<Output = docker::Result<Vec<T>>>,
{
    let labels = label_filters(filter)?;
    let rows = match opt_string(filter, "stack")? {
        Some(stack) => call(ctx, what, |d| async move {
            let rows = of_stack(d.stack(&stack).await?);
            Ok(rows
                .into_iter()
                .filter(|row| labels.iter().all(|l| row.has_label(l)))
                .collect::<Vec<_>>())
        })?,
        None => call(ctx, what, |d| all(d, labels))?,
    };
    to_list(&rows)
}

/// Every function scripts call as `docker::...`, gathered from the families into one module.
pub fn module() -> rhai::Module {
    let mut module = rhai::exported_module!(api);
    for family in [
        rhai::exported_module!(containers::api),
        rhai::exported_module!(exec::api),
        rhai::exported_module!(files::api),
        rhai::exported_module!(specs::api),
        rhai::exported_module!(images::api),
        rhai::exported_module!(volumes::api),
        rhai::exported_module!(networks::api),
        rhai::exported_module!(stack::api),
    ] {
        module.combine_flatten(family);
    }
    module
}

#[export_module]
pub mod api {
    use super::*;

    /// Checks that the Docker engine answers; fails naming its address and the reason.
    #[rhai_fn(return_raw)]
    pub fn ping(ctx: NativeCallContext) -> Result<(), Box<EvalAltResult>> {
        call(&ctx, "pinging the Docker engine", |d| async move {
            d.ping().await
        })
    }

    /// The engine's version report: `Version`, `ApiVersion`, `Os`, `Arch`, `KernelVersion`.
    #[rhai_fn(return_raw)]
    pub fn version(ctx: NativeCallContext) -> Result<Map, Box<EvalAltResult>> {
        let version = call(
            &ctx,
            "asking the Docker engine its version",
            |d| async move { d.version().await },
        )?;
        to_map(&version)
    }
}
