//! The session handle, the shared state and the driver future.

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Bounds of the bytes offered to one transport read. The size adapts: it doubles
/// after a read that filled it and shrinks towards what reads return, so a trickle
/// of small reads does not zero a large buffer each time.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 128 * 1024;
/// Slices per vectored write.
const MAX_SLICES: usize = 64;
/// Loop turns per wake-up of the driver before it yields to the executor.
const BUDGET: usize = 32;
/// How long a dropped session may take to write out what its streams had written.
const LINGER: Duration = Duration::from_secs(10);
/// Once the session ended: how long closing the transport's write side, then reading
/// until the peer closes too, may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long reading goes on after writing failed, to take in what the peer sent
/// before it went away.
const WRITE_FAIL_GRACE: Duration = Duration::from_secs(2);

/// Everything a session's handles and its driver share, behind one mutex.
pub(crate) struct Inner {
    /// A process-unique number for log lines.
    tag: u64,
    pub(crate) session: smux_proto::Session,
    pub(crate) waiters: Waiters,
    /// The driver's waker; taken (and woken) by calls that gave the core work.
    pub(crate) driver: Option<Waker>,
    /// True once the driver future has completed (or was dropped).
    driver_done: bool,
    /// Tasks waiting in [`Session::closed`], by the key of their future, which removes
    /// its entry when dropped (a `select!` drops many of them early).
    done_waiters: HashMap<u64, Waker>,
    next_done_key: u64,
    /// Set by a graceful close: opens, accepts and writes are refused, and the driver
    /// ends the session once everything queued is written (or at `linger`, if set).
    pub(crate) closing: bool,
    linger: Option<Instant>,
    /// A go-away (ours or the peer's) has been seen by the driver, which then woke the
    /// pending accepts once: from then on they fail.
    going_away: bool,
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

static SESSION_TAGS: AtomicU64 = AtomicU64::new(1);

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

    /// Starts a graceful close (see `closing`); returns the wakers to wake: the
    /// driver's, and those of pending calls, which now fail (accepts, writes) or
    /// park again (reads).
    fn start_closing(&mut self, linger: Option<Instant>) -> Vec<Waker> {
        let mut woken = Vec::new();
        if self.session.is_ended() {
            return woken;
        }
        self.linger = match (self.closing, self.linger, linger) {
            (false, _, new) => new,
            (true, Some(old), Some(new)) => Some(old.min(new)),
            (true, old, _) => old,
        };
        if !self.closing {
            self.waiters.take_all(&mut woken);
        }
        self.closing = true;
        woken.extend(self.take_driver());
        woken
    }

    /// True while a graceful close runs: new work is refused.
    pub(crate) fn refuses_work(&self) -> bool {
        self.closing && !self.session.is_ended()
    }
}

