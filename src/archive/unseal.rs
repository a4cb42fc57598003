//! File → decrypt → decompress, as a plain `Read`: the way back. The format is detected (age
//! binary or armored, or not encrypted; zstd, gzip, or not compressed), every encrypted chunk
//! is authenticated before its bytes are handed out, and the file's SHA-256 is checked
//! against the expected one when the stream ends.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use age::secrecy::SecretString;

use super::checksum::{HashingReader, Tally};
use super::entry_rules::{EntryRules, SpecialFiles};
use super::extract::check_stream;
use super::{Error, Key, Problem, MAX_WORK_FACTOR};

/// Reads from the file: one syscall per MiB.
const FILE_BUFFER: usize = 1 << 20;
/// Decrypted data waiting for the decompressor: a few age chunks.
const PLAIN_BUFFER: usize = 256 << 10;

const AGE_MAGIC: &[u8] = b"age-encryption.org/";
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// How [`unseal`] opens a file.
#[derive(Clone)]
pub struct UnsealOptions {
    /// The passphrase or identities; [`Key::None`] for a file that is not encrypted.
    pub key: Key,
    /// The SHA-256 the file must have (from a manifest), checked when the stream ends.
    pub sha256: Option<String>,
    /// The size the file must have, checked before anything is read.
    pub size: Option<u64>,
    /// The compression the file must use; detected when not given.
    pub compression: Option<&'static str>,
    /// Names the artifact in errors.
    pub artifact: Option<String>,
    /// Device nodes and FIFOs its tar content may hold ([`verify`]): what the set records
    /// the original held. None may be there unless recorded.
    pub special_files: u64,
}

impl UnsealOptions {
    /// Opens with `key`, checks nothing beyond what the format itself authenticates.
    pub fn new(key: Key) -> Self {
        UnsealOptions {
            key,
            sha256: None,
            size: None,
            compression: None,
            artifact: None,
            special_files: 0,
        }
    }
}

/// The decrypted, decompressed content of a sealed file, as a stream. Reading it to the end
/// verifies the checksum (an error instead of the end when it does not match); a consumer
/// that stops early (a tar reader at the end-of-archive blocks) calls [`Unsealed::finish`].
pub struct Unsealed {
    reader: Box<dyn Read + Send>,
    tally: Arc<Mutex<Tally>>,
    file: PathBuf,
    artifact: Option<String>,
    size: u64,
    expected: Option<String>,
    compression: &'static str,
    encryption: &'static str,
    verified: Option<String>,
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// SHA-256 of the file.
    pub sha256: String,
    /// Size of the file.
    pub bytes: u64,
    /// Bytes after decryption and decompression.
    pub content_bytes: u64,
    /// Tar entries, when the content is a tar stream.
    pub entries: Option<u64>,
    pub compression: &'static str,
    pub encryption: &'static str,
}

/// Opens a sealed file for reading.
pub fn unseal(path: &Path, options: &UnsealOptions) -> Result<Unsealed, Error> {
    open(path, options).map_err(|e| e.for_artifact(options.artifact.as_deref()))
}

/// Reads a sealed file to its end: it decrypts, decompresses, matches its checksum, and when
/// it holds a tar stream, every entry passes the extraction rules ([`EntryRules`]; device
/// nodes and FIFOs up to `special_files`) and the stream lists cleanly.
pub fn verify(path: &Path, options: &UnsealOptions) -> Result<Verified, Error> {
    let mut unsealed = unseal(path, options)?;
    let artifact = options.artifact.as_deref();
    let failed = |e: io::Error| Error::from_io(e, path, "read").for_artifact(artifact);
    let mut head = Vec::with_capacity(512);
    (&mut unsealed)
        .take(512)
        .read_to_end(&mut head)
        .map_err(failed)?;
    let is_tar = looks_like_tar(&head);
    let mut content = Counter {
        inner: io::Cursor::new(head).chain(&mut unsealed),
        bytes: 0,
    };
    let entries = if is_tar {
        let mut count = 0;
        let special = match options.special_files {
            0 => SpecialFiles::Refused(
                " and the set does not record that the original held any".into(),
            ),
            n => SpecialFiles::UpTo(n),
        };
        let mut rules = EntryRules::new(special);
        check_stream(&mut content, path, &mut rules, None, |_| {
            count += 1;
            Ok(())
        })
        .map_err(|e| e.for_artifact(artifact))?;
        Some(count)
    } else {
        io::copy(&mut content, &mut io::sink()).map_err(failed)?;
        None
    };
    let content_bytes = content.bytes;
    let (compression, encryption, bytes) =
        (unsealed.compression, unsealed.encryption, unsealed.size);
    let sha256 = unsealed.finish()?;
    Ok(Verified {
        sha256,
        bytes,
        content_bytes,
        entries,
        compression,
        encryption,
    })
}

