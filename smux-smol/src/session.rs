//! The session handle, the shared state and the driver future.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;
use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{Config, ConfigError, EndReason, Event, Role, Stats, Transmit, Waiters};

use crate::stream::Stream;

/// Bytes asked of the core per `poll_transmit` call.
const TX_LIMIT: usize = 256 * 1024;
/// The transmit buffer is refilled only when it holds less than this.
const TX_LOW: usize = 64 * 1024;
/// Bytes read from the transport per read call.
const READ_CHUNK: usize = 64 * 1024;
/// Slices per vectored write.
const MAX_SLICES: usize = 64;
/// Loop turns per wake-up of the driver before it yields to the executor.
const BUDGET: usize = 32;
/// How long a driver whose session was closed locally keeps trying to write what the
/// core already handed over and to close the transport.
const LINGER: Duration = Duration::from_secs(2);

/// Everything a session's handles and its driver share, behind one mutex.
pub(crate) struct Inner {
    pub(crate) session: smux_proto::Session,
    pub(crate) waiters: Waiters,
    /// The driver's waker; taken (and woken) by calls that gave the core work.
    pub(crate) driver: Option<Waker>,
    /// True once the driver future has completed (or was dropped).
    driver_done: bool,
    /// Tasks waiting in [`Session::closed`].
    done_waiters: Vec<Waker>,
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

/// Locks the shared state. A poisoned lock is taken anyway: the core never panics on
/// input, and a panic elsewhere must not turn every later call into a panic.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// The driver's waker, if the driver is parked: the caller wakes it after unlocking.
    pub(crate) fn take_driver(&mut self) -> Option<Waker> {
        self.driver.take()
    }
}

/// Wakes an optional waker (after the lock was released).
pub(crate) fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// One smux session over a transport: opens and accepts [`Stream`]s.
///
/// Create one with [`Session::new`] (any futures-io transport), [`connect`] or a
/// [`Listener`]. Each of those also returns the session's [`Driver`], a future that
/// moves bytes between the transport and the protocol core: **spawn it** on any
/// executor (`smol::spawn(driver).detach()`), or nothing is ever sent or received.
/// The driver is the only task a session needs (none per stream) and completes once
/// the session has ended.
///
/// `Session` is a cheap handle: clones share the session. Dropping the last handle
/// ends the session (like [`Session::close`]); streams still open then fail.
///
/// [`connect`]: crate::connect
/// [`Listener`]: crate::Listener
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

/// The part of a session handle whose drop ends the session.
struct Handle {
    shared: Shared,
}

impl Drop for Handle {
    fn drop(&mut self) {
        close_shared(&self.shared);
    }
}

fn close_shared(shared: &Shared) {
    let mut woken = Vec::new();
    {
        let mut g = lock(shared);
        let inner = &mut *g;
        if !inner.session.is_ended() {
            inner.session.close_session();
        }
        inner.waiters.take_all(&mut woken);
        woken.extend(inner.take_driver());
    }
    woken.into_iter().for_each(Waker::wake);
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = lock(&self.handle.shared);
        f.debug_struct("Session")
            .field("role", &g.session.role())
            .field("end", &g.session.end_reason())
            .finish()
    }
}

