//! Single files in and out of a container, through the seal pipeline: a database file copied
//! while its server is stopped, put in place before a server starts.

use rhai::plugin::*;
use rhai::{Map, INT};

use super::*;
use crate::prims::{checked_path, error, opt_int, PrimResult};
use crate::run::Run;

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
    let seal = crate::prims::archive::seal_options(&run, &archive, &what)?;
    if !run.mutate(
        "docker::file_backup",
        format!(
            "write {what} ({}, {}) to {} (mode 0600)",
            seal.compression.name(),
            seal.encryption.name(),
            target.display()
        ),
    ) {
        return Ok(crate::prims::archive::planned_map(&target, &seal));
    }
    create_parent(&target, file)?;
    let content = call(ctx, &format!("reading {what}"), |d| async move {
        d.read_file(container, path, limit).await
    })?;
    let sealed = crate::archive::seal(std::io::Cursor::new(content), &target, &seal)
        .map_err(|e| error(format!("{what}: {e}")))?;
    Ok(crate::prims::archive::sealed_map(&sealed, None))
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
    let unseal = crate::prims::archive::unseal_options(&run, &archive, &what)?;
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

#[export_module]
pub mod api {
    use rhai::Map;

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
}
