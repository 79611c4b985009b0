//! The session: one core behind a mutex, a reader thread and a writer thread.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use smux_proto::{Config, EndReason, Event, Role, Stats, Transmit, Waiters};

use crate::poller::{PollerState, Reg};
use crate::signal::{lock, Signal};
use crate::stream::Stream;
use crate::transport::{Parts, Transport};

/// Bytes asked of the transport per read.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes of frames taken from the core per transport write round: bounds how long the
/// lock is held and how stale the round-robin order can get.
const FILL_LIMIT: usize = 256 * 1024;
/// Segments passed to one vectored write.
const MAX_SLICES: usize = 64;
/// After a clean end, how long the session waits for the peer to close the transport
/// (reading and dropping its input meanwhile) before closing it.
const LINGER: Duration = Duration::from_secs(2);

/// What happens to the transport once the session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportEnd {
    /// The session runs.
    Open,
    /// A clean end: the writer thread closes the write side, the reader reads until
    /// the peer closes its side, then the writer closes the transport (see
    /// [`LINGER`]).
    Lingering,
    /// The closer ran (or runs now): blocked transport calls return.
    Closed,
}

/// Everything the lock protects: the core and who waits on it.
pub(crate) struct Inner {
    pub(crate) core: smux_proto::Session,
    pub(crate) waiters: Waiters,
    /// The writer thread waits on `Shared::writer_cv`.
    writer_parked: bool,
    /// The reader thread waits on `Shared::reader_cv` (the core takes no input).
    reader_parked: bool,
    /// The writer thread holds frames it has not finished writing.
    writing: bool,
    /// Threads waiting in `Session::flush`.
    flush_waiters: usize,
    /// `Session::shutdown` began: opens and writes are refused.
    pub(crate) closing: bool,
    /// The last handle was dropped: the writer ends the session once everything
    /// accepted is written, or at this deadline.
    close_when_flushed: Option<Instant>,
    /// Streams registered with a poller.
    pub(crate) regs: HashMap<u16, Reg>,
    /// Pollers of this session, by key.
    pub(crate) pollers: HashMap<u64, PollerState>,
    pub(crate) next_key: u64,
    /// `Stats::streams_refused` already logged.
    refused_logged: u64,
    /// How the transport ends; decided once, when the session has ended.
    transport_end: TransportEnd,
    /// The core's go-away (ours or the peer's) was seen: accepts were told.
    going_away_seen: bool,
}

/// State shared by the session handle, its streams, its pollers and its threads.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    writer_cv: Condvar,
    reader_cv: Condvar,
    /// Fired when a stream arrives to accept or the session ends.
    accept: Arc<Signal>,
    accept_waker: Waker,
    /// Fired when everything taken from the core has been written.
    flushed: Arc<Signal>,
    closer: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Closes only the transport's write side, for a clean end.
    half_closer: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Session threads still running.
    running: Mutex<usize>,
    /// Notified when a session thread exits.
    exited: Condvar,
    role: Role,
}

