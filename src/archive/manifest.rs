//! The manifest of a backup set: a JSON file listing each artifact with its size, SHA-256,
//! compression, encryption and free-form metadata. Written atomically; verified in one call
//! that names every artifact that does not match, not just the first.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{sha256_file, Error, Problem, Sealed, SetKey};
use crate::atomic_file;

/// The `format` field of a manifest that nothing authenticates (v1 backup sets, and the
/// manifests of other playbooks' archives).
pub const MANIFEST_FORMAT: &str = "runbook-manifest/1";
/// The `format` field of an authenticated manifest: a backup set of format v2, whose `mac`
/// is an HMAC under the set's key over the whole manifest.
pub const AUTHENTICATED_FORMAT: &str = "runbook-manifest/2";

/// A backup set's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// When it was made, RFC 3339 UTC.
    pub created: String,
    /// Free-form: stack, playbook version, timings, database counts.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    pub artifacts: Vec<Artifact>,
    /// HMAC-SHA256 under the set's key over the manifest without this field (format v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// One file of a backup set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// What it is in the operator's words (`volume pgdata`, `database shop`).
    pub name: String,
    /// The file, relative to the manifest's directory.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// `zstd`, `gzip` or `none`.
    pub compression: String,
    /// `age-passphrase`, `age-recipients` or `none`.
    pub encryption: String,
    /// Free-form: entries, input bytes, the container it came from.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl Artifact {
    /// The record of a sealed file stored at `file` (relative to the manifest).
    pub fn from_sealed(name: &str, file: &str, sealed: &Sealed) -> Self {
        let mut metadata = Map::new();
        metadata.insert("input_bytes".into(), sealed.input_bytes.into());
        if let Some(entries) = sealed.entries {
            metadata.insert("entries".into(), entries.into());
        }
        Artifact {
            name: name.to_string(),
            file: file.to_string(),
            size: sealed.bytes,
            sha256: sealed.sha256.clone(),
            compression: sealed.compression.name().to_string(),
            encryption: sealed.encryption.to_string(),
            metadata,
        }
    }
}

impl Manifest {
    /// An empty manifest created now.
    pub fn new(metadata: Map<String, Value>) -> Self {
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            metadata,
            artifacts: Vec::new(),
            mac: None,
        }
    }

    /// Whether this is an authenticated (format v2) manifest.
    pub fn is_authenticated(&self) -> bool {
        self.format == AUTHENTICATED_FORMAT
    }

    /// Makes this an authenticated manifest: format v2, MAC under `key`.
    pub fn authenticate(&mut self, key: &SetKey) {
        self.format = AUTHENTICATED_FORMAT.to_string();
        self.mac = Some(key.mac(&self.signed_bytes()));
    }

    /// Checks the MAC of an authenticated manifest read from `path` against `key`: any change
    /// to any field (counts, volumes, artifacts, names) fails it.
    pub fn check_mac(&self, path: &Path, key: &SetKey) -> Result<(), Error> {
        let refuse = |why: &str| Err(Error::new(path, Problem::Refused(why.to_string())));
        match &self.mac {
            _ if !self.is_authenticated() => refuse("the manifest is not authenticated (format v1)"),
            None => refuse("the manifest has no MAC: it was altered, refused"),
            Some(mac) if key.mac_matches(&self.signed_bytes(), mac) => Ok(()),
            Some(_) => refuse(
                "the manifest does not match its MAC under the set's key: it was altered after the set was written (or belongs to another set's key), refused",
            ),
        }
    }

    /// What the MAC covers: the manifest as serialised, without the MAC.
    fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Manifest {
            mac: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).expect("a manifest serialises")
    }

    /// Reads and checks the shape of a manifest (not the files it lists: see [`verify`]).
    ///
    /// [`verify`]: Manifest::verify
    pub fn read(path: &Path) -> Result<Manifest, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path, "read the manifest", e))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::new(path, Problem::Manifest(e.to_string())))?;
        manifest
            .check()
            .map_err(|why| Error::new(path, Problem::Manifest(why)))?;
        Ok(manifest)
    }

    /// Writes the manifest atomically (temporary name, fsync, rename), pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        self.check()
            .map_err(|why| Error::new(path, Problem::Manifest(why)))?;
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        text.push('\n');
        atomic_file::write(path, text.as_bytes(), 0o644)
            .map_err(|e| Error::io(path, "write the manifest", e))
    }

    /// Checks every listed file (at `path`'s directory) against its size and SHA-256; the
    /// error names every mismatch.
    pub fn verify(&self, path: &Path) -> Result<(), Error> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mismatches: Vec<String> = self
            .artifacts
            .iter()
            .filter_map(|artifact| artifact.mismatch(dir))
            .collect();
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                path,
                Problem::Mismatches {
                    total: self.artifacts.len(),
                    mismatches,
                },
            ))
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.format != MANIFEST_FORMAT && self.format != AUTHENTICATED_FORMAT {
            return Err(format!(
                "format `{}`, expected `{MANIFEST_FORMAT}` or `{AUTHENTICATED_FORMAT}`",
                self.format
            ));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.artifacts {
            if !names.insert(&a.name) {
                return Err(format!("artifact `{}` is listed twice", a.name));
            }
            let file = Path::new(&a.file);
            if a.file.is_empty()
                || file
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(format!(
                    "artifact `{}` has file `{}`, which is not a path inside the manifest's directory",
                    a.name, a.file
                ));
            }
            if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "artifact `{}` has `{}` as SHA-256, not 64 hex digits",
                    a.name, a.sha256
                ));
            }
        }
        Ok(())
    }
}

