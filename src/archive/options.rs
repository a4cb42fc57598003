//! How an archive is compressed and encrypted, and what opens it.

use std::fmt;
use std::sync::Arc;

use crate::secrets::Secret;

/// The scrypt work factor (log2 N) used for passphrases unless another is chosen: what the
/// standard `age` tool uses, about 0.5 s here, and fixed so a file made on a fast machine
/// opens on a slow one (age's own default calibrates to the machine it runs on).
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// The lowest work factor accepted when sealing; below it a passphrase is cheap to guess.
pub const MIN_WORK_FACTOR: u8 = 10;
/// The highest work factor accepted, sealing or opening: the `age` tool's own limit (2^22
/// takes 4 GiB of memory and seconds of CPU; a crafted header could ask for far more).
pub const MAX_WORK_FACTOR: u8 = 22;

/// Asked between buffers of a long pass; `Some(reason)` stops it (Ctrl-C, `--timeout`).
pub type Stop = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How the data is compressed before it is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Zstandard at `level` (1-19) with `workers` compression threads (0: in the caller).
    Zstd { level: i32, workers: u32 },
    /// gzip at `level` (1-9), for tools that only know gzip.
    Gzip { level: u32 },
    /// Stored as is (data that is already compressed).
    None,
}

impl Default for Compression {
    /// zstd level 3 with two workers: about 2.5x the `tar | zstd -T0 | age` shell pipeline.
    fn default() -> Self {
        Compression::Zstd {
            level: 3,
            workers: 2,
        }
    }
}

impl Compression {
    /// Parses a name (`zstd`, `gzip`, `none`) with an optional level and worker count.
    pub fn parse(name: &str, level: Option<i64>, workers: Option<i64>) -> Result<Self, String> {
        let bounded = |what: &str, value: i64, low: i64, high: i64| {
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(format!(
                    "{name} {what} must be between {low} and {high}, got {value}"
                ))
            }
        };
        match name {
            "zstd" | "zst" => Ok(Compression::Zstd {
                level: bounded("level", level.unwrap_or(3), 1, 19)? as i32,
                workers: bounded("workers", workers.unwrap_or(2), 0, 64)? as u32,
            }),
            "gzip" | "gz" => Ok(Compression::Gzip {
                level: bounded("level", level.unwrap_or(6), 1, 9)? as u32,
            }),
            "none" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression `{other}` (use zstd, gzip or none)"
            )),
        }
    }

    /// The name recorded in manifests: `zstd`, `gzip` or `none`.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::Zstd { .. } => "zstd",
            Compression::Gzip { .. } => "gzip",
            Compression::None => "none",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd { level, workers } => {
                write!(f, "zstd level {level}, {workers} workers")
            }
            Compression::Gzip { level } => write!(f, "gzip level {level}"),
            Compression::None => f.write_str("no compression"),
        }
    }
}

/// How an archive is encrypted (age, readable by the standard `age` tool).
#[derive(Clone)]
pub enum Encryption {
    /// A passphrase, stretched with scrypt at 2^`work_factor`.
    Passphrase { passphrase: Secret, work_factor: u8 },
    /// X25519 recipients (`age1...`): whoever holds one of their identities can open it,
    /// so a host can write backups it cannot read back.
    Recipients(Vec<age::x25519::Recipient>),
    /// Not encrypted: only when asked for explicitly.
    None,
}

impl Encryption {
    /// The name recorded in manifests: `age-passphrase`, `age-recipients` or `none`.
    pub fn name(&self) -> &'static str {
        match self {
            Encryption::Passphrase { .. } => "age-passphrase",
            Encryption::Recipients(_) => "age-recipients",
            Encryption::None => "none",
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::Passphrase { work_factor, .. } => {
                write!(f, "age passphrase (scrypt 2^{work_factor})")
            }
            Encryption::Recipients(r) if r.len() == 1 => write!(f, "age to {}", r[0]),
            Encryption::Recipients(r) => write!(f, "age to {} recipients", r.len()),
            Encryption::None => f.write_str("not encrypted"),
        }
    }
}

/// What opens an encrypted archive.
#[derive(Clone)]
pub enum Key {
    /// The passphrase it was sealed with.
    Passphrase(Secret),
    /// X25519 identities (`AGE-SECRET-KEY-1...`), as read from an identity file.
    Identities(Vec<age::x25519::Identity>),
    /// No key: the file must not be encrypted.
    None,
}

/// How [`seal`](super::seal) and [`seal_dir`](super::seal_dir) write an archive.
#[derive(Clone)]
pub struct SealOptions {
    pub compression: Compression,
    pub encryption: Encryption,
    /// Names the artifact in errors ("volume `pgdata` of stack `shop`").
    pub artifact: Option<String>,
    /// Checked between buffers; stops the pass and removes the temporary file.
    pub stop: Option<Stop>,
}

impl SealOptions {
    /// zstd level 3 with two workers, encrypted as given.
    pub fn new(encryption: Encryption) -> Self {
        SealOptions {
            compression: Compression::default(),
            encryption,
            artifact: None,
            stop: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_names_levels_and_bounds() {
        assert_eq!(
            Compression::parse("zstd", None, None).unwrap(),
            Compression::default()
        );
        assert_eq!(
            Compression::parse("gzip", Some(9), None).unwrap(),
            Compression::Gzip { level: 9 }
        );
        assert_eq!(
            Compression::parse("zstd", Some(25), None).unwrap_err(),
            "zstd level must be between 1 and 19, got 25"
        );
        assert!(Compression::parse("lz4", None, None)
            .unwrap_err()
            .contains("unknown compression `lz4`"));
    }

    #[test]
    fn encryption_never_shows_the_passphrase() {
        let e = Encryption::Passphrase {
            passphrase: Secret::new("canary-passphrase-xyz"),
            work_factor: 18,
        };
        assert_eq!(e.to_string(), "age passphrase (scrypt 2^18)");
        assert_eq!(e.name(), "age-passphrase");
    }
}
