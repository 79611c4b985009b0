//! Streams: Tokio `AsyncRead` + `AsyncWrite` handles on one smux stream.

use std::error::Error;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use smux_proto::{Event, ReadError, StreamId, WriteError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::shared::{wake, Shared};

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
/// * against a base peer (the reference implementation, or extensions off on either
///   end) it fails with [`io::ErrorKind::Unsupported`] and sends nothing, because a
///   base FIN ends both directions and the rest of the peer's data would be lost
///   behind a clean end-of-file. Read to the end, then drop the stream.
///
/// Dropping the stream releases it: our FIN goes out after every byte already
/// written and the handshake completes in the background. [`Stream::reset`] aborts
/// it instead, in both directions and with an error code the peer's reads and writes
/// report (as [`io::ErrorKind::ConnectionReset`], see [`reset_code`]).
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

/// `StreamRef::released`: this end still holds the stream.
const HELD: u8 = 0;
/// `StreamRef::released`: this end closed the stream (drop, or shutdown of a base
/// stream); reads return end-of-file.
const CLOSED: u8 = 1;
/// `StreamRef::released`: this end reset the stream; reads and writes fail.
const RESET: u8 = 2;

/// What a stream handle (or both halves) shares; closes the stream when dropped.
pub(crate) struct StreamRef {
    shared: Arc<Shared>,
    id: StreamId,
    /// `HELD` until this end releases the stream, then `CLOSED` or `RESET`; changed
    /// under the session lock. Once released, the ID may be reused by a new stream,
    /// so no call may reach the core with it any more.
    released: AtomicU8,
}

impl fmt::Debug for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.released.load(Ordering::Relaxed) {
            HELD => "held",
            CLOSED => "closed",
            _ => "reset",
        };
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("state", &state)
            .finish()
    }
}

