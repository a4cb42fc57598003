//! Docker: containers, exec, container specs, images, volumes and their data, networks and
//! stacks, through the engine's API (`DOCKER_HOST` honoured). Mutating calls plan in a dry run;
//! secrets reach containers through the exec environment, stdin or 0600 files only.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Map, INT};
use serde::Serialize;

use super::{
    checked_path, error, opt_bool, opt_env, opt_int, opt_string, plain_or_secret, PrimResult,
};
use crate::atomic_file::AtomicFile;
use crate::docker::{
    self, BatchOptions, Condition, ContainerFilter, ContainerSpec, Docker, ExecInput, ExecRequest,
    Labelled, NetworkOptions, SecretFile, StackView, VolumeOptions,
};
use crate::run::Run;
use crate::secrets::Secret;

/// How long `wait` waits unless told.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// One connection per run, made on first use.
static CONNECTIONS: Mutex<BTreeMap<String, Docker>> = Mutex::new(BTreeMap::new());

fn connection(run: &Run) -> PrimResult<Docker> {
    let mut connections = CONNECTIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(docker) = connections.get(&run.id) {
        return Ok(docker.clone());
    }
    let docker = run
        .block_on("connecting to the Docker engine", Docker::connect())?
        .map_err(|e| error(e.to_string()))?;
    connections.insert(run.id.clone(), docker.clone());
    Ok(docker)
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
    change(ctx, "docker::stop", detail, |d| async move {
        d.stop(name, grace).await
    })
}

fn restart(ctx: &NativeCallContext, name: &str, grace: Option<Duration>) -> PrimResult<()> {
    change(
        ctx,
        "docker::restart",
        format!("restart container `{name}`"),
        |d| async move { d.restart(name, grace).await },
    )
}

fn kill(ctx: &NativeCallContext, name: &str, signal: &str) -> PrimResult<()> {
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
    change(ctx, "docker::remove", detail, |d| async move {
        d.remove(name, force, volumes).await
    })
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

/// The exec request a script described; argv may not hold secrets.
fn exec_request(argv: &Array, options: &Map) -> PrimResult<(ExecRequest, ExecInput)> {
    let mut args = Vec::with_capacity(argv.len());
    for (i, arg) in argv.iter().enumerate() {
        if arg.is::<Secret>() {
            return Err(error(format!(
                "argument {i} of docker::exec is a secret: secrets never go on a command line \
                 (visible in `ps` on the host); pass it in `env`, `stdin` or `files`"
            )));
        }
        args.push(arg.to_string());
    }
    let files = match options.get("files").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(value) => {
            let map = value.read_lock::<Map>().ok_or_else(|| {
                error("option `files` must be a map of container path: content (a secret or text)")
            })?;
            map.iter()
                .map(|(path, content)| {
                    Ok(SecretFile {
                        path: path.to_string(),
                        content: plain_or_secret(content, &format!("`files.{path}`"))?.into_bytes(),
                    })
                })
                .collect::<PrimResult<Vec<_>>>()?
        }
    };
    let input = match options.get("stdin").filter(|v| !v.is_unit()) {
        Some(v) => ExecInput::Bytes(plain_or_secret(v, "`stdin`")?.into_bytes()),
        None => ExecInput::None,
    };
    let request = ExecRequest {
        argv: args,
        env: opt_env(options, "env")?,
        user: opt_string(options, "user")?,
        workdir: opt_string(options, "workdir")?,
        files,
    };
    Ok((request, input))
}

fn exec(ctx: &NativeCallContext, container: &str, argv: &Array, options: &Map) -> PrimResult<Map> {
    let (request, input) = exec_request(argv, options)?;
    let read_only = opt_bool(options, "read_only")?.unwrap_or(false);
    let mut result = Map::new();
    if !read_only
        && !Run::of(ctx).mutate(
            "docker::exec",
            format!(
                "run `{}` in container `{container}`",
                request.argv.join(" ")
            ),
        )
    {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stdout".into(), "".into());
        result.insert("stderr".into(), "".into());
        return Ok(result);
    }
    let what = format!("exec in container `{container}`");
    let outcome = call(ctx, &what, |d| async move {
        d.exec(container, request, input).await
    })?;
    result.insert("code".into(), Dynamic::from(outcome.code));
    result.insert(
        "stdout".into(),
        String::from_utf8_lossy(&outcome.stdout).into_owned().into(),
    );
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&outcome.stderr).into_owned().into(),
    );
    Ok(result)
}

/// A 0600 file under a temporary name (it may hold a dump or a volume's secrets), with its
/// directory created.
fn create_file(target: &std::path::Path) -> std::io::Result<AtomicFile> {
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    AtomicFile::create(target, 0o600)
}

