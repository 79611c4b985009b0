//! The session: a [`Connection`] behind a mutex, driven by a reader thread and a
//! writer thread. A stream's write goes straight to the transport from the calling
//! thread when nothing is queued ahead of it and the write side is free; a call that
//! waits for input may read it itself (see [`lead`]).

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use smux_proto::{Config, Connection, EndReason, Input, Output, Plan, Role, Slot, Stats};
use smux_proto::{StreamId, LINGER, MAX_SLICES};

use crate::poller::Polls;
use crate::signal::{lock, Signal};
use crate::stream::Stream;
use crate::transport::{Closer, Transport};
use lead::{Followers, Lead, ReadSide};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

mod lead;

/// The wake-ups one lock round owes: few, so they are collected on the stack.
pub(crate) type Woken = SmallVec<[Waker; 4]>;

/// Everything the session lock protects.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    /// The readiness pollers of this session and their registrations.
    pub(crate) polls: Polls,
}

impl Inner {
    /// Gives stream `id` up (a release, or a reset with `code`), and its registration.
    pub(crate) fn release(&mut self, id: StreamId, code: Option<u32>) {
        match code {
            Some(code) => self.conn.reset(id, code),
            None => self.conn.release(id),
        }
        self.polls.regs.remove(&id);
    }
}

/// The transport's write half and the bytes waiting for it. The writer thread writes
/// from here, and so does a stream's write that finds it free and nothing ahead of it
/// (from the caller's own buffer). Locked before the session lock when both are
/// needed; the session lock is never held across its I/O.
pub(crate) struct Writer {
    pub(crate) io: Box<dyn Write + Send>,
    pub(crate) output: Output,
    /// When the writer thread, waiting, comes back on its own (its plan's timer).
    armed: Option<Instant>,
}

/// State shared by the session handles, its streams, its pollers and its threads.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) writer: Mutex<Writer>,
    /// The read side; whoever holds it leads input.
    rd: Mutex<ReadSide>,
    /// What a call needs to lead input, if the transport allows it.
    lead: Option<Lead>,
    /// Stream calls waiting for another thread to lead input, and the waker that
    /// counts one out.
    followers: Arc<AtomicUsize>,
    /// Calls other than stream calls (accept, ready, closed, a poller's wait) waiting
    /// while another thread leads input.
    others: AtomicUsize,
    unfollow: Waker,
    /// The signal of the call that came last to wait while another thread leads: the
    /// reader thread hands it the lead when it is the only call waiting.
    waiter: Mutex<Option<Arc<Signal>>>,
    /// Counts the times a call took the lead.
    leads: AtomicUsize,
    /// A read-through gave the read side back with input to read: the reader thread
    /// is owed a wake-up, unless the calling thread leads input itself next.
    input_owed: AtomicBool,
    /// The reader thread's waker.
    reader_waker: Waker,
    /// Streams may write through: the transport takes vectored writes (a socket,
    /// whose blocked write times out so a caller never waits on it for long).
    pub(crate) direct: bool,
    /// The writer thread's waker: a stream call that owes the writer thread work does
    /// that work itself when the write side is free.
    writer_waker: Waker,
    /// The transport's closer, and its half closer.
    closers: Mutex<(Option<Closer>, Option<Closer>)>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.inner).conn.session().role();
        write!(f, "Session {{ role: {s:?} }}")
    }
}

