//! A stream: std `Read` + `Write` over one smux stream.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use smux_proto::{read_timed_out, Connection, PartialWrite, StreamId};

use crate::session::{calm, Shared};
use crate::signal::{lock, Signal};

/// One stream of a session, read and written like a `TcpStream`.
///
/// `Stream` implements [`Read`] and [`Write`], and so does `&Stream`, so one thread can
/// read while another writes (or use [`Stream::try_clone`]). Reads return buffered
/// data, then end-of-file (`Ok(0)`) after the peer closed the stream. Writes wait for
/// window and return as soon as some bytes were accepted. Over a socket, the calling
/// thread sends what a call gives the session to send itself when it finds the
/// socket's write side free (a write with nothing queued ahead of it goes out from the
/// caller's buffer), and may wait there while the socket's buffer is full, like a
/// `TcpStream` write; otherwise the session's writer thread sends it. Either way
/// [`Write::flush`] has nothing to do.
///
/// Closing: [`Stream::close`] (or [`Stream::shutdown`] with [`Shutdown::Both`]), or
/// dropping the last handle, gives the stream up: our FIN goes out after every accepted
/// byte, unread data is dropped, and later calls on any handle fail with
/// [`io::ErrorKind::NotConnected`]. The peer reads what was sent and then end-of-file,
/// and its writes fail. The stream's ID is freed when the peer's FIN has come back, in
/// the background; a handle never reaches a later stream with the same number.
///
/// Half-close: [`Stream::shutdown`] with [`Shutdown::Write`] sends our FIN after the
/// accepted bytes and keeps reading, like `TcpStream::shutdown(Shutdown::Write)`. That
/// needs an extended stream ([`Stream::is_extended`]: both ends are smux-rs with
/// extensions on); on a base stream it fails with [`io::ErrorKind::Unsupported`].
///
/// Abort: [`Stream::reset`] drops what is buffered both ways and gives the stream up;
/// the peer's reads and writes fail with [`io::ErrorKind::ConnectionReset`] carrying the
/// code ([`reset_code`](crate::reset_code)). On a base stream it is a full close.
///
/// Deadlines are honest: with a write timeout, a write that accepted some bytes before
/// the deadline returns their count, and fails with [`io::ErrorKind::TimedOut`] only
/// if it accepted nothing, so resending exactly the rest never duplicates data.
#[derive(Debug)]
pub struct Stream(Arc<Handle>);

/// What every handle of one stream shares; the stream is released when it goes.
#[derive(Debug)]
struct Handle {
    id: StreamId,
    shared: Arc<Shared>,
    /// Calls blocked on this stream, through any handle, wait on it. (Their waker is
    /// made from it per call, not kept: a stream's memory counts.)
    signal: Arc<Signal>,
    opts: Mutex<Opts>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Opts {
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    nonblocking: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.with(|i| i.release(self.id, None));
    }
}