/// Streams an exec's stdout into a file that appears only when the process succeeded.
fn exec_to_file(
    ctx: &NativeCallContext,
    container: &str,
    argv: &Array,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let (request, input) = exec_request(argv, options)?;
    let mut result = Map::new();
    if !run.mutate(
        "docker::exec_to_file",
        format!(
            "run `{}` in container `{container}`, its output to {} (mode 0600)",
            request.argv.join(" "),
            target.display()
        ),
    ) {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stderr".into(), "".into());
        result.insert("bytes".into(), Dynamic::from(0 as INT));
        return Ok(result);
    }
    let what = format!("exec in container `{container}`");
    let io = |e: std::io::Error| error(format!("cannot write {file}: {e}"));
    let mut out = create_file(&target).map_err(io)?;
    let (status, bytes) = call(ctx, &what, |d| async move {
        let mut stream = d.exec_stream(container, request, input).await?;
        let mut bytes: u64 = 0;
        while let Some(chunk) = stream.stdout.next_chunk().await {
            let target = || docker::Target::Container(container.into());
            let chunk = chunk.map_err(|e| {
                docker::DockerError::from_stream(target(), "reading the exec's output failed", e)
            })?;
            out.write_all(&chunk).map_err(|e| {
                docker::DockerError::io(target(), format!("cannot write {file}"), e)
            })?;
            bytes += chunk.len() as u64;
        }
        let status = stream.finish().await?;
        Ok((status, (bytes, out)))
    })?;
    let (bytes, out) = bytes;
    if status.code == 0 {
        out.commit().map_err(io)?;
    }
    result.insert("code".into(), Dynamic::from(status.code));
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&status.stderr).into_owned().into(),
    );
    result.insert(
        "bytes".into(),
        Dynamic::from(INT::try_from(bytes).unwrap_or(INT::MAX)),
    );
    Ok(result)
}

fn create(ctx: &NativeCallContext, spec: Map, options: &Map) -> PrimResult<String> {
    let spec: ContainerSpec = rhai::serde::from_dynamic(&Dynamic::from_map(spec)).map_err(|e| {
        error(format!(
            "not a container spec (as docker::spec returns it): {e}"
        ))
    })?;
    let name = opt_string(options, "name")?.unwrap_or_else(|| spec.name.clone());
    let image = opt_string(options, "image")?.unwrap_or_else(|| spec.image.clone());
    let detail = format!("create container `{name}` from image `{image}`");
    let (name_ref, image_ref) = (name.as_str(), image.as_str());
    change(ctx, "docker::create", detail, |d| async move {
        d.create(&spec, Some(name_ref), Some(image_ref))
            .await
            .map(drop)
    })?;
    Ok(name)
}

fn volume_export(
    ctx: &NativeCallContext,
    volume: &str,
    file: &str,
    options: &Map,
) -> PrimResult<INT> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let image = opt_string(options, "image")?;
    if !run.mutate(
        "docker::volume_export",
        format!(
            "write volume `{volume}` as tar to {} (mode 0600)",
            target.display()
        ),
    ) {
        return Ok(0);
    }
    let io = |e: std::io::Error| error(format!("cannot write {file}: {e}"));
    let mut out = create_file(&target).map_err(io)?;
    let (bytes, out) = call(
        ctx,
        &format!("exporting volume `{volume}`"),
        |d| async move {
            let mut stream = d.volume_export(volume, image.as_deref()).await?;
            let mut bytes: u64 = 0;
            while let Some(chunk) = stream.next_chunk().await {
                let target = || docker::Target::Volume(volume.into());
                let chunk = chunk.map_err(|e| {
                    docker::DockerError::from_stream(
                        target(),
                        "the engine's archive stream failed",
                        e,
                    )
                })?;
                out.write_all(&chunk).map_err(|e| {
                    docker::DockerError::io(target(), format!("cannot write {file}"), e)
                })?;
                bytes += chunk.len() as u64;
            }
            Ok((bytes, out))
        },
    )?;
    out.commit().map_err(io)?;
    Ok(INT::try_from(bytes).unwrap_or(INT::MAX))
}

fn volume_import(
    ctx: &NativeCallContext,
    volume: &str,
    file: &str,
    options: &Map,
) -> PrimResult<INT> {
    let run = Run::of(ctx);
    let source = checked_path(&run, file)?;
    let image = opt_string(options, "image")?;
    let tar =
        std::fs::File::open(&source).map_err(|e| error(format!("cannot read {file}: {e}")))?;
    if !run.mutate(
        "docker::volume_import",
        format!("load {} into volume `{volume}`", source.display()),
    ) {
        return Ok(0);
    }
    let bytes = call(
        ctx,
        &format!("importing into volume `{volume}`"),
        |d| async move { d.volume_import(volume, tar, image.as_deref()).await },
    )?;
    Ok(INT::try_from(bytes).unwrap_or(INT::MAX))
}

// ---- volume and exec data through the sealed-archive pipeline -----------------------------

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

/// An exec's stdout that fails at its end when the process failed, so a sealed dump of a
/// failed `pg_dump` is never committed.
struct CheckedOutput {
    stream: Option<docker::ExecStream>,
    container: String,
    program: String,
    status: std::sync::Arc<Mutex<Option<docker::ExecStatus>>>,
}

impl std::io::Read for CheckedOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let n = stream.stdout.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let stream = self.stream.take().expect("checked above");
        let status = stream
            .wait()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (code, stderr) = (
            status.code,
            String::from_utf8_lossy(&status.stderr).trim().to_string(),
        );
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        if code != 0 {
            return Err(std::io::Error::other(format!(
                "`{}` in container `{}` exited with {code}: {stderr}",
                self.program, self.container
            )));
        }
        Ok(0)
    }
}