/// A first block a tar reader takes for a header: the ustar magic, or (an old-style header)
/// a valid header checksum. Whatever a tar reader would unpack gets the rules.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let field = String::from_utf8_lossy(&head[148..156]);
    let Ok(recorded) = u64::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u64 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == recorded
}

fn open(path: &Path, options: &UnsealOptions) -> Result<Unsealed, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(path, "read metadata of", e))?
        .len();
    if let Some(expected) = options.size.filter(|&expected| expected != size) {
        return Err(Error::new(
            path,
            Problem::Size {
                expected,
                actual: size,
            },
        ));
    }
    let (hashing, tally) = HashingReader::new(FileReader {
        file,
        path: path.to_path_buf(),
    });
    let mut raw = BufReader::with_capacity(FILE_BUFFER, hashing);
    let head = raw
        .fill_buf()
        .map_err(|e| Error::from_io(e, path, "read"))?;
    let is_age = head.starts_with(AGE_MAGIC) || head.starts_with(AGE_ARMOR);

    let (mut plain, encryption): (Box<dyn BufRead + Send>, _) = if is_age {
        let (reader, encryption) = decrypt(raw, path, options)?;
        (
            Box::new(BufReader::with_capacity(PLAIN_BUFFER, reader)),
            encryption,
        )
    } else if matches!(options.key, Key::None) {
        (Box::new(raw), "none")
    } else {
        return Err(Error::new(path, Problem::NotEncrypted));
    };

    let head = plain
        .fill_buf()
        .map_err(|e| Error::from_io(e, path, "read"))?;
    let compression = if head.starts_with(ZSTD_MAGIC) {
        "zstd"
    } else if head.starts_with(GZIP_MAGIC) {
        "gzip"
    } else {
        "none"
    };
    if let Some(expected) = options.compression.filter(|&c| c != compression) {
        return Err(Error::new(
            path,
            Problem::Corrupt {
                format: expected,
                detail: format!("expected {expected} data, found {compression}"),
            },
        ));
    }
    let reader: Box<dyn Read + Send> = match compression {
        "zstd" => Box::new(
            zstd::stream::read::Decoder::with_buffer(plain)
                .map_err(|e| Error::io(path, "start zstd for", e))?,
        ),
        "gzip" => Box::new(flate2::bufread::MultiGzDecoder::new(plain)),
        _ => Box::new(plain),
    };
    Ok(Unsealed {
        reader,
        tally,
        file: path.to_path_buf(),
        artifact: options.artifact.clone(),
        size,
        expected: options.sha256.clone(),
        compression,
        encryption,
        verified: None,
    })
}

type RawReader = BufReader<HashingReader<FileReader>>;

/// Opens the age layer: header, key, then a reader of authenticated plaintext.
fn decrypt(
    raw: RawReader,
    path: &Path,
    options: &UnsealOptions,
) -> Result<(AgeReader, &'static str), Error> {
    let progress = Arc::new(Progress::default());
    let counted = Counted {
        inner: age::armor::ArmoredReader::new(raw),
        progress: progress.clone(),
    };
    let header_problem = |e: age::DecryptError| decrypt_problem(e, &options.key);
    let decryptor = age::Decryptor::new(counted).map_err(|e| {
        let problem = header_problem(e);
        Error::new(path, checksum_problem(path, options).unwrap_or(problem))
    })?;
    let scrypt = decryptor.is_scrypt();
    let encryption = if scrypt {
        "age-passphrase"
    } else {
        "age-recipients"
    };
    let opened = match (&options.key, scrypt) {
        (Key::None, _) => return Err(Error::new(path, Problem::NoKey)),
        (Key::Identities(_), true) => return Err(Error::new(path, Problem::NeedsPassphrase)),
        (Key::Passphrase(_), false) => return Err(Error::new(path, Problem::NeedsIdentity)),
        (Key::Passphrase(passphrase), true) => {
            let mut identity =
                age::scrypt::Identity::new(SecretString::from(passphrase.expose().to_string()));
            identity.set_max_work_factor(MAX_WORK_FACTOR);
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        }
        (Key::Identities(identities), false) => {
            decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        }
    };
    let stream = opened.map_err(|e| {
        let problem = header_problem(e);
        // A wrong key and an altered header look alike; the expected checksum tells them apart.
        Error::new(path, checksum_problem(path, options).unwrap_or(problem))
    })?;
    Ok((
        AgeReader {
            stream,
            progress,
            file: path.to_path_buf(),
        },
        encryption,
    ))
}

