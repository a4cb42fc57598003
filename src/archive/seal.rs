//! Data → compress → encrypt → file, in one streaming pass with the file's SHA-256 computed on
//! the way. The file is written under a temporary name, fsynced and renamed: it appears whole
//! or not at all. Memory stays bounded whatever the size: the zstd workers' job buffers, one
//! read buffer, one age chunk.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;

use super::checksum::HashingWriter;
use super::tar_writer::write_tree;
use super::{
    Compression, Encryption, Error, Problem, SealOptions, MAX_WORK_FACTOR, MIN_WORK_FACTOR,
};
use crate::atomic_file::AtomicFile;

/// Per read of the source.
const BUFFER: usize = 1 << 20;
/// Input per zstd worker job. zstd's default at level 3 is 8 MiB; 4 MiB keeps the buffers of
/// two workers well under the memory budget at no measurable cost in ratio.
const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// A sealed archive: what was written where, and its checksum.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// Bytes that went into compression (the stream, or the tar stream of a directory).
    pub input_bytes: u64,
    /// Tar entries, when a directory was sealed.
    pub entries: Option<u64>,
    pub compression: Compression,
    /// `age-passphrase`, `age-recipients` or `none`.
    pub encryption: &'static str,
    /// Paths of a directory that cannot be archived (sockets, FIFOs, device nodes).
    pub skipped: Vec<String>,
    /// Files of a directory that changed size while they were read.
    pub changed: Vec<String>,
}

/// Seals any byte stream (a volume's tar stream, a dump's stdout) into `dest`.
pub fn seal(mut source: impl Read, dest: &Path, options: &SealOptions) -> Result<Sealed, Error> {
    let artifact = options.artifact.as_deref();
    let mut pipeline = Pipeline::create(dest, options).map_err(|e| e.for_artifact(artifact))?;
    let mut buf = vec![0u8; BUFFER];
    loop {
        if let Some(reason) = options.stop.as_ref().and_then(|stop| stop()) {
            return Err(Error::new(dest, Problem::Interrupted(reason)).for_artifact(artifact));
        }
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::from_io(e, dest, "read the data to seal").for_artifact(artifact))
            }
        };
        pipeline
            .write_all(&buf[..n])
            .map_err(|e| Error::from_io(e, dest, "write").for_artifact(artifact))?;
    }
    pipeline.finish(options, None)
}

/// Seals a directory as a tar stream (see `tar_writer`) into `dest`.
pub fn seal_dir(dir: &Path, dest: &Path, options: &SealOptions) -> Result<Sealed, Error> {
    let artifact = options.artifact.as_deref();
    let refuse = |why: String| Err(Error::new(dir, Problem::Refused(why)).for_artifact(artifact));
    let top = match std::fs::canonicalize(dir) {
        Ok(top) if top.is_dir() => top,
        Ok(_) => return refuse("it is not a directory".into()),
        Err(e) => return Err(Error::io(dir, "open the directory", e).for_artifact(artifact)),
    };
    let dest_dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if std::fs::canonicalize(dest_dir).is_ok_and(|d| d.starts_with(&top)) {
        return refuse(format!(
            "the archive {} would be written inside the directory it archives",
            dest.display()
        ));
    }
    let pipeline = Pipeline::create(dest, options).map_err(|e| e.for_artifact(artifact))?;
    let (pipeline, report) = write_tree(&top, pipeline, dest, options.stop.as_ref())
        .map_err(|e| e.for_artifact(artifact))?;
    let mut sealed = pipeline.finish(options, Some(report.entries))?;
    sealed.skipped = report.skipped;
    sealed.changed = report.changed;
    Ok(sealed)
}

// Unbuffered: age hands over 64 KiB chunks and zstd 128 KiB blocks, large enough writes.
type FileSink = HashingWriter<AtomicFile>;

enum Encrypt {
    Age(age::stream::StreamWriter<FileSink>),
    Plain(FileSink),
}

