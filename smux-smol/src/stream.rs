//! Streams: futures-io `AsyncRead` / `AsyncWrite` over one smux stream.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{read_timed_out, PartialWrite, StreamId};

use crate::session::Shared;

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
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.shared.with(|c| c.poll_read(self.id, buf, cx.waker()))
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.shared.with(|c| c.poll_write(self.id, buf, cx.waker()))
    }

    fn poll_close(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.with(|c| c.poll_shutdown(self.id, cx.waker()))
    }

    fn is_extended(&self) -> bool {
        self.shared.with(|c| c.session().is_extended(self.id))
    }

    fn reset(&self, code: u32) {
        self.shared.with(|c| c.reset(self.id, code));
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
                match self.poll_write(cx, &buf[written..]) {
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(PartialWrite::new(written, e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    async fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let mut timer = Timer::at(deadline);
        poll_fn(|cx| {
            if Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(Err(read_timed_out()));
            }
            self.poll_read(cx, buf)
        })
        .await
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
pub struct Stream {
    core: Arc<Core>,
}

/// The reading half of a [`Stream`] (see [`Stream::into_split`]).
pub struct ReadHalf {
    core: Arc<Core>,
}

/// The writing half of a [`Stream`] (see [`Stream::into_split`]). Closing it ends our
/// writing as `poll_close` does on the stream.
pub struct WriteHalf {
    core: Arc<Core>,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        Stream {
            core: Arc::new(Core { shared, id }),
        }
    }

    /// Splits the stream into a read half and a write half for two tasks. The stream
    /// is released when both are dropped (or either resets it).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let core = self.core;
        (ReadHalf { core: core.clone() }, WriteHalf { core })
    }
}

/// The methods every handle of a stream has.
macro_rules! common {
    ($($t:ident),*) => {$(
        impl $t {
            /// The stream's ID (its number on the wire and its generation here).
            pub fn id(&self) -> StreamId {
                self.core.id
            }

            /// Whether the stream is extended (half-close, reset, windows that grow):
            /// true once both ends agreed on the extensions (see
            /// [`Session::ready`](crate::Session::ready)), for every stream of the
            /// session; false against a base peer and while the agreement is pending.
            pub fn is_extended(&self) -> bool {
                self.core.is_extended()
            }

            /// Aborts the stream in both directions and releases it: data buffered on
            /// either end is dropped, and the peer's reads and writes fail with
            /// [`io::ErrorKind::ConnectionReset`] carrying `code` (see
            /// [`reset_code`](crate::reset_code)); later calls on every handle of this
            /// stream fail with [`io::ErrorKind::NotConnected`]. A base stream has no
            /// abort: there this closes the stream as dropping it would. Does nothing
            /// once the stream was released or the session ended.
            pub fn reset(&self, code: u32) {
                self.core.reset(code)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("id", &self.core.id).finish()
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
                self.core.read_before(buf, deadline).await
            }
        }

        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.core.poll_read(cx, buf)
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
                self.core.write_all_before(buf, deadline).await
            }
        }

        impl AsyncWrite for $t {
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

            /// Half-close (see [`Stream`]).
            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.core.poll_close(cx)
            }
        }
    )*};
}
writer!(Stream, WriteHalf);