impl Session {
    /// A session over `transport` with the given configuration and role
    /// ([`Role::Dialer`] for the end that opened the connection, [`Role::Acceptor`]
    /// for the other), and the [`Driver`] that runs it.
    ///
    /// Spawn the driver on an executor (`smol::spawn(driver).detach()`); it completes
    /// with the session's [`EndReason`] once the session has ended and the transport
    /// is closed. Nothing is sent before a stream is opened, a frame must be answered
    /// or the first keepalive is due.
    pub fn new<T>(
        transport: T,
        config: Config,
        role: Role,
    ) -> Result<(Session, Driver<T>), ConfigError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let now = Instant::now();
        let session = smux_proto::Session::new(config, role, now)?;
        tracing::debug!(?role, "smux session started");
        let shared = Arc::new(Mutex::new(Inner {
            session,
            waiters: Waiters::new(),
            driver: None,
            driver_done: false,
            done_waiters: Vec::new(),
        }));
        let driver = Driver {
            shared: shared.clone(),
            io: Some(transport),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            tx: Transmit::new(),
            woken: Vec::new(),
            timer: Timer::never(),
            timer_at: None,
            eof: false,
            flush_pending: false,
            closing: None,
            result: None,
        };
        let session = Session {
            handle: Arc::new(Handle { shared }),
        };
        Ok((session, driver))
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Opens a new stream. The peer learns of it with the first frame sent (its SYN
    /// goes out at once) and hands it out through its `accept`.
    ///
    /// Fails when the session has ended, or when all 65,536 stream IDs are in use
    /// (open, or closing and awaiting the peer's FIN); IDs are recycled once a
    /// stream's close handshake has finished.
    pub async fn open(&self) -> io::Result<Stream> {
        let (id, driver) = {
            let mut g = lock(self.shared());
            let id = g.session.open().map_err(|e| {
                if matches!(e, smux_proto::OpenError::IdsExhausted) {
                    tracing::debug!("smux open refused: all stream IDs are in use");
                }
                io::Error::from(e)
            })?;
            (id, g.take_driver())
        };
        wake(driver);
        Ok(Stream::new(self.shared().clone(), id))
    }

    /// The next stream the peer opened. Waits until one arrives; fails once the
    /// session has ended and no opened stream is left to hand out.
    pub async fn accept(&self) -> io::Result<Stream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next stream the peer opened (see [`Session::accept`]).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        let mut g = lock(self.shared());
        let inner = &mut *g;
        if let Some(id) = inner.session.accept() {
            return Poll::Ready(Ok(Stream::new(self.shared().clone(), id)));
        }
        if let Some(r) = inner.session.end_reason() {
            return Poll::Ready(Err(r.to_io_error()));
        }
        inner.waiters.wait_accept(cx.waker());
        Poll::Pending
    }

    /// Ends the session now: every stream fails, pending calls return an error, data
    /// not yet handed to the transport is dropped, and the driver closes the
    /// transport and completes. Does nothing if the session already ended.
    pub fn close(&self) {
        close_shared(self.shared());
    }

