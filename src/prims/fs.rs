//! Files, confined to the run's allowed roots. Writes are atomic (temporary name, fsync,
//! rename) and plan in a dry run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rhai::plugin::*;
use rhai::INT;
use rhai::{Array, Map};

use super::{checked_path, error, PrimResult};
use crate::atomic_file;
use crate::run::Run;
use crate::secrets::Secret;

fn io_err(what: &str, path: &str, e: std::io::Error) -> Box<EvalAltResult> {
    error(format!("cannot {what} {path}: {e}"))
}

fn write_bytes(
    ctx: &NativeCallContext,
    action: &str,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> PrimResult<()> {
    let run = Run::of(ctx);
    let target = checked_path(&run, path)?;
    if !run.mutate(
        action,
        format!(
            "write {} bytes to {} (mode {mode:04o})",
            bytes.len(),
            target.display()
        ),
    ) {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("create the directory of", path, e))?;
    }
    atomic_file::write(&target, bytes, mode).map_err(|e| io_err("write", path, e))
}

fn read(ctx: &NativeCallContext, path: &str) -> PrimResult<(PathBuf, String)> {
    let resolved = checked_path(&Run::of(ctx), path)?;
    let text = std::fs::read_to_string(&resolved).map_err(|e| io_err("read", path, e))?;
    Ok((resolved, text))
}

fn stat(path: &Path) -> std::io::Result<Map> {
    let meta = std::fs::symlink_metadata(path)?;
    let kind = if meta.is_symlink() {
        "symlink"
    } else if meta.is_dir() {
        "dir"
    } else if meta.is_file() {
        "file"
    } else {
        "other"
    };
    let mode = meta.permissions().mode() & 0o7777;
    let mut map = Map::new();
    map.insert("path".into(), path.display().to_string().into());
    map.insert("kind".into(), kind.into());
    map.insert("size".into(), (meta.len() as INT).into());
    map.insert("mode".into(), INT::from(mode).into());
    map.insert("mode_octal".into(), format!("{mode:04o}").into());
    map.insert("uid".into(), INT::from(meta.uid()).into());
    map.insert("gid".into(), INT::from(meta.gid()).into());
    map.insert("mtime".into(), meta.mtime().into());
    Ok(map)
}

fn copy_recursive(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        std::fs::set_permissions(to, meta.permissions())?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_recursive(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

fn total_size(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += total_size(&entry?.path())?;
    }
    Ok(total)
}

fn mkdir(ctx: &NativeCallContext, path: &str, mode: u32) -> PrimResult<()> {
    let run = Run::of(ctx);
    let target = checked_path(&run, path)?;
    if target.is_dir() {
        return Ok(());
    }
    if !run.mutate(
        "fs::mkdir",
        format!("create directory {} (mode {mode:04o})", target.display()),
    ) {
        return Ok(());
    }
    std::fs::create_dir_all(&target).map_err(|e| io_err("create directory", path, e))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("chmod", path, e))
}

#[export_module]
pub mod api {
    /// Reads a file as UTF-8 text.
    #[rhai_fn(return_raw)]
    pub fn read_text(ctx: NativeCallContext, path: &str) -> Result<String, Box<EvalAltResult>> {
        super::read(&ctx, path).map(|(_, text)| text)
    }

