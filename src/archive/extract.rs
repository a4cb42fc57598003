//! A tar stream into a directory, kept inside it. Refused, with the entry named: absolute
//! paths, `..`, writing through a symlink (one from the archive or one already there), hard
//! links out of the target, device nodes and FIFOs, and entries claiming more bytes than the
//! limit or than the disk has free. Kept: numeric owners (as root), modes, mtimes, symlinks
//! (created as they are, never followed), hard links, empty directories, sparse files.

use std::cell::RefCell;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tar::EntryType;

use super::entry_rules::{safe_components, EntryRules, SpecialFiles};
use super::{Error, Problem, Stop};

/// Per read of entry data.
const BUFFER: usize = 1 << 20;

/// How [`extract`] writes into its target.
#[derive(Clone, Default)]
pub struct ExtractOptions {
    /// The archive the stream comes from, named in errors (else the target directory is).
    pub source: Option<PathBuf>,
    /// Names the artifact in errors.
    pub artifact: Option<String>,
    /// Refuse an archive whose entries claim more bytes than this, in total.
    pub max_bytes: Option<u64>,
    /// Give entries their recorded numeric owners (needs root).
    pub owners: bool,
    /// Checked between buffers.
    pub stop: Option<Stop>,
}

impl ExtractOptions {
    /// Owners restored when running as root, no size limit beyond the free disk space.
    pub fn new() -> Self {
        ExtractOptions {
            // SAFETY: geteuid has no preconditions and cannot fail.
            owners: unsafe { libc::geteuid() } == 0,
            ..ExtractOptions::default()
        }
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// Entries extracted (directories, files, links).
    pub entries: u64,
    /// Bytes of file content (sparse files count their full size).
    pub bytes: u64,
    /// SHA-256 of the archive file, when extracted by [`unpack`].
    pub sha256: Option<String>,
}

/// One entry of an archive, as `list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `other`.
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The target of a symlink or hard link.
    pub link: Option<String>,
}

/// The entries of a tar stream, in order. An entry that breaks the extraction rules
/// ([`EntryRules`]) fails the listing; device nodes and FIFOs are listed.
pub fn list(tar: impl Read, source: &Path) -> Result<Vec<EntryInfo>, Error> {
    let mut entries = Vec::new();
    let mut rules = EntryRules::new(SpecialFiles::Any);
    check_stream(tar, source, &mut rules, None, |info| {
        entries.push(info.clone());
        Ok(())
    })?;
    Ok(entries)
}

/// Extracts a tar stream into `dir` (created if missing), refusing anything that would
/// land outside it.
pub fn extract(tar: impl Read, dir: &Path, options: &ExtractOptions) -> Result<Extracted, Error> {
    let source = options.source.clone().unwrap_or_else(|| dir.to_path_buf());
    let artifact = options.artifact.as_deref();
    fs::create_dir_all(dir)
        .map_err(|e| Error::io(dir, "create the target directory", e).for_artifact(artifact))?;
    let root = fs::canonicalize(dir)
        .map_err(|e| Error::io(dir, "open the target directory", e).for_artifact(artifact))?;
    let mut extraction = Extraction {
        root,
        source,
        options,
        buf: vec![0; BUFFER],
        deferred: Vec::new(),
        last_parent: None,
        // Nothing here creates device nodes or FIFOs: a directory target never gets them.
        rules: EntryRules::new(SpecialFiles::Refused(String::new())),
        done: Extracted::default(),
    };
    extraction
        .run(tar)
        .and_then(|()| extraction.apply_directory_metadata())
        .map_err(|e| e.for_artifact(artifact))?;
    Ok(extraction.done)
}

/// Where [`check_stream`] passes the bytes of a stream on to.
pub type Forward<'a> = &'a mut dyn FnMut(&[u8]) -> io::Result<()>;