impl StreamRef {
    fn released(&self) -> u8 {
        self.released.load(Ordering::Relaxed)
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut g = self.shared.lock();
        let inner = &mut *g;
        match self.released() {
            HELD => {}
            CLOSED => return Poll::Ready(Ok(())),
            _ => return Poll::Ready(Err(reset_locally())),
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let stalled = !inner.core.wants_input();
        let mut got = 0;
        while buf.remaining() > 0 {
            match inner.core.read_chunk(self.id, buf.remaining()) {
                Ok(Some(chunk)) => {
                    got += chunk.len();
                    buf.put_slice(&chunk);
                }
                // End-of-file.
                Ok(None) | Err(ReadError::Closed) => break,
                Err(ReadError::Blocked) if got == 0 => {
                    inner.waiters.wait_read(self.id, cx.waker());
                    return Poll::Pending;
                }
                Err(ReadError::Blocked) => break,
                Err(e) if got == 0 => return Poll::Ready(Err(e.into())),
                Err(_) => break,
            }
        }
        // Reading may have queued a CFM or made room for input the driver holds back.
        let driver = if got > 0 && (stalled || inner.core.has_transmit()) {
            inner.take_driver()
        } else {
            None
        };
        drop(g);
        wake(driver);
        Poll::Ready(Ok(()))
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut g = self.shared.lock();
        let inner = &mut *g;
        match self.released() {
            HELD => {}
            CLOSED => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "smux stream was shut down",
                )))
            }
            _ => return Poll::Ready(Err(reset_locally())),
        }
        if inner.closing && !inner.core.is_ended() {
            return Poll::Ready(Err(crate::shared::Inner::closing_error()));
        }
        match inner.core.write(self.id, data) {
            Ok(n) => {
                let driver = if n > 0 { inner.take_driver() } else { None };
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

    /// Releases the stream on our side, as `how` (`CLOSED`: FIN after the written
    /// data; `RESET`: abort with `code`), and wakes tasks parked on it. Only the first
    /// release counts.
    fn release(&self, how: u8, code: u32) {
        let mut woken = Vec::new();
        let driver = {
            let mut g = self.shared.lock();
            let inner = &mut *g;
            if self
                .released
                .compare_exchange(HELD, how, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                // Already released: the first outcome stands.
                return;
            }
            // These fail only if the session ended (the stream is gone): nothing to
            // send. On a base stream the core's reset is a close.
            let _ = match how {
                RESET => inner.core.reset(self.id, code),
                _ => inner.core.close(self.id),
            };
            inner.waiters.dispatch(&Event::Closed(self.id), &mut woken);
            inner.take_driver()
        };
        wake(driver);
        woken.into_iter().for_each(|w| w.wake());
    }

    /// Shuts our write side (half-close). Waits while the ends have not yet agreed on
    /// the extensions (at most a round trip); fails with `Unsupported`, sending
    /// nothing, on a base stream.
    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let driver = {
            let mut g = self.shared.lock();
            let inner = &mut *g;
            match self.released() {
                HELD => {}
                CLOSED => return Poll::Ready(Ok(())),
                _ => return Poll::Ready(Err(reset_locally())),
            }
            // Our FIN is queued (or waits behind the written data); the stream stays
            // ours, for reading, until it is dropped. A second call is a no-op.
            match inner.core.shutdown(self.id) {
                Ok(()) => inner.take_driver(),
                Err(WriteError::Blocked) => {
                    inner.waiters.wait_write(self.id, cx.waker());
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        };
        wake(driver);
        Poll::Ready(Ok(()))
    }

    fn is_extended(&self) -> bool {
        let g = self.shared.lock();
        self.released() == HELD && g.core.is_extended(self.id)
    }

    async fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite> {
        let mut written = 0;
        if Instant::now() >= deadline {
            return Err(PartialWrite::timed_out(0));
        }
        let mut sleep = pin!(tokio::time::sleep_until(deadline));
        poll_fn(|cx| {
            while written < data.len() {
                match self.poll_write(cx, &data[written..]) {
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(error)) => {
                        return Poll::Ready(Err(PartialWrite { written, error }))
                    }
                    Poll::Pending => {
                        if sleep.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Err(PartialWrite::timed_out(written)));
                        }
                        return Poll::Pending;
                    }
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    async fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        if Instant::now() >= deadline {
            return Err(timed_out("smux read deadline passed"));
        }
        let mut sleep = pin!(tokio::time::sleep_until(deadline));
        poll_fn(|cx| {
            let mut rb = ReadBuf::new(buf);
            match self.poll_read(cx, &mut rb) {
                Poll::Ready(r) => Poll::Ready(r.map(|()| rb.filled().len())),
                Poll::Pending => match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("smux read deadline passed"))),
                    Poll::Pending => Poll::Pending,
                },
            }
        })
        .await
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.release(CLOSED, 0);
    }
}

fn timed_out(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}

fn reset_locally() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "smux stream was reset on this end",
    )
}

pub use smux_proto::reset_code;

/// A write with a deadline that did not complete: carries the exact number of bytes
/// the session accepted before it stopped.
///
/// Those `written` bytes will reach the peer (unless the session ends); the rest,
/// `data[written..]`, was not sent at all. To send everything exactly once, resend
/// that rest. [`PartialWrite::error`] says why it stopped: an error of kind
/// [`io::ErrorKind::TimedOut`] when the deadline passed, otherwise the stream's or
/// session's failure.
#[derive(Debug)]
pub struct PartialWrite {
    written: usize,
    error: io::Error,
}

impl PartialWrite {
    fn timed_out(written: usize) -> PartialWrite {
        PartialWrite {
            written,
            error: timed_out("smux write deadline passed"),
        }
    }

    /// Bytes accepted before the write stopped (0 up to the length of the data).
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

impl Error for PartialWrite {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

impl From<PartialWrite> for io::Error {
    fn from(e: PartialWrite) -> io::Error {
        io::Error::new(e.error.kind(), e)
    }
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        Stream {
            inner: Arc::new(StreamRef {
                shared,
                id,
                released: AtomicU8::new(HELD),
            }),
        }
    }