fn decrypt_problem(e: age::DecryptError, key: &Key) -> Problem {
    use age::DecryptError as D;
    match e {
        D::DecryptionFailed if matches!(key, Key::Passphrase(_)) => Problem::WrongPassphrase,
        D::NoMatchingKeys if matches!(key, Key::Identities(_)) => Problem::WrongKey,
        D::DecryptionFailed | D::NoMatchingKeys => Problem::WrongKey,
        D::ExcessiveWork { required, .. } => Problem::ExcessiveWork {
            required,
            limit: MAX_WORK_FACTOR,
        },
        D::InvalidMac => Problem::Altered("its header does not authenticate".into()),
        D::InvalidHeader => Problem::BadHeader("its header is malformed".into()),
        D::UnknownFormat => Problem::BadHeader("unknown age version".into()),
        D::KeyDecryptionFailed => Problem::Key("the identity could not be decrypted".into()),
        D::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Problem::Truncated("it ends inside its age header".into())
        }
        D::Io(e) => Problem::BadHeader(e.to_string()),
        other => Problem::BadHeader(other.to_string()),
    }
}

/// When the expected size or checksum is known and the file does not have it, that is the
/// better explanation of a failure to open it.
fn checksum_problem(path: &Path, options: &UnsealOptions) -> Option<Problem> {
    let expected = options.sha256.as_ref()?;
    let actual = super::sha256_file(path).ok()?;
    (!actual.eq_ignore_ascii_case(expected)).then(|| Problem::Checksum {
        expected: expected.clone(),
        actual,
    })
}

impl Unsealed {
    /// `zstd`, `gzip` or `none`, as detected.
    pub fn compression(&self) -> &'static str {
        self.compression
    }

    /// `age-passphrase`, `age-recipients` or `none`, as detected.
    pub fn encryption(&self) -> &'static str {
        self.encryption
    }

    /// Reads whatever is left, verifies the checksum, and returns the file's SHA-256.
    pub fn finish(mut self) -> Result<String, Error> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| {
            Error::from_io(e, &self.file, "read").for_artifact(self.artifact.as_deref())
        })?;
        Ok(self.verified.take().unwrap_or_default())
    }

    fn error(&self, problem: Problem) -> Error {
        Error::new(&self.file, problem).for_artifact(self.artifact.as_deref())
    }

    fn check_end(&mut self) -> Result<(), Error> {
        let (bytes, digest) = {
            let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            (tally.bytes, tally.digest())
        };
        if bytes != self.size {
            return Err(self.error(Problem::Altered(format!(
                "{} bytes follow the end of its data, or it changed while it was read",
                self.size.abs_diff(bytes)
            ))));
        }
        if let Some(expected) = &self.expected {
            if !expected.eq_ignore_ascii_case(&digest) {
                return Err(self.error(Problem::Checksum {
                    expected: expected.clone(),
                    actual: digest,
                }));
            }
        }
        self.verified = Some(digest);
        Ok(())
    }

    fn classify(&self, e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::from_io(e, &self.file, "read").for_artifact(self.artifact.as_deref());
        }
        let problem = if e.kind() == io::ErrorKind::UnexpectedEof {
            Problem::Truncated(format!("its {} stream ends early", self.compression))
        } else {
            Problem::Corrupt {
                format: self.compression,
                detail: e.to_string(),
            }
        };
        self.error(problem)
    }
}

impl Read for Unsealed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified.is_some() || buf.is_empty() {
            return Ok(0);
        }
        match self.reader.read(buf) {
            Ok(0) => {
                self.check_end()?;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.classify(e).into()),
        }
    }
}

/// The file itself; its read errors name it.
struct FileReader {
    file: std::fs::File,
    path: PathBuf,
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::Interrupted => e,
            _ => Error::io(&self.path, "read", e).into(),
        })
    }
}

/// How far age has read into its input, and whether it met the end.
#[derive(Default)]
struct Progress {
    consumed: AtomicU64,
    at_end: AtomicBool,
}

struct Counted<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .consumed
            .fetch_add(n as u64, Ordering::Relaxed);
        if n == 0 && !buf.is_empty() {
            self.progress.at_end.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// age's plaintext, its errors said in words: a chunk that does not authenticate at the end
/// of the file is a truncation (or an altered end), anywhere else an alteration.
struct AgeReader {
    stream: age::stream::StreamReader<Counted<age::armor::ArmoredReader<BufReader<RawReader>>>>,
    progress: Arc<Progress>,
    file: PathBuf,
}

impl Read for AgeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted
                || e.get_ref().is_some_and(|inner| inner.is::<Error>())
            {
                return e;
            }
            let problem = match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    Problem::Truncated("the encrypted stream ends before its last chunk".into())
                }
                io::ErrorKind::InvalidData if self.progress.at_end.load(Ordering::Relaxed) => {
                    Problem::Truncated(
                        "or its end was altered: the last encrypted chunk does not authenticate"
                            .into(),
                    )
                }
                io::ErrorKind::InvalidData => Problem::Altered(format!(
                    "the encrypted chunk ending at byte {} does not authenticate",
                    self.progress.consumed.load(Ordering::Relaxed)
                )),
                _ => Problem::Io {
                    action: "decrypt".into(),
                    source: e,
                },
            };
            Error::new(&self.file, problem).into()
        })
    }
}

struct Counter<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}