impl Shared {
    /// Runs `f` under the lock; then wakes, with the lock released, whoever the call
    /// made ready (waiting calls, the session's threads, pollers).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        self.run(f, |_| false, false).0
    }

    /// [`Shared::with`] for a stream call that may send on the calling thread
    /// (`own`): if the call gave the writer thread work, this thread does it when the
    /// write side is free, instead of a hand-off.
    pub(crate) fn with_io<R>(&self, own: bool, f: impl FnOnce(&mut Inner) -> R) -> R {
        self.run(f, |_| false, own && self.direct).0
    }

    /// [`Shared::with`] for the I/O threads: once the plan says done, the transport is
    /// closed before anyone waiting in `Session::closed` is woken; a stall notice
    /// (`Connection::take_stall`) is logged.
    fn drive(&self, f: impl FnOnce(&mut Connection) -> Plan) -> Plan {
        let run = |i: &mut Inner| {
            let plan = f(&mut i.conn);
            let stall = i.conn.take_stall();
            (plan, stall.map(|s| (s, i.conn.session().role())))
        };
        let ((plan, stall), _) = self.run(run, |(p, _)| p.done, false);
        if let Some((stall, role)) = stall {
            tracing::warn!(?role, "{stall}");
        }
        plan
    }

    /// Also returns how many it woke, the writer thread aside.
    fn run<R>(
        &self,
        f: impl FnOnce(&mut Inner) -> R,
        end: fn(&R) -> bool,
        own: bool,
    ) -> (R, usize) {
        let (r, others, owed) = self.run_owed(f, end, false);
        if owed && !(own && self.write_round()) {
            self.writer_waker.wake_by_ref();
        }
        (r, others)
    }

    /// [`Shared::run`] that leaves the writer thread's work to the caller: also
    /// returns whether it is owed. With `hold_input`, a wake-up of the reader thread
    /// is held back too, as `input_owed` (see `Shared::read_through`).
    pub(crate) fn run_owed<R>(
        &self,
        f: impl FnOnce(&mut Inner) -> R,
        end: fn(&R) -> bool,
        hold_input: bool,
    ) -> (R, usize, bool) {
        let mut woken = Woken::new();
        let mut g = lock(&self.inner);
        let r = f(&mut g);
        let Inner { conn, polls } = &mut *g;
        conn.take_wakers(&mut woken);
        polls.route(conn, &mut woken);
        drop(g);
        if end(&r) {
            self.close_transport();
        }
        if hold_input {
            let all = woken.len();
            woken.retain(|w| !w.will_wake(&self.reader_waker));
            if woken.len() < all {
                self.input_owed.store(true, SeqCst);
            }
        }
        let all = woken.len();
        woken.retain(|w| !w.will_wake(&self.writer_waker));
        let owed = woken.len() < all;
        let others = woken.len();
        woken.into_iter().for_each(Waker::wake);
        (r, others, owed)
    }

    /// Gives the writer thread the work a call owes it, or does it on the calling
    /// thread when the write side is free (over a socket).
    pub(crate) fn pay(&self, owed: bool) {
        if owed && !(self.direct && self.write_round()) {
            self.writer_waker.wake_by_ref();
        }
    }

    /// The writer thread's work, done on the calling thread while the write side is
    /// free. Returns false if the writer thread must still be woken: the write side is
    /// busy, the work goes on, or the writer thread must come back earlier than it
    /// planned to.
    fn write_round(&self) -> bool {
        // A write side that is busy (or poisoned) is left to the writer thread.
        self.writer.try_lock().is_ok_and(|mut w| {
            let armed = w.armed;
            // Only from an empty output: a backlog means the socket may be full, and
            // waiting on it is the writer thread's job, not a caller's.
            let mut rounds = (0..4).map_while(|_| w.output.is_empty().then(|| self.pump(&mut w)));
            let idle = rounds.find(|p| !(p.write || p.flush || p.shutdown || p.done));
            idle.is_some_and(|p| p.timer.is_none_or(|t| armed.is_some_and(|a| a <= t)))
        })
    }

    /// One round of the write side: plans under the session lock, then writes,
    /// flushes or shuts down as planned, without it.
    fn pump(&self, w: &mut Writer) -> Plan {
        let Writer { io, output, .. } = w;
        let waker = &self.writer_waker;
        let plan = self.drive(|c| c.drive_output(Instant::now(), output, waker));
        if plan.write {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = output.slices(&mut slices);
            let r = calm(io.write_vectored(&slices[..n]));
            output.written(r);
            // All written (or failed, then it changes nothing): the flush the next
            // plan would ask for, without a round under the lock.
            if output.is_empty() {
                output.flushed(calm(io.flush()));
            }
        } else if plan.flush {
            output.flushed(calm(io.flush()));
        } else if plan.shutdown {
            output.shut(self.shut_write());
        }
        plan
    }

    /// Polls `f` until it is ready, this thread waiting in between; `None` if
    /// `deadline` passed first (the wait is then forgotten).
    pub(crate) fn wait<T>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&mut Connection, &mut Slot, &Waker) -> Poll<T>,
    ) -> Option<T> {
        let (signal, waker) = Signal::new();
        let mut slot = Slot::default();
        loop {
            let seen = signal.epoch();
            if let Poll::Ready(r) = self.with(|i| f(&mut i.conn, &mut slot, &waker)) {
                return Some(r);
            }
            if !self.park(&signal, seen, deadline, false) {
                self.with(|i| i.conn.forget(&mut slot));
                return None;
            }
        }
    }

    /// Runs the transport's closer once, so blocked transport calls return.
    fn close_transport(&self) {
        let close = lock(&self.closers).0.take();
        close.into_iter().for_each(|close| close());
    }

    /// Shuts the transport's write side, or all of it without a half closer.
    fn shut_write(&self) -> io::Result<()> {
        // Once done, a later call does nothing.
        let half = lock(&self.closers).1.replace(Box::new(|| {}));
        match half {
            Some(half) => half(),
            None => self.close_transport(),
        }
        Ok(())
    }
}

