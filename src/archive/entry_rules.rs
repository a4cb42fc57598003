//! The rules every tar entry meets before runbook writes it anywhere (a directory, a Docker
//! volume) or calls an archive good: no absolute paths, no `..`, nothing written through a
//! symlink the archive created earlier, no hard link leaving the tree or going through a
//! symlink, no device nodes or FIFOs unless allowed. Pure: it sees entry headers, never the
//! disk, so `extract`, `list`, `verify` and the volume import share it.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use tar::EntryType;

/// What is done with device nodes and FIFOs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecialFiles {
    /// Refused; the text continues the reason ("; the set records none in this volume").
    Refused(String),
    /// Accepted, at most this many (what the set records the original held).
    UpTo(u64),
    /// Accepted, any number (listing an archive).
    Any,
}

/// The state of the rules along one tar stream: the symlinks it created so far.
#[derive(Debug, Clone)]
pub struct EntryRules {
    special: SpecialFiles,
    symlinks: HashSet<Vec<OsString>>,
    special_seen: u64,
}

impl EntryRules {
    /// Rules for one stream, with `special` deciding device nodes and FIFOs.
    pub fn new(special: SpecialFiles) -> Self {
        EntryRules {
            special,
            symlinks: HashSet::new(),
            special_seen: 0,
        }
    }

    /// Device nodes and FIFOs met so far.
    pub fn special_files(&self) -> u64 {
        self.special_seen
    }