enum Compress {
    Zstd(zstd::stream::write::Encoder<'static, Encrypt>),
    Gzip(flate2::write::GzEncoder<Encrypt>),
    Plain(Encrypt),
}

/// The writer chain: compression → encryption → SHA-256 → temporary file.
struct Pipeline {
    out: Compress,
    dest: PathBuf,
    input: u64,
}

fn encryptor(encryption: &Encryption) -> Result<Option<age::Encryptor>, Problem> {
    let encryptor = match encryption {
        Encryption::None => return Ok(None),
        Encryption::Passphrase {
            passphrase,
            work_factor,
        } => {
            if passphrase.is_empty() {
                return Err(Problem::Key("the passphrase is empty".into()));
            }
            if !(MIN_WORK_FACTOR..=MAX_WORK_FACTOR).contains(work_factor) {
                return Err(Problem::Key(format!(
                    "the scrypt work factor must be between {MIN_WORK_FACTOR} and {MAX_WORK_FACTOR}, got {work_factor}"
                )));
            }
            let mut recipient =
                age::scrypt::Recipient::new(SecretString::from(passphrase.expose().to_string()));
            recipient.set_work_factor(*work_factor);
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        }
        Encryption::Recipients(recipients) => {
            if recipients.is_empty() {
                return Err(Problem::Key("no recipients given".into()));
            }
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        }
    };
    encryptor
        .map(Some)
        .map_err(|e| Problem::Key(format!("cannot encrypt: {e}")))
}

impl Pipeline {
    fn create(dest: &Path, options: &SealOptions) -> Result<Pipeline, Error> {
        let encryptor = encryptor(&options.encryption).map_err(|p| Error::new(dest, p))?;
        let file = AtomicFile::create(dest, 0o600)
            .map_err(|e| Error::io(dest, "create the temporary file for", e))?;
        let sink = HashingWriter::new(file);
        let write_error = |e| Error::io(dest, "write", e);
        let encrypt = match encryptor {
            Some(encryptor) => Encrypt::Age(encryptor.wrap_output(sink).map_err(write_error)?),
            None => Encrypt::Plain(sink),
        };
        let out = match options.compression {
            Compression::Zstd { level, workers } => {
                let zstd_error = |e| Error::io(dest, "start zstd for", e);
                let mut encoder =
                    zstd::stream::write::Encoder::new(encrypt, level).map_err(zstd_error)?;
                encoder.include_checksum(true).map_err(zstd_error)?;
                if workers > 0 {
                    encoder.multithread(workers).map_err(zstd_error)?;
                    encoder
                        .set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
                        .map_err(zstd_error)?;
                }
                Compress::Zstd(encoder)
            }
            Compression::Gzip { level } => Compress::Gzip(flate2::write::GzEncoder::new(
                encrypt,
                flate2::Compression::new(level),
            )),
            Compression::None => Compress::Plain(encrypt),
        };
        Ok(Pipeline {
            out,
            dest: dest.to_path_buf(),
            input: 0,
        })
    }

    /// Ends compression and encryption, then makes the file visible under its name.
    fn finish(self, options: &SealOptions, entries: Option<u64>) -> Result<Sealed, Error> {
        let dest = self.dest;
        let artifact = options.artifact.as_deref();
        let fail = |action: &str| {
            let dest = dest.clone();
            let action = action.to_string();
            move |e| Error::io(&dest, action, e).for_artifact(artifact)
        };
        let encrypt = match self.out {
            Compress::Zstd(encoder) => encoder.finish().map_err(fail("finish zstd in"))?,
            Compress::Gzip(encoder) => encoder.finish().map_err(fail("finish gzip in"))?,
            Compress::Plain(encrypt) => encrypt,
        };
        let sink = match encrypt {
            Encrypt::Age(writer) => writer.finish().map_err(fail("finish encrypting"))?,
            Encrypt::Plain(sink) => sink,
        };
        let (file, bytes, sha256) = sink.finish();
        file.commit().map_err(fail("sync and rename into place"))?;
        Ok(Sealed {
            path: dest.clone(),
            bytes,
            sha256,
            input_bytes: self.input,
            entries,
            compression: options.compression,
            encryption: options.encryption.name(),
            skipped: Vec::new(),
            changed: Vec::new(),
        })
    }
}

impl Write for Pipeline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.out {
            Compress::Zstd(w) => w.write(buf),
            Compress::Gzip(w) => w.write(buf),
            Compress::Plain(w) => w.write(buf),
        }?;
        self.input += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Compress::Zstd(w) => w.flush(),
            Compress::Gzip(w) => w.flush(),
            Compress::Plain(w) => w.flush(),
        }
    }
}

impl Write for Encrypt {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encrypt::Age(w) => w.write(buf),
            Encrypt::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encrypt::Age(w) => w.flush(),
            Encrypt::Plain(w) => w.flush(),
        }
    }
}