// ----- threads -------------------------------------------------------------------

/// A transport's own timeout (a read or write timeout set on a socket) only means
/// "call again": the timers run in between.
pub(crate) fn calm<T>(r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::ErrorKind::Interrupted.into(),
        _ => e,
    })
}

/// The writer thread: runs the timers and writes what the connection hands out. It
/// holds the write side only while it plans and writes, so stream calls can write
/// in between.
fn writer(shared: &Shared, signal: &Signal) {
    loop {
        let seen = signal.epoch();
        let mut w = lock(&shared.writer);
        let plan = shared.pump(&mut w);
        if plan.done {
            return shared.with(|i| log_end(i.conn.session()));
        }
        if !(plan.write || plan.flush || plan.shutdown) {
            w.armed = plan.timer;
            drop(w);
            signal.wait(seen, plan.timer);
        }
    }
}

fn log_end(s: &smux_proto::Session) {
    let (role, reason) = (s.role(), s.end_reason().map(ToString::to_string));
    match s.end_reason() {
        Some(EndReason::Protocol(_)) => tracing::warn!(?role, reason, "smux session ended"),
        Some(r) if !r.is_clean() => tracing::info!(?role, reason, "smux session ended"),
        _ => tracing::debug!(?role, reason, "smux session ended"),
    }
}

/// Starts one session thread. If its body panics (a bug), the session ends, so no call
/// waits forever on a thread that is gone.
fn spawn(
    shared: &Arc<Shared>,
    name: &'static str,
    body: impl FnOnce(&Shared) + Send + 'static,
) -> io::Result<()> {
    let s = shared.clone();
    let main = move || {
        if panic::catch_unwind(AssertUnwindSafe(|| body(&s))).is_err() {
            tracing::error!(thread = name, "smux session thread panicked");
            s.with(|i| i.conn.abandon());
        }
        s.close_transport();
    };
    let thread = thread::Builder::new().name(format!("smux-{name}"));
    let started = injected_spawn_failure(name).map_or_else(|| thread.spawn(main).map(drop), Err);
    started.map_err(|e| {
        let msg = format!("smux: cannot start the session's {name} thread: {e}");
        io::Error::new(e.kind(), msg)
    })
}

/// A thread that cannot start is hard to cause for real (it takes exhausting the
/// process's threads or memory), so the tests make it fail here.
fn injected_spawn_failure(name: &str) -> Option<io::Error> {
    #[cfg(test)]
    if tests::FAIL_SPAWN.with(std::cell::Cell::get) == Some(name) {
        let e = io::Error::new(io::ErrorKind::OutOfMemory, "injected by a test");
        return Some(e);
    }
    let _ = name;
    None
}

// ----- the public handle -----------------------------------------------------------

/// One smux session over one transport.
///
/// It runs two threads: a reader that moves bytes from the transport into the
/// connection, and a writer that runs the timers (keepalive) and moves queued frames
/// to the transport. Streams add no threads; over a socket, a stream's write with
/// nothing queued ahead of it goes to the transport from the calling thread, and on
/// Unix a call waiting for input reads the socket itself while no other thread does.
///
/// `Session` is a cheap handle: clones share the session. Dropping the last clone
/// starts a graceful close, like [`Session::shutdown`] without the wait (at most 10 s to
/// write out what was already written); [`Session::close`] ends it at once. Its methods
/// take `&self`, so one thread can accept while others open.
#[derive(Clone, Debug)]
pub struct Session(Arc<Handle>);

/// Starts a graceful close when the last `Session` clone goes away.
#[derive(Debug)]
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0
            .with(|i| i.conn.shutdown(Some(Instant::now() + LINGER)));
    }
}

