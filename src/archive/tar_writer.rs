//! A directory as a GNU tar stream, the way `tar --sparse --numeric-owner -C DIR -c .` writes
//! it: entries sorted by name, owners as numbers, modes, mtimes, symlinks, hard links once,
//! sparse files as their data segments only. A file that shrinks or grows while it is read
//! still yields a well-formed archive (padded or cut to the size in its header) and is
//! reported, as GNU tar's "file changed as we read it".

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use tar::{EntryType, GnuExtSparseHeader, Header};

use super::{Error, Problem, Stop};

/// Per read: large enough that syscalls do not show in a profile.
const BUFFER: usize = 1 << 20;
/// The GNU header holds four sparse segments; each extension block 21 more.
const SEGMENTS_IN_HEADER: usize = 4;

/// What a directory walk put in the archive and what it could not.
#[derive(Debug, Default)]
pub(crate) struct TreeReport {
    /// Entries written, the top directory included.
    pub entries: u64,
    /// Paths that cannot be archived (sockets, FIFOs, device nodes), relative to the top.
    pub skipped: Vec<String>,
    /// Files whose size changed while they were read.
    pub changed: Vec<String>,
}

/// Writes `root` as a tar stream to `out` (the top directory as `.`, the rest relative to
/// it), returning `out` after the end-of-archive blocks. `dest` names the archive in errors.
pub(crate) fn write_tree<W: Write>(
    root: &Path,
    out: W,
    dest: &Path,
    stop: Option<&Stop>,
) -> Result<(W, TreeReport), Error> {
    let mut tree = TreeWriter {
        builder: tar::Builder::new(out),
        dest,
        stop,
        links: HashMap::new(),
        buf: vec![0; BUFFER],
        report: TreeReport::default(),
    };
    tree.walk(root, Path::new("."))?;
    let TreeWriter {
        builder, report, ..
    } = tree;
    let out = builder
        .into_inner()
        .map_err(|e| Error::from_io(e, dest, "write"))?;
    Ok((out, report))
}

struct TreeWriter<'a, W: Write> {
    builder: tar::Builder<W>,
    dest: &'a Path,
    stop: Option<&'a Stop>,
    /// (device, inode) of files with several links → the archive name of the first one.
    links: HashMap<(u64, u64), PathBuf>,
    buf: Vec<u8>,
    report: TreeReport,
}

fn read_error<'a>(path: &'a Path, action: &str) -> impl FnOnce(io::Error) -> Error + 'a {
    let action = action.to_string();
    move |e| Error::io(path, action, e)
}

fn header_for(meta: &Metadata, kind: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(size);
    header
}

