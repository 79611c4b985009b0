//! Streams: futures-io `AsyncRead` / `AsyncWrite` over one smux stream.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSliceMut, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{poll_read_through, read_timed_out, Connection, PartialWrite, StreamId};

use crate::session::{Reader, Shared, Writer};

/// What a [`Stream`] and its halves share; dropping it releases the stream.
struct Core {
    shared: Arc<Shared>,
    id: StreamId,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shared.with(|c| c.release(self.id));
    }
}

impl Core {
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(n) = self.write_through(cx, buf) {
            return Poll::Ready(Ok(n));
        }
        self.shared.with(|c| c.poll_write(self.id, buf, cx.waker()))
    }

    /// Writes one frame straight from `buf` to the transport when nothing is queued
    /// ahead of it and nobody else is writing: no copy into the session and no
    /// hand-off to the driver. Returns the bytes accepted, or `None` to queue instead.
    fn write_through(&self, cx: &mut Context<'_>, buf: &[u8]) -> Option<usize> {
        let mut w = self.shared.try_writer()?;
        let Writer { io, output } = &mut *w;
        let Some(f) = (self.shared).with(|c| c.begin_direct(self.id, buf.len(), output)) else {
            self.shared.release_writer(w);
            return None;
        };
        let n = f.len();
        if f.takes_long() {
            self.shared.hold_writer_long();
        }
        let r = Pin::new(&mut *io).poll_write_vectored(cx, &f.slices(buf));
        let mut wake = f.written(output, buf, r);
        if !wake && Pin::new(io).poll_flush(cx).is_pending() {
            output.wrote_direct();
            wake = true;
        }
        self.shared.release_writer(w);
        if wake {
            self.shared.with(|c| c.wake_driver());
        }
        Some(n)
    }

    async fn write_all_before(&self, buf: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut timer = Timer::at(deadline);
        let mut written = 0;
        poll_fn(|cx| {
            // The deadline first: one already past writes nothing.
            if written < buf.len() && Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(Err(PartialWrite::timed_out(written)));
            }
            while written < buf.len() {
                let r = ready!(self.poll_write(cx, &buf[written..]));
                written += r.map_err(|e| PartialWrite::new(written, e))?;
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    async fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let mut timer = Timer::at(deadline);
        poll_fn(|cx| match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(read_timed_out())),
            Poll::Pending => self.poll_read(cx, buf),
        })
        .await
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.read_through(cx, buf) {
            Some(r) => r,
            None => self.shared.with(|c| c.poll_read(self.id, buf, cx.waker())),
        }
    }

    /// Reads this stream's data straight from a TCP socket into `buf` when it is next
    /// on the wire and nothing is buffered ahead of it (with the frame headers in
    /// between while the socket has more): no copy out of the session and no hand-off
    /// from the driver. Else reads what is buffered, or waits, under the same lock.
    /// `None`: the read side is busy (the driver reads); read as usual. The socket is
    /// non-blocking, so a read with nothing there says `WouldBlock` and the driver's
    /// wait stays in place.
    fn read_through(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Option<Poll<io::Result<usize>>> {
        let mut r = self.shared.try_reader().filter(|_| !buf.is_empty())?;
        let Reader {
            tcp: Some(tcp),
            input,
        } = &mut *r
        else {
            return None;
        };
        let with = |f: &mut dyn FnMut(&mut Connection)| self.shared.with(f);
        let read = |v: &mut [IoSliceMut<'_>]| tcp.get_ref().read_vectored(v);
        Some(poll_read_through(
            self.id,
            input,
            buf,
            cx.waker(),
            with,
            Instant::now,
            read,
        ))
    }
}

/// One multiplexed byte stream: futures-io [`AsyncRead`] + [`AsyncWrite`].
///
/// * Reads return buffered data, then end-of-file (`Ok(0)`) after the peer closed the
///   stream. Reading confirms (CFM) the consumed bytes to the peer, so a stream that
///   is not read holds back only its own sender, never the other streams.
/// * Writes return as soon as the core accepted some bytes (at most a window, 512 KiB
///   by default, is in flight per stream) and wait while the window is full. Every
///   accepted byte will be sent unless the session ends.
/// * `poll_close` (`AsyncWriteExt::close`) is a half-close: our FIN follows the bytes
///   already written, later writes fail, and reads go on until the peer's FIN. It
///   needs the extensions on both ends (see [`Stream::is_extended`]): right after
///   connecting it waits for the ends to agree (at most a round trip); against a base
///   peer (the reference implementation (yddeng/smux), or extensions off) it fails
///   with [`io::ErrorKind::Unsupported`] and sends nothing, since a base FIN would end
///   both directions. Read to the end, then drop the stream.
/// * Dropping the stream releases it: our FIN goes out after the written bytes, and
///   unread data is dropped. The ID is reused only after the close handshake, which
///   finishes in the background; a call on a stream this end closed or reset fails
///   with [`io::ErrorKind::NotConnected`].
/// * [`Stream::reset`] aborts an extended stream both ways with an error code that
///   the peer's reads and writes report as [`io::ErrorKind::ConnectionReset`] (see
///   [`reset_code`](crate::reset_code)).
///
/// For reading and writing from two tasks at once, [`Stream::into_split`] it.
/// [`Stream::write_all_before`] and [`Stream::read_before`] bound a transfer in time
/// and report exactly what was done.
pub struct Stream(Arc<Core>);

/// The reading half of a [`Stream`] (see [`Stream::into_split`]).
pub struct ReadHalf(Arc<Core>);

/// The writing half of a [`Stream`] (see [`Stream::into_split`]). Closing it ends our
/// writing as `poll_close` does on the stream.
pub struct WriteHalf(Arc<Core>);

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        Stream(Arc::new(Core { shared, id }))
    }

    /// Splits the stream into a read half and a write half for two tasks. The stream
    /// is released when both are dropped (or either resets it).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (ReadHalf(self.0.clone()), WriteHalf(self.0))
    }
}

