//! The file roots a run may touch. Every path a primitive reads or writes is resolved here:
//! symlinks are followed for the part that exists, `..` is refused in the part that does not,
//! and the result must lie under one of the allowed roots.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

/// The allowed roots of one run.
#[derive(Debug, Default)]
pub struct Sandbox {
    roots: RwLock<Vec<PathBuf>>,
}

impl Sandbox {
    /// A sandbox with the given roots (created if missing is not its job: missing roots are
    /// kept lexically and canonicalised once they exist).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        let sandbox = Sandbox::default();
        for root in roots {
            sandbox.allow(&root);
        }
        sandbox
    }

    /// Adds a root (a directory the operator named, a temp dir the run created).
    pub fn allow(&self, root: &Path) {
        let root = resolve(root).unwrap_or_else(|_| absolute(root));
        let mut roots = self.roots.write().unwrap_or_else(|e| e.into_inner());
        if !roots.contains(&root) {
            roots.push(root);
        }
    }

    /// The roots, for error messages and `runbook show`.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.roots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves `path` and checks that it stays inside an allowed root.
    pub fn check(&self, path: &str) -> Result<PathBuf, String> {
        let resolved = resolve(Path::new(path)).map_err(|e| format!("path `{path}`: {e}"))?;
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        if roots.iter().any(|root| resolved.starts_with(root)) {
            Ok(resolved)
        } else {
            let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            Err(format!(
                "path `{path}` resolves to {} which is outside the allowed roots ({}); \
                 allow it with --allow-path",
                resolved.display(),
                list.join(", ")
            ))
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    }
}

/// Canonicalises the longest existing prefix of `path` (following symlinks) and appends the
/// rest, which must not contain `..`.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let path = absolute(path);
    let mut existing = path.clone();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        if existing.ends_with("..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "`..` in a path that does not exist",
            ));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            // `..` or `/` at the end of a missing path: handled by the component check below.
            _ => break,
        }
    }
    let mut resolved = existing.canonicalize()?;
    for part in rest.iter().rev() {
        if Path::new(part)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "`..` in a path that does not exist",
            ));
        }
        resolved.push(part);
    }
    if resolved.components().any(|c| c == Component::ParentDir) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "`..` in a path that does not exist",
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_a_root_are_allowed_even_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new([dir.path().to_path_buf()]);
        let p = dir.path().join("new/sub/file.txt");
        assert!(sandbox.check(p.to_str().unwrap()).is_ok());
    }

    #[test]
    fn dotdot_escape_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inside")).unwrap();
        let sandbox = Sandbox::new([dir.path().join("inside")]);
        let p = format!("{}/inside/../outside.txt", dir.path().display());
        assert!(sandbox
            .check(&p)
            .unwrap_err()
            .contains("outside the allowed roots"));
        let p = format!("{}/inside/missing/../../x", dir.path().display());
        assert!(sandbox.check(&p).is_err());
    }

    #[test]
    fn symlink_escape_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        std::os::unix::fs::symlink("/etc", inside.join("link")).unwrap();
        let sandbox = Sandbox::new([inside.clone()]);
        let p = inside.join("link/passwd");
        assert!(sandbox.check(p.to_str().unwrap()).is_err());
    }
}
