//! The transport side of a connection, as an adapter's I/O task or threads see it: the
//! read buffer, the bytes waiting to be written, and what became of the last transport
//! call. The adapter performs the calls ([`Plan`] says which) and reports each result
//! here; [`Connection::drive`](crate::Connection::drive) applies them under the
//! adapter's lock. Nothing here blocks, reads a clock or knows a runtime.

use std::io::{self, IoSlice};
use std::time::Instant;

use bytes::BytesMut;

use crate::transmit::Transmit;

/// Free space a read gets in the read buffer.
const READ_RESERVE: usize = 64 * 1024;
/// Segments handed to one vectored write.
pub const MAX_SLICES: usize = 64;
/// For transports without vectored writes, small segments are gathered into writes of
/// up to this size, so a 7-byte header is not a write of its own.
const COALESCE: usize = 64 * 1024;

/// What the I/O side should do next; from [`Connection::drive`](crate::Connection::drive).
///
/// Every flag is a request to try now: perform each call the plan asks for (reading
/// and writing independently, so a blocked write never stops reading), report its
/// result to [`Input`] or [`Output`], and call `drive` again after any progress. When
/// nothing made progress, wait until a call can progress, `timer` passes or the
/// connection's driver waker is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Plan {
    /// Read from the transport into [`Input::read_buf`] (or [`Input::spare`]).
    pub read: bool,
    /// Write [`Output::slices`] to the transport.
    pub write: bool,
    /// Flush the transport.
    pub flush: bool,
    /// Shut the transport's write side down (then report it with [`Output::shut`]).
    pub shutdown: bool,
    /// Call `drive` again at this instant even if nothing else happens.
    pub timer: Option<Instant>,
    /// Finished: drop the transport. Every waiter has been woken.
    pub done: bool,
}

/// How the read side of the transport stands.
#[derive(Debug)]
pub(crate) enum ReadState {
    Open,
    Eof,
    Failed(io::Error),
    /// The failure was handed to the session.
    Reported,
}

/// The read side: bytes read and not yet taken by the session, and how reading stands.
#[derive(Debug)]
pub struct Input {
    pub(crate) buf: BytesMut,
    pub(crate) state: ReadState,
    /// Length of `buf` before [`Input::spare`] extended it with zeros.
    filled: usize,
}

impl Default for Input {
    fn default() -> Input {
        Input::new()
    }
}

impl Input {
    /// An empty read side.
    pub fn new() -> Input {
        Input {
            buf: BytesMut::with_capacity(READ_RESERVE),
            state: ReadState::Open,
            filled: 0,
        }
    }

    /// The read buffer, with room for a read at its end; for transports that read into
    /// uninitialised memory (Tokio's `read_buf`). Report with [`Input::read_done`].
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_RESERVE / 4 {
            self.buf.reserve(READ_RESERVE);
        }
        &mut self.buf
    }

    /// Reports a read into [`Input::read_buf`]: `Ok(0)` is end-of-file. An
    /// `Interrupted` error is ignored (read again).
    pub fn read_done(&mut self, r: io::Result<usize>) {
        match r {
            Ok(0) => self.state = ReadState::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.state = ReadState::Failed(e),
        }
    }

    /// A zeroed region to read into, for `std::io::Read` and futures-io transports.
    /// Report with [`Input::filled`], before the next call to any other method.
    pub fn spare(&mut self) -> &mut [u8] {
        self.filled = self.buf.len();
        // As in `read_buf`: a whole reserve once little is left, so reads stay large.
        if self.buf.capacity() - self.filled < READ_RESERVE / 4 {
            self.buf.reserve(READ_RESERVE);
        }
        let room = (self.buf.capacity() - self.filled).min(READ_RESERVE);
        self.buf.resize(self.filled + room, 0);
        &mut self.buf[self.filled..]
    }

    /// Reports a read into [`Input::spare`]: `Ok(n)` bytes arrived, `Ok(0)` is
    /// end-of-file. `Interrupted` is ignored.
    pub fn filled(&mut self, r: io::Result<usize>) {
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(self.filled + n);
        self.read_done(r);
    }

    /// True once the transport reached end-of-file or failed.
    pub fn is_closed(&self) -> bool {
        !matches!(self.state, ReadState::Open)
    }

    /// Drops what was read (after the session ended, while draining).
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
    }
}

/// How the write side of the transport stands.
#[derive(Debug)]
pub(crate) enum WriteState {
    Open,
    /// Writing failed; reading goes on until the instant (the peer may have sent more
    /// before it went away), then the session ends with the error.
    Failed(Option<io::Error>, Option<Instant>),
    /// Our write side is shut down (or its shutdown failed).
    Shut,
}

/// The write side: bytes the session handed over and the transport has not taken yet.
#[derive(Debug)]
pub struct Output {
    pub(crate) tx: Transmit,
    pub(crate) state: WriteState,
    pub(crate) needs_flush: bool,
    vectored: bool,
    scratch: Vec<u8>,
}

impl Output {
    /// An empty write side. `vectored` says whether the transport writes vectors well
    /// (`is_write_vectored`); if not, small segments are gathered before each write.
    pub fn new(vectored: bool) -> Output {
        Output {
            tx: Transmit::new(),
            state: WriteState::Open,
            needs_flush: false,
            vectored,
            scratch: Vec::new(),
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// The slices for one write (a vectored write, or one slice of gathered bytes);
    /// returns how many of `out` were filled. Report with [`Output::written`].
    pub fn slices<'a>(&'a mut self, out: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let n = self.tx.io_slices(out);
        if self.vectored || n <= 1 || out[0].len() >= COALESCE {
            return n;
        }
        self.scratch.clear();
        for s in &out[..n] {
            if self.scratch.len() + s.len() > COALESCE && !self.scratch.is_empty() {
                break;
            }
            self.scratch.extend_from_slice(s);
        }
        out[0] = IoSlice::new(&self.scratch);
        1
    }

    /// Reports a write of [`Output::slices`]. `Interrupted` is ignored (write again);
    /// `Ok(0)` for a non-empty write is a failure (`WriteZero`).
    pub fn written(&mut self, r: io::Result<usize>) {
        match r {
            Ok(0) if !self.tx.is_empty() => self.fail(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.tx.advance(n);
                self.needs_flush |= n > 0;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.fail(e),
        }
    }

    /// Reports a flush.
    pub fn flushed(&mut self, r: io::Result<()>) {
        match r {
            Ok(()) => self.needs_flush = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.fail(e),
        }
    }

    /// Reports the shutdown of the write side (its failure changes nothing: the
    /// session has ended by then).
    pub fn shut(&mut self, _r: io::Result<()>) {
        self.state = WriteState::Shut;
        self.tx = Transmit::new();
    }

    fn fail(&mut self, e: io::Error) {
        self.tx = Transmit::new();
        self.needs_flush = false;
        if matches!(self.state, WriteState::Open) {
            self.state = WriteState::Failed(Some(e), None);
        }
    }

    /// True while writes may still go out.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, WriteState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each read is offered a whole reserve, also while payloads split off earlier
    /// input are still held (by streams not read yet) and a partial frame is left:
    /// reads of a quarter of that would take four times the system calls.
    #[test]
    fn spare_offers_a_whole_reserve_each_read() {
        let mut input = Input::new();
        let mut held = Vec::new();
        for _ in 0..8 {
            let n = input.spare().len();
            assert_eq!(n, READ_RESERVE);
            input.filled(Ok(n));
            let frames = input.buf.len() - 100;
            held.push(input.buf.split_to(frames).freeze());
        }
    }
}