/// A timeout from a duration the application set.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        let signal = Arc::new(Signal::default());
        Stream(Arc::new(Handle {
            id,
            shared,
            signal,
            opts: Mutex::default(),
        }))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0.shared
    }

    /// The stream's ID: its number on the wire ([`StreamId::number`]) and which stream
    /// with that number it is.
    pub fn id(&self) -> StreamId {
        self.0.id
    }

    /// Another handle to the same stream, sharing its timeouts and blocking mode. The
    /// stream is released when the last handle is dropped.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream(self.0.clone()))
    }

    /// Closes the stream (gives it up): our FIN goes out after every accepted byte,
    /// unread data is dropped, and every later call on any handle of this stream fails
    /// with [`io::ErrorKind::NotConnected`] (calls blocked on it return that error now).
    /// Calling it again does nothing. Dropping the last handle does the same.
    pub fn close(&self) {
        self.0.shared.with(|i| i.release(self.0.id, None));
    }

    /// Aborts the stream in both directions with an error `code` and gives it up: what
    /// is buffered here is dropped, later calls on any handle fail with
    /// [`io::ErrorKind::NotConnected`], and the peer drops what it buffered while its
    /// reads and writes fail with [`io::ErrorKind::ConnectionReset`] carrying `code`
    /// ([`reset_code`](crate::reset_code)). On a base stream ([`Stream::is_extended`]
    /// false) the protocol has no abort, so this is [`Stream::close`]. Does nothing once
    /// the stream was given up or the session ended.
    pub fn reset(&self, code: u32) {
        self.0.shared.with(|i| i.release(self.0.id, Some(code)));
    }

    /// Shuts down the write half, the read half or both, like
    /// [`TcpStream::shutdown`](std::net::TcpStream::shutdown).
    ///
    /// - [`Shutdown::Write`] (half-close): our FIN goes out after every byte already
    ///   accepted, and later writes fail with [`io::ErrorKind::NotConnected`] (writes
    ///   blocked on the stream return that error now). Reads go on: the peer reads to
    ///   end-of-file and can still write, until its own FIN gives us end-of-file.
    ///   Half-close needs the extensions on both ends ([`Stream::is_extended`]): right
    ///   after connecting this waits for the ends to agree (at most a round trip, within
    ///   the write timeout); on a base stream (the peer is the reference implementation
    ///   (yddeng/smux) or has them off) it fails with [`io::ErrorKind::Unsupported`] and
    ///   sends nothing, since a base FIN would end both directions and hide the rest of
    ///   the peer's data behind a clean end-of-file. Calling it again, or after the
    ///   stream was given up or the session ended, does nothing.
    /// - [`Shutdown::Read`] and [`Shutdown::Both`]: [`Stream::close`]. The protocol
    ///   cannot stop only the peer's direction, so the stream is given up.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Write {
            self.close();
            return Ok(());
        }
        let o = self.opts();
        let at = deadline(o.write_timeout);
        let op = |c: &mut Connection, id, w: &Waker, _: &mut ()| c.poll_shutdown(id, w);
        let r = self.block(at, o.nonblocking, &mut (), |_| None, op);
        // Writers blocked on another handle of this stream learn that writes now fail.
        self.0.signal.notify();
        let msg = "half-close timed out";
        r.unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, msg)))
    }

    /// True if the stream is extended: both ends agreed on the protocol extensions (for
    /// every stream of the session), so [`Stream::shutdown`] half-closes and
    /// [`Stream::reset`] aborts. False on a base stream and while the agreement is
    /// pending.
    pub fn is_extended(&self) -> bool {
        self.query(smux_proto::Session::is_extended)
    }

    /// Bytes that a read can return now without waiting.
    pub fn readable_len(&self) -> usize {
        self.query(smux_proto::Session::readable_len)
    }

    /// Bytes that a write can accept now without waiting.
    pub fn writable_len(&self) -> usize {
        self.query(smux_proto::Session::writable_len)
    }

    fn query<R>(&self, f: impl FnOnce(&smux_proto::Session, StreamId) -> R) -> R {
        self.0.shared.with(|i| f(i.conn.session(), self.0.id))
    }

    /// Sets how long a read waits for data; `None` (the default) waits forever. A
    /// read that times out fails with [`io::ErrorKind::TimedOut`]. Like `TcpStream`, a
    /// zero duration is an error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set(timeout, |o| o.read_timeout = timeout)
    }

    /// Sets how long a write waits for window; `None` (the default) waits forever. A
    /// write that accepted nothing before the deadline fails with
    /// [`io::ErrorKind::TimedOut`]; one that accepted some bytes returns their count.
    /// A zero duration is an error.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set(timeout, |o| o.write_timeout = timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts().read_timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts().write_timeout)
    }

    /// In non-blocking mode reads and writes that would wait fail with
    /// [`io::ErrorKind::WouldBlock`] instead; use a [`Poller`](crate::Poller) to learn
    /// when to retry.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.set(None, |o| o.nonblocking = nonblocking)
    }

    fn set(&self, timeout: Option<Duration>, f: impl FnOnce(&mut Opts)) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            let msg = "cannot set a zero duration timeout";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        f(&mut lock(&self.0.opts));
        Ok(())
    }

    /// Reads into `buf` unless `deadline` passes first, in which case it fails with
    /// [`io::ErrorKind::TimedOut`] and nothing was read; `Ok(0)` is end-of-file.
    /// Ignores the stream's read timeout and non-blocking mode.
    pub fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.read_until(buf, Some(deadline), false)
    }

    /// Writes all of `data` unless `deadline` passes first (ignoring the stream's write
    /// timeout and non-blocking mode). On failure the [`PartialWrite`] tells exactly
    /// how many bytes were accepted (they will be sent); nothing after them was, so
    /// resending `data[written..]` sends everything exactly once.
    pub fn write_all_before(&mut self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut written = 0;
        while written < data.len() {
            let rest = &data[written..];
            match self.write_until(rest, Some(deadline), false) {
                Some(Ok(n)) => written += n,
                Some(Err(e)) => return Err(PartialWrite::new(written, e)),
                None => return Err(PartialWrite::timed_out(written)),
            }
        }
        Ok(())
    }

    fn opts(&self) -> Opts {
        *lock(&self.0.opts)
    }

    /// Runs `op` until it is ready, waiting in between unless `nonblocking`; `None` if
    /// `deadline` passed first. Waiting, `first` runs before each try, outside the
    /// session's lock: a value from it is the result.
    fn block<B: ?Sized, T>(
        &self,
        deadline: Option<Instant>,
        nonblocking: bool,
        b: &mut B,
        mut first: impl FnMut(&mut B) -> Option<T>,
        mut op: impl FnMut(&mut Connection, StreamId, &Waker, &mut B) -> Poll<io::Result<T>>,
    ) -> Option<io::Result<T>> {
        let h = &*self.0;
        // A deadline already past hands nothing over, as on the async adapters.
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return None;
        }
        let waker = Waker::from(h.signal.clone());
        loop {
            let seen = h.signal.epoch();
            if let Some(v) = (!nonblocking).then(|| first(b)).flatten() {
                return Some(Ok(v));
            }
            let r = (h.shared).with_io(!nonblocking, |i| op(&mut i.conn, h.id, &waker, b));
            match r {
                Poll::Ready(r) => return Some(r),
                Poll::Pending if nonblocking => return Some(Err(io::ErrorKind::WouldBlock.into())),
                Poll::Pending if !h.shared.park(&h.signal, seen, deadline, true) => return None,
                Poll::Pending => {}
            }
        }
    }

    /// Writes one frame from `data` straight to the transport when nothing is ahead of
    /// it and the write side is free: no copy into the session, no hand-off to the
    /// writer thread. Returns the bytes accepted, or `None` to take the queued path
    /// (always in non-blocking mode, which must not wait on the socket, and once
    /// `at` passed).
    fn write_through(&self, data: &[u8], at: Option<Instant>, nb: bool) -> Option<usize> {
        let h = &*self.0;
        if nb || !h.shared.direct || at.is_some_and(|d| d <= Instant::now()) {
            return None;
        }
        let mut w = h.shared.writer.try_lock().ok()?;
        let f = (h.shared).with(|i| i.conn.begin_direct(h.id, data.len(), &w.output))?;
        let n = f.len();
        // Only sockets write through, and their flush does nothing: no flush is due.
        let r = calm(w.io.write_vectored(&f.slices(data)));
        if f.written(&mut w.output, data, Poll::Ready(r)) {
            drop(w);
            h.shared.with(|i| i.conn.wake_driver());
        }
        Some(n)
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        let o = self.opts();
        self.read_until(buf, deadline(o.read_timeout), o.nonblocking)
    }

    fn read_until(&self, buf: &mut [u8], at: Option<Instant>, nb: bool) -> io::Result<usize> {
        // Read-through: this stream's payload straight from the socket into `buf`.
        let through = |buf: &mut [u8]| match self.0.shared.read_through(self.0.id, buf) {
            0 => None,
            n => Some(n),
        };
        let r = self.block(at, nb, buf, through, |c, id, w, buf| {
            c.poll_read(id, buf, w)
        });
        // A read-through that found the socket empty held back the reader thread's
        // wake-up: this call led input itself, or it is owed now.
        self.0.shared.pay_input();
        let r = r.unwrap_or_else(|| Err(read_timed_out()));
        if matches!(r, Ok(0)) && !buf.is_empty() {
            // This stream ended: its reader is not back for more.
            self.0.shared.attend();
        }
        r
    }

    /// Writes what it can of `data`: through, or into the session; `None` if
    /// `deadline` passed first.
    fn write_until(&self, data: &[u8], at: Option<Instant>, nb: bool) -> Option<io::Result<usize>> {
        let direct = self.write_through(data, at, nb).map(Ok);
        let op = |c: &mut Connection, id, w: &Waker, _: &mut ()| c.poll_write(id, data, w);
        direct.or_else(|| self.block(at, nb, &mut (), |_| None, op))
    }

    fn write_inner(&self, data: &[u8]) -> io::Result<usize> {
        let o = self.opts();
        let r = self.write_until(data, deadline(o.write_timeout), o.nonblocking);
        let msg = "smux write timed out with nothing accepted";
        r.unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, msg)))
    }
}

// `&Stream` too, so one thread can read while another writes.
macro_rules! std_io {
    ($($t:ty),*) => {$(
        impl Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.read_inner(buf)
            }
        }

        impl Write for $t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.write_inner(buf)
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    )*};
}

std_io!(Stream, &Stream);
