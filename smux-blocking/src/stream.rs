//! A stream: std `Read` + `Write` over one smux stream.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use smux_proto::{ReadError, StreamId, WriteError};

use crate::session::{Inner, Shared};
use crate::signal::{lock, Signal};

/// One stream of a session, read and written like a `TcpStream`.
///
/// `Stream` implements [`Read`] and [`Write`], and so does `&Stream`, so one thread can
/// read while another writes (or use [`Stream::try_clone`]). Reads return buffered
/// data, then end-of-file (`Ok(0)`) after the peer closed the stream. Writes wait for
/// window and return as soon as some bytes were accepted; accepted bytes are sent by
/// the session's writer thread, so [`Write::flush`] has nothing to do.
///
/// Closing: [`Stream::close`] (or [`Stream::shutdown`] with [`Shutdown::Both`]), or
/// dropping the last handle, gives the stream up: our FIN goes out after every accepted
/// byte, unread data is dropped, and later calls on any handle fail. The peer reads
/// what was sent and then end-of-file, and its writes fail. The stream's ID is freed
/// when the peer's FIN has come back, in the background.
///
/// Half-close: [`Stream::shutdown`] with [`Shutdown::Write`] sends our FIN after the
/// accepted bytes and keeps reading, like `TcpStream::shutdown(Shutdown::Write)`: the
/// peer reads to end-of-file and can still answer, and our reads go on until its FIN.
/// That needs an extended stream ([`Stream::is_extended`]: both ends are smux-rs with
/// extensions on); on a base stream it fails with [`io::ErrorKind::Unsupported`].
///
/// Abort: [`Stream::reset`] drops what is buffered both ways and gives the stream up;
/// the peer's reads and writes fail with [`io::ErrorKind::ConnectionReset`] carrying the
/// code ([`reset_code`]). On a base stream it is a full close.
///
/// Deadlines follow the seed's honest semantics: with a write timeout, a write that
/// accepted some bytes before the deadline returns their count, and a write returns
/// [`io::ErrorKind::TimedOut`] only if it accepted nothing, so resending exactly the
/// rest never duplicates data.
pub struct Stream {
    inner: Arc<StreamInner>,
}

struct StreamInner {
    id: StreamId,
    shared: Arc<Shared>,
    signal: Arc<Signal>,
    waker: Waker,
    opts: Mutex<Opts>,
    /// Set (under the session lock) once the stream was closed locally: its ID may be
    /// reused by another stream, so no call may reach the core under it again.
    closed: AtomicBool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Opts {
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    nonblocking: bool,
}

/// Which way a blocked call waits.
#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// The outcome of one attempt of a blocking call.
enum Step<T> {
    Done(io::Result<T>),
    Blocked,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.inner.id)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        let _ = close_stream(&self.shared, self.id, &self.closed);
    }
}

/// Closes stream `id` once; later calls do nothing.
fn close_stream(shared: &Shared, id: StreamId, closed: &AtomicBool) -> io::Result<()> {
    shared.with(|i| release(i, id, closed, |core| core.close(id)))
}