impl Artifact {
    fn mismatch(&self, dir: &Path) -> Option<String> {
        let which = format!("`{}` ({})", self.name, self.file);
        let path = dir.join(&self.file);
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(format!("{which} is missing"))
            }
            Err(e) => return Some(format!("{which} cannot be read ({e})")),
        };
        if size != self.size {
            return Some(format!(
                "{which} has {size} bytes, the manifest says {}",
                self.size
            ));
        }
        match sha256_file(&path) {
            Ok(sha) if sha.eq_ignore_ascii_case(&self.sha256) => None,
            Ok(sha) => Some(format!(
                "{which} has SHA-256 {sha}, the manifest says {}",
                self.sha256
            )),
            Err(e) => Some(format!("{which} cannot be read ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(dir: &Path, name: &str, content: &str) -> Artifact {
        let file = format!("{name}.bin");
        std::fs::write(dir.join(&file), content).unwrap();
        Artifact {
            name: name.to_string(),
            file: file.clone(),
            size: content.len() as u64,
            sha256: sha256_file(&dir.join(&file)).unwrap(),
            compression: "zstd".into(),
            encryption: "age-recipients".into(),
            metadata: Map::new(),
        }
    }

    #[test]
    fn round_trips_and_names_every_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::new(Map::new());
        for name in ["a", "b", "c", "d"] {
            manifest
                .artifacts
                .push(artifact(dir.path(), name, "content"));
        }
        let path = dir.path().join("manifest.json");
        manifest.write(&path).unwrap();
        let read = Manifest::read(&path).unwrap();
        assert_eq!(read, manifest);
        read.verify(&path).unwrap();

        std::fs::remove_file(dir.path().join("a.bin")).unwrap();
        std::fs::write(dir.path().join("b.bin"), "short").unwrap();
        std::fs::write(dir.path().join("c.bin"), "CONTENT").unwrap();
        let message = read.verify(&path).unwrap_err().to_string();
        assert!(
            message.contains("3 of 4 artifacts do not match"),
            "{message}"
        );
        assert!(message.contains("`a` (a.bin) is missing"), "{message}");
        assert!(
            message.contains("`b` (b.bin) has 5 bytes, the manifest says 7"),
            "{message}"
        );
        assert!(message.contains("`c` (c.bin) has SHA-256"), "{message}");
        assert!(!message.contains("`d`"), "{message}");
    }

    #[test]
    fn an_authenticated_manifest_refuses_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let key = SetKey::generate();
        let mut metadata = Map::new();
        metadata.insert("covered_volumes".into(), serde_json::json!(["pgdata"]));
        metadata.insert("rows".into(), serde_json::json!({"public.items": 3}));
        let mut manifest = Manifest::new(metadata);
        manifest
            .artifacts
            .push(artifact(dir.path(), "a", "content"));
        manifest.authenticate(&key);
        let path = dir.path().join("manifest.json");
        manifest.write(&path).unwrap();
        let read = Manifest::read(&path).unwrap();
        assert!(read.is_authenticated());
        read.check_mac(&path, &key).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in [
            ("\"public.items\": 3", "\"public.items\": 4"),
            ("\"pgdata\"", "\"other\""),
            ("\"name\": \"a\"", "\"name\": \"b\""),
        ] {
            assert!(text.contains(from), "{from} in {text}");
            std::fs::write(&path, text.replace(from, to)).unwrap();
            let altered = Manifest::read(&path).unwrap();
            let message = altered.check_mac(&path, &key).unwrap_err().to_string();
            assert!(message.contains("does not match its MAC"), "{message}");
        }
        let mut stripped = read.clone();
        stripped.mac = None;
        assert!(stripped.check_mac(&path, &key).is_err());
        assert!(read.check_mac(&path, &SetKey::generate()).is_err());
        let mut v1 = read.clone();
        v1.format = MANIFEST_FORMAT.into();
        assert!(v1
            .check_mac(&path, &key)
            .unwrap_err()
            .to_string()
            .contains("not authenticated"));
    }

    #[test]
    fn refuses_files_outside_its_directory_and_bad_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::new(Map::new());
        let mut a = artifact(dir.path(), "a", "x");
        a.file = "../etc/passwd".into();
        manifest.artifacts.push(a);
        let err = manifest.write(&dir.path().join("m.json")).unwrap_err();
        assert!(err.to_string().contains("not a path inside"), "{err}");

        manifest.artifacts[0].file = "a.bin".into();
        manifest.artifacts[0].sha256 = "xyz".into();
        let err = manifest.write(&dir.path().join("m.json")).unwrap_err();
        assert!(err.to_string().contains("not 64 hex digits"), "{err}");
        assert!(!dir.path().join("m.json").exists());
    }
}
