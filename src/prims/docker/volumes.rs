//! Volumes and their data: list, create, remove, export and import as tar, back up and restore
//! through the sealed-archive pipeline, and digests a drill compares.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::*;
use crate::docker::{self, VolumeOptions};
use crate::prims::{checked_path, error, opt_bool, opt_int, opt_string, PrimResult};
use crate::run::Run;

fn volume_export(
    ctx: &NativeCallContext,
    volume: &str,
    file: &str,
    options: &Map,
) -> PrimResult<INT> {
    let run = Run::of(ctx);
    let target = checked_path(&run, file)?;
    let image = opt_string(options, "image")?;
    must_exist(ctx, Kind::Volume, volume)?;
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

fn clean_helpers(ctx: &NativeCallContext, volumes: &Array) -> PrimResult<Map> {
    let names: Vec<String> = volumes.iter().map(ToString::to_string).collect();
    let rows = call(ctx, "listing helper containers", |d| async move {
        d.helpers(None).await
    })?;
    let run = Run::of(ctx);
    let mut removed = Array::new();
    let mut held = Vec::new();
    for row in rows {
        if !names.is_empty() && !names.contains(&row.volume) {
            continue;
        }
        if row.state != "stale" {
            held.push(row);
            continue;
        }
        let detail = format!(
            "remove helper container `{}` of volume `{}` left by {}, whose process is gone",
            row.name,
            row.volume,
            row.holder()
        );
        if run.mutate("docker::remove", detail) {
            let id = row.id.as_str();
            call(
                ctx,
                &format!("removing container `{}`", row.name),
                |d| async move {
                    match d.remove(id, true, true).await {
                        Err(docker::DockerError::NotFound { .. }) => Ok(()),
                        other => other,
                    }
                },
            )?;
        }
        removed.push(row.name.into());
    }
    let mut result = Map::new();
    result.insert("removed".into(), removed.into());
    result.insert("held".into(), to_list(&held)?.into());
    Ok(result)
}

/// The rules for device nodes and FIFOs going into a volume: `recorded` is how many the set
/// says the original held (None: no set, a plain tar), `allow` the operator's parameter.
fn special_files_rule(recorded: Option<u64>, allow: bool) -> crate::archive::SpecialFiles {
    use crate::archive::SpecialFiles;
    match (recorded, allow) {
        (None, true) => SpecialFiles::Any,
        (None, false) => SpecialFiles::Refused(
            ": load it with `allow_special_files: true` to create device nodes and FIFOs".into(),
        ),
        (Some(0), _) => SpecialFiles::Refused(
            " and the set does not record that the original volume held any".into(),
        ),
        (Some(n), false) => SpecialFiles::Refused(format!(
            ": the set records {n} device nodes or FIFOs in this volume; they are loaded only with allow_special_files=true"
        )),
        (Some(n), true) => SpecialFiles::UpTo(n),
    }
}

/// A volume backup's result: the sealed file's, plus `special_files`, the device nodes and
/// FIFOs the volume holds (record it in the set: a restore loads them only when allowed).
fn backup_map(sealed: &crate::archive::Sealed, volume: &str, tar: &docker::CheckedExport) -> Map {
    let mut map = crate::prims::archive::sealed_map(sealed, Some(volume));
    map.insert(
        "special_files".into(),
        Dynamic::from(INT::try_from(tar.special_files()).unwrap_or(INT::MAX)),
    );
    map
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
    let allow = opt_bool(options, "allow_special_files")?.unwrap_or(false);
    let tar =
        std::fs::File::open(&source).map_err(|e| error(format!("cannot read {file}: {e}")))?;
    must_exist(ctx, Kind::Volume, volume)?;
    if !run.mutate(
        "docker::volume_import",
        format!("load {} into volume `{volume}`", source.display()),
    ) {
        return Ok(0);
    }
    let load = docker::VolumeLoad {
        rules: crate::archive::EntryRules::new(special_files_rule(None, allow)),
        source: source.clone(),
    };
    let bytes = call(
        ctx,
        &format!("importing into volume `{volume}`"),
        |d| async move { d.volume_import(volume, tar, image.as_deref(), load).await },
    )?;
    Ok(INT::try_from(bytes).unwrap_or(INT::MAX))
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
    let seal = crate::prims::archive::seal_options(&run, &archive, &what)?;
    must_exist(ctx, Kind::Volume, volume)?;
    if !run.mutate(
        "docker::volume_backup",
        format!(
            "write volume `{volume}` as tar ({}, {}) to {} (mode 0600)",
            seal.compression.name(),
            seal.encryption.name(),
            target.display()
        ),
    ) {
        return Ok(crate::prims::archive::planned_map(&target, &seal));
    }
    create_parent(&target, file)?;
    let tar = call(ctx, &format!("exporting {what}"), |d| async move {
        d.volume_export(volume, image.as_deref()).await
    })?;
    let mut tar = docker::CheckedExport::new(tar, volume);
    let sealed = crate::archive::seal(&mut tar, &target, &seal)
        .map_err(|e| error(format!("{what}: {e}")))?;
    Ok(backup_map(&sealed, volume, &tar))
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
    let seal = crate::prims::archive::seal_options(&run, &archive, "docker::volumes_backup")?;
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
        must_exist(ctx, Kind::Volume, &job.volume)?;
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
            .map(|job| crate::prims::archive::planned_map(&job.target, &seal).into())
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
                    let mut tar = docker::CheckedExport::new(tar, &job.volume);
                    let sealed = crate::archive::seal(&mut tar, &job.target, &options)
                        .map_err(|e| error(format!("{what}: {e}")))?;
                    Ok(backup_map(&sealed, &job.volume, &tar))
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
    let (own, archive) = split_options(options, "unseal", &["image", "allow_special_files"])?;
    let image = opt_string(&own, "image")?;
    let allow = opt_bool(&own, "allow_special_files")?.unwrap_or(false);
    let what = format!("volume `{volume}`");
    let unseal = crate::prims::archive::unseal_options(&run, &archive, &what)?;
    must_exist(ctx, Kind::Volume, volume)?;
    if !run.mutate(
        "docker::volume_restore",
        format!("load {} into volume `{volume}`", source.display()),
    ) {
        return Ok(0);
    }
    let load = docker::VolumeLoad {
        rules: crate::archive::EntryRules::new(special_files_rule(
            Some(unseal.special_files),
            allow,
        )),
        source: source.clone(),
    };
    let tar =
        crate::archive::unseal(&source, &unseal).map_err(|e| error(format!("{what}: {e}")))?;
    let bytes = call(ctx, &format!("restoring {what}"), |d| async move {
        d.volume_import(volume, tar, image.as_deref(), load).await
    })?;
    Ok(INT::try_from(bytes).unwrap_or(INT::MAX))
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
    // Per entry, so a drill can say what changed; a huge volume keeps its totals only.
    if lines.len() <= DIGEST_LISTING_LIMIT {
        let listing: Map = lines
            .iter()
            .filter_map(|line| line.split_once('\t'))
            .map(|(path, rest)| (path.into(), rest.to_string().into()))
            .collect();
        map.insert("listing".into(), listing.into());
    }
    Ok(map)
}

/// How many entries a volume digest lists one by one (beyond that, totals only).
const DIGEST_LISTING_LIMIT: usize = 50_000;

/// How many changed entries a comparison names before it counts the rest.
const DIFFERENCES_SHOWN: usize = 10;

/// What changed between two `volume_digest`s, one phrase per entry: ``a.txt`: mode 0644 →
/// 0600, content``, ``b.txt`: missing``, ``c.txt`: new``; totals when either has no listing.
fn digest_differences(before: &Map, after: &Map) -> Vec<String> {
    let listing = |digest: &Map| -> Option<BTreeMap<String, String>> {
        let listing = digest.get("listing")?.read_lock::<Map>()?.clone();
        Some(
            listing
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let totals = || {
        let n =
            |digest: &Map, key: &str| digest.get(key).map(ToString::to_string).unwrap_or_default();
        vec![format!(
            "{} entries, {} bytes (before: {} entries, {} bytes)",
            n(after, "entries"),
            n(after, "bytes"),
            n(before, "entries"),
            n(before, "bytes")
        )]
    };
    let (Some(was), Some(now)) = (listing(before), listing(after)) else {
        return totals();
    };
    const FIELDS: [&str; 6] = ["kind", "mode", "owner", "mtime", "link target", "content"];
    let mut changes = Vec::new();
    for (path, old) in &was {
        match now.get(path) {
            None => changes.push(format!("`{path}`: missing")),
            Some(new) if new != old => {
                let what: Vec<String> = old
                    .split('\t')
                    .zip(new.split('\t'))
                    .zip(FIELDS)
                    .filter(|((a, b), _)| a != b)
                    .map(|((a, b), field)| match field {
                        "content" => "content".to_string(),
                        "mtime" => format!("mtime {} → {}", time_of(a), time_of(b)),
                        "mode" => format!("mode {} → {}", permissions(a), permissions(b)),
                        _ => format!("{field} {a} → {b}"),
                    })
                    .collect();
                changes.push(format!("`{path}`: {}", what.join(", ")));
            }
            Some(_) => {}
        }
    }
    changes.extend(
        now.keys()
            .filter(|path| !was.contains_key(*path))
            .map(|path| format!("`{path}`: new")),
    );
    if changes.is_empty() {
        return totals();
    }
    let more = changes.len().saturating_sub(DIFFERENCES_SHOWN);
    changes.truncate(DIFFERENCES_SHOWN);
    if more > 0 {
        changes.push(format!("and {more} more"));
    }
    changes
}

/// A tar mode (octal, with the file-type bits some tar writers keep) as permissions: `0644`.
fn permissions(mode: &str) -> String {
    u32::from_str_radix(mode, 8)
        .map(|m| format!("{:04o}", m & 0o7777))
        .unwrap_or_else(|_| mode.to_string())
}

/// A tar mtime (seconds since the epoch) as a UTC time.
fn time_of(seconds: &str) -> String {
    seconds
        .parse::<i64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| seconds.to_string())
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
    )?;
    planned(ctx, Kind::Volume, name, true);
    Ok(())
}

#[export_module]
pub mod api {
    use super::*;

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

    /// The never-started helper containers that reach volumes' data (label `runbook.helper`)
    /// as `#{name, id, volume, run, pid, host, state}`; `state` is `in use` (this run),
    /// `live` (its run's process still runs), `stale` (its process is gone: safe to remove)
    /// or `unknown` (made on another host).
    #[rhai_fn(return_raw)]
    pub fn helpers(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rows = call(&ctx, "listing helper containers", |d| async move {
            d.helpers(None).await
        })?;
        to_list(&rows)
    }

    /// Removes the stale helper containers of `volumes` (every volume when empty): those of
    /// runs whose process is gone. Returns `#{removed: [names], held: [helpers]}`, `held`
    /// being those of live runs (or of another host), which are left alone.
    #[rhai_fn(return_raw)]
    pub fn clean_helpers(
        ctx: NativeCallContext,
        volumes: Array,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::clean_helpers(&ctx, &volumes)
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
        must_exist(&ctx, Kind::Volume, name)?;
        must_be_free(&ctx, name)?;
        change(
            &ctx,
            "docker::volume_remove",
            format!("remove volume `{name}` and its data"),
            |d| async move { d.volume_remove(name, false).await },
        )?;
        planned(&ctx, Kind::Volume, name, false);
        Ok(())
    }

    /// Removes a volume with `#{force: true}`.
    #[rhai_fn(name = "volume_remove", return_raw)]
    pub fn volume_remove_with(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let force = opt_bool(&options, "force")?.unwrap_or(false);
        if !force {
            must_exist(&ctx, Kind::Volume, name)?;
        }
        must_be_free(&ctx, name)?;
        change(
            &ctx,
            "docker::volume_remove",
            format!("remove volume `{name}` and its data"),
            |d| async move { d.volume_remove(name, force).await },
        )?;
        planned(&ctx, Kind::Volume, name, false);
        Ok(())
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
    /// files already there are overwritten, others stay). Every entry passes the extraction
    /// rules first (no absolute path, `..`, write through a symlink, hard link out of the tree,
    /// device node or FIFO); a refused entry fails the load naming it, and a volume that was
    /// empty is left empty. Returns the bytes loaded.
    #[rhai_fn(name = "volume_import", return_raw)]
    pub fn volume_import(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_import(&ctx, volume, file, &Map::new())
    }

    /// Loads a tar file into a volume with `#{image: "..", allow_special_files: true}`
    /// (see `volume_export`; device nodes and FIFOs are created only when allowed).
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
    /// container. Returns what `archive::pack` returns, ready for `manifest::write`, plus
    /// `special_files`: the device nodes and FIFOs the volume holds (record it in the
    /// artifact's metadata: `volume_restore` loads them only when the set records them).
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
    /// stream the tar in, owners, modes and mtimes kept, every entry through the extraction
    /// rules (see `volume_import`). Options: `passphrase` or `identity`, `sha256` and `size` to
    /// check (from the manifest), `image`, `special_files` (the device nodes and FIFOs the set
    /// records for the volume) and `allow_special_files` (the operator's yes to create them;
    /// both are needed). Returns the tar's bytes. A refused entry or a corruption found
    /// mid-stream fails the load naming it; a volume that was empty is emptied again. Verify
    /// the file first (`archive::verify`) to fail before anything changes.
    #[rhai_fn(return_raw)]
    pub fn volume_restore(
        ctx: NativeCallContext,
        volume: &str,
        file: &str,
        options: Map,
    ) -> Result<INT, Box<EvalAltResult>> {
        super::volume_restore(&ctx, volume, file, &options)
    }

    /// A digest of a volume's content (`#{sha256, entries, bytes, listing}`): every entry's
    /// path, kind, mode, owner, mtime, link target and content hash (`listing`, per path, for
    /// volumes of up to 50,000 entries). Equal digests mean identical trees; a
    /// disaster-recovery drill compares them before and after (`digest_differences`).
    #[rhai_fn(name = "volume_digest", return_raw)]
    pub fn volume_digest(ctx: NativeCallContext, volume: &str) -> Result<Map, Box<EvalAltResult>> {
        super::volume_digest(&ctx, volume, &Map::new())
    }

    /// What changed between two `volume_digest`s of a volume, one phrase per entry, e.g.
    /// ``"`./notes/a.txt`: mode 0644 → 0600, content"``, ``"`./b`: missing"``, ``"`./c`: new"``
    /// (the first ten, then `and N more`); empty when they are equal.
    pub fn digest_differences(before: Map, after: Map) -> Array {
        if before.get("sha256").map(ToString::to_string)
            == after.get("sha256").map(ToString::to_string)
        {
            return Array::new();
        }
        super::digest_differences(&before, &after)
            .into_iter()
            .map(Dynamic::from)
            .collect()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(entries: &[(&str, &str)]) -> Map {
        let mut map = Map::new();
        map.insert("entries".into(), Dynamic::from(entries.len() as INT));
        map.insert("bytes".into(), Dynamic::from(2 as INT));
        let listing: Map = entries
            .iter()
            .map(|(path, rest)| ((*path).into(), rest.to_string().into()))
            .collect();
        map.insert("listing".into(), listing.into());
        map
    }

    #[test]
    fn differences_name_each_entry_and_what_changed() {
        let before = digest(&[
            ("./a", "Regular\t644\t0:0\t1700000000\t\taaa"),
            ("./b", "Regular\t644\t0:0\t1700000000\t\tbbb"),
        ]);
        let after = digest(&[
            ("./a", "Regular\t600\t1000:1000\t1700000060\t\tccc"),
            ("./c", "Regular\t644\t0:0\t1700000000\t\tbbb"),
        ]);
        assert_eq!(
            digest_differences(&before, &after),
            vec![
                "`./a`: mode 0644 → 0600, owner 0:0 → 1000:1000, mtime 2023-11-14 22:13:20 → \
                 2023-11-14 22:14:20, content",
                "`./b`: missing",
                "`./c`: new",
            ]
        );
        let mut unlisted = before.clone();
        unlisted.remove("listing");
        assert_eq!(
            digest_differences(&unlisted, &after),
            vec!["2 entries, 2 bytes (before: 2 entries, 2 bytes)"]
        );
    }
}
