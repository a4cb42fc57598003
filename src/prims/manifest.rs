//! Backup-set manifests: `manifest::write` lists the artifacts of a set (the maps `archive::pack`
//! and `archive::seal` return) with their size, SHA-256, compression and encryption;
//! `manifest::verify` checks every listed file and names every one that does not match.

use std::path::Path;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::{checked_path, error, opt_int, opt_string, PrimResult};
use crate::archive::{Artifact, Manifest};
use crate::run::Run;

/// Keys of an artifact map that are its record; the rest of what `archive::pack` returns
/// (input_bytes, entries) goes to the artifact's metadata.
const RECORD_KEYS: &[&str] = &[
    "name",
    "path",
    "file",
    "size",
    "sha256",
    "compression",
    "encryption",
    "metadata",
    "skipped",
    "changed",
    "planned",
];

fn json_object(
    value: &Dynamic,
    what: &str,
) -> PrimResult<serde_json::Map<String, serde_json::Value>> {
    match crate::value::to_json(value) {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Ok(serde_json::Map::new()),
        _ => Err(error(format!("{what} must be a map"))),
    }
}

fn artifact(run: &Run, dir: &Path, value: &Dynamic, index: usize) -> PrimResult<Artifact> {
    let map = value.read_lock::<Map>().ok_or_else(|| {
        error(format!(
            "manifest artifact {index} must be a map (what archive::pack returns)"
        ))
    })?;
    let what = |key: &str| format!("manifest artifact {index}: `{key}`");
    let file = match (opt_string(&map, "file")?, opt_string(&map, "path")?) {
        (Some(file), _) => file,
        (None, Some(path)) => {
            let resolved = checked_path(run, &path)?;
            resolved
                .strip_prefix(dir)
                .map(|rel| rel.display().to_string())
                .map_err(|_| {
                    error(format!(
                        "manifest artifact {index}: {path} is not inside the manifest's directory {}",
                        dir.display()
                    ))
                })?
        }
        (None, None) => return Err(error(format!("{} (or `file`) is missing", what("path")))),
    };
    let name = opt_string(&map, "name")?.unwrap_or_else(|| file.clone());
    let required = |key: &str| -> PrimResult<String> {
        opt_string(&map, key)?.ok_or_else(|| error(format!("{} is missing", what(key))))
    };
    let size = opt_int(&map, "size")?
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| error(format!("{} is missing or negative", what("size"))))?;
    let mut metadata = match map.get("metadata") {
        Some(m) => json_object(m, &what("metadata"))?,
        None => serde_json::Map::new(),
    };
    for (key, value) in map.iter() {
        if !RECORD_KEYS.contains(&key.as_str()) {
            metadata.insert(key.to_string(), crate::value::to_json(value));
        }
    }
    Ok(Artifact {
        name,
        file,
        size,
        sha256: required("sha256")?,
        compression: required("compression")?,
        encryption: required("encryption")?,
        metadata,
    })
}

fn write(
    ctx: &NativeCallContext,
    path: &str,
    manifest: &Map,
    key: Option<crate::archive::SetKey>,
) -> PrimResult<()> {
    let run = Run::of(ctx);
    let target = checked_path(&run, path)?;
    for key in manifest.keys() {
        if !["artifacts", "metadata"].contains(&key.as_str()) {
            return Err(error(format!(
                "manifest::write: unknown key `{key}` (known: artifacts, metadata)"
            )));
        }
    }
    let artifacts = manifest
        .get("artifacts")
        .and_then(|a| a.read_lock::<Array>().map(|a| a.clone()))
        .ok_or_else(|| error("manifest::write: `artifacts` must be a list"))?;
    let metadata = match manifest.get("metadata") {
        Some(m) => json_object(m, "manifest `metadata`")?,
        None => serde_json::Map::new(),
    };
    if !run.mutate(
        "manifest::write",
        format!(
            "write the manifest of {} artifacts to {}",
            artifacts.len(),
            target.display()
        ),
    ) {
        return Ok(());
    }
    let dir = target
        .parent()
        .ok_or_else(|| error(format!("manifest::write: {path} has no directory")))?;
    let mut written = Manifest::new(metadata);
    for (index, value) in artifacts.iter().enumerate() {
        written.artifacts.push(artifact(&run, dir, value, index)?);
    }
    if let Some(key) = &key {
        written.authenticate(key);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| error(format!("cannot create the directory of {path}: {e}")))?;
    written.write(&target).map_err(|e| error(e.to_string()))
}

pub(crate) fn to_dynamic(manifest: &Manifest) -> Dynamic {
    crate::value::from_json(&serde_json::to_value(manifest).expect("a manifest serialises"))
}

#[export_module]
pub mod api {
    use rhai::Map;

    /// Writes a backup set's manifest atomically: `#{artifacts: [...], metadata: #{...}}`,
    /// where each artifact is what `archive::pack`/`archive::seal` returned (or a map with
    /// `file` relative to the manifest, `size`, `sha256`, `compression`, `encryption`), with
    /// an optional `name` and `metadata`. Artifact files must lie in the manifest's directory.
    #[rhai_fn(return_raw)]
    pub fn write(
        ctx: NativeCallContext,
        path: &str,
        manifest: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::write(&ctx, path, &manifest, None)
    }

    /// Writes a backup set's manifest (as `write`) authenticated under the set's key
    /// (`backup::new_set_key`): format v2, whose every field `backup::open_set` checks.
    #[rhai_fn(name = "write", return_raw)]
    pub fn write_authenticated(
        ctx: NativeCallContext,
        path: &str,
        manifest: Map,
        set_key: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let key = crate::prims::backup::set_key_of(&set_key, "manifest::write")?;
        super::write(&ctx, path, &manifest, Some(key))
    }

    /// Reads a manifest (its shape checked, not its files) as a map.
    #[rhai_fn(return_raw)]
    pub fn read(ctx: NativeCallContext, path: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let target = super::checked_path(&Run::of(&ctx), path)?;
        let manifest = Manifest::read(&target).map_err(|e| super::error(e.to_string()))?;
        Ok(super::to_dynamic(&manifest))
    }

    /// Checks every file a manifest lists against its size and SHA-256; the error names
    /// every artifact that is missing or does not match. Returns the manifest as a map.
    #[rhai_fn(return_raw)]
    pub fn verify(ctx: NativeCallContext, path: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let target = super::checked_path(&Run::of(&ctx), path)?;
        let manifest = Manifest::read(&target).map_err(|e| super::error(e.to_string()))?;
        manifest
            .verify(&target)
            .map_err(|e| super::error(e.to_string()))?;
        Ok(super::to_dynamic(&manifest))
    }
}