impl<W: Write> TreeWriter<'_, W> {
    fn check_stop(&self) -> Result<(), Error> {
        match self.stop.and_then(|stop| stop()) {
            Some(reason) => Err(Error::new(self.dest, Problem::Interrupted(reason))),
            None => Ok(()),
        }
    }

    fn write_error(&self) -> impl FnOnce(io::Error) -> Error + '_ {
        move |e| Error::from_io(e, self.dest, "write")
    }

    fn walk(&mut self, path: &Path, name: &Path) -> Result<(), Error> {
        self.check_stop()?;
        let meta = fs::symlink_metadata(path).map_err(read_error(path, "read metadata of"))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            let header = header_for(&meta, EntryType::Directory, 0);
            self.append(header, name)?;
            let mut children: Vec<OsString> = fs::read_dir(path)
                .map_err(read_error(path, "list"))?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(read_error(path, "list"))?;
            children.sort();
            for child in children {
                let child_name = if name == Path::new(".") {
                    PathBuf::from(&child)
                } else {
                    name.join(&child)
                };
                self.walk(&path.join(&child), &child_name)?;
            }
        } else if kind.is_file() {
            self.append_file(path, name, &meta)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(read_error(path, "read the symlink"))?;
            let mut header = header_for(&meta, EntryType::Symlink, 0);
            self.builder
                .append_link(&mut header, name, &target)
                .map_err(|e| Error::from_io(e, path, "archive the symlink"))?;
            self.report.entries += 1;
        } else {
            let what = if kind.is_socket() {
                "socket"
            } else if kind.is_fifo() {
                "FIFO"
            } else {
                "device node"
            };
            self.report
                .skipped
                .push(format!("{} ({what})", name.display()));
        }
        Ok(())
    }

    fn append(&mut self, mut header: Header, name: &Path) -> Result<(), Error> {
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| Error::from_io(e, self.dest, "write"))?;
        self.report.entries += 1;
        Ok(())
    }

    fn append_file(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<(), Error> {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let mut header = header_for(meta, EntryType::Link, 0);
                self.builder
                    .append_link(&mut header, name, &first)
                    .map_err(|e| Error::from_io(e, self.dest, "write"))?;
                self.report.entries += 1;
                return Ok(());
            }
            self.links.insert(key, name.to_path_buf());
        }
        let mut file = File::open(path).map_err(read_error(path, "open"))?;
        let size = meta.len();
        let segments = if meta.blocks() * 512 < size {
            data_segments(&file, size).map_err(read_error(path, "map the holes of"))?
        } else {
            None
        };
        let mut complete = true;
        match segments {
            None => {
                let header = header_for(meta, EntryType::Regular, size);
                self.append(header, name)?;
                complete &= self.copy(&mut file, path, size)?;
                self.pad(size)?;
            }
            Some(segments) => {
                let stored: u64 = segments.iter().map(|s| s.1).sum();
                let mut header = header_for(meta, EntryType::GNUSparse, stored);
                let gnu = header.as_gnu_mut().expect("a GNU header");
                gnu.set_real_size(size);
                for (slot, &(offset, length)) in gnu.sparse.iter_mut().zip(&segments) {
                    slot.set_offset(offset);
                    slot.set_length(length);
                }
                gnu.set_is_extended(segments.len() > SEGMENTS_IN_HEADER);
                self.append(header, name)?;
                self.write_extension_blocks(&segments[SEGMENTS_IN_HEADER.min(segments.len())..])?;
                for &(offset, length) in &segments {
                    file.seek(SeekFrom::Start(offset))
                        .map_err(read_error(path, "seek in"))?;
                    complete &= self.copy(&mut file, path, length)?;
                }
                self.pad(stored)?;
            }
        }
        // Growth is only visible after the fact: a file that grew was cut at its header size.
        let now = file.metadata().map(|m| m.len()).unwrap_or(size);
        if !complete || now != size {
            self.report.changed.push(name.display().to_string());
        }
        Ok(())
    }

    fn write_extension_blocks(&mut self, rest: &[(u64, u64)]) -> Result<(), Error> {
        let mut chunks = rest.chunks(21).peekable();
        while let Some(chunk) = chunks.next() {
            let mut ext = GnuExtSparseHeader::new();
            for (slot, &(offset, length)) in ext.sparse.iter_mut().zip(chunk) {
                slot.set_offset(offset);
                slot.set_length(length);
            }
            ext.set_is_extended(chunks.peek().is_some());
            self.builder
                .get_mut()
                .write_all(ext.as_bytes())
                .map_err(self.write_error())?;
        }
        Ok(())
    }

    /// Copies exactly `length` bytes of `file`; if it ends early, pads with zeros and
    /// returns false.
    fn copy(&mut self, file: &mut File, path: &Path, mut length: u64) -> Result<bool, Error> {
        let mut complete = true;
        while length > 0 {
            self.check_stop()?;
            let want = self
                .buf
                .len()
                .min(usize::try_from(length).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    self.buf[..want].fill(0);
                    complete = false;
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(path, "read", e)),
            };
            let out = self.builder.get_mut();
            out.write_all(&self.buf[..n])
                .map_err(|e| Error::from_io(e, self.dest, "write"))?;
            length -= n as u64;
        }
        Ok(complete)
    }

    fn pad(&mut self, length: u64) -> Result<(), Error> {
        let rest = (512 - length % 512) % 512;
        let zeros = [0u8; 512];
        self.builder
            .get_mut()
            .write_all(&zeros[..rest as usize])
            .map_err(self.write_error())
    }
}

/// The data segments (offset, length) of a file with holes, with GNU tar's final
/// zero-length segment at the end; `None` when it turns out to have no holes.
fn data_segments(file: &File, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let seek = |offset: u64, whence| -> io::Result<Option<u64>> {
        let offset = i64::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: lseek on a file descriptor we own; no memory is involved.
        match unsafe { libc::lseek(file.as_raw_fd(), offset, whence) } {
            -1 => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
                e => Err(e),
            },
            at => Ok(Some(at as u64)),
        }
    };
    let mut segments = Vec::new();
    let mut at = 0;
    while at < size {
        let Some(start) = seek(at, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        if start >= end {
            break;
        }
        segments.push((start, end - start));
        at = end;
    }
    if segments.len() == 1 && segments[0] == (0, size) {
        return Ok(None);
    }
    segments.push((size, 0));
    Ok(Some(segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_mapped_and_dense_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(64 << 20).unwrap();
        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        f.sync_all().unwrap();
        let segments = data_segments(&f, 64 << 20).unwrap().unwrap();
        assert_eq!(segments, vec![(32 << 20, 4096), (64 << 20, 0)]);

        let dense = dir.path().join("dense");
        fs::write(&dense, vec![1u8; 10_000]).unwrap();
        let f = File::open(&dense).unwrap();
        assert_eq!(data_segments(&f, 10_000).unwrap(), None);
    }
}
