//! The one task per session: moves bytes between the transport and the core, runs the
//! core's timer and wakes the tasks that wait on streams.
//!
//! Each round takes the lock once: feed what was read, run an expired timer, top up
//! the transmit buffer, collect the wakers of the core's events. Then, without the
//! lock, it wakes those tasks and polls the transport: a read (while the core takes
//! input), a vectored write of the transmit buffer, and the timer. Reading and
//! writing are polled independently, so a blocked write never stops reading: a peer
//! whose reader waits on its own writer (the Go reference does) cannot deadlock with
//! us.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use smux_proto::{EndReason, Event, Transmit};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Sleep;

use crate::shared::{now, Shared};

/// Free space reserved in the read buffer before each read.
const READ_RESERVE: usize = 64 * 1024;
/// The transmit buffer is topped up to about this many bytes.
const TRANSMIT_LIMIT: usize = 256 * 1024;
/// Segments handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Without vectored writes, segments are gathered into writes of up to this size.
const COALESCE: usize = 64 * 1024;
/// Rounds per wake-up before the task yields to the runtime.
const ROUNDS_PER_POLL: usize = 32;
/// How long shutting the transport down, then reading until the peer closes too, may
/// take once the session has ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long reading goes on after writing failed, to take in what the peer sent
/// before it went away.
const WRITE_FAIL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// The session ended: shutting the transport's write side down.
    ShuttingDown,
    /// Reading (and dropping) until the peer closes its side too, so that closing
    /// the socket with unread data does not reset the connection under the peer
    /// before it has read everything we sent.
    Draining,
    Done,
}

/// The driver future, spawned once per session.
pub(crate) struct Driver<T> {
    io: T,
    shared: Arc<Shared>,
    rbuf: BytesMut,
    tx: Transmit,
    sleep: Pin<Box<Sleep>>,
    armed: Option<std::time::Instant>,
    /// The transport's read side reached end-of-file.
    read_eof: bool,
    /// Reading failed (the error is in `io_error` until reported).
    read_failed: bool,
    needs_flush: bool,
    timer_fired: bool,
    /// A read error, reported to the core at the next round.
    io_error: Option<io::Error>,
    /// Writing failed: reading goes on until it fails too, or until the instant.
    write_failed: Option<(io::Error, std::time::Instant)>,
    phase: Phase,
    woken: Vec<Waker>,
    /// Whether the transport writes vectors efficiently; if not, small segments are
    /// gathered into `scratch` for each write.
    vectored: bool,
    scratch: Vec<u8>,
}