/// A volume's content as tar → compress → encrypt → `file`, in one pass.
fn volume_backup(
    ctx: &NativeCallContext,
    volume: &str,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "seal", &["image"])?;
    let image = opt_string(&own, "image")?;
    let what = format!("volume `{volume}`");
    let seal = super::archive::seal_options(&run, &archive, &what)?;
    if !run.mutate(
        "docker::volume_backup",
        format!(
            "write volume `{volume}` as tar ({}, {}) to {} (mode 0600)",
            seal.compression.name(),
            seal.encryption.name(),
            target.display()
        ),
    ) {
        return Ok(super::archive::planned_map(&target, &seal));
    }
    create_parent(&target, file)?;
    let tar = call(ctx, &format!("exporting {what}"), |d| async move {
        d.volume_export(volume, image.as_deref()).await
    })?;
    let sealed =
        crate::archive::seal(tar, &target, &seal).map_err(|e| error(format!("{what}: {e}")))?;
    Ok(super::archive::sealed_map(&sealed, Some(volume)))
}

/// Several volumes through `volume_backup`'s pipeline at once, at most `parallel` at a time,
/// each on its own thread; results in the order of `jobs`.
fn volumes_backup(ctx: &NativeCallContext, jobs: &Array, options: &Map) -> PrimResult<Array> {
    struct Job {
        volume: String,
        file: String,
        target: std::path::PathBuf,
        image: Option<String>,
    }
    let run = Run::of(ctx);
    let (own, archive) = split_options(options, "seal", &["parallel"])?;
    let parallel =
        usize::try_from(opt_int(&own, "parallel")?.unwrap_or(2).clamp(1, 16)).unwrap_or(2);
    let seal = super::archive::seal_options(&run, &archive, "docker::volumes_backup")?;
    let mut parsed = Vec::with_capacity(jobs.len());
    for job in jobs {
        let map = job
            .read_lock::<Map>()
            .ok_or_else(|| error("docker::volumes_backup: each job is #{volume, file, image}"))?;
        let volume = opt_string(&map, "volume")?
            .ok_or_else(|| error("docker::volumes_backup: a job without `volume`"))?;
        let file = opt_string(&map, "file")?.ok_or_else(|| {
            error(format!(
                "docker::volumes_backup: volume `{volume}` has no `file`"
            ))
        })?;
        let target = checked_path(&run, &file)?;
        let image = opt_string(&map, "image")?;
        parsed.push(Job {
            volume,
            file,
            target,
            image,
        });
    }
    let mut acting = true;
    for job in &parsed {
        acting &= run.mutate(
            "docker::volume_backup",
            format!(
                "write volume `{}` as tar ({}, {}) to {} (mode 0600)",
                job.volume,
                seal.compression.name(),
                seal.encryption.name(),
                job.target.display()
            ),
        );
    }
    if !acting {
        return Ok(parsed
            .iter()
            .map(|job| super::archive::planned_map(&job.target, &seal).into())
            .collect());
    }
    let docker = connection(&run)?;
    let runtime = run.runtime().clone();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<PrimResult<Map>>>> =
        parsed.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(parsed.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(job) = parsed.get(i) else { break };
                let what = format!("volume `{}`", job.volume);
                let mut options = seal.clone();
                options.artifact = Some(job.volume.clone());
                let outcome = create_parent(&job.target, &job.file).and_then(|()| {
                    let tar = runtime
                        .block_on(docker.volume_export(&job.volume, job.image.as_deref()))
                        .map_err(|e| error(e.to_string()))?;
                    let sealed = crate::archive::seal(tar, &job.target, &options)
                        .map_err(|e| error(format!("{what}: {e}")))?;
                    Ok(super::archive::sealed_map(&sealed, Some(&job.volume)))
                });
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(error("docker::volumes_backup: a job did not run")))
                .map(Dynamic::from)
        })
        .collect()
}

/// A sealed tar → decrypt → decompress → into a volume, checking the file's checksum.
fn volume_restore(
    ctx: &NativeCallContext,
    volume: &str,
    file: &str,
    options: &Map,
) -> PrimResult<INT> {
    let run = Run::of(ctx);
    let source = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "unseal", &["image"])?;
    let image = opt_string(&own, "image")?;
    let what = format!("volume `{volume}`");
    let unseal = super::archive::unseal_options(&run, &archive, &what)?;
    if !run.mutate(
        "docker::volume_restore",
        format!("load {} into volume `{volume}`", source.display()),
    ) {
        return Ok(0);
    }
    let tar =
        crate::archive::unseal(&source, &unseal).map_err(|e| error(format!("{what}: {e}")))?;
    let bytes = call(ctx, &format!("restoring {what}"), |d| async move {
        d.volume_import(volume, tar, image.as_deref()).await
    })?;
    Ok(INT::try_from(bytes).unwrap_or(INT::MAX))
}