/// How many bytes of headers (PAX and GNU extensions included) one entry may have.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Checks a tar stream entry by entry with `rules`, calling `visit` with each entry, and when
/// `forward` is given hands it the stream's own bytes as they are read: an entry's header
/// only after the entry passed, its content as it is read, the end-of-archive blocks last,
/// once the input has been read to its end (so its checksum is checked before the consumer
/// sees the archive end). Nothing after the end-of-archive marker is forwarded. Memory stays
/// bounded: one buffer of content and one entry's headers.
pub fn check_stream(
    tar: impl Read,
    source: &Path,
    rules: &mut EntryRules,
    mut forward: Option<Forward<'_>>,
    mut visit: impl FnMut(&EntryInfo) -> Result<(), Error>,
) -> Result<(), Error> {
    let taken = Rc::new(RefCell::new(Vec::new()));
    let recorder = Recorder {
        inner: io::BufReader::with_capacity(BUFFER, tar),
        taken: forward.as_ref().map(|_| taken.clone()),
    };
    let mut archive = tar::Archive::new(recorder);
    let mut buf = vec![0; BUFFER];
    let pass = |forward: &mut Option<Forward<'_>>| {
        let Some(forward) = forward.as_mut() else {
            return Ok(());
        };
        let chunk = std::mem::take(&mut *taken.borrow_mut());
        forward(&chunk).map_err(|e| Error::from_io(e, source, "pass on"))
    };
    let entries = archive
        .entries()
        .map_err(|e| stream_error(e, source, None))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_error(e, source, None))?;
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let name = display(&raw);
        if !is_metadata(kind) {
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            rules.check(&raw, kind, link.as_deref()).map_err(|reason| {
                Error::new(
                    source,
                    Problem::Unsafe {
                        entry: name.clone(),
                        reason,
                    },
                )
            })?;
            visit(&entry_info(&entry, kind, name.clone(), source)?)?;
        }
        if taken.borrow().len() > MAX_HEADER_BYTES {
            return Err(Error::new(
                source,
                Problem::Entry {
                    entry: name,
                    detail: format!("its headers take more than {MAX_HEADER_BYTES} bytes"),
                },
            ));
        }
        pass(&mut forward)?;
        loop {
            match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => pass(&mut forward)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(e, source, Some(&name))),
            }
        }
    }
    let mut inner = archive.into_inner();
    // Read to the end: a stream that fails its checksum fails here, before the end is passed on.
    inner.taken = None;
    io::copy(&mut inner, &mut io::sink()).map_err(|e| stream_error(e, source, None))?;
    if let Some(forward) = forward.as_mut() {
        let mut end = std::mem::take(&mut *taken.borrow_mut());
        // The padding of the last entry (under 512 bytes) and the zero block the reader
        // stopped at, if the stream had one: completed to the two zero blocks of an end marker.
        let missing = if end.len() >= 512 { 512 } else { 1024 };
        end.resize(end.len() + missing, 0);
        forward(&end).map_err(|e| Error::from_io(e, source, "pass on"))?;
    }
    Ok(())
}

/// Reads through, keeping a copy of what was read until it is taken.
struct Recorder<R> {
    inner: R,
    taken: Option<Rc<RefCell<Vec<u8>>>>,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(taken) = &self.taken {
            taken.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

fn entry_info<R: Read>(
    entry: &tar::Entry<'_, R>,
    kind: EntryType,
    name: String,
    source: &Path,
) -> Result<EntryInfo, Error> {
    let header = entry.header();
    let field = |value: io::Result<u64>, what: &str| {
        value.map_err(|e| {
            Error::new(
                source,
                Problem::Entry {
                    entry: name.clone(),
                    detail: format!("its {what} is unreadable ({e})"),
                },
            )
        })
    };
    Ok(EntryInfo {
        kind: kind_name(kind),
        size: entry.size(),
        mode: field(header.mode().map(u64::from), "mode")? as u32 & 0o7777,
        uid: field(header.uid(), "owner")?,
        gid: field(header.gid(), "group")?,
        mtime: field(header.mtime(), "mtime")?,
        link: entry.link_name_bytes().map(|l| display(&l)),
        path: name,
    })
}

/// Headers that describe the next entry or the archive, not a file.
fn is_metadata(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
    ) || kind.is_gnu_longlink()
        || kind.as_byte() == b'V'
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => "file",
        EntryType::Directory => "dir",
        EntryType::Symlink => "symlink",
        EntryType::Link => "hardlink",
        EntryType::Char => "char",
        EntryType::Block => "block",
        EntryType::Fifo => "fifo",
        _ => "other",
    }
}

fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// An error of the stream itself: ours (checksum, decryption) as they are, else the tar
/// format's, with the entry it happened in.
fn stream_error(e: io::Error, source: &Path, entry: Option<&str>) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::from_io(e, source, "read");
    }
    let problem = match (e.kind(), entry) {
        (io::ErrorKind::UnexpectedEof, Some(entry)) => Problem::Entry {
            entry: entry.to_string(),
            detail: "the archive ends inside it (truncated)".into(),
        },
        (io::ErrorKind::UnexpectedEof, None) => {
            Problem::Truncated("the tar stream ends inside a header".into())
        }
        (_, Some(entry)) => Problem::Entry {
            entry: entry.to_string(),
            detail: e.to_string(),
        },
        (_, None) => Problem::Malformed(e.to_string()),
    };
    Error::new(source, problem)
}

/// What an entry records about itself besides its content.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

struct Extraction<'a> {
    root: PathBuf,
    source: PathBuf,
    options: &'a ExtractOptions,
    buf: Vec<u8>,
    /// Directories get their mode and mtime last, deepest first: writing into them would
    /// change their mtime, and a read-only mode would stop the writing.
    deferred: Vec<(PathBuf, Meta)>,
    /// The parent directory checked last: consecutive entries usually share it.
    last_parent: Option<PathBuf>,
    /// The archive-level rules; the disk-level ones (symlinks already there) are checked here.
    rules: EntryRules,
    done: Extracted,
}

