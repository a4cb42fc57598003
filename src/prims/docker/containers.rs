//! Containers: list, inspect (credential values as Secrets), start, stop, kill, remove, rename,
//! logs, processes, files, and waiting for a state.

use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::*;
use crate::docker::{Condition, ContainerFilter};
use crate::prims::{error, opt_bool, opt_int, opt_string, PrimResult};
use crate::run::Run;
use crate::secrets::Secret;

/// How long `wait` waits unless told.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

fn container_filter(options: &Map) -> PrimResult<ContainerFilter> {
    Ok(ContainerFilter {
        stack: opt_string(options, "stack")?,
        status: opt_string(options, "status")?,
        labels: label_filters(options)?,
    })
}

fn containers(ctx: &NativeCallContext, options: &Map) -> PrimResult<Array> {
    let filter = container_filter(options)?;
    let rows = call(ctx, "listing containers", |d| async move {
        d.containers(&filter).await
    })?;
    to_list(&rows)
}

fn stop(ctx: &NativeCallContext, name: &str, grace: Option<Duration>) -> PrimResult<()> {
    let detail = match grace {
        Some(g) => format!(
            "stop container `{name}` (kill after {})",
            humantime::format_duration(g)
        ),
        None => format!("stop container `{name}`"),
    };
    must_exist(ctx, Kind::Container, name)?;
    change(ctx, "docker::stop", detail, |d| async move {
        d.stop(name, grace).await
    })
}

fn restart(ctx: &NativeCallContext, name: &str, grace: Option<Duration>) -> PrimResult<()> {
    must_exist(ctx, Kind::Container, name)?;
    change(
        ctx,
        "docker::restart",
        format!("restart container `{name}`"),
        |d| async move { d.restart(name, grace).await },
    )
}

fn kill(ctx: &NativeCallContext, name: &str, signal: &str) -> PrimResult<()> {
    must_exist(ctx, Kind::Container, name)?;
    change(
        ctx,
        "docker::kill",
        format!("send {signal} to container `{name}`"),
        |d| async move { d.kill(name, signal).await },
    )
}

fn remove(ctx: &NativeCallContext, name: &str, options: &Map) -> PrimResult<()> {
    let force = opt_bool(options, "force")?.unwrap_or(false);
    let volumes = opt_bool(options, "volumes")?.unwrap_or(false);
    let detail = format!(
        "remove container `{name}`{}{}",
        if force {
            " (killing it if running)"
        } else {
            ""
        },
        if volumes {
            " and its anonymous volumes"
        } else {
            ""
        }
    );
    must_exist(ctx, Kind::Container, name)?;
    change(ctx, "docker::remove", detail, |d| async move {
        d.remove(name, force, volumes).await
    })?;
    planned(ctx, Kind::Container, name, false);
    Ok(())
}