/// The error of opens, accepts and writes once a graceful close started.
pub(crate) fn closing_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "smux session is closing")
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
/// ends the session even if [`Stream`]s are still alive (their calls then fail),
/// but like closing a TCP socket it lets the driver write out what was already
/// written first (for at most 10 seconds); [`Session::shutdown`] does that and
/// waits, [`Session::close`] drops it instead.
///
/// When the session ends for any reason (closed here, the peer closed the
/// transport, keepalive timeout, protocol error, I/O error), every pending and later
/// call on it and on its streams fails promptly; [`Session::end_reason`] says why.
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
        // Like closing a TCP socket: what was written still goes out (bounded).
        let woken = lock(&self.shared).start_closing(Some(Instant::now() + LINGER));
        woken.into_iter().for_each(Waker::wake);
    }
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
        let tag = SESSION_TAGS.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = tag, ?role, "smux session started");
        let shared = Arc::new(Mutex::new(Inner {
            tag,
            session,
            waiters: Waiters::new(),
            driver: None,
            driver_done: false,
            done_waiters: HashMap::new(),
            next_done_key: 0,
            closing: false,
            linger: None,
            going_away: false,
        }));
        let driver = Driver::new(shared.clone(), transport);
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
    /// Fails when the session has ended, after a go-away (ours or the peer's;
    /// [`io::ErrorKind::ConnectionRefused`]), or when all 65,536 stream IDs are in
    /// use (open, or closing and awaiting the peer's FIN); IDs are recycled once a
    /// stream's close handshake has finished.
    pub async fn open(&self) -> io::Result<Stream> {
        let (id, driver) = {
            let mut g = lock(self.shared());
            if g.refuses_work() {
                return Err(closing_error());
            }
            let id = g.session.open().map_err(|e| {
                if matches!(e, smux_proto::OpenError::IdsExhausted) {
                    tracing::debug!(
                        session = g.tag,
                        "smux open refused: all stream IDs are in use"
                    );
                }
                io::Error::from(e)
            })?;
            (id, g.take_driver())
        };
        wake(driver);
        Ok(Stream::new(self.shared().clone(), id))
    }

    /// The next stream the peer opened. Waits until one arrives; fails once the
    /// session has ended and no opened stream is left to hand out, and after a
    /// go-away (ours or the peer's; [`io::ErrorKind::ConnectionRefused`]).
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
        if inner.closing {
            return Poll::Ready(Err(closing_error()));
        }
        if inner.session.is_going_away() {
            // Streams not yet accepted were refused, and so is every later SYN.
            return Poll::Ready(Err(smux_proto::OpenError::GoingAway.into()));
        }
        inner.waiters.wait_accept(cx.waker());
        Poll::Pending
    }

    /// Ends the session now: every stream fails, pending calls return an error, data
    /// not yet handed to the transport is dropped, and the driver closes the
    /// transport and completes. Does nothing if the session already ended. To finish
    /// streams gracefully, close them and wait for the peer first, or use
    /// [`Session::shutdown`].
    pub fn close(&self) {
        let mut woken = Vec::new();
        {
            let mut g = lock(self.shared());
            let inner = &mut *g;
            inner.session.close_session();
            while let Some(ev) = inner.session.poll_event() {
                if let Event::Ended(reason) = &ev {
                    log_end(inner.tag, reason);
                }
                inner.waiters.dispatch(&ev, &mut woken);
            }
            woken.extend(inner.take_driver());
        }
        woken.into_iter().for_each(Waker::wake);
    }

    /// Ends the session gracefully and waits until the driver has completed: new
    /// opens, accepts and writes are refused at once, everything already written on
    /// the streams (and the FINs of closed streams) is written to the transport, then
    /// the session ends as with [`Session::close`]. Waits as long as the transport
    /// takes the data: bound it with a timeout, and call [`Session::close`] after one.
    pub async fn shutdown(&self) -> EndReason {
        let woken = lock(self.shared()).start_closing(None);
        woken.into_iter().for_each(Waker::wake);
        self.closed().await
    }

    /// Starts a graceful shutdown driven by the streams: no new stream in either
    /// direction (our opens and accepts fail with
    /// [`io::ErrorKind::ConnectionRefused`], streams the peer opened and we had not
    /// accepted are refused, and so are later ones), while open streams go on
    /// working. Once every stream has been released on both ends and everything was
    /// written, the session ends with [`EndReason::Drained`]; [`Session::closed`]
    /// waits for that.
    ///
    /// With extensions on, the peer is told (with `code`, for its logs), stops
    /// opening streams too and ends `Drained` as well. A peer without them only sees
    /// its new streams refused. Unlike [`Session::shutdown`], this waits for the
    /// application to finish its streams, however long that takes: bound it with a
    /// timeout, and call [`Session::close`] after one. Does nothing if the session
    /// ended or a go-away already started.
    pub fn go_away(&self, code: u32) {
        let mut woken = Vec::new();
        {
            let mut g = lock(self.shared());
            let inner = &mut *g;
            inner.session.go_away(code);
            // Pending accepts now fail.
            inner.waiters.take_all(&mut woken);
            inner.going_away = true;
            woken.extend(inner.take_driver());
        }
        woken.into_iter().for_each(Waker::wake);
    }

    /// Whether a go-away was started here ([`Session::go_away`]) or by the peer: no
    /// new streams in either direction.
    pub fn is_going_away(&self) -> bool {
        lock(self.shared()).session.is_going_away()
    }

    /// Whether both ends agreed on the extensions (half-close, reset, go-away,
    /// windows that grow): every stream of the session is then extended. False while
    /// the agreement is pending (it settles within a round trip of the first frame),
    /// with a peer without them, or when [`Config::extensions`] is off;
    /// [`Session::ready`] waits until it settled.
    pub fn extensions_enabled(&self) -> bool {
        lock(self.shared()).session.extensions_enabled()
    }

    /// Waits until the two ends have settled whether they use the extensions, and
    /// returns whether they do (see [`Session::extensions_enabled`]). Fails if the
    /// session ends first.
    ///
    /// Nothing needs to wait for this: streams opened before it settles take the
    /// session's mode, and closing a stream's write side waits for it on its own. It
    /// settles within one round trip once this end has sent something; `ready` makes
    /// this end send its offer now if it has not yet. That is then its first frame, so
    /// against a server that probes each new connection and reads exactly one header
    /// (some servers built on the reference implementation do), open a stream first.
    pub async fn ready(&self) -> io::Result<bool> {
        let driver = {
            let mut g = lock(self.shared());
            g.session.start_agreement();
            g.take_driver()
        };
        wake(driver);
        poll_fn(|cx| {
            let mut g = lock(self.shared());
            let inner = &mut *g;
            match inner.session.agreement() {
                smux_proto::Agreement::Extended => return Poll::Ready(Ok(true)),
                smux_proto::Agreement::Base => return Poll::Ready(Ok(false)),
                _ => {}
            }
            if let Some(reason) = inner.session.end_reason() {
                return Poll::Ready(Err(reason.to_io_error()));
            }
            inner.waiters.wait_agreement(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Waits until the driver has completed (the session ended and the transport was
    /// closed) and returns why the session ended.
    pub async fn closed(&self) -> EndReason {
        let mut waiter = DoneWaiter {
            shared: self.shared(),
            key: None,
        };
        poll_fn(|cx| waiter.poll(cx)).await
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

/// A task parked in [`Session::closed`]: its waker lives in `done_waiters` under
/// `key` only while the future lives.
struct DoneWaiter<'a> {
    shared: &'a Shared,
    key: Option<u64>,
}

impl DoneWaiter<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<EndReason> {
        let mut g = lock(self.shared);
        if g.driver_done {
            let r = g.session.end_reason().cloned();
            return Poll::Ready(r.unwrap_or(EndReason::Local));
        }
        let inner = &mut *g;
        match self.key.and_then(|k| inner.done_waiters.get_mut(&k)) {
            Some(w) => w.clone_from(cx.waker()),
            None => {
                let key = inner.next_done_key;
                inner.next_done_key += 1;
                inner.done_waiters.insert(key, cx.waker().clone());
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for DoneWaiter<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            lock(self.shared).done_waiters.remove(&key);
        }
    }
}

/// The future that runs a session: it reads the transport and feeds the core, writes
/// what the core emits, fires the core's timers (keepalive) and wakes the tasks
/// waiting on streams.
///
/// Spawn it on any executor, for example `smol::spawn(driver).detach()`; it needs no
/// other task. It completes with the session's [`EndReason`] once the session has
/// ended (peer closed, protocol error, keepalive timeout, I/O error, a completed
/// go-away, or [`Session::close`] / the last [`Session`] handle dropped) and the
/// transport has been closed. Dropping it before then ends the session with a
/// transport error.
///
/// Reading the transport never waits for writing: while the peer is not taking our
/// bytes, its frames (and its confirmations) are still read and applied. Once the
/// session was closed locally (or a go-away ran its course) the driver closes the
/// transport's write side and reads on until the peer closes too (for at most 2
/// seconds), so closing a socket with unread input does not reset the connection
/// under a peer still reading our last bytes. Likewise a failed write does not end
/// the session before reading has taken in what the peer sent before it went away
/// (at most 2 seconds).
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
    /// Bytes offered to the next transport read.
    read_size: usize,
    /// The transport's read side reached end-of-file.
    eof: bool,
    /// Reading the transport failed.
    read_failed: bool,
    flush_pending: bool,
    /// Writing failed: reading goes on until it stops too, or until the instant.
    write_failed: Option<(io::Error, Instant)>,
    phase: Phase,
    /// Set once the session ended: when closing the transport gives up.
    grace: Option<Instant>,
    result: Option<EndReason>,
}

/// Where the driver is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// The session ended: writing out what a local close had handed over, then
    /// closing the transport's write side.
    ShuttingDown,
    /// Reading and dropping input until the peer closes its side too.
    Draining,
}

impl<T> fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("phase", &self.phase)
            .field("pending_out", &self.tx.len())
            .field("pending_in", &self.rbuf.len())
            .field("result", &self.result)
            .finish()
    }
}

/// What one locked turn of the driver found.
struct Turn {
    wants_input: bool,
    deadline: Option<Instant>,
    ended: Option<EndReason>,
}

impl<T> Driver<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    fn new(shared: Shared, io: T) -> Driver<T> {
        Driver {
            shared,
            io: Some(io),
            rbuf: BytesMut::with_capacity(READ_MAX),
            tx: Transmit::new(),
            woken: Vec::new(),
            timer: Timer::never(),
            timer_at: None,
            read_size: READ_MIN,
            eof: false,
            read_failed: false,
            flush_pending: false,
            write_failed: None,
            phase: Phase::Running,
            grace: None,
            result: None,
        }
    }

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
        if self
            .write_failed
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            let (e, _) = self.write_failed.take().expect("checked");
            s.handle_transport_error(e);
        }
        if s.poll_timeout().is_some_and(|t| now >= t) {
            s.handle_timeout(now);
        }
        if !self.rbuf.is_empty() && s.wants_input() {
            let refused = s.stats().streams_refused;
            s.handle_input(now, &mut self.rbuf);
            let refused_now = s.stats().streams_refused;
            if refused_now > refused {
                tracing::debug!(
                    session = inner.tag,
                    count = refused_now - refused,
                    "smux refused incoming streams: accept backlog full"
                );
            }
        }
        if self.eof && !s.is_ended() && (self.rbuf.is_empty() || s.wants_input()) {
            // Everything that arrived has been applied; what is left is a partial
            // frame. (While input is stalled, the frames still buffered wait for the
            // application to read.)
            s.handle_eof(self.rbuf.len());
        }
        if self.tx.len() < TX_LOW {
            s.poll_transmit(now, &mut self.tx, TX_LIMIT);
        }
        if self.write_failed.is_some() {
            // Nothing can be written any more.
            self.tx = Transmit::new();
        }
        if inner.closing && !s.is_ended() {
            let flushed = self.tx.is_empty() && !s.has_transmit() && !self.flush_pending;
            if flushed || inner.linger.is_some_and(|t| now >= t) {
                s.close_session();
            }
        }
        while let Some(ev) = s.poll_event() {
            if let Event::Ended(reason) = &ev {
                log_end(inner.tag, reason);
            }
            inner.waiters.dispatch(&ev, &mut self.woken);
        }
        if !inner.going_away && inner.session.is_going_away() {
            // The peer's go-away arrived (the core has no event for it): pending
            // accepts must learn that none will come. Others just poll again.
            inner.going_away = true;
            inner.waiters.take_all(&mut self.woken);
        }
        let s = &inner.session;
        let linger = inner.linger.filter(|_| inner.closing);
        let write_failed = self.write_failed.as_ref().map(|(_, until)| *until);
        Turn {
            wants_input: s.wants_input() && !self.eof && !self.read_failed,
            deadline: [s.poll_timeout(), linger, write_failed]
                .into_iter()
                .flatten()
                .min(),
            ended: s.end_reason().cloned(),
        }
    }

    /// Records a failed write. The peer may have sent more before it went away, so
    /// reading goes on for a while unless it already stopped.
    fn fail_write(&mut self, e: io::Error) {
        self.tx = Transmit::new();
        self.flush_pending = false;
        if self.eof || self.read_failed {
            lock(&self.shared).session.handle_transport_error(e);
        } else {
            tracing::debug!(error = %e, "smux transport write failed; reading on");
            self.write_failed = Some((e, Instant::now() + WRITE_FAIL_GRACE));
        }
    }

    /// Writes as much of the transmit buffer as the transport takes now, then
    /// flushes. Returns true if anything happened.
    fn write_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        if self.write_failed.is_some() {
            return false;
        }
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
                Poll::Ready(Ok(())) => {
                    self.flush_pending = false;
                    progress = true;
                }
                Poll::Ready(Err(e)) => error = Some(e),
                Poll::Pending => {}
            }
        }
        if let Some(e) = error {
            self.fail_write(e);
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
        self.rbuf.resize(start + self.read_size, 0);
        let res = Pin::new(io).poll_read(cx, &mut self.rbuf[start..]);
        let got = match &res {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        self.rbuf.truncate(start + got);
        match res {
            Poll::Ready(Ok(0)) => self.eof = true,
            Poll::Ready(Ok(n)) => {
                self.read_size = if n == self.read_size {
                    (n * 2).min(READ_MAX)
                } else {
                    n.next_power_of_two().clamp(READ_MIN, READ_MAX)
                };
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => {
                self.read_failed = true;
                // A read error trumps a pending write error: report it now.
                self.write_failed = None;
                lock(&self.shared).session.handle_transport_error(e);
            }
            Poll::Pending => return false,
        }
        true
    }

    /// Keeps the timer armed no later than `deadline`. A deadline that moved later
    /// (keepalive pushed back by traffic) does not re-arm it: the early wake-up
    /// re-arms it then, which saves a timer update per received frame. Returns true
    /// if the timer fired.
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

    /// After the session ended: write out what a local close had already handed
    /// over, close the transport's write side and, after a local close, read until
    /// the peer closes too, all within [`SHUTDOWN_GRACE`]; then finish.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>, reason: EndReason) -> Poll<EndReason> {
        if self.phase == Phase::Running {
            self.phase = Phase::ShuttingDown;
            self.grace = Some(Instant::now() + SHUTDOWN_GRACE);
            if !clean_end(&reason) {
                self.tx = Transmit::new();
            }
        }
        let grace = self.grace.expect("set above");
        if self.timer_at != Some(grace) {
            self.timer.set_at(grace);
            self.timer_at = Some(grace);
        }
        let expired = Pin::new(&mut self.timer).poll(cx).is_ready();
        if self.phase == Phase::ShuttingDown {
            if self.poll_close_write(cx).is_pending() && !expired {
                return Poll::Pending;
            }
            self.phase = Phase::Draining;
        }
        // Draining only protects bytes we sent on a local close or a completed
        // go-away; after a failure or a silent peer there is nothing to protect.
        if clean_end(&reason) && self.poll_drain(cx).is_pending() && !expired {
            return Poll::Pending;
        }
        self.finish();
        Poll::Ready(reason)
    }

    /// Writes what is left of the transmit buffer, then closes the transport.
    fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(());
        };
        if self.write_failed.is_some() {
            return Poll::Ready(());
        }
        while !self.tx.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = self.tx.io_slices(&mut slices);
            match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(k)) if k > 0 => self.tx.advance(k),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut *io).poll_close(cx) {
            Poll::Ready(Err(e)) => {
                tracing::trace!(error = %e, "smux transport close failed");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads and drops input until the peer closes its side (or reading fails).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..BUDGET {
            if self.eof || self.read_failed || self.io.is_none() {
                return Poll::Ready(());
            }
            self.rbuf.clear();
            if !self.read_in(cx) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Drops the transport, marks the driver done and wakes everyone still waiting.
    fn finish(&mut self) {
        self.io = None;
        self.tx = Transmit::new();
        self.rbuf = BytesMut::new();
        self.result = Some(teardown(&self.shared));
    }
}

/// True for the ends this side chose, after which what was written must still reach
/// the peer: a local close, and a go-away that ran its course.
fn clean_end(reason: &EndReason) -> bool {
    matches!(reason, EndReason::Local | EndReason::Drained)
}

/// Marks the session's driver done: ends the session if it still runs (the driver
/// was dropped), wakes every waiting task, and returns the end reason.
fn teardown(shared: &Shared) -> EndReason {
    let mut woken = Vec::new();
    let reason = {
        let mut g = lock(shared);
        let inner = &mut *g;
        if !inner.session.is_ended() {
            let err = io::Error::other("smux driver dropped before the session ended");
            inner.session.handle_transport_error(err);
        }
        while let Some(ev) = inner.session.poll_event() {
            if let Event::Ended(reason) = &ev {
                log_end(inner.tag, reason);
            }
            inner.waiters.dispatch(&ev, &mut woken);
        }
        inner.driver_done = true;
        inner.driver = None;
        inner.waiters.take_all(&mut woken);
        woken.extend(inner.done_waiters.drain().map(|(_, w)| w));
        inner.session.end_reason().cloned()
    };
    woken.into_iter().for_each(Waker::wake);
    reason.unwrap_or(EndReason::Local)
}

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
        if this.phase != Phase::Running {
            let reason = lock(&this.shared).session.end_reason().cloned();
            return this.poll_shutdown(cx, reason.unwrap_or(EndReason::Local));
        }
        for _ in 0..BUDGET {
            let turn = this.core_turn(cx, Instant::now());
            this.woken.drain(..).for_each(Waker::wake);
            if let Some(reason) = turn.ended {
                return this.poll_shutdown(cx, reason);
            }
            let mut progress = this.write_out(cx);
            if turn.wants_input {
                progress |= this.read_in(cx);
            }
            progress |= this.poll_timer(cx, turn.deadline);
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
        if self.result.is_none() {
            self.io = None;
            teardown(&self.shared);
        }
    }
}