impl Extraction<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::new(
            &self.source,
            Problem::Unsafe {
                entry: entry.to_string(),
                reason: reason.into(),
            },
        )
    }

    fn entry_error(&self, entry: &str, detail: impl Into<String>) -> Error {
        Error::new(
            &self.source,
            Problem::Entry {
                entry: entry.to_string(),
                detail: detail.into(),
            },
        )
    }

    fn io_error(&self, entry: &str, action: &str, e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::from_io(e, &self.source, "read");
        }
        self.entry_error(entry, format!("cannot {action}: {e}"))
    }

    fn check_stop(&self) -> Result<(), Error> {
        match self.options.stop.as_ref().and_then(|stop| stop()) {
            Some(reason) => Err(Error::new(&self.source, Problem::Interrupted(reason))),
            None => Ok(()),
        }
    }

    fn run(&mut self, tar: impl Read) -> Result<(), Error> {
        let mut archive = tar::Archive::new(tar);
        let entries = archive
            .entries()
            .map_err(|e| stream_error(e, &self.source, None))?;
        for entry in entries {
            self.check_stop()?;
            let mut entry = entry.map_err(|e| stream_error(e, &self.source, None))?;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if is_metadata(kind) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = display(&raw);
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let parts = self
            .rules
            .check(&raw, kind, link.as_deref())
            .map_err(|reason| self.refuse(&name, reason))?;
        let header = entry.header();
        let number = |value: io::Result<u64>, what: &str| {
            value.map_err(|e| self.entry_error(&name, format!("its {what} is unreadable ({e})")))
        };
        let meta = Meta {
            mode: number(header.mode().map(u64::from), "mode")? as u32 & 0o7777,
            uid: number(header.uid(), "owner")?,
            gid: number(header.gid(), "group")?,
            mtime: number(header.mtime(), "mtime")?,
        };

        let Some((last, parents)) = parts.split_last() else {
            // `.` itself: the target directory's own metadata.
            self.deferred.push((self.root.clone(), meta));
            self.done.entries += 1;
            return Ok(());
        };

        let parent = self.prepare_parents(&name, parents)?;
        let target = parent.join(last);
        self.clear_place(&name, &target, kind == EntryType::Directory)?;

        match kind {
            EntryType::Directory => {
                if !target.is_dir() {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&target)
                        .map_err(|e| self.io_error(&name, "create the directory", e))?;
                }
                self.deferred.push((target, meta));
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| self.entry_error(&name, "is a symlink without a target"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(|e| self.io_error(&name, "create the symlink", e))?;
                self.set_metadata(&target, meta, false).map_err(|e| {
                    self.io_error(&name, "set the owner and mtime of the symlink", e)
                })?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let original = self.link_source(&name, &link)?;
                fs::hard_link(&original, &target)
                    .map_err(|e| self.io_error(&name, "create the hard link", e))?;
            }
            _ => {
                self.write_file(entry, &name, &target)?;
                self.set_metadata(&target, meta, true).map_err(|e| {
                    self.io_error(&name, "set the owner, mode and mtime of the file", e)
                })?;
            }
        }
        self.done.entries += 1;
        Ok(())
    }

    /// Walks (creating as needed) the directories above an entry, refusing to pass through
    /// a symlink or to treat a file as a directory.
    fn prepare_parents(&mut self, name: &str, parents: &[OsString]) -> Result<PathBuf, Error> {
        let mut at = self.root.clone();
        at.extend(parents);
        if self.last_parent.as_ref() == Some(&at) {
            return Ok(at);
        }
        let mut at = self.root.clone();
        for (depth, part) in parents.iter().enumerate() {
            at.push(part);
            let shown = || {
                parents[..=depth]
                    .iter()
                    .map(|p| p.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            match fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.refuse(
                        name,
                        format!("would be written through the symlink `{}`", shown()),
                    ))
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(self
                        .entry_error(name, format!("its parent `{}` is not a directory", shown())))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&at)
                    .map_err(|e| self.io_error(name, "create its parent directory", e))?,
                Err(e) => return Err(self.io_error(name, "inspect its parent directory", e)),
            }
        }
        self.last_parent = Some(at.clone());
        Ok(at)
    }

    /// Makes room for an entry: what is there is removed (never written through), except a
    /// directory, which only a directory entry may meet.
    fn clear_place(&self, name: &str, target: &Path, is_dir: bool) -> Result<(), Error> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() && is_dir => Ok(()),
            Ok(meta) if meta.is_dir() => {
                Err(self.entry_error(name, "would replace a directory that is already there"))
            }
            Ok(_) => fs::remove_file(target)
                .map_err(|e| self.io_error(name, "replace the file that is already there", e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error(name, "inspect its place", e)),
        }
    }

    /// The file a hard link entry points to: inside the target, reached without symlinks.
    fn link_source(&self, name: &str, link: &[u8]) -> Result<PathBuf, Error> {
        let parts = safe_components(link).map_err(|reason| {
            self.refuse(
                name,
                format!("is a hard link whose target `{}` {reason}", display(link)),
            )
        })?;
        if parts.is_empty() {
            return Err(self.refuse(name, "is a hard link to the target directory"));
        }
        let (last, parents) = parts.split_last().expect("checked non-empty");
        let mut at = self.root.clone();
        for part in parents {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.refuse(
                        name,
                        format!("is a hard link through a symlink (`{}`)", display(link)),
                    ))
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(self.entry_error(
                        name,
                        format!(
                            "the target `{}` of the hard link is not reachable",
                            display(link)
                        ),
                    ))
                }
                Err(e) => return Err(self.io_error(name, "find the target of the hard link", e)),
            }
        }
        at.push(last);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => Err(self.refuse(name, "is a hard link to a directory")),
            Ok(_) => Ok(at),
            Err(e) => Err(self.io_error(
                name,
                &format!("find the target `{}` of the hard link", display(link)),
                e,
            )),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        target: &Path,
    ) -> Result<(), Error> {
        let claimed = entry.size();
        let stored = entry.header().entry_size().unwrap_or(claimed);
        if let Some(limit) = self.options.max_bytes {
            if self.done.bytes.saturating_add(claimed) > limit {
                return Err(self.refuse(
                    name,
                    format!(
                        "claims {claimed} bytes, more than the {limit} allowed for this archive"
                    ),
                ));
            }
        }
        if stored > 0 {
            if let Some(free) = free_bytes(target.parent().unwrap_or(&self.root)) {
                if stored > free {
                    return Err(self.refuse(
                        name,
                        format!(
                            "claims {stored} bytes, more than the {free} free in {}",
                            self.root.display()
                        ),
                    ));
                }
            }
        }
        let sparse = entry.header().entry_type().is_gnu_sparse();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(|e| self.io_error(name, "create the file", e))?;
        let copied = self.copy_into(entry, name, &mut file, sparse, claimed);
        if copied.is_err() {
            // A half-written file must not look restored.
            let _ = fs::remove_file(target);
        }
        self.done.bytes += copied?;
        Ok(())
    }

    fn copy_into<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        file: &mut fs::File,
        sparse: bool,
        claimed: u64,
    ) -> Result<u64, Error> {
        let mut written = 0u64;
        loop {
            self.check_stop()?;
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(e, &self.source, Some(name))),
            };
            let chunk = &self.buf[..n];
            // In a sparse entry the holes arrive as runs of zeros: seek over them.
            let result = if sparse && chunk.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(n as i64)).map(|_| ())
            } else {
                file.write_all(chunk)
            };
            result.map_err(|e| self.io_error(name, "write the file", e))?;
            written += n as u64;
        }
        if written < claimed {
            return Err(self.entry_error(name, "the archive ends inside it (truncated)"));
        }
        if sparse {
            file.set_len(written)
                .map_err(|e| self.io_error(name, "set the size of the file", e))?;
        }
        Ok(written)
    }

    /// Owner first (a chown clears setuid bits), then mode, then mtime (last: the other
    /// two would not change it, but writing would).
    fn set_metadata(&self, path: &Path, meta: Meta, follow: bool) -> io::Result<()> {
        if self.options.owners {
            let (uid, gid) = (meta.uid as u32, meta.gid as u32);
            if follow {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            } else {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
            }
        }
        if follow {
            fs::set_permissions(path, Permissions::from_mode(meta.mode))?;
        }
        set_mtime(path, meta.mtime, follow)
    }

    fn apply_directory_metadata(&mut self) -> Result<(), Error> {
        let deferred = std::mem::take(&mut self.deferred);
        for (path, meta) in deferred.into_iter().rev() {
            let shown = path
                .strip_prefix(&self.root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            self.set_metadata(&path, meta, true).map_err(|e| {
                self.io_error(
                    if shown.is_empty() { "." } else { &shown },
                    "set the owner, mode and mtime of the directory",
                    e,
                )
            })?;
        }
        Ok(())
    }
}

/// Sets atime and mtime (whole seconds, as tar records them); `follow: false` for symlinks.
fn set_mtime(path: &Path, mtime: u64, follow: bool) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let time = libc::timespec {
        tv_sec: libc::time_t::try_from(mtime).unwrap_or(libc::time_t::MAX),
        tv_nsec: 0,
    };
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: a valid C string and two timespecs, as utimensat expects.
    if unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), [time, time].as_ptr(), flags) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we pass; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