fn logs(ctx: &NativeCallContext, name: &str, tail: Option<INT>) -> PrimResult<String> {
    let tail = tail
        .map(|t| {
            usize::try_from(t)
                .map_err(|_| error(format!("tail must be zero or more lines, got {t}")))
        })
        .transpose()?;
    let bytes = call(ctx, "reading container logs", |d| async move {
        d.logs(name, tail).await
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn wait(
    ctx: &NativeCallContext,
    name: &str,
    condition: &str,
    timeout: Duration,
) -> PrimResult<Map> {
    let condition: Condition = condition.parse().map_err(error)?;
    let run = Run::of(ctx);
    if run.options.dry_run {
        // The start this wait follows was only planned: report where the container is now
        // instead of failing the plan.
        crate::prims::log::emit(
            crate::prims::log::Level::Plan,
            &format!(
                "would wait until container `{name}` is {condition} (at most {})",
                humantime::format_duration(timeout)
            ),
        );
        let mut state = Map::new();
        state.insert("status".into(), "planned".into());
        return Ok(state);
    }
    let inspect = call(
        ctx,
        &format!("waiting for container `{name}`"),
        |d| async move { d.wait_for(name, condition, timeout).await },
    )?;
    let state = inspect.state.unwrap_or_default();
    let mut out = Map::new();
    out.insert(
        "status".into(),
        state
            .status
            .map(|s| s.to_string())
            .unwrap_or_default()
            .into(),
    );
    out.insert(
        "health".into(),
        state
            .health
            .and_then(|h| h.status)
            .map_or(Dynamic::UNIT, |s| s.to_string().into()),
    );
    out.insert(
        "exit_code".into(),
        state.exit_code.map_or(Dynamic::UNIT, Dynamic::from),
    );
    Ok(out)
}

/// Masks the values of credential-like variables in an inspect's `Config.Env` and hands them
/// over as Secrets in `Config.EnvSecrets`, so a playbook that prints an inspect leaks nothing.
fn guard_credentials(inspect: &mut Map) {
    let Some(mut config) = inspect
        .get_mut("Config")
        .and_then(|c| c.write_lock::<Map>())
    else {
        return;
    };
    let Some(env) = config
        .get("Env")
        .and_then(|e| e.read_lock::<Array>().map(|a| a.clone()))
    else {
        return;
    };
    let mut secrets = Map::new();
    let env: Array = env
        .into_iter()
        .map(|entry| {
            let text = entry.to_string();
            match text.split_once('=') {
                Some((name, value))
                    if !value.is_empty() && crate::prims::dotenv::looks_like_credential(name) =>
                {
                    secrets.insert(name.into(), Dynamic::from(Secret::new(value)));
                    Dynamic::from(format!("{name}={}", crate::secrets::MASK))
                }
                _ => entry,
            }
        })
        .collect();
    config.insert("Env".into(), env.into());
    config.insert("EnvSecrets".into(), secrets.into());
}

/// How much `read_files` reads unless told: certificate directories, not data volumes.
const READ_FILES_LIMIT: i64 = 16 << 20;

fn read_files(
    ctx: &NativeCallContext,
    container: &str,
    path: &str,
    options: &Map,
) -> PrimResult<Array> {
    let limit = opt_int(options, "max_bytes")?.unwrap_or(READ_FILES_LIMIT);
    let limit = usize::try_from(limit)
        .map_err(|_| error(format!("option `max_bytes` must be positive, got {limit}")))?;
    let files = call(ctx, "reading files from a container", |d| async move {
        d.read_files(container, path, limit).await
    })?;
    Ok(files
        .into_iter()
        .map(|f| {
            let mut out = Map::new();
            out.insert("path".into(), f.path.into());
            out.insert("mode".into(), INT::from(f.mode).into());
            out.insert("size".into(), (f.content.len() as INT).into());
            out.insert("content".into(), Dynamic::from_blob(f.content));
            Dynamic::from(out)
        })
        .collect())
}

#[export_module]
pub mod api {
    use super::*;

    /// Every container, stopped ones too, as `#{id, name, image, image_id, state, status,
    /// created, labels, stack, volumes, networks}`, sorted by name.
    #[rhai_fn(name = "containers", return_raw)]
    pub fn containers_all(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        super::containers(&ctx, &Map::new())
    }

    /// Containers matching `#{stack: "shop", status: "running", label: "k=v" or [..], labels:
    /// #{k: v}}`; a stack is its Compose project or `runbook.stack` label.
    #[rhai_fn(name = "containers", return_raw)]
    pub fn containers_filtered(
        ctx: NativeCallContext,
        filter: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::containers(&ctx, &filter)
    }

    /// The engine's inspect of a container, as `docker inspect` shows it (`Config`,
    /// `HostConfig`, `State`, `Mounts`, `NetworkSettings`, ...), except that the value of a
    /// credential-like variable (`dotenv::is_credential`) reads `NAME=***` in `Config.Env` and
    /// comes as a Secret in `Config.EnvSecrets` (`#{NAME: secret}`).
    #[rhai_fn(return_raw)]
    pub fn inspect(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let inspect = call(&ctx, "inspecting a container", |d| async move {
            d.inspect(name).await
        })?;
        let mut map = to_map(&inspect)?;
        super::guard_credentials(&mut map);
        Ok(map)
    }

    /// The regular files at or under a path in a container (running or not), symlinks inside
    /// it followed: `[#{path, mode, size, content (blob)}]`. At most 16 MiB.
    #[rhai_fn(name = "read_files", return_raw)]
    pub fn read_files(
        ctx: NativeCallContext,
        container: &str,
        path: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::read_files(&ctx, container, path, &Map::new())
    }

    /// `read_files` with `#{max_bytes: ..}`: how much the path may hold (default 16 MiB).
    #[rhai_fn(name = "read_files", return_raw)]
    pub fn read_files_with(
        ctx: NativeCallContext,
        container: &str,
        path: &str,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::read_files(&ctx, container, path, &options)
    }

    /// The processes of a running container as the host sees them: `[#{pid, uid, command}]`
    /// (host uids: what the permissions of a bind-mounted file are checked against).
    #[rhai_fn(return_raw)]
    pub fn processes(ctx: NativeCallContext, name: &str) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(&ctx, "listing processes", |d| async move {
            d.processes(name).await
        })?;
        to_list(&rows)
    }

    /// True when a container of that name exists, in any state.
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, name: &str) -> Result<bool, Box<EvalAltResult>> {
        call(&ctx, "looking for a container", |d| async move {
            d.exists(name).await
        })
    }

    /// Starts a container (a running one is left alone).
    #[rhai_fn(return_raw)]
    pub fn start(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        must_exist(&ctx, Kind::Container, name)?;
        change(
            &ctx,
            "docker::start",
            format!("start container `{name}`"),
            |d| async move { d.start(name).await },
        )
    }

    /// Stops a container with its stop signal, killing it after its own stop timeout
    /// (default 10 s).
    #[rhai_fn(name = "stop", return_raw)]
    pub fn stop(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::stop(&ctx, name, None)
    }

    /// Stops a container, killing it after `grace` seconds.
    #[rhai_fn(name = "stop", return_raw)]
    pub fn stop_grace(
        ctx: NativeCallContext,
        name: &str,
        grace: INT,
    ) -> Result<(), Box<EvalAltResult>> {
        super::stop(&ctx, name, Some(super::seconds(grace, "the grace period")?))
    }

    /// Restarts a container.
    #[rhai_fn(name = "restart", return_raw)]
    pub fn restart(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::restart(&ctx, name, None)
    }

    /// Restarts a container, killing it after `grace` seconds if it does not stop.
    #[rhai_fn(name = "restart", return_raw)]
    pub fn restart_grace(
        ctx: NativeCallContext,
        name: &str,
        grace: INT,
    ) -> Result<(), Box<EvalAltResult>> {
        super::restart(&ctx, name, Some(super::seconds(grace, "the grace period")?))
    }

    /// Kills a running container (SIGKILL).
    #[rhai_fn(name = "kill", return_raw)]
    pub fn kill(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::kill(&ctx, name, "SIGKILL")
    }

    /// Sends a signal (`"SIGHUP"`, `"SIGTERM"`, ...) to a running container.
    #[rhai_fn(name = "kill", return_raw)]
    pub fn kill_signal(
        ctx: NativeCallContext,
        name: &str,
        signal: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::kill(&ctx, name, signal)
    }

    /// Removes a stopped container (its named volumes stay).
    #[rhai_fn(name = "remove", return_raw)]
    pub fn remove(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::remove(&ctx, name, &Map::new())
    }

    /// Removes a container with options `#{force: true}` (kill it if running), `#{volumes:
    /// true}` (its anonymous volumes too).
    #[rhai_fn(name = "remove", return_raw)]
    pub fn remove_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::remove(&ctx, name, &options)
    }

    /// Renames a container.
    #[rhai_fn(return_raw)]
    pub fn rename(
        ctx: NativeCallContext,
        name: &str,
        new_name: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        must_exist(&ctx, Kind::Container, name)?;
        must_be_new(&ctx, new_name)?;
        change(
            &ctx,
            "docker::rename",
            format!("rename container `{name}` to `{new_name}`"),
            |d| async move { d.rename(name, new_name).await },
        )?;
        planned(&ctx, Kind::Container, name, false);
        planned(&ctx, Kind::Container, new_name, true);
        Ok(())
    }

    /// A container's whole output (stdout and stderr interleaved) as text.
    #[rhai_fn(name = "logs", return_raw)]
    pub fn logs(ctx: NativeCallContext, name: &str) -> Result<String, Box<EvalAltResult>> {
        super::logs(&ctx, name, None)
    }

    /// The last `tail` lines of a container's output.
    #[rhai_fn(name = "logs", return_raw)]
    pub fn logs_tail(
        ctx: NativeCallContext,
        name: &str,
        tail: INT,
    ) -> Result<String, Box<EvalAltResult>> {
        super::logs(&ctx, name, Some(tail))
    }

    /// Waits (at most 60 s) until a container is `"running"`, `"healthy"` or `"exited"`;
    /// returns `#{status, health, exit_code}`. Fails at once when it cannot get there (exited,
    /// unhealthy, no healthcheck), naming it with its last health check. A dry run does not wait.
    #[rhai_fn(name = "wait", return_raw)]
    pub fn wait(
        ctx: NativeCallContext,
        name: &str,
        condition: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::wait(&ctx, name, condition, DEFAULT_WAIT)
    }

    /// Waits at most `timeout` seconds until a container is `"running"`, `"healthy"` or `"exited"`.
    #[rhai_fn(name = "wait", return_raw)]
    pub fn wait_timeout(
        ctx: NativeCallContext,
        name: &str,
        condition: &str,
        timeout: INT,
    ) -> Result<Map, Box<EvalAltResult>> {
        let timeout = super::seconds(timeout, "the timeout")?;
        super::wait(&ctx, name, condition, timeout)
    }
}
