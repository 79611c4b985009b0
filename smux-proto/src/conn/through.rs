//! Read-through: a stream's reader reading its own payload, and the frame headers
//! around it, straight from the transport into its own buffer, instead of the I/O
//! side reading everything into the session for readers to copy out. The I/O side
//! lends the read side to a waiting reader while that reader's payload is next on the
//! wire, and takes it back as soon as the reader waits, reads another stream's frame
//! header or stops making progress.

use std::io::{self, IoSliceMut};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::Connection;
use crate::frame::HEADER_LEN;
use crate::link::Input;
use crate::session::StreamId;

/// How long the read side stays lent to a stream's reader (see
/// [`Connection::lend_reads`]) without that reader reading: past it the I/O side reads
/// again, so a reader that went away holds up the other streams for at most this long.
pub const LEND_GRACE: Duration = Duration::from_micros(500);

/// A reader with a buffer smaller than this (and than the payload's rest) leaves the
/// payload to the I/O side and copies it out: a system call per small read would cost
/// more than the copy.
const SMALL_READ: usize = 4096;

/// What the reader of an empty stream may read from the transport itself; from
/// [`Connection::read_through`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadThrough {
    /// At most this many bytes straight into the reader's own buffer: the rest of a
    /// payload for its stream, with nothing ahead of it.
    Payload(usize),
    /// This many bytes into [`Input::header_room`]: the rest of the next frame's
    /// header, when the last read suggests more is waiting. What it turns out to be
    /// is taken as the I/O side would take it.
    Header(usize),
    /// Nothing: wait for the I/O side to read.
    Wait,
}

impl Connection {
    /// What the reader of stream `id`, finding nothing buffered, may read from the
    /// transport itself instead of waiting for the I/O side to read for it
    /// (read-through; the adapter must hold the read side, `input`, while it reads).
    /// Read without registering for readiness (a non-blocking read that may say
    /// `WouldBlock`), so the I/O side's wait on the transport stays in place, and
    /// report with [`Connection::read_through_done`].
    pub fn read_through(&mut self, id: StreamId, input: &Input) -> ReadThrough {
        let s = &self.session;
        let lent_elsewhere = self.lent.is_some_and(|(l, _)| l != id);
        if self.ending.is_some() || self.done || input.is_closed() || lent_elsewhere {
            return ReadThrough::Wait;
        }
        if s.readable_len(id) > 0 || !s.wants_input() {
            return ReadThrough::Wait;
        }
        match s.direct_len(id, input.unparsed()) {
            0 if input.more && s.at_frame_start() && input.unparsed() < HEADER_LEN => {
                ReadThrough::Header(HEADER_LEN - input.unparsed())
            }
            0 => {
                self.take_back(id);
                ReadThrough::Wait
            }
            n => ReadThrough::Payload(n),
        }
    }

    /// The stream whose reader holds the read side, if any (for tests).
    #[cfg(test)]
    pub(crate) fn lent(&self) -> Option<StreamId> {
        self.lent.map(|(id, _)| id)
    }

    /// Lets stream readers read through ([`Connection::read_through`]), and has the
    /// I/O side leave a payload to the reader it is for when that reader was waiting
    /// for it: reading pauses while the reader reads (for at most [`LEND_GRACE`]
    /// without progress). Only for an adapter whose readers call `read_through`.
    pub fn lend_reads(&mut self) {
        self.lends = true;
    }

    /// Takes the result of a [`ReadThrough`] read: `payload` bytes asked straight into
    /// the reader's buffer (they count as read by it), then the [`Input::header_room`]
    /// if one was taken (that frame is taken at once, as the I/O side would take it).
    /// For [`ReadThrough::Payload`] the adapter may take a header room behind the
    /// reader's buffer (a vectored read) when it asked for the payload's whole rest.
    /// End-of-file and errors are left for the I/O side, which is woken.
    pub fn read_through_done(
        &mut self,
        now: Instant,
        id: StreamId,
        input: &mut Input,
        payload: usize,
        r: io::Result<usize>,
    ) {
        let (p, h) = input.through_done(payload, r);
        if input.is_closed() || p + h == 0 {
            self.take_back(id);
            self.resume_input();
            return;
        }
        if let Some((_, until)) = self.lent.as_mut().filter(|(l, _)| *l == id) {
            *until = now + LEND_GRACE;
        }
        let stalled = !self.session.wants_input();
        self.session.read_direct(now, id, p);
        if h > 0 {
            self.take_input(now, input);
            if self.session.payload_left(id) == 0 {
                // The next frame is not this reader's: its own reader, or the I/O
                // side, takes it.
                self.end_lend(now, id, input);
            }
        }
        self.settle(stalled);
        self.after_io(now, false, self.output_open);
    }

    /// Lends the read side to the reader of the payload being read, when that reader
    /// waits for it (parked, or just woken by its first piece) and the rest is next
    /// on the wire: it reads the rest straight into its own buffer instead of the I/O
    /// side reading it into the session for it to copy out. A parked reader is woken
    /// to come and read. Ends a lend that ran out of time.
    pub(super) fn lend(&mut self, now: Instant, input: &Input) {
        if self.lent.is_some_and(|(_, until)| now >= until) {
            self.lent = None;
        }
        let woke = self.woke_reader.take();
        // Only when the last read suggests the rest is there: a reader that finds
        // nothing gives the read side back, and would be lent it again at once.
        let idle = !self.lends || self.lent.is_some() || self.ending.is_some();
        if idle || input.unparsed() > 0 || !input.more {
            return;
        }
        let Some(id) = self.session.payload_stream() else {
            return;
        };
        if self.declined != Some(id) && (woke == Some(id) || self.waiters.has_reader(id)) {
            self.waiters.take_reader(id, &mut self.woken);
            self.lent = Some((id, now + LEND_GRACE));
        }
    }

