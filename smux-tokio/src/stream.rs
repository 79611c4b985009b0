//! Streams: Tokio `AsyncRead` + `AsyncWrite` handles on one smux stream.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSliceMut};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use smux_proto::{poll_read_through, read_timed_out, Connection, PartialWrite, StreamId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::shared::{now, ReadSide, Reader, Shared};

/// One stream of a [`Session`](crate::Session).
///
/// Reading returns the bytes the peer sent, then end-of-file after the peer's FIN.
/// Writing waits while the stream's window (512 KiB of unconfirmed bytes by default)
/// or the session's send queue is full; a write that returns `Ok(n)` has handed `n`
/// bytes to the session, which sends them unless the session ends.
///
/// Shutting down (`AsyncWriteExt::shutdown`) is a half-close: our FIN follows every
/// byte already written and writes fail from then on, while the peer may go on
/// writing and reads return its data until its own FIN (end-of-file). The stream stays
/// ours until it is dropped. Half-close needs the extensions on both ends (two smux-rs
/// ends with [`Config::extensions`](crate::Config::extensions) on, the default):
///
/// * right after connecting, before the ends have agreed, shutdown waits for the
///   agreement (at most one round trip);
/// * against a base peer (the reference implementation (yddeng/smux), or extensions
///   off on either end) it fails with [`io::ErrorKind::Unsupported`] and sends
///   nothing, because a base FIN ends both directions and the rest of the peer's data
///   would be lost behind a clean end-of-file. Read to the end, then drop the stream.
///
/// Dropping the stream (or both its halves) releases it: our FIN goes out after every
/// byte already written and the handshake completes in the background.
/// [`Stream::reset`] aborts it instead, in both directions and with an error code the
/// peer's reads and writes report (as [`io::ErrorKind::ConnectionReset`], see
/// [`reset_code`](crate::reset_code)). Once this end reset the stream, its reads and
/// writes fail with [`io::ErrorKind::NotConnected`].
///
/// For reading and writing from two tasks, split the stream with
/// [`Stream::into_split`]; the stream is released when both halves are dropped.
#[derive(Debug)]
pub struct Stream {
    inner: Arc<StreamRef>,
}

/// The reading half of a [`Stream`], from [`Stream::into_split`].
#[derive(Debug)]
pub struct ReadHalf {
    inner: Arc<StreamRef>,
}

/// The writing half of a [`Stream`], from [`Stream::into_split`].
#[derive(Debug)]
pub struct WriteHalf {
    inner: Arc<StreamRef>,
}

/// What a stream handle (or both halves) holds; releases the stream when dropped. The
/// ID carries the stream's generation, so once the number is reused by a new stream
/// the core refuses this handle's calls instead of reaching the new stream.
struct StreamRef {
    shared: Arc<Shared>,
    id: StreamId,
}

impl fmt::Debug for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("session", &self.shared.tag)
            .field("id", &self.id.number())
            .finish()
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.shared.with(|c| c.release(self.id));
    }
}

impl StreamRef {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(r) = self.read_through(cx, buf) {
            return r;
        }
        self.shared.with(|c| {
            // Initialise only as much of an uninitialised buffer as there is to copy.
            let mut n = buf.remaining();
            if buf.initialized().len() < buf.capacity() {
                n = c.session().readable_len(self.id).clamp(1, n);
            }
            let r = ready!(c.poll_read(self.id, buf.initialize_unfilled_to(n), cx.waker()));
            Poll::Ready(r.map(|n| buf.advance(n)))
        })
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(n) = self.write_through(cx, data) {
            return Poll::Ready(Ok(n));
        }
        self.shared
            .with(|c| c.poll_write(self.id, data, cx.waker()))
    }

    /// Writes one frame straight from `data` to the transport when nothing is ahead of
    /// it and nobody else is writing: no copy into the session and no hand-off to the
    /// driver. Returns the bytes accepted, or `None` to take the queued path.
    fn write_through(&self, cx: &mut Context<'_>, data: &[u8]) -> Option<usize> {
        let mut w = self.shared.try_writer()?;
        let Some(f) = (self.shared).with(|c| c.begin_direct(self.id, data.len(), &w.output)) else {
            self.shared.release_writer(w);
            return None;
        };
        let n = f.len();
        if f.takes_long() {
            self.shared.hold_writer_long();
        }
        let r = w.io.as_mut().poll_write_vectored(cx, &f.slices(data));
        let mut wake = f.written(&mut w.output, data, r);
        if !wake && w.io.as_mut().poll_flush(cx).is_pending() {
            w.output.wrote_direct();
            wake = true;
        }
        self.shared.release_writer(w);
        if wake {
            self.shared.with(|c| c.wake_driver());
        }
        Some(n)
    }

    /// Reads this stream's data straight from a TCP transport into `buf` when it is
    /// next on the wire and nothing is buffered ahead of it (also reading the frame
    /// headers in between while the transport has more): no copy out of the session
    /// and no hand-off from the driver. Else reads what is buffered, or waits, under
    /// the same lock. `None`: the read side is busy (the driver reads), or the buffer
    /// is not initialised; read as usual. Reads are non-blocking tries, so the
    /// driver's own wait on the socket stays in place.
    fn read_through(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Option<Poll<io::Result<()>>> {
        // Not into uninitialised memory: zeroing it first would cost what the copy saves.
        let init = buf.initialized().len() == buf.capacity();
        let mut r = self.shared.try_reader().filter(|_| init)?;
        let Reader { io, input } = &mut *r;
        let ReadSide::Tcp(tcp) = io else {
            return None;
        };
        let dst = buf.initialize_unfilled();
        let with = |f: &mut dyn FnMut(&mut Connection)| self.shared.with(f);
        let read = |v: &mut [IoSliceMut<'_>]| tcp.try_read_vectored(v);
        let r = poll_read_through(self.id, input, dst, cx.waker(), with, now, read);
        Some(r.map_ok(|n| buf.advance(n)))
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.with(|c| c.poll_shutdown(self.id, cx.waker()))
    }

    fn reset(&self, code: u32) {
        self.shared.with(|c| c.reset(self.id, code));
    }

    fn is_extended(&self) -> bool {
        self.shared.with(|c| c.session().is_extended(self.id))
    }

    async fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let read = before(deadline, |cx| {
            let mut rb = ReadBuf::new(&mut *buf);
            let r = ready!(self.poll_read(cx, &mut rb));
            Poll::Ready(r.map(|()| rb.filled().len()))
        });
        read.await.unwrap_or_else(|| Err(read_timed_out()))
    }

    async fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut written = 0;
        let write = before(deadline, |cx| {
            while written < data.len() {
                written += ready!(self.poll_write(cx, &data[written..]))?;
            }
            Poll::Ready(Ok(()))
        });
        match write.await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(PartialWrite::new(written, e)),
            None => Err(PartialWrite::timed_out(written)),
        }
    }
}