/// Gives stream `id` up with `how` (the core's close or reset), once: from now on no
/// call may reach the core under this ID, which the core may reuse. Under the lock.
fn release(
    i: &mut Inner,
    id: StreamId,
    closed: &AtomicBool,
    how: impl FnOnce(&mut smux_proto::Session) -> Result<(), WriteError>,
) -> io::Result<()> {
    if closed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    i.waiters.forget(id);
    i.deregister(id);
    match how(&mut i.core) {
        Ok(()) | Err(WriteError::SessionEnded(_)) | Err(WriteError::UnknownStream) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub use smux_proto::reset_code;

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream was shut down locally")
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        let (signal, waker) = Signal::new();
        Stream {
            inner: Arc::new(StreamInner {
                id,
                shared,
                signal,
                waker,
                opts: Mutex::new(Opts::default()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Checked under the session lock: false once the stream was closed locally.
    pub(crate) fn is_live(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
    }

    /// The stream's ID on the wire.
    pub fn id(&self) -> StreamId {
        self.inner.id
    }

    /// Another handle to the same stream, sharing its timeouts and blocking mode. The
    /// stream closes when the last handle is dropped.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            inner: self.inner.clone(),
        })
    }

    /// Closes the stream (gives it up): our FIN goes out after every accepted byte,
    /// unread data is dropped, and every later call on any handle of this stream fails
    /// with [`io::ErrorKind::NotConnected`] (calls blocked on it return that error now).
    /// Calling it again does nothing. Dropping the last handle does the same.
    pub fn close(&self) -> io::Result<()> {
        let r = close_stream(&self.inner.shared, self.inner.id, &self.inner.closed);
        self.inner.signal.notify();
        r
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
    ///   the write timeout); on a base stream (the peer is a reference implementation
    ///   or has them off) it fails with [`io::ErrorKind::Unsupported`] and sends
    ///   nothing, since a base FIN would end both directions and hide the rest of the
    ///   peer's data behind a clean end-of-file. Calling it again does nothing. Fails
    ///   with the session's error if the session has ended, and with
    ///   [`io::ErrorKind::ConnectionReset`] if the peer reset the stream.
    /// - [`Shutdown::Read`] and [`Shutdown::Both`]: [`Stream::close`]. The protocol
    ///   cannot stop only the peer's direction, so the stream is given up.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match how {
            Shutdown::Write => {
                if !self.is_live() {
                    return Ok(());
                }
                let id = self.inner.id;
                let o = self.opts();
                let r = self.blocking(
                    Dir::Write,
                    Self::deadline(o.write_timeout),
                    o.nonblocking,
                    |i| {
                        if let Some(e) = Shared::ended_error(i) {
                            return Step::Done(Err(e));
                        }
                        match i.core.shutdown(id) {
                            Ok(()) => Step::Done(Ok(())),
                            // The agreement on extensions is still pending.
                            Err(WriteError::Blocked) => Step::Blocked,
                            Err(e) => Step::Done(Err(e.into())),
                        }
                    },
                );
                // Writers blocked on this stream must see that writes now fail.
                self.inner.signal.notify();
                r
            }
            Shutdown::Read | Shutdown::Both => self.close(),
        }
    }

    /// Aborts the stream in both directions with an error `code` and gives it up: what
    /// is buffered here is dropped, later calls on any handle fail with
    /// [`io::ErrorKind::NotConnected`], and the peer drops what it buffered while its
    /// reads and writes fail with [`io::ErrorKind::ConnectionReset`] carrying `code`
    /// ([`reset_code`]). On a base stream ([`Stream::is_extended`] false) there is no
    /// abort in the protocol, so this is [`Stream::close`]. Calling it after the stream
    /// was given up does nothing.
    pub fn reset(&self, code: u32) -> io::Result<()> {
        let (id, closed) = (self.inner.id, &self.inner.closed);
        let r = self
            .inner
            .shared
            .with(|i| release(i, id, closed, |core| core.reset(id, code)));
        self.inner.signal.notify();
        r
    }

    /// True if the stream is extended: both ends agreed on the protocol extensions (for
    /// every stream of the session), so [`Stream::shutdown`] half-closes and
    /// [`Stream::reset`] aborts. False on a base stream, while the agreement is
    /// pending, and once the stream was given up.
    pub fn is_extended(&self) -> bool {
        let id = self.inner.id;
        self.inner
            .shared
            .with(|i| self.is_live() && i.core.is_extended(id))
    }

    /// Sets how long a read waits for data; `None` (the default) waits forever. A
    /// read that times out fails with [`io::ErrorKind::TimedOut`]. Like `TcpStream`, a
    /// zero duration is an error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        lock(&self.inner.opts).read_timeout = timeout;
        Ok(())
    }

    /// Sets how long a write waits for window; `None` (the default) waits forever. A
    /// write that accepted nothing before the deadline fails with
    /// [`io::ErrorKind::TimedOut`]; one that accepted some bytes returns their count.
    /// A zero duration is an error.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        lock(&self.inner.opts).write_timeout = timeout;
        Ok(())
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(lock(&self.inner.opts).read_timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(lock(&self.inner.opts).write_timeout)
    }

    /// In non-blocking mode reads and writes that would wait fail with
    /// [`io::ErrorKind::WouldBlock`] instead; use a [`Poller`](crate::Poller) to learn
    /// when to retry.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        lock(&self.inner.opts).nonblocking = nonblocking;
        Ok(())
    }

    /// Bytes that a read can return now without waiting.
    pub fn readable_len(&self) -> usize {
        let id = self.inner.id;
        self.inner.shared.with(|i| {
            if self.is_live() {
                i.core.readable_len(id)
            } else {
                0
            }
        })
    }

    /// Bytes that a write can accept now without waiting.
    pub fn writable_len(&self) -> usize {
        let id = self.inner.id;
        self.inner.shared.with(|i| {
            if self.is_live() {
                i.core.writable_len(id)
            } else {
                0
            }
        })
    }

    /// Writes as much of `buf` as the stream accepts before `deadline`, waiting for
    /// window as needed (the seed's write with a deadline). Returns the count accepted:
    /// all of `buf`, or fewer if the deadline passed, in which case the caller decides
    /// whether to send the rest. Fails with [`io::ErrorKind::TimedOut`] only if nothing
    /// was accepted, and with the stream's error only if nothing was accepted before
    /// it. Ignores the stream's own write timeout and non-blocking mode.
    pub fn write_before(&self, buf: &[u8], deadline: Instant) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.write_until(&buf[done..], Some(deadline), false) {
                Ok(n) => done += n,
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Writes all of `data` unless `deadline` passes first (ignoring the stream's write
    /// timeout and non-blocking mode). On failure the [`PartialWrite`] tells exactly
    /// how many bytes were accepted (they will be sent); nothing after them was, so
    /// resending `data[written..]` sends everything exactly once.
    pub fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut written = 0;
        while written < data.len() {
            match self.write_until(&data[written..], Some(deadline), false) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    // The call's own message says "nothing accepted", which is only
                    // true of its last attempt; the count is in the PartialWrite.
                    let error = io::Error::new(e.kind(), "smux write deadline passed");
                    return Err(PartialWrite { written, error });
                }
                Err(error) => return Err(PartialWrite { written, error }),
            }
        }
        Ok(())
    }

    /// Reads into `buf` unless `deadline` passes first, in which case it fails with
    /// [`io::ErrorKind::TimedOut`] and nothing was read; `Ok(0)` is end-of-file.
    /// Ignores the stream's read timeout and non-blocking mode.
    pub fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.read_until(buf, Some(deadline), false)
    }

    fn opts(&self) -> Opts {
        *lock(&self.inner.opts)
    }

    fn deadline(timeout: Option<Duration>) -> Option<Instant> {
        timeout.map(|t| Instant::now() + t)
    }

    /// Runs `op` under the lock until it is done; waits between attempts.
    fn blocking<T>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        nonblocking: bool,
        mut op: impl FnMut(&mut Inner) -> Step<T>,
    ) -> io::Result<T> {
        let s = &*self.inner;
        loop {
            let mut seen = 0;
            let step = s.shared.with(|i| {
                if !self.is_live() {
                    return Step::Done(Err(closed_error()));
                }
                let step = op(i);
                if let Step::Blocked = step {
                    if nonblocking {
                        return Step::Done(Err(io::ErrorKind::WouldBlock.into()));
                    }
                    seen = s.signal.epoch();
                    match dir {
                        Dir::Read => i.waiters.wait_read(s.id, &s.waker),
                        Dir::Write => i.waiters.wait_write(s.id, &s.waker),
                    }
                }
                step
            });
            match step {
                Step::Done(r) => return r,
                Step::Blocked => {
                    if !s.signal.wait(seen, deadline) {
                        let what = match dir {
                            Dir::Read => "read timed out",
                            Dir::Write => "write timed out with nothing accepted",
                        };
                        return Err(io::Error::new(io::ErrorKind::TimedOut, what));
                    }
                }
            }
        }
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        let o = self.opts();
        self.read_until(buf, Self::deadline(o.read_timeout), o.nonblocking)
    }

    fn read_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let id = self.inner.id;
        self.blocking(Dir::Read, deadline, nonblocking, |i| {
            match i.core.read(id, buf) {
                Ok(n) => Step::Done(Ok(n)),
                Err(ReadError::Blocked) => Step::Blocked,
                Err(e) => Step::Done(Err(e.into())),
            }
        })
    }

    fn write_until(
        &self,
        buf: &[u8],
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let id = self.inner.id;
        self.blocking(Dir::Write, deadline, nonblocking, |i| {
            if i.closing && !i.core.is_ended() {
                return Step::Done(Err(Shared::closing_error()));
            }
            match i.core.write(id, buf) {
                Ok(n) => Step::Done(Ok(n)),
                Err(WriteError::Blocked) => Step::Blocked,
                Err(e) => Step::Done(Err(e.into())),
            }
        })
    }

    fn write_inner(&self, buf: &[u8]) -> io::Result<usize> {
        let o = self.opts();
        self.write_until(buf, Self::deadline(o.write_timeout), o.nonblocking)
    }
}