/// An exec's stdout → compress → encrypt → `file`, committed only when the process succeeds.
fn exec_backup(
    ctx: &NativeCallContext,
    container: &str,
    argv: &Array,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "seal", EXEC_KEYS)?;
    let (request, input) = exec_request(argv, &own)?;
    let what = format!("container `{container}`");
    let seal = super::archive::seal_options(&run, &archive, &what)?;
    let program = request.argv.first().cloned().unwrap_or_default();
    if !run.mutate(
        "docker::exec_backup",
        format!(
            "run `{}` in container `{container}`, its output ({}, {}) to {} (mode 0600)",
            request.argv.join(" "),
            seal.compression.name(),
            seal.encryption.name(),
            target.display()
        ),
    ) {
        return Ok(super::archive::planned_map(&target, &seal));
    }
    create_parent(&target, file)?;
    let stream = call(ctx, &format!("exec in {what}"), |d| async move {
        d.exec_stream(container, request, input).await
    })?;
    let status = std::sync::Arc::new(Mutex::new(None));
    let output = CheckedOutput {
        stream: Some(stream),
        container: container.to_string(),
        program,
        status: status.clone(),
    };
    let sealed =
        crate::archive::seal(output, &target, &seal).map_err(|e| error(format!("{what}: {e}")))?;
    let mut result = super::archive::sealed_map(&sealed, None);
    if let Some(status) = status.lock().unwrap_or_else(|e| e.into_inner()).take() {
        result.insert("code".into(), Dynamic::from(status.code));
        result.insert(
            "stderr".into(),
            String::from_utf8_lossy(&status.stderr).into_owned().into(),
        );
    }
    Ok(result)
}

/// A sealed file → decrypt → decompress → a process's stdin (a dump into `psql`).
fn exec_restore(
    ctx: &NativeCallContext,
    container: &str,
    argv: &Array,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let source = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "unseal", EXEC_KEYS)?;
    let (request, _) = exec_request(argv, &own)?;
    let what = format!("container `{container}`");
    let unseal = super::archive::unseal_options(&run, &archive, &what)?;
    let mut result = Map::new();
    if !run.mutate(
        "docker::exec_restore",
        format!(
            "feed {} to `{}` in container `{container}`",
            source.display(),
            request.argv.join(" ")
        ),
    ) {
        result.insert("code".into(), Dynamic::from(0 as INT));
        result.insert("stdout".into(), "".into());
        result.insert("stderr".into(), "".into());
        return Ok(result);
    }
    let content =
        crate::archive::unseal(&source, &unseal).map_err(|e| error(format!("{what}: {e}")))?;
    let input = ExecInput::Reader(Box::new(content));
    let outcome = call(ctx, &format!("exec in {what}"), |d| async move {
        d.exec(container, request, input).await
    })?;
    result.insert("code".into(), Dynamic::from(outcome.code));
    result.insert(
        "stdout".into(),
        String::from_utf8_lossy(&outcome.stdout).into_owned().into(),
    );
    result.insert(
        "stderr".into(),
        String::from_utf8_lossy(&outcome.stderr).into_owned().into(),
    );
    Ok(result)
}

/// The exec options `exec_request` reads; everything else is for the archive pipeline.
const EXEC_KEYS: &[&str] = &["env", "user", "workdir", "files", "stdin"];

fn create_parent(target: &std::path::Path, file: &str) -> PrimResult<()> {
    match target.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|e| error(format!("cannot create the directory of {file}: {e}"))),
        None => Ok(()),
    }
}