/// Polls `op` until it is ready (`Some`) or `deadline` passes (`None`). A deadline
/// that has already passed lets nothing through.
async fn before<R>(
    deadline: Instant,
    mut op: impl FnMut(&mut Context<'_>) -> Poll<R>,
) -> Option<R> {
    if deadline <= Instant::now() {
        return None;
    }
    let mut sleep = pin!(tokio::time::sleep_until(deadline));
    poll_fn(|cx| match op(cx) {
        Poll::Ready(r) => Poll::Ready(Some(r)),
        Poll::Pending => sleep.as_mut().poll(cx).map(|()| None),
    })
    .await
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        Stream {
            inner: Arc::new(StreamRef { shared, id }),
        }
    }

    /// Splits the stream into a reading and a writing half that can be used from two
    /// tasks at once. The stream is released when both halves are dropped, or when one
    /// half resets it. Shutting the writing half down is a half-close (the reading
    /// half goes on until the peer's end-of-file; see [`Stream`] for base peers).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let read = ReadHalf {
            inner: self.inner.clone(),
        };
        (read, WriteHalf { inner: self.inner })
    }
}

/// What the stream and both halves have in common.
macro_rules! impl_common {
    ($($t:ty),*) => {$(
        impl $t {
            /// The stream's ID: its 16-bit number on the wire
            /// ([`StreamId::number`]) and which stream with that number it is.
            pub fn id(&self) -> StreamId {
                self.inner.id
            }

            /// Whether the stream has the extensions: shutdown is a half-close and
            /// reset an abort with a code. True once both ends agreed on them (see
            /// [`Session::ready`](crate::Session::ready)), for every stream of the
            /// session; false against a base peer, while the agreement is still
            /// pending, and once the stream is gone.
            pub fn is_extended(&self) -> bool {
                self.inner.is_extended()
            }

            /// Aborts the stream in both directions and releases it: data buffered on
            /// either end is dropped, and the peer's pending and later reads and writes
            /// fail with [`io::ErrorKind::ConnectionReset`] carrying `code` (see
            /// [`reset_code`](crate::reset_code)); calls on this stream (and its other
            /// half) fail with [`io::ErrorKind::NotConnected`] from then on. The ID is
            /// freed once the peer has acknowledged.
            ///
            /// On a base stream the protocol has no abort: this closes the stream as
            /// dropping it would (our FIN after the written data), and the peer sees
            /// end-of-file. Does nothing once the stream was released or the session
            /// has ended.
            pub fn reset(&self, code: u32) {
                self.inner.reset(code);
            }
        }
    )*};
}

impl_common!(Stream, ReadHalf, WriteHalf);

macro_rules! impl_read {
    ($($t:ty),*) => {$(
        impl $t {
            /// Reads into `buf` unless `deadline` passes first, in which case it fails
            /// with [`io::ErrorKind::TimedOut`] and nothing was read. `Ok(0)` is
            /// end-of-file.
            pub async fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
                self.inner.read_before(buf, deadline).await
            }
        }

        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.inner.poll_read(cx, buf)
            }
        }
    )*};
}

macro_rules! impl_write {
    ($($t:ty),*) => {$(
        impl $t {
            /// Writes all of `data` unless `deadline` passes first.
            ///
            /// On failure the [`PartialWrite`] tells exactly how many bytes were
            /// accepted (and will be sent); nothing after them was. Unlike wrapping
            /// `write_all` in `tokio::time::timeout`, which loses that count when the
            /// future is cancelled, this is the way to write under a deadline without
            /// duplicating or losing data. (Cancelling this future itself loses the
            /// count in the same way.) A deadline that has already passed accepts
            /// nothing.
            pub async fn write_all_before(&mut self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
                self.inner.write_all_before(data, deadline).await
            }
        }

        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.inner.poll_write(cx, buf)
            }

            /// Written data is already the session's to send: nothing to flush.
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Sends our FIN after the written data: a half-close (see [`Stream`]).
            /// Waits for the agreement on extensions if it is still pending (at most a
            /// round trip); fails with [`io::ErrorKind::Unsupported`], sending
            /// nothing, on a base stream, and if the peer reset the stream. Does
            /// nothing a second time, once this end released the stream, or once the
            /// session ended.
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.inner.poll_shutdown(cx)
            }
        }
    )*};
}

impl_read!(Stream, ReadHalf);
impl_write!(Stream, WriteHalf);