    /// Checks the next entry (its raw path, kind and link target) and returns its path as
    /// normal components (empty for the root), or why it is refused.
    pub fn check(
        &mut self,
        path: &[u8],
        kind: EntryType,
        link: Option<&[u8]>,
    ) -> Result<Vec<OsString>, String> {
        let parts = safe_components(path).map_err(str::to_string)?;
        if parts.is_empty() {
            if kind != EntryType::Directory {
                return Err("names the target directory but is not a directory".into());
            }
            return Ok(parts);
        }
        if let Some(through) = self.symlink_above(&parts) {
            return Err(format!("would be written through the symlink `{through}`"));
        }
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink => {}
            EntryType::Link => self.check_hard_link(link.unwrap_or_default())?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => self.check_special(kind)?,
            other => {
                return Err(format!(
                    "has an unsupported entry type `{}`",
                    other.as_byte() as char
                ))
            }
        }
        // A later entry at the same place replaces the symlink (it is removed, never followed).
        if kind == EntryType::Symlink {
            self.symlinks.insert(parts.clone());
        } else {
            self.symlinks.remove(&parts);
        }
        Ok(parts)
    }

    fn check_hard_link(&self, link: &[u8]) -> Result<(), String> {
        let shown = String::from_utf8_lossy(link);
        let target = safe_components(link)
            .map_err(|reason| format!("is a hard link whose target `{shown}` {reason}"))?;
        if target.is_empty() {
            return Err("is a hard link to the target directory".into());
        }
        if self.symlink_above(&target).is_some() {
            return Err(format!("is a hard link through a symlink (`{shown}`)"));
        }
        Ok(())
    }

    fn check_special(&mut self, kind: EntryType) -> Result<(), String> {
        let what = if kind == EntryType::Fifo {
            "is a FIFO"
        } else {
            "is a device node"
        };
        match &self.special {
            SpecialFiles::Refused(why) => return Err(format!("{what}{why}")),
            SpecialFiles::UpTo(limit) if self.special_seen >= *limit => {
                return Err(format!(
                    "{what}, one more than the {limit} device nodes and FIFOs the set records"
                ))
            }
            _ => {}
        }
        self.special_seen += 1;
        Ok(())
    }

    /// The first proper ancestor of `parts` the archive made a symlink, as `a/b`.
    fn symlink_above(&self, parts: &[OsString]) -> Option<String> {
        if self.symlinks.is_empty() {
            return None;
        }
        (1..parts.len())
            .find(|&depth| self.symlinks.contains(&parts[..depth]))
            .map(|depth| {
                parts[..depth]
                    .iter()
                    .map(|p| p.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
    }
}

/// The normal components of a path inside the archive, or why it is refused.
pub(crate) fn safe_components(raw: &[u8]) -> Result<Vec<OsString>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("has an absolute path");
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("contains `..` and would escape the target directory"),
            part => parts.push(OsStr::from_bytes(part).to_os_string()),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryType as T;

    fn rules() -> EntryRules {
        EntryRules::new(SpecialFiles::Refused(String::new()))
    }

    #[test]
    fn plain_entries_pass_with_their_components() {
        let mut r = rules();
        assert_eq!(r.check(b"./", T::Directory, None).unwrap().len(), 0);
        let parts = r.check(b"./a//b/./c", T::Regular, None).unwrap();
        assert_eq!(parts, ["a", "b", "c"].map(OsString::from));
    }

    #[test]
    fn absolute_paths_and_dot_dot_are_refused() {
        let mut r = rules();
        assert_eq!(
            r.check(b"/etc/passwd", T::Regular, None).unwrap_err(),
            "has an absolute path"
        );
        assert!(r
            .check(b"./x/../../etc", T::Directory, None)
            .unwrap_err()
            .contains("`..`"));
    }

    #[test]
    fn the_root_must_be_a_directory() {
        assert!(rules().check(b".", T::Regular, None).is_err());
    }

    #[test]
    fn writing_through_a_symlink_of_the_archive_is_refused() {
        let mut r = rules();
        r.check(b"./d", T::Directory, None).unwrap();
        r.check(b"./d/lnk", T::Symlink, Some(b"/etc")).unwrap();
        let e = r.check(b"./d/lnk/passwd", T::Regular, None).unwrap_err();
        assert_eq!(e, "would be written through the symlink `d/lnk`");
        // The symlink itself may be replaced, and then the place is a directory.
        r.check(b"./d/lnk", T::Directory, None).unwrap();
        r.check(b"./d/lnk/passwd", T::Regular, None).unwrap();
    }

    #[test]
    fn hard_links_stay_in_the_tree_and_off_symlinks() {
        let mut r = rules();
        r.check(b"a", T::Regular, None).unwrap();
        r.check(b"h", T::Link, Some(b"a")).unwrap();
        assert!(r
            .check(b"h2", T::Link, Some(b"../outside"))
            .unwrap_err()
            .contains("`..`"));
        assert!(r
            .check(b"h3", T::Link, Some(b"/etc/shadow"))
            .unwrap_err()
            .contains("absolute path"));
        r.check(b"up", T::Symlink, Some(b"..")).unwrap();
        assert_eq!(
            r.check(b"h4", T::Link, Some(b"up/secret")).unwrap_err(),
            "is a hard link through a symlink (`up/secret`)"
        );
        assert!(r.check(b"h5", T::Link, Some(b".")).is_err());
    }

    #[test]
    fn special_files_follow_the_policy() {
        let mut refused = EntryRules::new(SpecialFiles::Refused("; not recorded".into()));
        assert_eq!(
            refused.check(b"null", T::Char, None).unwrap_err(),
            "is a device node; not recorded"
        );
        assert_eq!(
            refused.check(b"pipe", T::Fifo, None).unwrap_err(),
            "is a FIFO; not recorded"
        );
        let mut counted = EntryRules::new(SpecialFiles::UpTo(1));
        counted.check(b"pipe", T::Fifo, None).unwrap();
        assert!(counted
            .check(b"sda", T::Block, None)
            .unwrap_err()
            .contains("one more than the 1"));
        let mut any = EntryRules::new(SpecialFiles::Any);
        any.check(b"a", T::Fifo, None).unwrap();
        any.check(b"b", T::Char, None).unwrap();
        assert_eq!(any.special_files(), 2);
    }

    #[test]
    fn unknown_entry_types_are_refused() {
        let e = rules().check(b"x", T::new(b'Z'), None).unwrap_err();
        assert!(e.contains("unsupported entry type `Z`"));
    }
}
