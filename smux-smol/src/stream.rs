//! Streams: futures-io `AsyncRead` / `AsyncWrite` over one smux stream.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{Event, ReadError, StreamId, WriteError};

use crate::deadline::PartialWrite;
use crate::session::{closing_error, lock, wake, Shared};

fn timed_out(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}

/// What a [`Stream`] and its halves share; dropping it releases the stream.
struct Core {
    shared: Shared,
    id: StreamId,
    /// Set (under the session lock) once this handle released the stream: a close of
    /// a base stream, or a reset. The core frees the ID once the close handshake
    /// finishes and may then give it to a new stream, so from here on no call may
    /// reach the core with this ID.
    released: AtomicBool,
}

impl Drop for Core {
    fn drop(&mut self) {
        let driver = {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            if !self.is_released() {
                inner.waiters.forget(self.id);
                // An error means the session ended.
                let _ = inner.session.close(self.id);
            }
            inner.take_driver()
        };
        wake(driver);
    }
}

impl Core {
    /// Only meaningful under the session lock, which orders it with the core's state.
    fn is_released(&self) -> bool {
        self.released.load(Ordering::Relaxed)
    }

    fn set_released(&self) {
        self.released.store(true, Ordering::Relaxed);
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut g = lock(&self.shared);
        let inner = &mut *g;
        if self.is_released() {
            return Poll::Ready(Err(ReadError::Closed.into()));
        }
        let stalled = !inner.session.wants_input();
        match inner.session.read(self.id, buf) {
            Ok(n) => {
                // Reading may have queued a CFM or made room for stalled input.
                let driver = if stalled || inner.session.has_transmit() {
                    inner.take_driver()
                } else {
                    None
                };
                drop(g);
                wake(driver);
                Poll::Ready(Ok(n))
            }
            Err(ReadError::Blocked) => {
                inner.waiters.wait_read(self.id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut g = lock(&self.shared);
        let inner = &mut *g;
        if self.is_released() {
            return Poll::Ready(Err(WriteError::Closed.into()));
        }
        if inner.refuses_work() {
            return Poll::Ready(Err(closing_error()));
        }
        match inner.session.write(self.id, buf) {
            Ok(n) => {
                let driver = inner.take_driver();
                drop(g);
                wake(driver);
                Poll::Ready(Ok(n))
            }
            Err(WriteError::Blocked) => {
                inner.waiters.wait_write(self.id, cx.waker());
                // The refusal may have handed a send-queue turn out (a Writable event,
                // perhaps our own): the driver dispatches it.
                let driver = inner.take_driver();
                drop(g);
                wake(driver);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// Ends our writing (half-close): `Session::shutdown` in the core. Waits while
    /// the ends have not agreed on the extensions yet (at most a round trip); fails
    /// with `Unsupported`, sending nothing, on a base stream.
    fn poll_close(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let driver = {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            if self.is_released() {
                // Closing twice is fine.
                return Poll::Ready(Ok(()));
            }
            match inner.session.shutdown(self.id) {
                // So is closing after the session ended.
                Ok(()) | Err(WriteError::Closed) | Err(WriteError::SessionEnded(_)) => {}
                Err(WriteError::UnknownStream) => self.set_released(),
                Err(WriteError::Blocked) => {
                    inner.waiters.wait_write(self.id, cx.waker());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
            inner.take_driver()
        };
        wake(driver);
        Poll::Ready(Ok(()))
    }

    fn is_extended(&self) -> bool {
        let g = lock(&self.shared);
        !self.is_released() && g.session.is_extended(self.id)
    }

    fn reset(&self, code: u32) -> io::Result<()> {
        let mut woken = Vec::new();
        let result = {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            if self.is_released() {
                return Err(WriteError::Closed.into());
            }
            let result = inner.session.reset(self.id, code).map_err(io::Error::from);
            if !inner.session.is_ended() {
                self.set_released();
            }
            // The other half, parked on this stream, now fails at once.
            inner.waiters.dispatch(&Event::Closed(self.id), &mut woken);
            woken.extend(inner.take_driver());
            result
        };
        woken.into_iter().for_each(Waker::wake);
        result
    }

    async fn write_all_before(&self, buf: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        if Instant::now() >= deadline {
            return Err(PartialWrite::new(0, timed_out("write deadline passed")));
        }
        let mut timer = Timer::at(deadline);
        let mut written = 0;
        poll_fn(|cx| loop {
            if written == buf.len() {
                return Poll::Ready(Ok(()));
            }
            match self.poll_write(cx, &buf[written..]) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Err(PartialWrite::new(written, error)));
                }
                Poll::Pending => {
                    if Instant::now() >= deadline || Pin::new(&mut timer).poll(cx).is_ready() {
                        let error = timed_out("write deadline passed");
                        return Poll::Ready(Err(PartialWrite::new(written, error)));
                    }
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    async fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        if Instant::now() >= deadline {
            return Err(timed_out("read deadline passed"));
        }
        let mut timer = Timer::at(deadline);
        poll_fn(|cx| match self.poll_read(cx, buf) {
            Poll::Pending => {
                if Instant::now() >= deadline || Pin::new(&mut timer).poll(cx).is_ready() {
                    Poll::Ready(Err(timed_out("read deadline passed")))
                } else {
                    Poll::Pending
                }
            }
            ready => ready,
        })
        .await
    }
}

/// One multiplexed byte stream: futures-io [`AsyncRead`] + [`AsyncWrite`].
///
/// * Reads return buffered data, then end-of-file (`Ok(0)`) after the peer closed the
///   stream. Reading confirms (CFM) the consumed bytes to the peer, so a stream that
///   is not read holds back only its own sender, never the other streams.
/// * Writes return as soon as the core accepted some bytes (at most a window of
///   512 KiB by default is in flight per stream) and wait while the window is full.
///   Every accepted byte will be sent unless the session ends.
/// * `poll_close` (`AsyncWriteExt::close`) is a half-close: our FIN follows the
///   bytes already written, later writes fail, and reads go on until the peer's own
///   FIN (end-of-file); the peer may keep writing until then. It needs the extensions
///   on both ends (see [`Stream::is_extended`]): right after connecting it waits for
///   the ends to agree (at most a round trip); against a base peer (a reference
///   implementation, or extensions off) it fails with [`io::ErrorKind::Unsupported`]
///   and sends nothing, since a base FIN would end both directions and hide the rest
///   of the peer's data behind a clean end-of-file. Read to the end, then drop it.
/// * Dropping the stream releases it: our FIN goes out after the written bytes if it
///   has not yet, and unread data is dropped (on an extended stream, what the peer
///   still sends is confirmed and discarded, so it never blocks). The stream's ID is
///   reused only after the close handshake, which finishes in the background.
/// * [`Stream::reset`] aborts an extended stream both ways with an error code that
///   the peer's reads and writes report as [`io::ErrorKind::ConnectionReset`] (see
///   [`reset_code`](crate::reset_code)).
///
/// For reading and writing from two tasks at once, [`Stream::into_split`] it.
/// [`Stream::write_all_before`] and [`Stream::read_before`] bound a
/// transfer in time and report exactly what was done.
pub struct Stream {
    core: Arc<Core>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("id", &self.core.id).finish()
    }
}

impl Stream {
    /// A handle on stream `id`.
    pub(crate) fn new(shared: Shared, id: StreamId) -> Stream {
        Stream {
            core: Arc::new(Core {
                shared,
                id,
                released: AtomicBool::new(false),
            }),
        }
    }

    /// The stream's ID on the wire.
    pub fn id(&self) -> StreamId {
        self.core.id
    }

    /// Whether the stream is extended (half-close, reset, windows that grow): true
    /// once both ends agreed on the extensions (see [`Session::ready`]), for every
    /// stream of the session; false against a base peer and while the agreement is
    /// pending.
    ///
    /// [`Session::ready`]: crate::Session::ready
    pub fn is_extended(&self) -> bool {
        self.core.is_extended()
    }

    /// Aborts the stream in both directions and releases it: data buffered on either
    /// end is dropped, and the peer's reads and writes on it fail with
    /// [`io::ErrorKind::ConnectionReset`] carrying `code` (see
    /// [`reset_code`](crate::reset_code)). Later calls on this handle fail with
    /// [`io::ErrorKind::NotConnected`].
    ///
    /// A base stream has no abort: there this closes the stream as dropping it would,
    /// and the peer reads what had been sent, then end-of-file. Fails with
    /// [`io::ErrorKind::NotConnected`] if the stream was already released here (by
    /// an earlier reset or a close on a base stream), or with the session's error
    /// once it ended.
    pub fn reset(&mut self, code: u32) -> io::Result<()> {
        self.core.reset(code)
    }

    /// Splits the stream into a read half and a write half that can be used from two
    /// tasks at once. The stream is released when both halves are dropped (or when
    /// either half resets it); closing the write half ends our writing as
    /// `poll_close` does on the stream.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                core: self.core.clone(),
            },
            WriteHalf { core: self.core },
        )
    }

    /// Writes all of `buf` unless `deadline` passes first, with the seed's honest
    /// timeout: on timeout (or any other failure) the error says exactly how many
    /// bytes were accepted, and those will be delivered; resend only the rest. A
    /// deadline already past writes nothing.
    ///
    /// If this future is dropped before completing, the count is lost: some prefix
    /// of `buf` may have been accepted. Bound the call with the deadline instead.
    pub async fn write_all_before(
        &mut self,
        buf: &[u8],
        deadline: Instant,
    ) -> Result<(), PartialWrite> {
        self.core.write_all_before(buf, deadline).await
    }

    /// Reads into `buf` like `AsyncReadExt::read`, but fails with
    /// [`io::ErrorKind::TimedOut`] if no data (nor end-of-file) arrived by `deadline`
    /// (then nothing was read). `Ok(0)` is end-of-file.
    pub async fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.core.read_before(buf, deadline).await
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.core.poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.core.poll_write(cx, buf)
    }

    /// Accepted bytes are already on their way: nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.core.poll_close(cx)
    }
}

/// The reading half of a [`Stream`] (see [`Stream::into_split`]).
pub struct ReadHalf {
    core: Arc<Core>,
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf")
            .field("id", &self.core.id)
            .finish()
    }
}

impl ReadHalf {
    /// The stream's ID on the wire.
    pub fn id(&self) -> StreamId {
        self.core.id
    }

    /// See [`Stream::is_extended`].
    pub fn is_extended(&self) -> bool {
        self.core.is_extended()
    }

    /// Aborts the whole stream, both directions (see [`Stream::reset`]): the write
    /// half then fails too.
    pub fn reset(&mut self, code: u32) -> io::Result<()> {
        self.core.reset(code)
    }

    /// See [`Stream::read_before`].
    pub async fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.core.read_before(buf, deadline).await
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.core.poll_read(cx, buf)
    }
}

/// The writing half of a [`Stream`] (see [`Stream::into_split`]). Closing it ends our
/// writing: on an extended stream the read half reads on until the peer's FIN; on a
/// base stream, which has no half-close, it closes the whole stream.
pub struct WriteHalf {
    core: Arc<Core>,
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf")
            .field("id", &self.core.id)
            .finish()
    }
}

impl WriteHalf {
    /// The stream's ID on the wire.
    pub fn id(&self) -> StreamId {
        self.core.id
    }

    /// See [`Stream::is_extended`].
    pub fn is_extended(&self) -> bool {
        self.core.is_extended()
    }

    /// Aborts the whole stream, both directions (see [`Stream::reset`]): the read
    /// half then fails too.
    pub fn reset(&mut self, code: u32) -> io::Result<()> {
        self.core.reset(code)
    }

    /// See [`Stream::write_all_before`].
    pub async fn write_all_before(
        &mut self,
        buf: &[u8],
        deadline: Instant,
    ) -> Result<(), PartialWrite> {
        self.core.write_all_before(buf, deadline).await
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.core.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.core.poll_close(cx)
    }
}

pub use smux_proto::reset_code;