    /// Reads a JSON file into maps, lists and values.
    #[rhai_fn(return_raw)]
    pub fn read_json(ctx: NativeCallContext, path: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let (_, text) = super::read(&ctx, path)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| super::error(format!("{path} is not valid JSON: {e}")))?;
        Ok(crate::value::from_json(&value))
    }

    /// Reads a file holding a secret (trailing newline removed) as a Secret.
    #[rhai_fn(return_raw)]
    pub fn read_secret(ctx: NativeCallContext, path: &str) -> Result<Secret, Box<EvalAltResult>> {
        let (_, text) = super::read(&ctx, path)?;
        Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
    }

    /// Writes text to a file atomically (mode 0644), creating parent directories.
    #[rhai_fn(return_raw)]
    pub fn write_text(
        ctx: NativeCallContext,
        path: &str,
        text: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::write_bytes(&ctx, "fs::write_text", path, text.as_bytes(), 0o644)
    }

    /// Writes a value as pretty JSON atomically (mode 0644); secrets are written as `***`.
    #[rhai_fn(return_raw)]
    pub fn write_json(
        ctx: NativeCallContext,
        path: &str,
        value: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        let mut text =
            serde_json::to_string_pretty(&crate::value::to_json(&value)).unwrap_or_default();
        text.push('\n');
        super::write_bytes(&ctx, "fs::write_json", path, text.as_bytes(), 0o644)
    }

    /// Writes a secret to a file atomically with mode 0600; its directory is created 0700.
    #[rhai_fn(return_raw)]
    pub fn write_secret(
        ctx: NativeCallContext,
        path: &str,
        secret: Secret,
    ) -> Result<(), Box<EvalAltResult>> {
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            super::mkdir(&ctx, &parent.to_string_lossy(), 0o700)?;
        }
        super::write_bytes(
            &ctx,
            "fs::write_secret",
            path,
            secret.expose().as_bytes(),
            0o600,
        )
    }

    /// Appends text to a file (created 0644 if missing). Not atomic: for logs and reports.
    #[rhai_fn(return_raw)]
    pub fn append_text(
        ctx: NativeCallContext,
        path: &str,
        text: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        use std::io::Write;
        let run = Run::of(&ctx);
        let target = checked_path(&run, path)?;
        if !run.mutate(
            "fs::append_text",
            format!("append {} bytes to {}", text.len(), target.display()),
        ) {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&target)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| super::io_err("append to", path, e))
    }

    /// True when the path exists (a dangling symlink counts).
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, path: &str) -> Result<bool, Box<EvalAltResult>> {
        let resolved = checked_path(&Run::of(&ctx), path)?;
        Ok(std::fs::symlink_metadata(resolved).is_ok())
    }

    /// Names of the entries of a directory, sorted.
    #[rhai_fn(return_raw)]
    pub fn list(ctx: NativeCallContext, dir: &str) -> Result<Array, Box<EvalAltResult>> {
        let resolved = checked_path(&Run::of(&ctx), dir)?;
        let mut names: Vec<String> = std::fs::read_dir(&resolved)
            .map_err(|e| super::io_err("list", dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names.into_iter().map(Dynamic::from).collect())
    }

    /// Paths matching a glob pattern (`backups/*/manifest.json`), sorted; each must lie in
    /// the allowed roots.
    #[rhai_fn(return_raw)]
    pub fn glob(ctx: NativeCallContext, pattern: &str) -> Result<Array, Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let entries = glob::glob(pattern)
            .map_err(|e| super::error(format!("bad glob pattern `{pattern}`: {e}")))?;
        let mut paths = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let text = entry.display().to_string();
            checked_path(&run, &text)?;
            paths.push(text);
        }
        paths.sort();
        Ok(paths.into_iter().map(Dynamic::from).collect())
    }

    /// Facts about a path: kind (file, dir, symlink, other), size, mode, mode_octal, uid,
    /// gid, mtime. Does not follow a final symlink.
    #[rhai_fn(return_raw)]
    pub fn stat(ctx: NativeCallContext, path: &str) -> Result<Map, Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let absolute = Path::new(path);
        // Check the parent so a symlink itself can be examined without following it.
        let parent = absolute
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = checked_path(&run, &parent.to_string_lossy())?;
        let name = absolute
            .file_name()
            .map_or_else(|| dir.clone(), |n| dir.join(n));
        super::stat(&name).map_err(|e| super::io_err("stat", path, e))
    }

    /// Total bytes of a file, or of every file under a directory (symlinks not followed).
    #[rhai_fn(return_raw)]
    pub fn size(ctx: NativeCallContext, path: &str) -> Result<INT, Box<EvalAltResult>> {
        let resolved = checked_path(&Run::of(&ctx), path)?;
        let bytes = super::total_size(&resolved).map_err(|e| super::io_err("measure", path, e))?;
        Ok(INT::try_from(bytes).unwrap_or(INT::MAX))
    }

    /// Creates a directory and its parents (mode 0755).
    #[rhai_fn(name = "mkdir", return_raw)]
    pub fn mkdir_default(ctx: NativeCallContext, path: &str) -> Result<(), Box<EvalAltResult>> {
        super::mkdir(&ctx, path, 0o755)
    }

    /// Creates a directory and its parents with the given mode (e.g. `0o700`).
    #[rhai_fn(name = "mkdir", return_raw)]
    pub fn mkdir_mode(
        ctx: NativeCallContext,
        path: &str,
        mode: INT,
    ) -> Result<(), Box<EvalAltResult>> {
        super::mkdir(&ctx, path, (mode & 0o7777) as u32)
    }

    /// Copies a file, or a directory recursively (modes and symlinks kept).
    #[rhai_fn(return_raw)]
    pub fn copy(ctx: NativeCallContext, from: &str, to: &str) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let (src, dst) = (checked_path(&run, from)?, checked_path(&run, to)?);
        if !run.mutate(
            "fs::copy",
            format!("copy {} to {}", src.display(), dst.display()),
        ) {
            return Ok(());
        }
        super::copy_recursive(&src, &dst)
            .map_err(|e| super::error(format!("cannot copy {from} to {to}: {e}")))
    }

    /// Moves (renames) a file or directory.
    #[rhai_fn(name = "move", return_raw)]
    pub fn move_path(
        ctx: NativeCallContext,
        from: &str,
        to: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let (src, dst) = (checked_path(&run, from)?, checked_path(&run, to)?);
        if !run.mutate(
            "fs::move",
            format!("move {} to {}", src.display(), dst.display()),
        ) {
            return Ok(());
        }
        std::fs::rename(&src, &dst)
            .map_err(|e| super::error(format!("cannot move {from} to {to}: {e}")))
    }

    /// Removes a file, or a directory with everything in it. Missing paths are fine.
    #[rhai_fn(return_raw)]
    pub fn remove(ctx: NativeCallContext, path: &str) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let target = checked_path(&run, path)?;
        let Ok(meta) = std::fs::symlink_metadata(&target) else {
            return Ok(());
        };
        if !run.mutate(
            "fs::remove",
            format!(
                "remove {}{}",
                target.display(),
                if meta.is_dir() {
                    " and everything in it"
                } else {
                    ""
                }
            ),
        ) {
            return Ok(());
        }
        let result = if meta.is_dir() {
            std::fs::remove_dir_all(&target)
        } else {
            std::fs::remove_file(&target)
        };
        result.map_err(|e| super::io_err("remove", path, e))
    }

    /// Sets a path's mode (e.g. `0o600`).
    #[rhai_fn(return_raw)]
    pub fn chmod(ctx: NativeCallContext, path: &str, mode: INT) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let target = checked_path(&run, path)?;
        let mode = (mode & 0o7777) as u32;
        if !run.mutate(
            "fs::chmod",
            format!("set mode {mode:04o} on {}", target.display()),
        ) {
            return Ok(());
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| super::io_err("chmod", path, e))
    }

    /// Creates a private temporary directory (0700), allowed for this run and removed when
    /// the run ends.
    #[rhai_fn(return_raw)]
    pub fn temp_dir(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let dir = tempfile::Builder::new()
            .prefix(&format!("runbook-{}-", run.id))
            .tempdir()
            .map_err(|e| super::error(format!("cannot create a temporary directory: {e}")))?
            .keep();
        run.sandbox.allow(&dir);
        let cleanup = dir.clone();
        run.on_finish(format!("remove {}", dir.display()), move || {
            let _ = std::fs::remove_dir_all(cleanup);
        });
        Ok(dir.display().to_string())
    }

    /// Joins path parts: `fs::join(dir, "manifest.json")`.
    pub fn join(base: &str, part: &str) -> String {
        Path::new(base).join(part).display().to_string()
    }

    /// The last component of a path.
    pub fn basename(path: &str) -> String {
        Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A path without its last component.
    pub fn dirname(path: &str) -> String {
        Path::new(path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}