    /// Waits until the driver has completed (the session ended and the transport was
    /// closed) and returns why the session ended.
    pub async fn closed(&self) -> EndReason {
        poll_fn(|cx| {
            let mut g = lock(self.shared());
            if g.driver_done {
                let r = g.session.end_reason().cloned();
                return Poll::Ready(r.unwrap_or(EndReason::Local));
            }
            if !g.done_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                g.done_waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Why the session ended, or `None` while it runs.
    pub fn end_reason(&self) -> Option<EndReason> {
        lock(self.shared()).session.end_reason().cloned()
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        lock(self.shared()).session.is_ended()
    }

    /// Current figures: open streams, buffered bytes, frames and bytes moved.
    pub fn stats(&self) -> Stats {
        lock(self.shared()).session.stats()
    }

    /// Sends a VRM challenge to measure the round-trip time; [`Session::rtt`] reports
    /// it once the answer arrived. Returns false if a ping is already outstanding or
    /// the session has ended.
    pub fn ping(&self) -> bool {
        let (sent, driver) = {
            let mut g = lock(self.shared());
            let sent = g.session.ping(Instant::now());
            (sent, if sent { g.take_driver() } else { None })
        };
        wake(driver);
        sent
    }

    /// The round-trip time measured by the last answered [`Session::ping`].
    pub fn rtt(&self) -> Option<Duration> {
        lock(self.shared()).session.stats().rtt
    }

    /// Which end of the connection this session is.
    pub fn role(&self) -> Role {
        lock(self.shared()).session.role()
    }

    /// The session's configuration.
    pub fn config(&self) -> Config {
        lock(self.shared()).session.config().clone()
    }
}

/// The future that runs a session: it reads the transport and feeds the core, writes
/// what the core emits, fires the core's timers (keepalive) and wakes the tasks
/// waiting on streams.
///
/// Spawn it on any executor, for example `smol::spawn(driver).detach()`; it needs no
/// other task. It completes with the session's [`EndReason`] once the session has
/// ended (peer closed, protocol error, keepalive timeout, I/O error, or
/// [`Session::close`] / the last [`Session`] handle dropped) and the transport has
/// been closed. Dropping it before then ends the session with a transport error.
///
/// Reading the transport never waits for writing: while the peer is not taking our
/// bytes, its frames (and its confirmations) are still read and applied.
pub struct Driver<T> {
    shared: Shared,
    /// The transport; `None` once it has been closed and dropped.
    io: Option<T>,
    rbuf: BytesMut,
    tx: Transmit,
    woken: Vec<Waker>,
    timer: Timer,
    /// The instant `timer` is armed for.
    timer_at: Option<Instant>,
    eof: bool,
    flush_pending: bool,
    /// Set once the session ended: how long closing the transport may take.
    closing: Option<Instant>,
    result: Option<EndReason>,
}

impl<T> fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("pending_out", &self.tx.len())
            .field("pending_in", &self.rbuf.len())
            .field("closing", &self.closing.is_some())
            .field("result", &self.result)
            .finish()
    }
}

/// What one locked turn of the driver found.
struct Turn {
    wants_input: bool,
    timeout: Option<Instant>,
    ended: Option<EndReason>,
}

impl<T> Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// Feeds pending input, runs due timers, fills the transmit buffer and collects
    /// the wakers of events, all under the lock.
    fn core_turn(&mut self, cx: &Context<'_>, now: Instant) -> Turn {
        let mut g = lock(&self.shared);
        let inner = &mut *g;
        match &inner.driver {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.driver = Some(cx.waker().clone()),
        }
        let s = &mut inner.session;
        if s.poll_timeout().is_some_and(|t| now >= t) {
            s.handle_timeout(now);
        }
        if !self.rbuf.is_empty() && s.wants_input() {
            let refused = s.stats().streams_refused;
            s.handle_input(now, &mut self.rbuf);
            let refused_now = s.stats().streams_refused;
            if refused_now > refused {
                tracing::debug!(
                    count = refused_now - refused,
                    "smux refused incoming streams: accept backlog full"
                );
            }
        }
        if self.tx.len() < TX_LOW {
            s.poll_transmit(now, &mut self.tx, TX_LIMIT);
        }
        while let Some(ev) = s.poll_event() {
            if let Event::Ended(reason) = &ev {
                log_end(reason);
            }
            inner.waiters.dispatch(&ev, &mut self.woken);
        }
        Turn {
            wants_input: s.wants_input(),
            timeout: s.poll_timeout(),
            ended: s.end_reason().cloned(),
        }
    }

    fn fail(&mut self, err: &io::Error) {
        let mut g = lock(&self.shared);
        g.session.handle_transport_error(err);
    }