/// A digest of a volume's content: every entry's path, kind, mode, owner, mtime, link target
/// and content hash, in path order. Equal digests mean an identical tree.
fn volume_digest(ctx: &NativeCallContext, volume: &str, options: &Map) -> PrimResult<Map> {
    use sha2::{Digest, Sha256};
    let image = opt_string(options, "image")?;
    let tar = call(ctx, &format!("reading volume `{volume}`"), |d| async move {
        d.volume_export(volume, image.as_deref()).await
    })?;
    let fail = |e: std::io::Error| error(format!("volume `{volume}`: reading its tar stream: {e}"));
    let mut archive = tar::Archive::new(tar);
    let mut lines = Vec::new();
    let mut bytes: u64 = 0;
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let header = entry.header().clone();
        let path = entry.path().map_err(fail)?.to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .map_err(fail)?
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        bytes += std::io::copy(&mut entry, &mut hasher).map_err(fail)?;
        lines.push(format!(
            "{path}\t{:?}\t{:o}\t{}:{}\t{}\t{link}\t{}",
            header.entry_type(),
            header.mode().unwrap_or(0),
            header.uid().unwrap_or(0),
            header.gid().unwrap_or(0),
            header.mtime().unwrap_or(0),
            hex::encode(hasher.finalize())
        ));
    }
    lines.sort();
    let mut map = Map::new();
    map.insert(
        "sha256".into(),
        hex::encode(Sha256::digest(lines.join("\n").as_bytes())).into(),
    );
    map.insert("entries".into(), Dynamic::from(lines.len() as INT));
    map.insert(
        "bytes".into(),
        Dynamic::from(INT::try_from(bytes).unwrap_or(INT::MAX)),
    );
    Ok(map)
}

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
    /// `HostConfig`, `State`, `Mounts`, `NetworkSettings`, ...).
    #[rhai_fn(return_raw)]
    pub fn inspect(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let inspect = call(&ctx, "inspecting a container", |d| async move {
            d.inspect(name).await
        })?;
        to_map(&inspect)
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
        change(
            &ctx,
            "docker::rename",
            format!("rename container `{name}` to `{new_name}`"),
            |d| async move { d.rename(name, new_name).await },
        )
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

    /// Runs a command (a list: program then arguments) in a running container; returns
    /// `#{code, stdout, stderr}`. Planned in a dry run.
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec(&ctx, container, &argv, &Map::new())
    }

    /// Runs a command in a container with options: `stdin` (text or secret), `env` (`#{NAME:
    /// secret}`), `files` (`#{"/run/pgpass": secret}`: 0600, owned by the exec's user, removed
    /// after), `user`, `workdir`, `read_only` (true: it only reads, so it runs in a dry run
    /// too). Secrets are refused in the argument list.
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec_with(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec(&ctx, container, &argv, &options)
    }

    /// Runs a command in a container streaming its stdout to a file (mode 0600) that appears
    /// only if the command exits 0 (a `pg_dump` never sits in memory); returns `#{code,
    /// stderr, bytes}`. Options as for `exec`.
    #[rhai_fn(return_raw)]
    pub fn exec_to_file(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec_to_file(&ctx, container, &argv, file, &options)
    }

    /// Copies one file out of a container (running, stopped or never started) → compress →
    /// encrypt → `file` (mode 0600, appears only when whole); options `seal` (as for
    /// `archive::seal`) and `max_bytes` (default 1 GiB: the file passes through memory).
    #[rhai_fn(return_raw)]
    pub fn file_backup(
        ctx: NativeCallContext,
        container: &str,
        path: &str,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::file_backup(&ctx, container, path, file, &options)
    }

    /// Puts a sealed file (checksum checked, decrypted, decompressed) at `path` in a container,
    /// never-started ones too (a database file in place before its server starts); options
    /// `unseal`, `uid`, `gid`, `mode` (default 0o600) and `max_bytes` (default 1 GiB).
    /// Returns the bytes placed.
    #[rhai_fn(return_raw)]
    pub fn file_restore(
        ctx: NativeCallContext,
        container: &str,
        path: &str,
        file: &str,
        options: Map,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::file_restore(&ctx, container, path, file, &options)
    }

    /// Empties a file in a container (running or not), or creates it empty, with options
    /// `uid`, `gid` and `mode` (default 0o600): a stale SQLite journal beside a restored file.
    #[rhai_fn(return_raw)]
    pub fn file_truncate(
        ctx: NativeCallContext,
        container: &str,
        path: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::file_truncate(&ctx, container, path, &options)
    }

    /// Everything needed to recreate a container: `#{name, image, image_id, config,
    /// host_config, networks}` with the container's own settings (not its image's defaults),
    /// its mounts, ports, networks and aliases. JSON-able: save it with `fs::write_json`.
    #[rhai_fn(return_raw)]
    pub fn spec(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let spec = call(&ctx, "capturing a container spec", |d| async move {
            d.spec(name).await
        })?;
        to_map(&spec)
    }

    /// Creates (does not start) a container from a spec `docker::spec` captured; returns its name.
    #[rhai_fn(name = "create", return_raw)]
    pub fn create(ctx: NativeCallContext, spec: Map) -> Result<String, Box<EvalAltResult>> {
        super::create(&ctx, spec, &Map::new())
    }

    /// Creates a container from a spec with `#{name: "...", image: "..."}` overriding the
    /// spec's (rollback: the same container from another image).
    #[rhai_fn(name = "create", return_raw)]
    pub fn create_with(
        ctx: NativeCallContext,
        spec: Map,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        super::create(&ctx, spec, &options)
    }

    /// Local images as `#{id, tags, created, size, labels}`, newest first.
    #[rhai_fn(name = "images", return_raw)]
    pub fn images(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(
            &ctx,
            "listing images",
            |d| async move { d.images(&[]).await },
        )?;
        to_list(&rows)
    }

    /// Local images carrying labels: `#{label: "k=v" or [..], labels: #{k: v}}`.
    #[rhai_fn(name = "images", return_raw)]
    pub fn images_filtered(
        ctx: NativeCallContext,
        filter: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let labels = label_filters(&filter)?;
        let rows = call(&ctx, "listing images", |d| async move {
            d.images(&labels).await
        })?;
        to_list(&rows)
    }

    /// The engine's inspect of an image (by name, tag or id).
    #[rhai_fn(return_raw)]
    pub fn image_inspect(ctx: NativeCallContext, image: &str) -> Result<Map, Box<EvalAltResult>> {
        let inspect = call(&ctx, "inspecting an image", |d| async move {
            d.image_inspect(image).await
        })?;
        to_map(&inspect)
    }

    /// True when the image exists locally.
    #[rhai_fn(return_raw)]
    pub fn image_exists(ctx: NativeCallContext, image: &str) -> Result<bool, Box<EvalAltResult>> {
        call(&ctx, "looking for an image", |d| async move {
            d.image_exists(image).await
        })
    }

    /// Tags an image: `docker::image_tag("shop/web:1.4", "shop/web:rollback-20261123")`.
    #[rhai_fn(return_raw)]
    pub fn image_tag(
        ctx: NativeCallContext,
        image: &str,
        target: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            "docker::image_tag",
            format!("tag image `{image}` as `{target}`"),
            |d| async move { d.image_tag(image, target).await },
        )
    }

    /// Removes an image name (refused while a container uses the image).
    #[rhai_fn(name = "image_remove", return_raw)]
    pub fn image_remove(ctx: NativeCallContext, image: &str) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            "docker::image_remove",
            format!("remove image `{image}`"),
            |d| async move { d.image_remove(image, false).await },
        )
    }

    /// Removes an image with `#{force: true}` (even when containers use it).
    #[rhai_fn(name = "image_remove", return_raw)]
    pub fn image_remove_with(
        ctx: NativeCallContext,
        image: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let force = opt_bool(&options, "force")?.unwrap_or(false);
        change(
            &ctx,
            "docker::image_remove",
            format!(
                "remove image `{image}`{}",
                if force { " (forced)" } else { "" }
            ),
            |d| async move { d.image_remove(image, force).await },
        )
    }

    /// Every volume as `#{name, driver, mountpoint, labels, stack}`, sorted by name.
    #[rhai_fn(name = "volumes", return_raw)]
    pub fn volumes(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(
            &ctx,
            "listing volumes",
            |d| async move { d.volumes(&[]).await },
        )?;
        to_list(&rows)
    }

    /// Volumes of `#{stack: "shop"}` (labelled with it or mounted by its containers), or
    /// carrying `#{label: .., labels: #{..}}`.
    #[rhai_fn(name = "volumes", return_raw)]
    pub fn volumes_filtered(
        ctx: NativeCallContext,
        filter: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::stack_or_labelled(
            &ctx,
            &filter,
            "listing volumes",
            |view| view.volumes,
            |d, labels| async move { d.volumes(&labels).await },
        )
    }

    /// The engine's inspect of a volume.
    #[rhai_fn(return_raw)]
    pub fn volume_inspect(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let volume = call(&ctx, "inspecting a volume", |d| async move {
            d.volume_inspect(name).await
        })?;
        to_map(&volume)
    }

    /// True when the volume exists.
    #[rhai_fn(return_raw)]
    pub fn volume_exists(ctx: NativeCallContext, name: &str) -> Result<bool, Box<EvalAltResult>> {
        call(&ctx, "looking for a volume", |d| async move {
            d.volume_exists(name).await
        })
    }

    /// Creates a volume (an existing one is kept as it is).
    #[rhai_fn(name = "volume_create", return_raw)]
    pub fn volume_create(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::volume_create(&ctx, name, &Map::new())
    }

    /// Creates a volume with `#{labels: #{..}, driver: "local", driver_opts: #{..}}`.
    #[rhai_fn(name = "volume_create", return_raw)]
    pub fn volume_create_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::volume_create(&ctx, name, &options)
    }

    /// Removes a volume (refused while a container uses it).
    #[rhai_fn(name = "volume_remove", return_raw)]
    pub fn volume_remove(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            "docker::volume_remove",
            format!("remove volume `{name}` and its data"),
            |d| async move { d.volume_remove(name, false).await },
        )
    }

    /// Removes a volume with `#{force: true}`.
    #[rhai_fn(name = "volume_remove", return_raw)]
    pub fn volume_remove_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let force = opt_bool(&options, "force")?.unwrap_or(false);
        change(
            &ctx,
            "docker::volume_remove",
            format!("remove volume `{name}` and its data"),
            |d| async move { d.volume_remove(name, force).await },
        )
    }

    /// Writes a volume's content to a tar file (mode 0600; entries `./...` with owners,
    /// modes, mtimes and symlinks) through the engine's archive API: no helper image, nothing
    /// runs. Returns the bytes written.
    #[rhai_fn(name = "volume_export", return_raw)]
    pub fn volume_export(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_export(&ctx, volume, file, &Map::new())
    }

    /// Writes a volume to a tar file with `#{image: ".."}`: the image of the never-started
    /// container that reaches the volume (default: one its containers or stack use).
    #[rhai_fn(name = "volume_export", return_raw)]
    pub fn volume_export_with(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
        options: Map,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_export(&ctx, volume, file, &options)
    }

    /// Loads a tar file into an existing volume (owners, modes, mtimes and the root's own kept;
    /// files already there are overwritten, others stay). Returns the bytes read.
    #[rhai_fn(name = "volume_import", return_raw)]
    pub fn volume_import(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_import(&ctx, volume, file, &Map::new())
    }

    /// Loads a tar file into a volume with `#{image: ".."}` (see `volume_export`).
    #[rhai_fn(name = "volume_import", return_raw)]
    pub fn volume_import_with(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
        options: Map,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_import(&ctx, volume, file, &options)
    }

    /// Streams a volume's content as tar → zstd → age → `file` in one pass (no helper image,
    /// no temporary copy), its SHA-256 computed on the way; the file appears only when whole.
    /// Options: the key and compression of `archive::pack` (`passphrase`, `recipients`,
    /// `recipients_file`, `encrypt`, `compression`, `level`, `workers`), `image` for the helper
    /// container. Returns what `archive::pack` returns, ready for `manifest::write`.
    #[rhai_fn(return_raw)]
    pub fn volume_backup(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::volume_backup(&ctx, volume, file, &options)
    }

    /// Backs several volumes up like `volume_backup`, at most `parallel` (default 2) at a
    /// time: `jobs` is `[#{volume, file, image}]`, `options` the key and compression of
    /// `archive::pack` plus `parallel`. Returns one `volume_backup` result per job, in order;
    /// fails naming the first volume that failed.
    #[rhai_fn(return_raw)]
    pub fn volumes_backup(
        ctx: NativeCallContext,
        jobs: Array,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::volumes_backup(&ctx, &jobs, &options)
    }

    /// Loads a file `volume_backup` wrote into an existing volume: decrypt, decompress and
    /// stream the tar in, owners, modes and mtimes kept. Options: `passphrase` or `identity`,
    /// `sha256` and `size` to check (from the manifest), `image`. Returns the tar's bytes.
    /// Verify the file first (`archive::verify`): a corruption found mid-stream stops the load
    /// but what came before it is already in the volume.
    #[rhai_fn(return_raw)]
    pub fn volume_restore(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
        options: Map,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_restore(&ctx, volume, file, &options)
    }

    /// Runs a process in a container and seals its stdout (a `pg_dump`) → zstd → age →
    /// `file` in one pass; the file is committed only when the process exits 0, else the
    /// error carries its exit code and stderr. Options: those of `exec` (`env`, `user`,
    /// `workdir`, `files`, `stdin`) and the key and compression of `archive::pack`. Returns
    /// what `archive::pack` returns plus `code` and `stderr`.
    #[rhai_fn(return_raw)]
    pub fn exec_backup(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec_backup(&ctx, container, &argv, file, &options)
    }

    /// Feeds a sealed file, decrypted and decompressed, to a process's stdin (a dump into
    /// `psql`). Options: those of `exec` and `passphrase`/`identity`, `sha256`, `size`. A file
    /// that fails to decrypt or match its checksum fails the exec whatever its exit code.
    /// Returns `#{code, stdout, stderr}`.
    #[rhai_fn(return_raw)]
    pub fn exec_restore(
        ctx: NativeCallContext,
        container: &str,
        argv: Array,
        file: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::exec_restore(&ctx, container, &argv, file, &options)
    }

    /// A digest of a volume's content (`#{sha256, entries, bytes}`): every entry's path, kind,
    /// mode, owner, mtime, link target and content hash. Equal digests mean identical trees;
    /// a disaster-recovery drill compares them before and after.
    #[rhai_fn(name = "volume_digest", return_raw)]
    pub fn volume_digest(ctx: NativeCallContext, volume: &str) -> Result<Map, Box<EvalAltResult>> {
        super::volume_digest(&ctx, volume, &Map::new())
    }

    /// `volume_digest` with options: `image` for the helper container.
    #[rhai_fn(name = "volume_digest", return_raw)]
    pub fn volume_digest_with(
        ctx: NativeCallContext,
        volume: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::volume_digest(&ctx, volume, &options)
    }

    /// Every network as `#{name, id, driver, scope, internal, labels, stack}`.
    #[rhai_fn(name = "networks", return_raw)]
    pub fn networks(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(&ctx, "listing networks", |d| async move {
            d.networks(&[]).await
        })?;
        to_list(&rows)
    }

    /// Networks of `#{stack: "shop"}` (labelled with it or joined by its containers), or
    /// carrying `#{label: .., labels: #{..}}`.
    #[rhai_fn(name = "networks", return_raw)]
    pub fn networks_filtered(
        ctx: NativeCallContext,
        filter: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::stack_or_labelled(
            &ctx,
            &filter,
            "listing networks",
            |view| view.networks,
            |d, labels| async move { d.networks(&labels).await },
        )
    }

    /// The engine's inspect of a network.
    #[rhai_fn(return_raw)]
    pub fn network_inspect(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let network = call(&ctx, "inspecting a network", |d| async move {
            d.network_inspect(name).await
        })?;
        to_map(&network)
    }

    /// True when the network exists.
    #[rhai_fn(return_raw)]
    pub fn network_exists(ctx: NativeCallContext, name: &str) -> Result<bool, Box<EvalAltResult>> {
        call(&ctx, "looking for a network", |d| async move {
            d.network_exists(name).await
        })
    }

    /// Creates a network (bridge driver).
    #[rhai_fn(name = "network_create", return_raw)]
    pub fn network_create(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        super::network_create(&ctx, name, &Map::new())
    }

    /// Creates a network with `#{labels: #{..}, driver: "bridge", internal: true}`.
    #[rhai_fn(name = "network_create", return_raw)]
    pub fn network_create_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::network_create(&ctx, name, &options)
    }

    /// Removes a network (refused while containers are attached).
    #[rhai_fn(return_raw)]
    pub fn network_remove(ctx: NativeCallContext, name: &str) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            "docker::network_remove",
            format!("remove network `{name}`"),
            |d| async move { d.network_remove(name).await },
        )
    }

    /// Attaches a container to a network.
    #[rhai_fn(name = "network_connect", return_raw)]
    pub fn network_connect(
        ctx: NativeCallContext,
        network: &str,
        container: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::network_connect(&ctx, network, container, &Map::new())
    }

    /// Attaches a container to a network with `#{aliases: ["db"]}`: names it answers to there.
    #[rhai_fn(name = "network_connect", return_raw)]
    pub fn network_connect_with(
        ctx: NativeCallContext,
        network: &str,
        container: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::network_connect(&ctx, network, container, &options)
    }

    /// Detaches a container from a network, also when its endpoint is stale (the network was
    /// removed and created again while the container was stopped).
    #[rhai_fn(return_raw)]
    pub fn network_disconnect(
        ctx: NativeCallContext,
        network: &str,
        container: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            "docker::network_disconnect",
            format!("disconnect container `{container}` from network `{network}`"),
            |d| async move { d.network_disconnect(network, container, true).await },
        )
    }

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

