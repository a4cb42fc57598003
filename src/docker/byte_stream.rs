//! Bytes produced by a task on the async runtime, consumed either chunk by chunk from async
//! code or as a blocking `std::io::Read` by a synchronous pipeline (compress, encrypt, hash)
//! on a blocking thread. The channel is bounded, so a slow reader slows the producer instead
//! of filling memory.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// Chunks in flight between producer and reader (each up to the engine's frame size).
const CHANNEL_CHUNKS: usize = 16;

/// A stream of bytes from the engine: a volume's tar, an exec's stdout. Ends with `Ok(0)` from
/// `read` (or `None` from [`ByteStream::next_chunk`]); a failure of the producer arrives as an
/// error instead of a silent end, so a truncated stream is never taken for a whole one.
pub struct ByteStream {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ByteStream {
    /// A stream and the sender its producer task writes to.
    pub(crate) fn channel() -> (mpsc::Sender<io::Result<Bytes>>, ByteStream) {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        (
            tx,
            ByteStream {
                rx,
                current: Bytes::new(),
            },
        )
    }

    /// The next chunk, from async code; `None` at the end.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if !self.current.is_empty() {
            return Some(Ok(std::mem::take(&mut self.current)));
        }
        self.rx.recv().await
    }
}

impl Read for ByteStream {
    /// Blocks until bytes arrive. Call it from a thread outside the async runtime (a
    /// `spawn_blocking` thread or a plain thread), never from inside an async task.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_chunks_then_ends() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut stream) = ByteStream::channel();
        runtime.block_on(async {
            tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
            tx.send(Ok(Bytes::from_static(b"world"))).await.unwrap();
        });
        drop(tx);
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");
    }

    #[test]
    fn a_producer_failure_is_an_error_not_an_end() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut stream) = ByteStream::channel();
        runtime.block_on(async {
            tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
            tx.send(Err(io::Error::other("engine went away")))
                .await
                .unwrap();
        });
        let mut out = Vec::new();
        let err = stream.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.to_string(), "engine went away");
        assert_eq!(out, b"part");
    }
}