/// Wakes every waker in `woken`.
fn wake_all(woken: Vec<Waker>) {
    for w in woken {
        w.wake();
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Runs `f` under the lock, then delivers the events it caused: wakers are woken
    /// after the lock is released, and the transport is shut down if the session ended.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.lock();
        let r = f(&mut g);
        self.release(g);
        r
    }

    /// Settles the events of the last core calls, unlocks, and wakes.
    fn release(&self, mut g: MutexGuard<'_, Inner>) {
        let woken = self.settle(&mut g);
        let close = g.core.is_ended() && self.transport_end(&mut g) == TransportEnd::Closed;
        drop(g);
        wake_all(woken);
        if close {
            self.shutdown_transport();
        }
    }

    /// Decides, once the session has ended, how its transport ends. After a clean end
    /// (our close, a drop, a completed go-away) what we wrote must still reach the
    /// peer: a socket closed while input is unread sends a TCP reset, which can destroy
    /// the tail of our output before the peer read it. So then the writer thread only
    /// closes the write side and the reader reads until the peer closes too. Not when
    /// a write is in progress (after `Session::close`): it may block for long, and what
    /// it writes is being dropped anyway.
    fn transport_end(&self, g: &mut Inner) -> TransportEnd {
        if g.transport_end == TransportEnd::Open {
            let clean = matches!(
                g.core.end_reason(),
                Some(EndReason::Local | EndReason::Drained)
            );
            let half = lock(&self.half_closer).is_some();
            g.transport_end = if clean && half && !g.writing {
                TransportEnd::Lingering
            } else {
                TransportEnd::Closed
            };
        }
        g.transport_end
    }

    /// Drains the core's events into the waiter table and the pollers, and nudges the
    /// reader and writer threads if they have something to do. Returns the wakers to
    /// wake once the lock is released.
    fn settle(&self, g: &mut Inner) -> Vec<Waker> {
        let mut woken = Vec::new();
        while let Some(ev) = g.core.poll_event() {
            g.waiters.dispatch(&ev, &mut woken);
            g.route_to_pollers(&ev, &mut woken);
            if let Event::Ended(reason) = &ev {
                log_end(self.role, reason);
            }
        }
        let ended = g.core.is_ended();
        if !g.going_away_seen && !ended && g.core.is_going_away() {
            // No stream will be accepted any more: blocked accepts, and pollers
            // watching for streams, learn it now (the peer's go-away raises no event).
            g.going_away_seen = true;
            woken.push(self.accept_waker.clone());
            g.wake_accept_pollers(&mut woken);
        }
        if g.writer_parked && (ended || g.core.has_transmit() || g.close_when_flushed.is_some()) {
            g.writer_parked = false;
            self.writer_cv.notify_one();
        }
        if g.flush_waiters > 0 && (ended || (!g.writing && !g.core.has_transmit())) {
            self.flushed.notify();
        }
        if g.reader_parked && (ended || g.core.wants_input()) {
            g.reader_parked = false;
            self.reader_cv.notify_one();
        }
        woken
    }

    /// Runs the transport's closer once, so blocked transport calls return.
    pub(crate) fn shutdown_transport(&self) {
        let closer = lock(&self.closer).take();
        if let Some(close) = closer {
            close();
        }
    }

    /// The writer thread's part of a clean end: closes the transport's write side, waits
    /// until the reader thread has seen the peer close its side (or [`LINGER`] passed),
    /// then closes the transport.
    fn linger(&self) {
        let half = lock(&self.half_closer).take();
        if let Some(half_close) = half {
            half_close();
        }
        let deadline = Instant::now() + LINGER;
        let mut running = lock(&self.running);
        // This thread counts too: wait for the reader's exit.
        while *running > 1 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            running = self
                .exited
                .wait_timeout(running, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(running);
        self.shutdown_transport();
    }

    /// The error opens and writes report while `Session::shutdown` runs.
    pub(crate) fn closing_error() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "smux session is closing")
    }

    /// The error every call reports once the session has ended.
    pub(crate) fn ended_error(g: &Inner) -> Option<io::Error> {
        g.core.end_reason().map(EndReason::to_io_error)
    }

    /// Why nothing can be accepted any more: the session ended, or a go-away started
    /// (streams not yet accepted were refused, and so is every later one).
    pub(crate) fn accept_error(g: &Inner) -> Option<io::Error> {
        Shared::ended_error(g).or_else(|| {
            g.core
                .is_going_away()
                .then(|| smux_proto::OpenError::GoingAway.into())
        })
    }
}

fn log_end(role: Role, reason: &EndReason) {
    match reason {
        EndReason::Protocol(e) => {
            tracing::warn!(?role, error = %e, "smux session ended by a protocol error")
        }
        EndReason::Local | EndReason::PeerClosed | EndReason::Drained => {
            tracing::debug!(?role, %reason, "smux session ended")
        }
        _ => tracing::info!(?role, %reason, "smux session ended"),
    }
}

// ----- threads -------------------------------------------------------------------