fn volume_create(ctx: &NativeCallContext, name: &str, options: &Map) -> PrimResult<()> {
    let volume = VolumeOptions {
        labels: string_map(options, "labels")?,
        driver: opt_string(options, "driver")?,
        driver_opts: string_map(options, "driver_opts")?,
    };
    change(
        ctx,
        "docker::volume_create",
        format!("create volume `{name}`"),
        |d| async move { d.volume_create(name, &volume).await.map(drop) },
    )
}

/// How much `file_backup` and `file_restore` hold in memory unless told (`max_bytes`).
const FILE_LIMIT: i64 = 1 << 30;

fn file_limit(options: &Map) -> PrimResult<usize> {
    let limit = opt_int(options, "max_bytes")?.unwrap_or(FILE_LIMIT);
    usize::try_from(limit)
        .map_err(|_| error(format!("option `max_bytes` must be positive, got {limit}")))
}

/// The `mode` (default 0600), `uid` and `gid` (default root) options of a placed file.
fn file_owner(options: &Map) -> PrimResult<(u32, (u64, u64))> {
    let id = |key: &str| -> PrimResult<u64> {
        let value = opt_int(options, key)?.unwrap_or(0);
        u64::try_from(value)
            .map_err(|_| error(format!("option `{key}` must be positive, got {value}")))
    };
    let mode = u32::try_from(opt_int(options, "mode")?.unwrap_or(0o600))
        .map_err(|_| error("option `mode` must be a file mode such as 0o600"))?;
    Ok((mode, (id("uid")?, id("gid")?)))
}

