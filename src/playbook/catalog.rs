//! Finding playbooks and stdlib modules: a literal path, then `./playbooks/`, then the user's
//! config dir, then the copies embedded in the binary.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::locations;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Where a playbook or module came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "kebab-case")]
pub enum Origin {
    /// A file: given literally, in `./playbooks/`, or in the user's config dir.
    File(PathBuf),
    /// The copy built into this binary.
    BuiltIn,
}

impl Origin {
    /// How `list` and error messages name the origin.
    pub fn describe(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::BuiltIn => "built-in".to_string(),
        }
    }
}

/// A playbook or module's text and where it came from.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub origin: Origin,
    pub text: String,
}

impl SourceFile {
    /// The name used in error positions: the file path, or `built-in:NAME.rhai`.
    pub fn display_name(&self, kind: &str) -> String {
        match &self.origin {
            Origin::File(path) => path.display().to_string(),
            Origin::BuiltIn => format!("built-in:{kind}/{}.rhai", self.name),
        }
    }
}

/// The directories searched for `kind` ("playbooks" or "stdlib"), in order.
fn search_dirs(kind: &str) -> Vec<PathBuf> {
    vec![PathBuf::from(kind), locations::config_dir().join(kind)]
}

fn builtins(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "playbooks" => embedded::PLAYBOOKS,
        _ => embedded::STDLIB,
    }
}

fn read(path: &Path, name: &str) -> Result<SourceFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    Ok(SourceFile {
        name: name.to_string(),
        origin: Origin::File(path.to_path_buf()),
        text,
    })
}

fn find(kind: &str, name: &str) -> Option<Result<SourceFile>> {
    for dir in search_dirs(kind) {
        let path = dir.join(format!("{name}.rhai"));
        if path.is_file() {
            return Some(read(&path, name));
        }
    }
    builtins(kind)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| {
            Ok(SourceFile {
                name: n.to_string(),
                origin: Origin::BuiltIn,
                text: text.to_string(),
            })
        })
}

/// Finds a playbook by path or name.
pub fn playbook(name_or_path: &str) -> Result<SourceFile> {
    let path = Path::new(name_or_path);
    if name_or_path.contains('/') || name_or_path.ends_with(".rhai") {
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        return read(path, &stem);
    }
    find("playbooks", name_or_path).unwrap_or_else(|| {
        Err(Error::Usage(format!(
            "no playbook named `{name_or_path}` in ./playbooks, {}, or the built-in set (see `runbook list`)",
            locations::config_dir().join("playbooks").display()
        )))
    })
}

/// Finds a stdlib module for `import "NAME"`.
pub fn module(name: &str) -> Option<Result<SourceFile>> {
    find("stdlib", name)
}

/// The built-in copy of a playbook, for `eject`.
pub fn builtin_playbook(name: &str) -> Option<&'static str> {
    embedded::PLAYBOOKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// Every playbook visible by name, the winning copy of each, sorted by name.
pub fn all_playbooks() -> Vec<Result<SourceFile>> {
    all("playbooks")
}

/// Every stdlib module visible by name, the winning copy of each, sorted by name.
pub fn all_modules() -> Vec<Result<SourceFile>> {
    all("stdlib")
}

fn all(kind: &str) -> Vec<Result<SourceFile>> {
    let mut names: Vec<String> = builtins(kind).iter().map(|(n, _)| n.to_string()).collect();
    for dir in search_dirs(kind) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.filter_map(std::result::Result::ok) {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "rhai") {
                    if let Some(stem) = path.file_stem() {
                        names.push(stem.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names.iter().filter_map(|n| find(kind, n)).collect()
}