impl<T> Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(io: T, shared: Arc<Shared>) -> Driver<T> {
        Driver {
            shared,
            rbuf: BytesMut::with_capacity(READ_RESERVE),
            tx: Transmit::new(),
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            armed: None,
            read_eof: false,
            read_failed: false,
            needs_flush: false,
            timer_fired: false,
            io_error: None,
            write_failed: None,
            phase: Phase::Running,
            woken: Vec::new(),
            vectored: io.is_write_vectored(),
            scratch: Vec::new(),
            io,
        }
    }

    /// Runs rounds until nothing makes progress (`Pending`) or the session ended.
    fn run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            let (wants_input, deadline, ended) = self.exchange(cx);
            for w in self.woken.drain(..) {
                w.wake();
            }
            if ended {
                return Poll::Ready(());
            }
            let mut progress = false;
            if wants_input {
                progress |= self.poll_read(cx);
            }
            if self.write_failed.is_none() {
                progress |= self.poll_write(cx);
            }
            if let Some(d) = deadline {
                if self.armed != Some(d) {
                    self.sleep.as_mut().reset(tokio::time::Instant::from_std(d));
                    self.armed = Some(d);
                }
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.timer_fired = true;
                    self.armed = None;
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy: let other tasks of this runtime thread run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The locked part of a round. Returns whether to read, the next timer and whether
    /// the session has ended.
    fn exchange(&mut self, cx: &mut Context<'_>) -> (bool, Option<std::time::Instant>, bool) {
        let mut guard = self.shared.lock();
        let inner = &mut *guard;
        if !inner
            .driver
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.driver = Some(cx.waker().clone());
        }
        let core = &mut inner.core;
        let now = now();
        let refused = core.stats().streams_refused;
        if let Some(e) = self.io_error.take() {
            core.handle_transport_error(e);
        }
        if self
            .write_failed
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            let (e, _) = self.write_failed.take().expect("checked");
            core.handle_transport_error(e);
        }
        if !self.rbuf.is_empty() && core.wants_input() {
            core.handle_input(now, &mut self.rbuf);
        }
        if self.read_eof && core.wants_input() {
            // Everything decodable was taken; what is left is a partial frame.
            core.handle_eof(self.rbuf.len());
        }
        if self.timer_fired {
            self.timer_fired = false;
            core.handle_timeout(now);
        }
        if inner.closing && !core.is_ended() {
            let flushed = self.tx.is_empty() && !core.has_transmit() && !self.needs_flush;
            if flushed || inner.linger.is_some_and(|d| now >= d) {
                core.close_session();
            }
        }
        if self.tx.len() < TRANSMIT_LIMIT {
            core.poll_transmit(now, &mut self.tx, TRANSMIT_LIMIT);
        }
        if self.write_failed.is_some() {
            // Nothing can be written any more.
            self.tx = Transmit::new();
        }
        let stats = core.stats();
        if stats.streams_refused > refused {
            tracing::debug!(
                session = self.shared.tag,
                refused = stats.streams_refused - refused,
                backlog = stats.accept_backlog,
                "smux: refused incoming streams, accept backlog full"
            );
        }
        while let Some(ev) = inner.core.poll_event() {
            if let Event::Ended(reason) = &ev {
                log_end(self.shared.tag, reason);
            }
            inner.dispatch(&ev, &mut self.woken);
        }
        let core = &inner.core;
        let linger = inner.linger.filter(|_| inner.closing);
        let write_failed = self.write_failed.as_ref().map(|(_, until)| *until);
        let deadline = [core.poll_timeout(), linger, write_failed]
            .into_iter()
            .flatten()
            .min();
        (
            core.wants_input() && !self.read_eof,
            deadline,
            core.is_ended(),
        )
    }

    /// Polls one read from the transport. Returns true on progress.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.rbuf.capacity() - self.rbuf.len() < READ_RESERVE / 4 {
            self.rbuf.reserve(READ_RESERVE);
        }
        let read = pin!(self.io.read_buf(&mut self.rbuf));
        match read.poll(cx) {
            Poll::Ready(Ok(0)) => self.read_eof = true,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => {
                self.read_failed = true;
                self.io_error = Some(e);
            }
            Poll::Pending => return false,
        }
        true
    }

    /// Writes the transmit buffer until it is empty or the transport pushes back, then
    /// flushes. Returns true on progress.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while !self.tx.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = self.tx.io_slices(&mut slices);
            let io = Pin::new(&mut self.io);
            let written = if self.vectored || slices[0].len() >= COALESCE {
                io.poll_write_vectored(cx, &slices[..n])
            } else {
                // Without vectored writes every small frame (a 7-byte header) would be
                // its own write: gather small segments into one buffer first.
                self.scratch.clear();
                for s in &slices[..n] {
                    if self.scratch.len() + s.len() > COALESCE && !self.scratch.is_empty() {
                        break;
                    }
                    self.scratch.extend_from_slice(s);
                }
                io.poll_write(cx, &self.scratch)
            };
            match written {
                Poll::Ready(Ok(0)) => {
                    self.fail_write(io::ErrorKind::WriteZero.into());
                    return true;
                }
                Poll::Ready(Ok(k)) => {
                    self.tx.advance(k);
                    self.needs_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.fail_write(e);
                    return true;
                }
                Poll::Pending => return progress,
            }
        }
        if self.needs_flush {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => {
                    self.fail_write(e);
                    return true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    /// Records a failed write. The peer may have sent more before it went away, so
    /// reading goes on (for a while) unless it already stopped.
    fn fail_write(&mut self, e: io::Error) {
        self.tx = Transmit::new();
        self.needs_flush = false;
        if self.read_eof || self.read_failed {
            self.io_error.get_or_insert(e);
        } else {
            self.write_failed = Some((e, now() + WRITE_FAIL_GRACE));
        }
    }

    /// Shuts the transport's write side down (skipped if writing failed).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.write_failed.is_some() {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                tracing::trace!(session = self.shared.tag, error = %e, "smux: transport shutdown failed");
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads and drops input until the peer closes its side (or reading fails).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_eof || self.read_failed {
            return Poll::Ready(());
        }
        for _ in 0..ROUNDS_PER_POLL {
            self.rbuf.clear();
            match self.poll_read(cx) {
                false => return Poll::Pending,
                true if self.read_eof || self.read_failed => return Poll::Ready(()),
                true => {}
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Marks the driver finished and wakes everyone still waiting.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        teardown(&self.shared);
    }
}

impl<T> Future for Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.phase == Phase::Running {
            if this.run(cx).is_pending() {
                return Poll::Pending;
            }
            this.phase = Phase::ShuttingDown;
            let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            this.sleep.as_mut().reset(grace);
        }
        let expired = this.sleep.as_mut().poll(cx).is_ready();
        if this.phase == Phase::ShuttingDown {
            if this.poll_shutdown(cx).is_pending() && !expired {
                return Poll::Pending;
            }
            this.phase = Phase::Draining;
        }
        if this.phase == Phase::Draining {
            if this.poll_drain(cx).is_pending() && !expired {
                return Poll::Pending;
            }
            this.finish();
        }
        Poll::Ready(())
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        if self.phase != Phase::Done {
            // Dropped before finishing (its runtime shut down): end the session so no
            // call waits for a driver that is gone.
            teardown(&self.shared);
        }
    }
}

/// Ends the session if it has not ended, marks the driver finished and wakes every
/// parked task.
fn teardown(shared: &Shared) {
    let mut woken = Vec::new();
    {
        let mut g = shared.lock();
        let inner = &mut *g;
        if !inner.core.is_ended() {
            inner.core.handle_transport_error(io::Error::other(
                "smux driver task stopped (its runtime shut down)",
            ));
        }
        while let Some(ev) = inner.core.poll_event() {
            if let Event::Ended(reason) = &ev {
                log_end(shared.tag, reason);
            }
            inner.dispatch(&ev, &mut woken);
        }
        inner.waiters.take_all(&mut woken);
        inner.driver_done = true;
        inner.driver = None;
        woken.extend(inner.done_waiters.drain().map(|(_, w)| w));
    }
    woken.into_iter().for_each(Waker::wake);
}

/// Logs a session's end at a level that matches its reason.
fn log_end(tag: u64, reason: &EndReason) {
    match reason {
        EndReason::Local | EndReason::PeerClosed | EndReason::Drained => {
            tracing::debug!(session = tag, %reason, "smux session ended");
        }
        EndReason::Protocol(e) => {
            tracing::warn!(session = tag, error = %e, "smux session ended by a protocol error");
        }
        _ => {
            tracing::info!(session = tag, %reason, "smux session ended");
        }
    }
}