/// An empty file at `path` in a container, replacing what is there.
fn file_truncate(
    ctx: &NativeCallContext,
    container: &str,
    path: &str,
    options: &Map,
) -> PrimResult<()> {
    let (mode, owner) = file_owner(options)?;
    change(
        ctx,
        "docker::file_truncate",
        format!("empty {path} in container `{container}`"),
        |d| async move { d.place_file(container, path, Vec::new(), mode, owner).await },
    )
}

/// One file of a container (a stopped one too) → compress → encrypt → `file`.
fn file_backup(
    ctx: &NativeCallContext,
    container: &str,
    path: &str,
    file: &str,
    options: &Map,
) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "seal", &["max_bytes"])?;
    let limit = file_limit(&own)?;
    let what = format!("{path} of container `{container}`");
    let seal = super::archive::seal_options(&run, &archive, &what)?;
    if !run.mutate(
        "docker::file_backup",
        format!(
            "write {what} ({}, {}) to {} (mode 0600)",
            seal.compression.name(),
            seal.encryption.name(),
            target.display()
        ),
    ) {
        return Ok(super::archive::planned_map(&target, &seal));
    }
    create_parent(&target, file)?;
    let content = call(ctx, &format!("reading {what}"), |d| async move {
        d.read_file(container, path, limit).await
    })?;
    let sealed = crate::archive::seal(std::io::Cursor::new(content), &target, &seal)
        .map_err(|e| error(format!("{what}: {e}")))?;
    Ok(super::archive::sealed_map(&sealed, None))
}