/// The reader thread: reads the transport while the core takes input and feeds it.
fn reader_loop(shared: Arc<Shared>, mut rd: Box<dyn Read + Send>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let mut g = shared.lock();
        loop {
            if g.core.is_ended() {
                let linger = shared.transport_end(&mut g) == TransportEnd::Lingering;
                shared.release(g);
                if linger {
                    drain(&mut *rd, &mut buf);
                }
                return;
            }
            if g.core.wants_input() {
                if buf.is_empty() {
                    break;
                }
                // Bytes left over from a stall: apply them before reading more.
                g.core.handle_input(Instant::now(), &mut buf);
                if g.core.wants_input() {
                    break;
                }
                let woken = shared.settle(&mut g);
                if !woken.is_empty() {
                    drop(g);
                    wake_all(woken);
                    g = shared.lock();
                    continue;
                }
            }
            g.reader_parked = true;
            g = shared
                .reader_cv
                .wait(g)
                .unwrap_or_else(PoisonError::into_inner);
        }
        g.reader_parked = false;
        shared.release(g);

        let old = buf.len();
        buf.resize(old + READ_CHUNK, 0);
        let res = rd.read(&mut buf[old..]);
        let n = *res.as_ref().unwrap_or(&0);
        buf.truncate(old + n);
        match res {
            Ok(0) => {
                shared.with(|i| i.core.handle_eof(buf.len()));
                return;
            }
            Ok(_) => shared.with(|i| {
                i.core.handle_input(Instant::now(), &mut buf);
                i.log_refused();
            }),
            Err(e) if retry_kind(e.kind()) => {}
            Err(e) => {
                shared.with(|i| i.core.handle_transport_error(e));
                return;
            }
        }
    }
}

/// Reads and drops input until the peer closes the transport (or reading fails, or
/// the writer thread closes it after [`LINGER`]).
fn drain(rd: &mut dyn Read, buf: &mut BytesMut) {
    buf.clear();
    buf.resize(READ_CHUNK, 0);
    loop {
        match rd.read(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if retry_kind(e.kind()) => {}
            Err(_) => return,
        }
    }
}