impl Session {
    /// Starts a session over `transport` (a [`std::net::TcpStream`], a Unix stream, or
    /// [`Parts`](crate::Parts)) with the given role: [`Role::Dialer`] on the end that opened the
    /// connection, [`Role::Acceptor`] on the other.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] (the [`ConfigError`](crate::ConfigError)
    /// inside) if the configuration is invalid, and if the transport cannot be taken
    /// apart or a thread cannot be started.
    pub fn new<T: Transport>(transport: T, config: Config, role: Role) -> io::Result<Session> {
        let mut conn = Connection::new(config, role, Instant::now())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let parts = transport.into_parts()?;
        let (writer_signal, writer_waker) = Signal::new();
        let (reader_signal, reader_waker) = Signal::new();
        let followers = Arc::new(AtomicUsize::new(0));
        #[cfg(unix)]
        let lead = Lead::new(parts.socket);
        #[cfg(not(unix))]
        let lead = None;
        if lead.is_some() {
            // Readers read through from the socket (`Shared::read_through`).
            conn.lend_reads();
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                conn,
                polls: Polls::default(),
            }),
            writer: Mutex::new(Writer {
                io: parts.writer,
                output: Output::new(parts.vectored),
                armed: None,
            }),
            rd: Mutex::new(ReadSide {
                io: parts.reader,
                input: Input::new(),
            }),
            lead,
            unfollow: Waker::from(Arc::new(Followers(followers.clone()))),
            followers,
            waiter: Mutex::new(None),
            others: AtomicUsize::new(0),
            leads: AtomicUsize::new(0),
            input_owed: AtomicBool::new(false),
            reader_waker,
            direct: parts.vectored,
            writer_waker,
            closers: Mutex::new((parts.closer, parts.half_closer)),
        });
        // The writer first: it waits on its condvar until there is something to do, so
        // if the reader cannot start, ending the session stops it at once.
        let started = spawn(&shared, "writer", move |s| writer(s, &writer_signal))
            .and_then(|()| spawn(&shared, "reader", move |s| lead::reader(s, &reader_signal)));
        if let Err(e) = started {
            shared.with(|i| i.conn.abandon());
            shared.close_transport();
            return Err(e);
        }
        tracing::debug!(?role, "smux session started");
        Ok(Session(Arc::new(Handle(shared))))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0 .0
    }

    /// Runs `f` on the protocol session, for what the connection does not wrap.
    fn peek<R>(&self, f: impl FnOnce(&smux_proto::Session) -> R) -> R {
        self.shared().with(|i| f(i.conn.session()))
    }

    fn stream(&self, id: StreamId) -> Stream {
        Stream::new(self.shared().clone(), id)
    }

    /// Opens a new stream. Never waits: the peer learns of the stream with its first
    /// frame. Fails once the session has ended or is closing, when all 65,536 stream
    /// IDs are in use, and with [`io::ErrorKind::ConnectionRefused`] once a go-away
    /// started ([`OpenError::GoingAway`](crate::OpenError::GoingAway)).
    pub fn open(&self) -> io::Result<Stream> {
        let id = self.shared().with(|i| i.conn.open())?;
        Ok(self.stream(id))
    }

    /// Waits for the next stream the peer opens. Streams the peer opened before the
    /// session ended can still be accepted; then it fails with the session's end
    /// reason. During a go-away no stream can come any more: it waits until the
    /// session ends, then fails with its reason ([`EndReason::Drained`]).
    pub fn accept(&self) -> io::Result<Stream> {
        self.accept_by(None)
            .expect("a wait without a deadline returns")
    }

    /// Like [`Session::accept`], but gives up after `timeout` with an
    /// [`io::ErrorKind::TimedOut`] error.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Stream> {
        let r = self.accept_by(Some(Instant::now() + timeout));
        r.unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, "accept timed out")))
    }

    /// The next stream the peer opened, without waiting: `Ok(None)` if there is none
    /// yet. For event loops with a [`Poller`](crate::Poller).
    pub fn try_accept(&self) -> io::Result<Option<Stream>> {
        self.accept_by(Some(Instant::now())).transpose()
    }

    fn accept_by(&self, deadline: Option<Instant>) -> Option<io::Result<Stream>> {
        let r = self.shared().wait(deadline, |c, s, w| c.poll_accept(s, w));
        r.map(|r| r.map(|id| self.stream(id)))
    }

    /// A new readiness poller for this session's streams.
    pub fn poller(&self) -> crate::Poller {
        crate::Poller::new(self)
    }

    /// Waits until the two ends have settled whether they use the protocol extensions
    /// and returns whether they do (see [`Session::extensions_enabled`]). Fails if the
    /// session ends first.
    ///
    /// Nothing needs to wait for this: streams opened before it settles take the
    /// session's mode, and a half-close waits for it on its own. It settles within one
    /// round trip once this end has sent something; `ready` makes this end send its
    /// offer now if it has not yet. That is then its first frame, so against a server
    /// that probes each new connection and reads exactly one header (some servers
    /// built on the reference implementation (yddeng/smux) do), open a stream first.
    pub fn ready(&self) -> io::Result<bool> {
        let r = self.shared().wait(None, |c, s, w| c.poll_ready(s, w));
        r.expect("a wait without a deadline returns")
    }

    /// Waits until the session has ended and its I/O side finished (the transport is
    /// closed); returns why it ended. Does not end the session itself: see
    /// [`Session::close`] and [`Session::shutdown`].
    pub fn closed(&self) -> EndReason {
        let r = self.shared().wait(None, |c, s, w| c.poll_closed(s, w));
        r.expect("a wait without a deadline returns")
    }

    /// Ends the session now: every stream and every pending call fails, frames not yet
    /// written to the transport are dropped, and the transport is closed. To deliver
    /// everything first, use [`Session::shutdown`].
    pub fn close(&self) {
        self.shared().with(|i| i.conn.close());
        // A write blocked on a full transport would otherwise go on writing what it
        // was handed once the peer reads: shutting the write side ends it now (the
        // read side stays, to drain what the peer still sends).
        let _ = self.shared().shut_write();
    }

    /// Ends the session gracefully and waits until it ended: new opens and writes are
    /// refused at once (and calls waiting for room or a stream fail), everything
    /// already written on its streams (and the FINs of closed streams) goes out, for at
    /// most 10 s ([`LINGER`]), then the session closes. Returns why it ended.
    pub fn shutdown(&self) -> EndReason {
        let linger = Instant::now() + LINGER;
        self.shared().with(|i| i.conn.shutdown(Some(linger)));
        self.closed()
    }

    /// Starts a graceful shutdown driven by the streams: no new stream in either
    /// direction, while open streams go on working. Our opens fail with
    /// [`io::ErrorKind::ConnectionRefused`], and streams the peer opened that were not
    /// accepted yet are refused, as is every later one. Once every stream has been
    /// given up on both ends and everything was written, the session ends with
    /// [`EndReason::Drained`]; [`Session::closed`] waits for that.
    ///
    /// With extensions on ([`Session::extensions_enabled`]) the peer is told (with
    /// `code`, for its logs), stops opening streams too and ends `Drained` as well. A
    /// peer without them only sees its new streams refused. This waits for the
    /// application to finish its streams, however long that takes: bound the wait
    /// yourself and call [`Session::close`] after it. Does nothing if the session ended
    /// or a go-away already started.
    pub fn go_away(&self, code: u32) {
        self.shared().with(|i| i.conn.go_away(code));
    }

    /// The session's figures (streams, buffered bytes, frames and bytes moved, the
    /// round-trip time of the last [`Session::ping`]).
    pub fn stats(&self) -> Stats {
        self.peek(smux_proto::Session::stats)
    }

    /// Why the session ended, or `None` while it runs.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.peek(|s| s.end_reason().cloned())
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.peek(smux_proto::Session::is_ended)
    }

    /// True once both ends agreed on the protocol extensions (both are smux-rs with
    /// extensions on): every stream of the session is then extended
    /// ([`Stream::is_extended`]): half-close, reset and windows that grow. False while
    /// the agreement is pending (it settles within a round trip of the first frame)
    /// and against a base peer; [`Session::ready`] waits until it settled.
    pub fn extensions_enabled(&self) -> bool {
        self.peek(smux_proto::Session::extensions_enabled)
    }

    /// True once a go-away started, here ([`Session::go_away`]) or on the peer.
    pub fn is_going_away(&self) -> bool {
        self.peek(smux_proto::Session::is_going_away)
    }

    /// Sends a VRM challenge to measure the round-trip time; the answer sets
    /// [`Stats::rtt`]. Returns false if one is already outstanding or the session ended.
    pub fn ping(&self) -> bool {
        self.shared().with(|i| i.conn.ping(Instant::now()))
    }

    /// The round-trip time measured by the last answered [`Session::ping`].
    pub fn rtt(&self) -> Option<Duration> {
        self.stats().rtt
    }

    /// The session's role.
    pub fn role(&self) -> Role {
        self.peek(smux_proto::Session::role)
    }

    /// The session's configuration.
    pub fn config(&self) -> Config {
        self.peek(|s| s.config().clone())
    }
}

#[cfg(test)]
mod tests;