    /// Takes the read side back from `id`'s reader, if it holds it (it waits, or the
    /// transport had nothing for it).
    pub(super) fn take_back(&mut self, id: StreamId) {
        if self.lent.is_some_and(|(l, _)| l == id) {
            self.lent = None;
            self.resume_input();
        }
    }

    /// The read side is back from a lend: whoever reads input goes on (the driver,
    /// and a reader thread of an adapter that drives the directions apart).
    fn resume_input(&mut self) {
        self.woken.extend(self.reader.take());
        self.kick();
    }

    /// Takes the read side back from a reader that read what it could, or passes it on to the reader of the next payload if that one waits too.
    pub(super) fn end_lend(&mut self, now: Instant, id: StreamId, input: &Input) {
        if self.lent.is_some_and(|(l, _)| l == id) {
            self.lent = None;
            self.lend(now, input);
            if self.lent.is_none() {
                self.resume_input();
            }
        }
    }

    /// How much the I/O side should read: after large frames, only the next header
    /// while a reader waits (or was just woken, and will wait again once it has read),
    /// so that the payload behind it can go to that reader whole (see
    /// [`Connection::lend_reads`]); else as much as it can.
    pub(super) fn read_limit(&self, input: &Input) -> Option<usize> {
        let s = &self.session;
        let boundary = s.at_frame_start() && input.unparsed() < HEADER_LEN;
        let readers = self.waiters.has_readers() || self.woke_reader.is_some();
        (self.lends && boundary && s.large_frames() && readers)
            .then(|| HEADER_LEN - input.unparsed())
    }
}

/// One reader call's read-through, as every adapter makes it: the steps
/// [`Connection::read_through`] allows, each a non-blocking `read` into the reader's
/// `buf` (with the next header's room behind it when the payload's whole rest fits),
/// until this stream's data came in. `with` runs a closure on the connection under the
/// adapter's lock (waking what it owes after unlocking); `now` is the adapter's clock.
/// Returns the bytes put into `buf`; 0 means wait as usual. The caller holds the read
/// side (`input`) throughout.
pub fn read_through_into(
    id: StreamId,
    input: &mut Input,
    buf: &mut [u8],
    with: impl Fn(&mut dyn FnMut(&mut Connection)),
    now: impl Fn() -> Instant,
    read: impl FnMut(&mut [IoSliceMut<'_>]) -> io::Result<usize>,
) -> usize {
    match through(id, input, buf, None, with, now, read) {
        Some(Poll::Ready(Ok(n))) => n,
        _ => 0,
    }
}

/// A whole read call of an async adapter that holds the read side (`input`): a
/// read-through as [`read_through_into`] makes it, else [`Connection::poll_read`]
/// with the waker `w`. Where the read-through has nothing to read, the buffered read
/// is made under the same lock, so a reader that finds its data buffered, or waits,
/// takes the lock once.
pub fn poll_read_through(
    id: StreamId,
    input: &mut Input,
    buf: &mut [u8],
    w: &Waker,
    with: impl Fn(&mut dyn FnMut(&mut Connection)),
    now: impl Fn() -> Instant,
    read: impl FnMut(&mut [IoSliceMut<'_>]) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    if let Some(r) = through(id, input, buf, Some(w), &with, now, read) {
        return r;
    }
    let mut r = Poll::Pending;
    with(&mut |c| r = c.poll_read(id, buf, w));
    r
}

/// The read-through loop: `Some` with the read's result when it read, or (with
/// `park`) when the buffered read it made instead under the same lock returned or
/// parked `park`; `None`: nothing read, the caller reads as usual.
fn through(
    id: StreamId,
    input: &mut Input,
    buf: &mut [u8],
    park: Option<&Waker>,
    with: impl Fn(&mut dyn FnMut(&mut Connection)),
    now: impl Fn() -> Instant,
    mut read: impl FnMut(&mut [IoSliceMut<'_>]) -> io::Result<usize>,
) -> Option<Poll<io::Result<usize>>> {
    // A few frames at most (headers of other frames are taken on the way).
    for _ in 0..4 {
        let mut step = ReadThrough::Wait;
        let mut done = None;
        with(&mut |c| {
            step = match c.read_through(id, input) {
                // A small buffer reads buffered data faster than the transport.
                ReadThrough::Payload(n) if buf.len() < n.min(SMALL_READ) => ReadThrough::Wait,
                s => s,
            };
            if let (ReadThrough::Wait, Some(w)) = (step, park) {
                done = Some(c.poll_read(id, buf, w));
            }
        });
        let (asked, r) = match step {
            ReadThrough::Wait => return done,
            ReadThrough::Payload(n) if n <= buf.len() => {
                // The payload's whole rest, and the next header with it.
                let h = input.header_room(HEADER_LEN);
                (
                    n,
                    read(&mut [IoSliceMut::new(&mut buf[..n]), IoSliceMut::new(h)]),
                )
            }
            ReadThrough::Payload(_) => (buf.len(), read(&mut [IoSliceMut::new(buf)])),
            ReadThrough::Header(n) => (0, read(&mut [IoSliceMut::new(input.header_room(n))])),
        };
        let n = *r.as_ref().unwrap_or(&0);
        let mut r = Some(r);
        let at = now();
        with(&mut |c| {
            if let Some(r) = r.take() {
                c.read_through_done(at, id, input, asked, r);
            }
        });
        if n == 0 {
            return None;
        }
        if asked > 0 {
            return Some(Poll::Ready(Ok(n.min(asked))));
        }
    }
    None
}