/// Errors after which a transport call is simply made again.
fn retry_kind(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The writer thread: runs the timers, takes frames from the core under the lock and
/// writes them with the lock released.
fn writer_loop(shared: Arc<Shared>, mut wr: Box<dyn Write + Send>) {
    let mut tx = Transmit::new();
    loop {
        let mut g = shared.lock();
        loop {
            let now = Instant::now();
            if g.core.poll_timeout().is_some_and(|t| now >= t) {
                g.core.handle_timeout(now);
            }
            // After a go-away ran its course this ends the session (`Drained`).
            if g.core.has_transmit() {
                g.core.poll_transmit(now, &mut tx, FILL_LIMIT);
            }
            if let Some(deadline) = g.close_when_flushed {
                if (tx.is_empty() && !g.core.has_transmit()) || now >= deadline {
                    g.core.close_session();
                }
            }
            if !tx.is_empty() || g.core.is_ended() {
                g.writing = !tx.is_empty();
                break;
            }
            g.writing = false;
            let woken = shared.settle(&mut g);
            if !woken.is_empty() {
                drop(g);
                wake_all(woken);
                g = shared.lock();
                continue;
            }
            g.writer_parked = true;
            let until = [g.core.poll_timeout(), g.close_when_flushed]
                .into_iter()
                .flatten()
                .min();
            g = match until {
                Some(t) => {
                    let wait = t.saturating_duration_since(now);
                    shared
                        .writer_cv
                        .wait_timeout(g, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared
                    .writer_cv
                    .wait(g)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            g.writer_parked = false;
        }
        if g.core.is_ended() {
            g.writing = false;
            let linger = shared.transport_end(&mut g) == TransportEnd::Lingering;
            shared.release(g);
            if linger {
                shared.linger();
            }
            return;
        }
        shared.release(g);
        if let Err(e) = write_transmit(&shared, &mut *wr, &mut tx) {
            shared.with(|i| i.core.handle_transport_error(e));
            return;
        }
    }
}

/// Writes all of `tx`. Returns early (with `Ok`) if the session ends meanwhile.
fn write_transmit(shared: &Shared, wr: &mut dyn Write, tx: &mut Transmit) -> io::Result<()> {
    while !tx.is_empty() {
        let res = {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = tx.io_slices(&mut slices);
            wr.write_vectored(&slices[..n])
        };
        match res {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => tx.advance(n),
            Err(e) if retry_kind(e.kind()) => {
                // The transport's write timeout: run the timers while the peer is not
                // reading, so a dead peer is still noticed.
                let ended = shared.with(|i| {
                    let now = Instant::now();
                    if i.core.poll_timeout().is_some_and(|t| now >= t) {
                        i.core.handle_timeout(now);
                    }
                    i.core.is_ended()
                });
                if ended {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
    wr.flush()
}

/// Runs a session thread; if it panics (a bug), ends the session so that no call
/// waits forever on a thread that is gone.
fn guarded<T>(shared: Arc<Shared>, name: &str, body: fn(Arc<Shared>, T), arg: T) {
    let s = shared.clone();
    if panic::catch_unwind(AssertUnwindSafe(move || body(s, arg))).is_err() {
        tracing::error!(
            thread = name,
            "smux session thread panicked; ending the session"
        );
        let err = io::Error::other(format!("smux {name} thread panicked"));
        shared.with(|i| i.core.handle_transport_error(err));
        shared.shutdown_transport();
    }
    *lock(&shared.running) -= 1;
    shared.exited.notify_all();
}

/// Starts one session thread.
fn spawn<T: Send + 'static>(
    shared: &Arc<Shared>,
    name: &'static str,
    body: fn(Arc<Shared>, T),
    arg: T,
) -> io::Result<()> {
    *lock(&shared.running) += 1;
    let s = shared.clone();
    let main = move || guarded(s, name, body, arg);
    let r = match injected_spawn_failure(name) {
        Some(e) => Err(e),
        None => thread::Builder::new()
            .name(format!("smux-{name}"))
            .spawn(main)
            .map(drop),
    };
    if let Err(e) = r {
        *lock(&shared.running) -= 1;
        let msg = format!("smux: cannot start the session's {name} thread: {e}");
        return Err(io::Error::new(e.kind(), msg));
    }
    Ok(())
}

// A thread that cannot start is hard to cause for real (it takes exhausting the
// process's threads or memory), so the tests inject the failure here.
#[cfg(test)]
thread_local! {
    /// The session thread whose start fails, for `Session::new` on this thread.
    static FAIL_SPAWN: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn injected_spawn_failure(name: &str) -> Option<io::Error> {
    (FAIL_SPAWN.with(std::cell::Cell::get) == Some(name))
        .then(|| io::Error::new(io::ErrorKind::OutOfMemory, "injected by a test"))
}

#[cfg(not(test))]
fn injected_spawn_failure(_name: &str) -> Option<io::Error> {
    None
}

impl Inner {
    fn log_refused(&mut self) {
        let refused = self.core.stats().streams_refused;
        if refused > self.refused_logged {
            tracing::debug!(
                refused = refused - self.refused_logged,
                "smux refused incoming streams: accept backlog full"
            );
            self.refused_logged = refused;
        }
    }
}

// ----- the public handle -----------------------------------------------------------

/// One smux session over one transport.
///
/// It runs two threads: a reader that moves bytes from the transport into the
/// protocol core, and a writer that runs the timers (keepalive) and moves frames from
/// the core to the transport. Streams add no threads.
///
/// `Session` is a cheap handle: clones share the session, and the session ends when
/// the last clone is dropped (after writing out what was already accepted, for at
/// most 10 s, like closing a TCP socket) or [`Session::close`] is called (at once).
/// Its methods take `&self`, so one thread can accept while others open.
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

/// Ends the session when the last `Session` clone goes away.
struct Handle {
    shared: Arc<Shared>,
}

/// How long dropping the last handle waits for queued data to be written.
const DROP_FLUSH: Duration = Duration::from_secs(10);

impl Drop for Handle {
    fn drop(&mut self) {
        // Like closing a TCP socket (and like the async adapters): refuse new work,
        // let the writer thread write out what was accepted, then end the session.
        self.shared.with(|i| {
            if !i.core.is_ended() {
                i.closing = true;
                i.close_when_flushed = Some(Instant::now() + DROP_FLUSH);
            }
        });
    }
}

fn close_shared(shared: &Shared) {
    shared.with(|i| i.core.close_session());
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.shared().lock();
        f.debug_struct("Session")
            .field("role", &self.shared().role)
            .field("end", &g.core.end_reason())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session over `transport` (a [`std::net::TcpStream`], a Unix stream, or
    /// [`Parts`]) with the given role: [`Role::Dialer`] on the end that opened the
    /// connection, [`Role::Acceptor`] on the other.
    ///
    /// Fails if the configuration is invalid, the transport cannot be taken apart or a
    /// thread cannot be started.
    pub fn new<T: Transport>(transport: T, config: Config, role: Role) -> io::Result<Session> {
        let core = smux_proto::Session::new(config, role, Instant::now())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let Parts {
            reader,
            writer,
            closer,
            half_closer,
        } = transport.into_parts()?;
        let (accept, accept_waker) = Signal::new();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                core,
                waiters: Waiters::new(),
                writer_parked: false,
                reader_parked: false,
                writing: false,
                flush_waiters: 0,
                closing: false,
                close_when_flushed: None,
                regs: HashMap::new(),
                pollers: HashMap::new(),
                next_key: 0,
                refused_logged: 0,
                transport_end: TransportEnd::Open,
                going_away_seen: false,
            }),
            writer_cv: Condvar::new(),
            reader_cv: Condvar::new(),
            accept,
            accept_waker,
            flushed: Arc::new(Signal::default()),
            closer: Mutex::new(closer),
            half_closer: Mutex::new(half_closer),
            running: Mutex::new(0),
            exited: Condvar::new(),
            role,
        });
        let session = Session {
            handle: Arc::new(Handle {
                shared: shared.clone(),
            }),
        };
        // The writer first: until there is something to send it waits on our condvar,
        // so if the reader cannot start, ending the session stops it at once. A reader
        // started first would be left blocked in `read` if the writer could not start
        // (forever without a closer).
        let started = spawn(&shared, "writer", writer_loop, writer)
            .and_then(|()| spawn(&shared, "reader", reader_loop, reader));
        if let Err(e) = started {
            let kind = e.kind();
            let msg = e.to_string();
            shared.with(|i| i.core.handle_transport_error(e));
            return Err(io::Error::new(kind, msg));
        }
        tracing::debug!(?role, "smux session started");
        Ok(session)
    }

    /// Starts a session over two halves of a transport that can be read and written
    /// from two threads at once, and a function that shuts the transport down (it must
    /// make blocked reads and writes on the halves return). Equivalent to
    /// `Session::new(Parts::new(reader, writer).with_closer(closer), ..)`.
    pub fn from_halves<R, W, C>(
        reader: R,
        writer: W,
        closer: C,
        config: Config,
        role: Role,
    ) -> io::Result<Session>
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
        C: FnOnce() + Send + 'static,
    {
        Session::new(Parts::new(reader, writer).with_closer(closer), config, role)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Opens a new stream. Never waits: the peer learns of the stream with its first
    /// frame. Fails once the session has ended, when all 65,536 stream IDs are in
    /// use (the error then carries [`smux_proto::OpenError::IdsExhausted`]), and with
    /// [`io::ErrorKind::ConnectionRefused`] once a go-away started
    /// ([`smux_proto::OpenError::GoingAway`]).
    pub fn open(&self) -> io::Result<Stream> {
        let shared = self.shared();
        let id = shared.with(|i| {
            if i.closing && !i.core.is_ended() {
                return Err(Shared::closing_error());
            }
            i.core.open().map_err(io::Error::from)
        })?;
        Ok(Stream::new(shared.clone(), id))
    }

    /// Waits for the next stream the peer opens. Fails once the session has ended and
    /// no stream is left to accept: streams the peer opened before the end can still
    /// be accepted, and their buffered data read (then end-of-file if the peer closed
    /// them, or the session's error). Fails with
    /// [`io::ErrorKind::ConnectionRefused`] once a go-away started
    /// ([`Session::go_away`], here or on the peer).
    pub fn accept(&self) -> io::Result<Stream> {
        self.accept_until(None)
    }

    /// Like [`Session::accept`], but gives up after `timeout` with an
    /// [`io::ErrorKind::TimedOut`] error.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Stream> {
        self.accept_until(Some(Instant::now() + timeout))
    }

    /// The next stream the peer opened, without waiting: `Ok(None)` if there is none
    /// yet. For event loops with a [`Poller`](crate::Poller).
    pub fn try_accept(&self) -> io::Result<Option<Stream>> {
        let shared = self.shared();
        let r = shared.with(|i| match i.core.accept() {
            Some(id) => Ok(Some(id)),
            None => match Shared::accept_error(i) {
                Some(e) => Err(e),
                None => Ok(None),
            },
        })?;
        Ok(r.map(|id| Stream::new(shared.clone(), id)))
    }

    fn accept_until(&self, deadline: Option<Instant>) -> io::Result<Stream> {
        let shared = self.shared();
        loop {
            let mut seen = 0;
            let r = shared.with(|i| match i.core.accept() {
                Some(id) => Some(Ok(id)),
                None => match Shared::accept_error(i) {
                    Some(e) => Some(Err(e)),
                    None => {
                        seen = shared.accept.epoch();
                        i.waiters.wait_accept(&shared.accept_waker);
                        None
                    }
                },
            });
            match r {
                Some(Ok(id)) => return Ok(Stream::new(shared.clone(), id)),
                Some(Err(e)) => return Err(e),
                None => {
                    if !shared.accept.wait(seen, deadline) {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no stream arrived before the accept timeout",
                        ));
                    }
                }
            }
        }
    }

    /// Waits until every byte accepted so far (stream data, and the FINs of closed
    /// streams) has been written to the transport, or until `timeout` passes
    /// ([`io::ErrorKind::TimedOut`]). Fails if the session ends first. Call it before
    /// [`Session::close`] to close without dropping queued data.
    pub fn flush(&self, timeout: Option<Duration>) -> io::Result<()> {
        let shared = self.shared();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut seen = 0;
            let r = shared.with(|i| {
                if let Some(e) = Shared::ended_error(i) {
                    return Some(Err(e));
                }
                if !i.writing && !i.core.has_transmit() {
                    return Some(Ok(()));
                }
                seen = shared.flushed.epoch();
                i.flush_waiters += 1;
                None
            });
            if let Some(r) = r {
                return r;
            }
            let notified = shared.flushed.wait(seen, deadline);
            shared.with(|i| i.flush_waiters -= 1);
            if !notified {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "session not flushed before the timeout",
                ));
            }
        }
    }

    /// Ends the session now: every stream and every pending call fails, bytes not yet
    /// written to the transport are dropped, the transport is shut down and both
    /// threads exit. To deliver everything first, drop or shut down the streams and
    /// call [`Session::flush`] before closing.
    pub fn close(&self) {
        close_shared(self.shared());
    }

    /// Why the session ended, or `None` while it runs.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.shared().lock().core.end_reason().cloned()
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared().lock().core.is_ended()
    }

    /// The session's figures (streams, buffered bytes, frames and bytes moved, the
    /// round-trip time of the last [`Session::ping`]).
    pub fn stats(&self) -> Stats {
        self.shared().lock().core.stats()
    }

    /// Sends a VRM challenge to measure the round-trip time; the answer sets
    /// [`Stats::rtt`]. Returns false if one is already outstanding or the session ended.
    pub fn ping(&self) -> bool {
        self.shared().with(|i| i.core.ping(Instant::now()))
    }

    /// The session's role.
    pub fn role(&self) -> Role {
        self.shared().role
    }

    /// Starts a graceful shutdown driven by the streams: no new stream in either
    /// direction, while open streams go on working. Our opens and accepts fail with
    /// [`io::ErrorKind::ConnectionRefused`] (blocked accepts return that error now), and
    /// streams the peer opened that were not accepted yet are refused, as is every
    /// later one. Once every stream has been given up on both ends and everything was
    /// written, the session ends with [`EndReason::Drained`]; [`Session::closed`] waits
    /// for that.
    ///
    /// With extensions on ([`Session::extensions_enabled`]) the peer is told (with
    /// `code`, for its logs), stops opening streams too and ends `Drained` as well. A
    /// peer without them only sees its new streams refused. Unlike
    /// [`Session::shutdown`], this waits for the application to finish its streams,
    /// however long that takes: bound the wait yourself and call [`Session::close`]
    /// after it. Does nothing if the session ended or a go-away already started.
    pub fn go_away(&self, code: u32) {
        self.shared().with(|i| i.core.go_away(code));
    }

    /// True once a go-away started, here ([`Session::go_away`]) or on the peer.
    pub fn is_going_away(&self) -> bool {
        self.shared().lock().core.is_going_away()
    }

    /// True once both ends agreed on the protocol extensions (both are smux-rs with
    /// `Config::extensions` on): every stream of the session is then extended
    /// ([`Stream::is_extended`]): half-close, reset and windows that grow. False while
    /// the agreement is pending (it settles within a round trip of the first frame)
    /// and against a base peer; [`Session::ready`] waits until it settled.
    pub fn extensions_enabled(&self) -> bool {
        self.shared().lock().core.extensions_enabled()
    }

    /// Waits until the two ends have settled whether they use the extensions, and
    /// returns whether they do (see [`Session::extensions_enabled`]). Fails if the
    /// session ends first.
    ///
    /// Nothing needs to wait for this: streams opened before it settles take the
    /// session's mode, and a half-close waits for it on its own. It settles within one
    /// round trip once this end has sent something; `ready` makes this end send its
    /// offer now if it has not yet. That is then its first frame, so against a server
    /// that probes each new connection and reads exactly one header (some servers
    /// built on the reference implementation do), open a stream first.
    pub fn ready(&self) -> io::Result<bool> {
        let (signal, waker) = crate::signal::Signal::new();
        let shared = self.shared();
        shared.with(|i| i.core.start_agreement());
        loop {
            let mut seen = 0;
            let r = shared.with(|i| match i.core.agreement() {
                smux_proto::Agreement::Extended => Some(Ok(true)),
                smux_proto::Agreement::Base => Some(Ok(false)),
                _ => match Shared::ended_error(i) {
                    Some(e) => Some(Err(e)),
                    None => {
                        seen = signal.epoch();
                        i.waiters.wait_agreement(&waker);
                        None
                    }
                },
            });
            if let Some(r) = r {
                return r;
            }
            signal.wait(seen, None);
        }
    }

    /// The round-trip time measured by the last answered [`Session::ping`].
    pub fn rtt(&self) -> Option<Duration> {
        self.stats().rtt
    }

    /// The session's configuration.
    pub fn config(&self) -> Config {
        self.shared().lock().core.config().clone()
    }

    /// Ends the session gracefully: new opens and writes are refused at once,
    /// everything already written on its streams (and the FINs of closed streams) is
    /// written to the transport, waiting up to `timeout` for that (`None`: no limit),
    /// then the session ends as with [`Session::close`]. Waits until the session's
    /// threads have exited and returns why the session ended.
    pub fn shutdown(&self, timeout: Option<Duration>) -> EndReason {
        self.shared().with(|i| i.closing = true);
        let _ = self.flush(timeout);
        self.close();
        self.closed()
    }

    /// Waits until the session has ended and both of its threads have exited (the
    /// transport is shut down and dropped); returns why it ended. Does not end the
    /// session itself: see [`Session::close`].
    pub fn closed(&self) -> EndReason {
        let shared = self.shared();
        let mut running = lock(&shared.running);
        while *running > 0 {
            running = shared
                .exited
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(running);
        self.end_reason().unwrap_or(EndReason::Local)
    }
}

#[cfg(test)]
mod tests;