    /// The stream's 16-bit ID on the wire.
    pub fn id(&self) -> StreamId {
        self.inner.id
    }

    /// Whether the stream has the extensions: shutdown is a half-close and
    /// [`Stream::reset`] an abort with a code. True once both ends agreed on them (see
    /// [`Session::ready`]), for every stream of the session; false against a base peer
    /// and while the agreement is still pending.
    ///
    /// [`Session::ready`]: crate::Session::ready
    pub fn is_extended(&self) -> bool {
        self.inner.is_extended()
    }

    /// Aborts the stream in both directions and releases it: data buffered on either
    /// end is dropped, and the peer's pending and later reads and writes fail with
    /// [`io::ErrorKind::ConnectionReset`] carrying `code` (see [`reset_code`]). The
    /// ID is freed once the peer has acknowledged.
    ///
    /// On a base stream ([`Stream::is_extended`] is false) the protocol has no abort:
    /// this closes the stream as dropping it would (our FIN after the written data),
    /// and the peer sees end-of-file. Does nothing if the session has ended.
    pub fn reset(self, code: u32) {
        self.inner.release(RESET, code);
    }

    /// Splits the stream into a reading and a writing half that can be used from two
    /// tasks at once. The stream is released when both halves are dropped, or when one
    /// half resets it. Shutting the writing half down is a half-close (the reading
    /// half goes on until the peer's end-of-file; see [`Stream`] for base peers).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                inner: self.inner.clone(),
            },
            WriteHalf { inner: self.inner },
        )
    }

    /// Writes all of `data` unless `deadline` passes first.
    ///
    /// On failure the [`PartialWrite`] tells exactly how many bytes were accepted (and
    /// will be sent); nothing after them was. Unlike wrapping `write_all` in
    /// `tokio::time::timeout`, which loses that count when the future is cancelled,
    /// this is the way to write under a deadline without duplicating or losing data.
    /// (Cancelling this future itself loses the count in the same way.)
    pub async fn write_all_before(
        &mut self,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), PartialWrite> {
        self.inner.write_all_before(data, deadline).await
    }

    /// Reads into `buf` unless `deadline` passes first, in which case it fails with
    /// [`io::ErrorKind::TimedOut`] and nothing was read. `Ok(0)` is end-of-file.
    pub async fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.inner.read_before(buf, deadline).await
    }
}

impl ReadHalf {
    /// The stream's 16-bit ID on the wire.
    pub fn id(&self) -> StreamId {
        self.inner.id
    }

    /// See [`Stream::is_extended`].
    pub fn is_extended(&self) -> bool {
        self.inner.is_extended()
    }

    /// Resets the stream (see [`Stream::reset`]); the writing half's calls fail from
    /// then on.
    pub fn reset(self, code: u32) {
        self.inner.release(RESET, code);
    }

    /// See [`Stream::read_before`].
    pub async fn read_before(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.inner.read_before(buf, deadline).await
    }
}

impl WriteHalf {
    /// The stream's 16-bit ID on the wire.
    pub fn id(&self) -> StreamId {
        self.inner.id
    }

    /// See [`Stream::is_extended`].
    pub fn is_extended(&self) -> bool {
        self.inner.is_extended()
    }

    /// Resets the stream (see [`Stream::reset`]); the reading half's calls fail from
    /// then on.
    pub fn reset(self, code: u32) {
        self.inner.release(RESET, code);
    }

    /// See [`Stream::write_all_before`].
    pub async fn write_all_before(
        &mut self,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), PartialWrite> {
        self.inner.write_all_before(data, deadline).await
    }
}

macro_rules! impl_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.inner.poll_read(cx, buf)
            }
        }
    };
}

macro_rules! impl_write {
    ($t:ty) => {
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
            /// nothing, on a base stream, and if the peer reset the stream or the
            /// session ended.
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.inner.poll_shutdown(cx)
            }
        }
    };
}

impl_read!(Stream);
impl_read!(ReadHalf);
impl_write!(Stream);
impl_write!(WriteHalf);
