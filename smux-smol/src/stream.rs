//! Streams: futures-io `AsyncRead` / `AsyncWrite` over one smux stream.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
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

/// What a [`Stream`] and its halves share; dropping it closes the stream.
struct Core {
    shared: Shared,
    id: StreamId,
}

impl Drop for Core {
    fn drop(&mut self) {
        let driver = {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            inner.waiters.forget(self.id);
            // An error means the stream is already closed or the session ended.
            let _ = inner.session.close(self.id);
            inner.take_driver()
        };
        wake(driver);
    }
}

impl Core {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut g = lock(&self.shared);
        let inner = &mut *g;
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
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    fn poll_close(&self) -> Poll<io::Result<()>> {
        let mut woken = Vec::new();
        {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            match inner.session.close(self.id) {
                // Closing twice is fine; so is closing after the session ended.
                Ok(())
                | Err(WriteError::Closed)
                | Err(WriteError::UnknownStream)
                | Err(WriteError::SessionEnded(_)) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
            // A read half parked on this stream learns at once that it was closed.
            inner
                .waiters
                .dispatch(&Event::Finished(self.id), &mut woken);
            woken.extend(inner.take_driver());
        }
        woken.into_iter().for_each(Waker::wake);
        Poll::Ready(Ok(()))
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
/// * `poll_close` (`AsyncWriteExt::close`) sends our FIN after the bytes already
///   written. smux has no half-close: after it, the stream can neither be written
///   nor read, and the peer reads what was sent, then end-of-file. The stream's ID is
///   reused only after the peer's FIN came back; that happens in the background.
/// * Dropping the stream closes it the same way.
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
    pub(crate) fn new(shared: Shared, id: StreamId) -> Stream {
        Stream {
            core: Arc::new(Core { shared, id }),
        }
    }

    /// The stream's ID on the wire.
    pub fn id(&self) -> StreamId {
        self.core.id
    }

    /// Splits the stream into a read half and a write half that can be used from two
    /// tasks at once. The stream closes when both halves are dropped (or when the
    /// write half is closed).
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

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.core.poll_close()
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

/// The writing half of a [`Stream`] (see [`Stream::into_split`]). Closing it closes the
/// whole stream: smux has no half-close.
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

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.core.poll_close()
    }
}