/// A write with a deadline that did not complete: carries the exact number of bytes
/// the stream accepted before it stopped.
///
/// Those `written` bytes will reach the peer (unless the session fails); the rest was
/// not sent at all. [`PartialWrite::error`] says why it stopped: an error of kind
/// [`io::ErrorKind::TimedOut`] when the deadline passed, otherwise the stream's or
/// the session's failure.
#[derive(Debug)]
pub struct PartialWrite {
    written: usize,
    error: io::Error,
}

impl PartialWrite {
    /// Bytes accepted before the write stopped.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Why the write stopped.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// True if the deadline passed (as opposed to a stream or session failure).
    pub fn is_timeout(&self) -> bool {
        self.error.kind() == io::ErrorKind::TimedOut
    }

    /// The error, dropping the count.
    pub fn into_error(self) -> io::Error {
        self.error
    }
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} bytes were written",
            self.error, self.written
        )
    }
}

impl std::error::Error for PartialWrite {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<PartialWrite> for io::Error {
    /// An `io::Error` of the same kind whose inner error is the `PartialWrite`, so the
    /// count survives `?`: `e.get_ref()` then `downcast_ref::<PartialWrite>()`.
    fn from(p: PartialWrite) -> io::Error {
        io::Error::new(p.error.kind(), p)
    }
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a zero duration timeout",
        ));
    }
    Ok(())
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
