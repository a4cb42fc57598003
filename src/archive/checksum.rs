//! SHA-256 on the way: of a file, of the bytes a writer passes on, of the bytes a reader takes.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Large reads: fewer syscalls, and SHA-256 with the CPU's SHA instructions outruns the disk.
const BUFFER: usize = 1 << 20;

/// SHA-256 of a file, streamed, as lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Passes bytes on to `inner`, hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the byte count and the SHA-256 (lowercase hex) of what passed.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a [`HashingReader`] saw so far; shared so the end of a reader chain can check it.
#[derive(Default)]
pub(crate) struct Tally {
    hasher: Sha256,
    pub bytes: u64,
}

impl Tally {
    /// The SHA-256 (lowercase hex) of everything read so far.
    pub fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

/// Reads from `inner`, hashing and counting what passes into a shared [`Tally`].
pub(crate) struct HashingReader<R> {
    inner: R,
    tally: Arc<Mutex<Tally>>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> (Self, Arc<Mutex<Tally>>) {
        let tally = Arc::new(Mutex::new(Tally::default()));
        (
            HashingReader {
                inner,
                tally: tally.clone(),
            },
            tally,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.hasher.update(&buf[..n]);
        tally.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn writer_and_reader_hash_what_passes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (out, n, digest) = w.finish();
        assert_eq!((out.as_slice(), n, digest.as_str()), (&b"abc"[..], 3, ABC));

        let (mut r, tally) = HashingReader::new(&b"abc"[..]);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        let tally = tally.lock().unwrap();
        assert_eq!((tally.bytes, tally.digest().as_str()), (3, ABC));
    }

    #[test]
    fn file_digest_matches_the_known_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), ABC);
    }
}