/// A sealed file → decrypt → decompress → one file in a container (a never-started one too),
/// with `uid`, `gid` and `mode` (default 0600, root).
fn file_restore(
    ctx: &NativeCallContext,
    container: &str,
    path: &str,
    file: &str,
    options: &Map,
) -> PrimResult<INT> {
    use std::io::Read;
    let run = Run::of(ctx);
    let source = checked_path(&run, file)?;
    let (own, archive) = split_options(options, "unseal", &["max_bytes", "uid", "gid", "mode"])?;
    let limit = file_limit(&own)?;
    let (mode, owner) = file_owner(&own)?;
    let what = format!("{path} of container `{container}`");
    let unseal = super::archive::unseal_options(&run, &archive, &what)?;
    if !run.mutate(
        "docker::file_restore",
        format!("put {} in place as {what}", source.display()),
    ) {
        return Ok(0);
    }
    let mut content = Vec::new();
    crate::archive::unseal(&source, &unseal)
        .map_err(|e| error(format!("{what}: {e}")))?
        .take(limit as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| error(format!("{what}: {e}")))?;
    if content.len() > limit {
        return Err(error(format!(
            "{what}: {} holds more than {limit} bytes (`max_bytes`)",
            source.display()
        )));
    }
    let bytes = INT::try_from(content.len()).unwrap_or(INT::MAX);
    call(ctx, &format!("placing {what}"), |d| async move {
        d.place_file(container, path, content, mode, owner).await
    })?;
    Ok(bytes)
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

fn network_connect(
    ctx: &NativeCallContext,
    network: &str,
    container: &str,
    options: &Map,
) -> PrimResult<()> {
    let aliases: Vec<String> = match options.get("aliases").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(v) => v
            .read_lock::<Array>()
            .ok_or_else(|| error("option `aliases` must be a list of names"))?
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    let detail = if aliases.is_empty() {
        format!("connect container `{container}` to network `{network}`")
    } else {
        format!(
            "connect container `{container}` to network `{network}` as {}",
            aliases.join(", ")
        )
    };
    change(ctx, "docker::network_connect", detail, |d| async move {
        d.network_connect(network, container, &aliases).await
    })
}

fn network_create(ctx: &NativeCallContext, name: &str, options: &Map) -> PrimResult<()> {
    let network = NetworkOptions {
        labels: string_map(options, "labels")?,
        driver: opt_string(options, "driver")?,
        internal: opt_bool(options, "internal")?.unwrap_or(false),
    };
    change(
        ctx,
        "docker::network_create",
        format!("create network `{name}`"),
        |d| async move { d.network_create(name, &network).await.map(drop) },
    )
}