    /// Writes as much of the transmit buffer as the transport takes now. Returns true
    /// if anything happened.
    fn write_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut progress = false;
        let mut error = None;
        while !self.tx.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = self.tx.io_slices(&mut slices);
            match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Poll::Ready(Ok(k)) => {
                    self.tx.advance(k);
                    self.flush_pending = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        if error.is_none() && self.tx.is_empty() && self.flush_pending {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_pending = false,
                Poll::Ready(Err(e)) => error = Some(e),
                Poll::Pending => {}
            }
        }
        if let Some(e) = error {
            self.fail(&e);
            return true;
        }
        progress
    }

    /// Reads once from the transport into the read buffer. Returns true if anything
    /// happened (bytes, end-of-file or an error).
    fn read_in(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let start = self.rbuf.len();
        self.rbuf.resize(start + READ_CHUNK, 0);
        let res = Pin::new(io).poll_read(cx, &mut self.rbuf[start..]);
        let got = match &res {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        self.rbuf.truncate(start + got);
        match res {
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                let mut g = lock(&self.shared);
                g.session.handle_eof(self.rbuf.len());
                true
            }
            Poll::Ready(Ok(_)) => true,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                self.fail(&e);
                true
            }
            Poll::Pending => false,
        }
    }

    /// Keeps the timer armed no later than the core's next deadline. A deadline that
    /// moved later (keepalive pushed back by traffic) does not re-arm it: the early
    /// wake-up re-arms it then, which saves a timer update per received frame.
    fn poll_timer(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> bool {
        let Some(t) = deadline else {
            return false;
        };
        if self.timer_at.is_none_or(|armed| t < armed) {
            self.timer.set_at(t);
            self.timer_at = Some(t);
        }
        if Pin::new(&mut self.timer).poll(cx).is_ready() {
            self.timer_at = None;
            return true;
        }
        false
    }

    /// After the session ended: write out what a locally closed session had already
    /// handed over, close the transport (bounded by [`LINGER`]), then finish.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>, reason: EndReason) -> Poll<EndReason> {
        let deadline = *self.closing.get_or_insert_with(|| Instant::now() + LINGER);
        if reason != EndReason::Local {
            self.tx = Transmit::new();
        }
        let done = loop {
            let Some(io) = self.io.as_mut() else {
                break true;
            };
            if !self.tx.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = self.tx.io_slices(&mut slices);
                match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                    Poll::Ready(Ok(k)) if k > 0 => {
                        self.tx.advance(k);
                        continue;
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Poll::Ready(_) => self.tx = Transmit::new(),
                    Poll::Pending => break false,
                }
            }
            match Pin::new(&mut *io).poll_close(cx) {
                Poll::Ready(_) => break true,
                Poll::Pending => break false,
            }
        };
        if !done {
            if self.timer_at != Some(deadline) {
                self.timer.set_at(deadline);
                self.timer_at = Some(deadline);
            }
            if Pin::new(&mut self.timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.finish();
        Poll::Ready(reason)
    }

    /// Drops the transport, marks the driver done and wakes everyone still waiting.
    fn finish(&mut self) {
        self.io = None;
        self.tx = Transmit::new();
        self.rbuf = BytesMut::new();
        let mut woken = std::mem::take(&mut self.woken);
        let reason = {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            if !inner.session.is_ended() {
                let err = io::Error::other("smux driver dropped before the session ended");
                inner.session.handle_transport_error(&err);
                if let Some(r) = inner.session.end_reason() {
                    log_end(r);
                }
            }
            while inner.session.poll_event().is_some() {}
            inner.driver_done = true;
            inner.driver = None;
            inner.waiters.take_all(&mut woken);
            woken.append(&mut inner.done_waiters);
            inner.session.end_reason().cloned()
        };
        self.result = reason;
        woken.drain(..).for_each(Waker::wake);
    }
}

fn log_end(reason: &EndReason) {
    match reason {
        EndReason::Local | EndReason::PeerClosed => {
            tracing::debug!(%reason, "smux session ended");
        }
        EndReason::Protocol(e) => tracing::warn!(error = %e, "smux session ended: protocol error"),
        EndReason::KeepaliveTimeout | EndReason::Transport(..) => {
            tracing::info!(%reason, "smux session ended");
        }
    }
}

impl<T> Future for Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Output = EndReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReason> {
        let this = self.get_mut();
        if let Some(r) = &this.result {
            return Poll::Ready(r.clone());
        }
        for _ in 0..BUDGET {
            let turn = this.core_turn(cx, Instant::now());
            this.woken.drain(..).for_each(Waker::wake);
            if let Some(reason) = turn.ended {
                return this.poll_shutdown(cx, reason);
            }
            let mut progress = this.write_out(cx);
            if turn.wants_input && !this.eof {
                progress |= this.read_in(cx);
            }
            progress |= this.poll_timer(cx, turn.timeout);
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy: let the executor run other tasks, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        if self.result.is_some() {
            return;
        }
        self.io = None;
        let mut woken = Vec::new();
        {
            let mut g = lock(&self.shared);
            let inner = &mut *g;
            if !inner.session.is_ended() {
                let err = io::Error::other("smux driver dropped before the session ended");
                inner.session.handle_transport_error(&err);
                if let Some(r) = inner.session.end_reason() {
                    log_end(r);
                }
            }
            inner.driver_done = true;
            inner.driver = None;
            inner.waiters.take_all(&mut woken);
            woken.append(&mut inner.done_waiters);
        }
        woken.into_iter().for_each(Waker::wake);
    }
}
