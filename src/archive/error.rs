//! Archive errors: one sentence naming the file, the artifact when known, and what is wrong.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An archive operation that failed: on which file, for which artifact, and why.
#[derive(Debug)]
pub struct Error {
    /// The file being written or read (the archive, the manifest, or the extraction target).
    pub file: PathBuf,
    /// What the file holds in the operator's words ("volume `pgdata` of stack `shop`").
    pub artifact: Option<String>,
    /// What went wrong.
    pub problem: Problem,
}

/// What went wrong, continuing the sentence that names the file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("it is age-encrypted; give a passphrase or an identity to open it")]
    NoKey,
    #[error("it is not age-encrypted, but a key was given (an unencrypted file is not trusted as an encrypted backup)")]
    NotEncrypted,
    #[error("it is encrypted with a passphrase, but an identity was given")]
    NeedsPassphrase,
    #[error(
        "it is encrypted to age recipients, but a passphrase was given; give an identity file"
    )]
    NeedsIdentity,
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("none of the given identities can open it (it is encrypted to other recipients)")]
    WrongKey,
    #[error("its scrypt work factor {required} is above the accepted maximum {limit}")]
    ExcessiveWork { required: u8, limit: u8 },
    #[error("it is not a valid age file ({0})")]
    BadHeader(String),
    #[error("it is truncated ({0})")]
    Truncated(String),
    #[error("it was altered or is corrupt ({0})")]
    Altered(String),
    #[error("its SHA-256 is {actual}, expected {expected}: the file was altered or replaced")]
    Checksum { expected: String, actual: String },
    #[error("it has {actual} bytes, expected {expected}: the file is truncated or was replaced")]
    Size { expected: u64, actual: u64 },
    #[error("its {format} data is corrupt ({detail})")]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    #[error("archive entry `{entry}` {reason}; refused")]
    Unsafe { entry: String, reason: String },
    #[error("archive entry `{entry}`: {detail}")]
    Entry { entry: String, detail: String },
    #[error("the tar stream is malformed ({0})")]
    Malformed(String),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Refused(String),
    #[error("interrupted ({0})")]
    Interrupted(String),
    #[error("it is not a valid manifest ({0})")]
    Manifest(String),
    #[error("{} of {total} artifacts do not match: {}", .mismatches.len(), .mismatches.join("; "))]
    Mismatches {
        total: usize,
        mismatches: Vec<String>,
    },
}

impl Error {
    /// An error about `file`.
    pub fn new(file: &Path, problem: Problem) -> Self {
        Error {
            file: file.to_path_buf(),
            artifact: None,
            problem,
        }
    }

    /// An I/O failure while doing `action` ("read", "create the temporary file") on `file`.
    pub fn io(file: &Path, action: impl Into<String>, source: io::Error) -> Self {
        Error::new(
            file,
            Problem::Io {
                action: action.into(),
                source,
            },
        )
    }

    /// Names the artifact the file holds, unless a name is already there.
    pub fn for_artifact(mut self, artifact: Option<&str>) -> Self {
        if self.artifact.is_none() {
            self.artifact = artifact.map(str::to_string);
        }
        self
    }

    /// Recovers an archive error that travelled through an `io::Error` (a `Read` or `Write`
    /// chain), or describes a plain I/O error as a failure to `action` on `file`.
    pub fn from_io(e: io::Error, file: &Path, action: &str) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = e.into_inner().expect("checked: it wraps an error");
            return *inner
                .downcast::<Error>()
                .expect("checked: it is an archive error");
        }
        Error::io(file, action, e)
    }
}

/// Whether an I/O error says the disk (or the user's quota) is full.
fn disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.artifact {
            Some(artifact) => write!(f, "{artifact} ({}): ", self.file.display())?,
            None => write!(f, "{}: ", self.file.display())?,
        }
        match &self.problem {
            // Every archive is written under a temporary name that is removed on failure.
            Problem::Io { source, .. } if disk_full(source) => write!(
                f,
                "the disk is full ({source}); the incomplete file was removed, nothing \
                 half-written is left: free space on {} and run again",
                self.file
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .display()
            ),
            problem => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.problem)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e.problem {
            Problem::Truncated(_) => io::ErrorKind::UnexpectedEof,
            Problem::Io { source, .. } => source.kind(),
            Problem::Interrupted(_) => io::ErrorKind::Interrupted,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_artifact_and_the_file_in_one_sentence() {
        let e = Error::new(Path::new("/b/pgdata.tar.zst.age"), Problem::WrongPassphrase)
            .for_artifact(Some("volume `pgdata`"));
        assert_eq!(
            e.to_string(),
            "volume `pgdata` (/b/pgdata.tar.zst.age): wrong passphrase"
        );
    }

    #[test]
    fn survives_a_trip_through_io_error() {
        let e = Error::new(Path::new("x.age"), Problem::Truncated("cut".into()));
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::UnexpectedEof);
        let back = Error::from_io(io, Path::new("other"), "read");
        assert_eq!(back.file, Path::new("x.age"));
        assert!(matches!(back.problem, Problem::Truncated(_)));
    }

    #[test]
    fn a_full_disk_is_said_in_words() {
        let e = Error::io(
            Path::new("/b/shop/.x.partial/pgdata.tar.zst.age"),
            "finish zstd in",
            io::Error::from_raw_os_error(libc::ENOSPC),
        )
        .for_artifact(Some("volume `pgdata`"));
        assert_eq!(
            e.to_string(),
            "volume `pgdata` (/b/shop/.x.partial/pgdata.tar.zst.age): the disk is full (No space \
             left on device (os error 28)); the incomplete file was removed, nothing half-written \
             is left: free space on /b/shop/.x.partial and run again"
        );
    }

    #[test]
    fn plain_io_errors_get_the_action_and_file() {
        let io = io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let e = Error::from_io(io, Path::new("/x"), "open");
        assert_eq!(e.to_string(), "/x: cannot open: denied");
    }
}
