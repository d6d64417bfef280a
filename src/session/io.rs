//! Socket plumbing shared by both directions: buffered reads, whole-frame
//! reads during startup, and the [`Assembler`] that writes a batch of frames
//! on with one write.
//!
//! A batch's untouched frames are written as the original bytes, never
//! decoded and re-encoded; when a frame must change, the output is assembled
//! from the untouched runs and the replacements.

use std::sync::{Mutex, MutexGuard};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::context::SessionError;
use crate::protocol::{next_frame, Direction};

/// Reads from a socket into the buffer, growing it as needed.
pub async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    r.read_buf(buf).await
}

/// Locks the session state. A poisoned lock means a panic elsewhere in this
/// task; the state is plain data, so keep going rather than take the
/// session down twice.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads one complete frame, buffering across reads.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    dir: Direction,
    cap: usize,
) -> Result<BytesMut, SessionError> {
    loop {
        if let Some(n) = next_frame(buf, dir, cap)? {
            return Ok(buf.split_to(n));
        }
        buf.reserve(8192);
        if r.read_buf(buf).await? == 0 {
            return Err(match dir {
                Direction::Backend => SessionError::UpstreamLost,
                Direction::Frontend => SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()),
            });
        }
    }
}

/// Collects a batch's output: untouched runs are copied only when some frame
/// in the batch was replaced.
pub struct Assembler {
    out: BytesMut,
    copied_to: usize,
    touched: bool,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

impl Assembler {
    pub fn new() -> Self {
        Assembler {
            out: BytesMut::new(),
            copied_to: 0,
            touched: false,
        }
    }

    /// Replace `buf[start..end]` with `with` (empty = drop the frame).
    pub fn replace(&mut self, buf: &[u8], start: usize, end: usize, with: &[u8]) {
        self.touched = true;
        self.out.extend_from_slice(&buf[self.copied_to..start]);
        self.out.extend_from_slice(with);
        self.copied_to = end;
    }

    /// The bytes to write for `buf[..end]`: None when nothing changed (write
    /// `&buf[..end]` itself, then `advance`, so the passthrough path neither
    /// copies nor splits the buffer).
    pub fn finish(mut self, buf: &[u8], end: usize) -> Option<BytesMut> {
        if !self.touched {
            return None;
        }
        self.out.extend_from_slice(&buf[self.copied_to..end]);
        Some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_batches_are_not_copied() {
        let a = Assembler::new();
        assert!(a.finish(b"abcdef", 6).is_none());
    }

    #[test]
    fn replacements_and_drops_keep_the_untouched_runs() {
        let buf = b"AAAbbbCCCddd";
        let mut a = Assembler::new();
        a.replace(buf, 3, 6, b"XY");
        a.replace(buf, 9, 12, b"");
        assert_eq!(&a.finish(buf, 12).unwrap()[..], b"AAAXYCCC");
        let mut a = Assembler::new();
        a.replace(buf, 0, 3, b"z");
        assert_eq!(&a.finish(buf, 6).unwrap()[..], b"zbbb");
    }
}
