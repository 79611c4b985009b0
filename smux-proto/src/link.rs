//! The transport side of a connection, as an adapter's I/O task or threads see it: the
//! read buffer, the bytes waiting to be written, and what became of the last transport
//! call. The adapter performs the calls ([`Plan`] says which) and reports each result
//! here; [`Connection::drive`](crate::Connection::drive) applies them under the
//! adapter's lock. Nothing here blocks, reads a clock or knows a runtime.

use std::io::{self, IoSlice};
use std::task::Poll;
use std::time::Instant;

use bytes::BytesMut;

use crate::frame::{Header, HEADER_LEN};
use crate::transmit::Transmit;

/// Free space a read gets in the read buffer.
const READ_RESERVE: usize = 64 * 1024;
/// The smallest region [`Input::spare`] offers: it is zeroed on every call, so its
/// size follows what reads return (doubling after a read that filled it), and a
/// trickle of small reads does not zero 64 KiB each time.
const SPARE_MIN: usize = 4 * 1024;
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
    /// Read at most this many bytes (into [`Input::header_room`], reported with
    /// [`Input::filled`]): a frame header alone, whose payload may go straight to its
    /// reader. An adapter may read more; it only loses that chance.
    pub read_limit: Option<usize>,
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
    /// The size of the next [`Input::spare`] region.
    spare: usize,
    /// What the last read asked for, and whether it got all of it (then the transport
    /// probably holds more: a reader may read its own data next, see
    /// [`ReadThrough`](crate::ReadThrough)).
    asked: usize,
    pub(crate) more: bool,
    /// The size of the header room taken since the last read-through report.
    room: usize,
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
            spare: SPARE_MIN,
            asked: 0,
            more: false,
            room: 0,
        }
    }

    /// The read buffer, with room for a read at its end; for transports that read into
    /// uninitialised memory (Tokio's `read_buf`). Report with [`Input::read_done`].
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_RESERVE / 4 {
            self.buf.reserve(READ_RESERVE);
        }
        self.asked = self.buf.capacity() - self.buf.len();
        &mut self.buf
    }

    /// Reports a read into [`Input::read_buf`]: `Ok(0)` is end-of-file. An
    /// `Interrupted` error is ignored (read again).
    pub fn read_done(&mut self, r: io::Result<usize>) {
        match r {
            Ok(0) => self.state = ReadState::Eof,
            Ok(n) => self.more = n >= self.asked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.state = ReadState::Failed(e),
        }
    }

    /// A zeroed region to read into, for `std::io::Read` and futures-io transports.
    /// Report with [`Input::filled`], before the next call to any other method.
    /// Its size adapts to what reads return, from 4 KiB to 64 KiB.
    pub fn spare(&mut self) -> &mut [u8] {
        self.filled = self.buf.len();
        self.asked = self.spare;
        self.buf.resize(self.filled + self.spare, 0);
        &mut self.buf[self.filled..]
    }

    /// A zeroed region of `len` bytes for a read-through read of a frame header
    /// (alone for [`ReadThrough::Header`](crate::ReadThrough::Header), or behind the
    /// reader's buffer in a vectored read of a payload's rest); report it with
    /// [`Connection::read_through_done`](crate::Connection::read_through_done).
    pub fn header_room(&mut self, len: usize) -> &mut [u8] {
        self.filled = self.buf.len();
        self.room = len;
        self.asked = len;
        self.buf.resize(self.filled + len, 0);
        &mut self.buf[self.filled..]
    }

    /// Bytes read and not yet taken by the session.
    pub fn unparsed(&self) -> usize {
        self.buf.len()
    }

    /// Takes the result of a read the reader made itself: `payload` bytes asked into
    /// its own buffer, then the [`Input::header_room`] if one was taken. Returns how
    /// many went to each. A read that would block only means the transport holds
    /// nothing more for now.
    pub(crate) fn through_done(&mut self, payload: usize, r: io::Result<usize>) -> (usize, usize) {
        let room = std::mem::take(&mut self.room);
        self.asked = payload + room;
        let n = *r.as_ref().unwrap_or(&0);
        let (p, h) = (n.min(payload), n.saturating_sub(payload).min(room));
        if room > 0 {
            self.buf.truncate(self.filled + h);
        }
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.more = false,
            r => self.read_done(r),
        }
        (p, h)
    }

    /// Reports a read into [`Input::spare`]: `Ok(n)` bytes arrived, `Ok(0)` is
    /// end-of-file. `Interrupted` is ignored (also the report of a read that is not
    /// ready yet, for a non-blocking transport).
    pub fn filled(&mut self, r: io::Result<usize>) {
        self.room = 0;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(self.filled + n);
        if n > 0 {
            let next = if n == self.spare {
                n * 2
            } else {
                n.next_power_of_two()
            };
            self.spare = next.clamp(SPARE_MIN, READ_RESERVE);
        }
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
    pub(crate) vectored: bool,
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

    /// Puts the part of a directly written frame the transport did not take (the rest
    /// of its header, then the rest of its payload) ahead of everything else, so the
    /// frame stays whole on the wire (`Session::write_direct`). Copies those bytes.
    pub(crate) fn push_unsent(&mut self, header: &[u8], payload: &[u8]) {
        self.tx.push_front_raw(header, payload);
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

    /// Notes that a [`Direct`] frame went out whole but the flush that followed could
    /// not finish: the I/O side flushes (wake it).
    pub fn wrote_direct(&mut self) {
        self.needs_flush = true;
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

/// Control frames that may go out ahead of a [`Direct`] frame, in the same write.
pub(crate) const DIRECT_AHEAD: usize = 8;

/// A frame written from the caller's own buffer straight to the transport, with no
/// copy into the session ([`Connection::begin_direct`](crate::Connection::begin_direct)):
/// the control frames queued ahead of it (a few headers, such as the stream's SYN),
/// its header, then the first [`Direct::len`] bytes of the caller's data. It counts as
/// sent already; report the transport's write with [`Direct::written`].
#[derive(Debug)]
#[must_use = "the frame counts as sent: write it, then report it with `written`"]
pub struct Direct {
    head: [u8; (DIRECT_AHEAD + 1) * HEADER_LEN],
    head_len: usize,
    len: usize,
    long: bool,
}

impl Direct {
    /// The frame `h`, after the encoded control frames `ahead` (at most
    /// `DIRECT_AHEAD` of them).
    pub(crate) fn new(ahead: &[u8], h: Header, long: bool) -> Direct {
        let mut head = [0u8; (DIRECT_AHEAD + 1) * HEADER_LEN];
        let head_len = ahead.len() + HEADER_LEN;
        head[..ahead.len()].copy_from_slice(ahead);
        head[ahead.len()..head_len].copy_from_slice(&h.to_bytes());
        Direct {
            head,
            head_len,
            len: h.length as usize,
            long,
        }
    }

    /// How many bytes of the caller's data the frame carries (the write's count).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the caller should tell the driver that this write keeps the transport
    /// busy for a while ([`WakeOnRelease::hold_long`](crate::WakeOnRelease::hold_long)):
    /// a large frame, with window enough left after it that the peer's window updates
    /// can wait until the write is done.
    pub fn takes_long(&self) -> bool {
        self.long
    }

    /// Never true: a direct frame carries at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame for one vectored write: headers, payload. `data` is the buffer whose
    /// length went to `begin_direct`.
    pub fn slices<'a>(&'a self, data: &'a [u8]) -> [IoSlice<'a>; 2] {
        [
            IoSlice::new(&self.head[..self.head_len]),
            IoSlice::new(&data[..self.len]),
        ]
    }

    /// Reports the transport's write of [`Direct::slices`] (`Pending`: it took
    /// nothing). What it did not take goes to the front of `output`, copied,
    /// so the frame stays whole on the wire; a failure is recorded there too. Returns
    /// whether the I/O side must now be woken to finish the frame.
    pub fn written(self, output: &mut Output, data: &[u8], r: Poll<io::Result<usize>>) -> bool {
        let took = match r {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                output.written(Err(e));
                0
            }
            Poll::Pending => 0,
        };
        if took >= self.head_len + self.len {
            return false;
        }
        let k = took.min(self.head_len);
        output.push_unsent(&self.head[k..self.head_len], &data[took - k..self.len]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_region_follows_what_reads_return_and_a_read_not_ready_keeps_the_input() {
        let mut input = Input::new();
        let spare = input.spare();
        assert_eq!(spare.len(), SPARE_MIN);
        spare[..3].copy_from_slice(b"abc");
        input.filled(Ok(3));
        // A read that filled the region doubles it, up to the cap.
        let mut sizes = Vec::new();
        for _ in 0..6 {
            let n = input.spare().len();
            sizes.push(n);
            input.filled(Ok(n));
        }
        let kib = |k: usize| k * 1024;
        assert_eq!(sizes, [kib(4), kib(8), kib(16), kib(32), kib(64), kib(64)]);
        // A short read shrinks it to what reads return (not below the floor).
        input.spare();
        input.filled(Ok(9000));
        assert_eq!(input.spare().len(), kib(16));
        // Not ready: nothing changes, the bytes read so far stay.
        input.filled(Err(io::ErrorKind::Interrupted.into()));
        assert_eq!(input.spare().len(), kib(16));
        input.filled(Err(io::ErrorKind::Interrupted.into()));
        assert_eq!(&input.buf[..3], b"abc");
        assert_eq!(input.buf.len(), 3 + kib(4 + 8 + 16 + 32 + 64 + 64) + 9000);
        assert!(!input.is_closed());
    }
}