/// The methods every handle of a stream has.
macro_rules! common {
    ($($t:ident),*) => {$(
        impl $t {
            /// The stream's ID (its number on the wire and its generation here).
            pub fn id(&self) -> StreamId {
                self.0.id
            }

            /// Whether the stream is extended (half-close, reset, windows that grow):
            /// true once both ends agreed on the extensions (see
            /// [`Session::ready`](crate::Session::ready)), for every stream of the
            /// session; false against a base peer and while the agreement is pending.
            pub fn is_extended(&self) -> bool {
                self.0.shared.with(|c| c.session().is_extended(self.0.id))
            }

            /// Aborts the stream in both directions and releases it: data buffered on
            /// either end is dropped, and the peer's reads and writes fail with
            /// [`io::ErrorKind::ConnectionReset`] carrying `code` (see
            /// [`reset_code`](crate::reset_code)); later calls on every handle of this
            /// stream fail with [`io::ErrorKind::NotConnected`]. A base stream has no
            /// abort: there this closes the stream as dropping it would. Does nothing
            /// once the stream was released or the session ended.
            pub fn reset(&self, code: u32) {
                self.0.shared.with(|c| c.reset(self.0.id, code))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("id", &self.0.id).finish()
            }
        }
    )*};
}
common!(Stream, ReadHalf, WriteHalf);

/// Reading methods of the handles that read.
macro_rules! reader {
    ($($t:ident),*) => {$(
        impl $t {
            /// Reads into `buf` like `AsyncReadExt::read`, but fails with
            /// [`io::ErrorKind::TimedOut`] (nothing read) if neither data nor
            /// end-of-file arrived by `deadline`. `Ok(0)` is end-of-file.
            pub async fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
                self.0.read_before(buf, deadline).await
            }
        }

        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_read(cx, buf)
            }
        }
    )*};
}
reader!(Stream, ReadHalf);

/// Writing methods of the handles that write.
macro_rules! writer {
    ($($t:ident),*) => {$(
        impl $t {
            /// Writes all of `buf` unless `deadline` passes first. On timeout (or any
            /// other failure) the [`PartialWrite`] says exactly how many leading bytes
            /// were accepted, and those will be delivered: resend only the rest. A
            /// deadline already past writes nothing. If this future is dropped before
            /// it completes, the count is lost: bound the call with the deadline.
            pub async fn write_all_before(
                &mut self,
                buf: &[u8],
                deadline: Instant,
            ) -> Result<(), PartialWrite> {
                self.0.write_all_before(buf, deadline).await
            }
        }

        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_write(cx, buf)
            }

            /// Accepted bytes are already on their way: nothing to flush.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Half-close (see [`Stream`]).
            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.0.shared.with(|c| c.poll_shutdown(self.0.id, cx.waker()))
            }
        }
    )*};
}
writer!(Stream, WriteHalf);
