//! The session handle and the shared connection; the driver is in `driver.rs`.

use std::any::Any;
use std::future::poll_fn;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use std::{fmt, io};

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};
use smallvec::SmallVec;
use smux_proto::{
    lock_briefly, try_lock, Config, Connection, EndReason, Input, Output, Role, Slot, Stats,
    WakeOnRelease, LINGER,
};

use crate::driver::Driver;
use crate::net::{invalid, TcpTransport};
use crate::stream::Stream;

/// A whole transport, behind the writer's lock.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// The transport's write side and the bytes waiting for it: the driver writes from
/// here, and so does a stream writer that finds nothing queued ahead of it (a write
/// straight from its own buffer). Locked before the connection when both are needed.
pub(crate) struct Writer {
    pub(crate) io: Box<dyn Transport>,
    pub(crate) output: Output,
}

impl Writer {
    /// The write side of `t`, and the driver's own read handle if `t` has one: a
    /// [`TcpTransport`] is two handles on its socket, so reading never waits for a
    /// write; any other transport is read through this lock too.
    fn new<T: Transport + 'static>(t: T) -> (Writer, Option<Arc<Async<TcpStream>>>) {
        // futures-io cannot say whether a transport writes vectors in one call; if
        // not, the output gathers small frames into one buffer first.
        let t: Box<dyn Any> = Box::new(t);
        #[cfg(unix)]
        let unix = t.is::<Async<std::os::unix::net::UnixStream>>();
        #[cfg(not(unix))]
        let unix = false;
        let output = Output::new(unix || t.is::<TcpTransport>() || t.is::<Async<TcpStream>>());
        let (read, io): (_, Box<dyn Transport>) = match t.downcast::<TcpTransport>() {
            Ok(tcp) => (Some(tcp.inner.clone()), tcp),
            Err(t) => (None, t.downcast::<T>().expect("the transport's own type")),
        };
        (Writer { io, output }, read)
    }
}

/// The read side: the driver's own read handle on a TCP socket (which a stream reader
/// may also try, without taking over the driver's wait for readiness) and the bytes
/// read and not yet taken. Locked before the writer and the connection.
pub(crate) struct Reader {
    pub(crate) tcp: Option<Arc<Async<TcpStream>>>,
    pub(crate) input: Input,
}

/// One session's connection, shared by its handles, its streams and its driver.
pub(crate) struct Shared {
    conn: Mutex<Connection>,
    reader: Mutex<Reader>,
    writer: Mutex<Writer>,
    /// The driver, if it found the write side taken by a stream writing through.
    driver_skipped: WakeOnRelease,
    /// A process-unique number for log lines.
    pub(crate) tag: u64,
}

impl Shared {
    /// Runs `f` on the connection under the lock, then wakes (after unlocking) whoever
    /// the call owes a wake-up.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        // Held briefly by every call, so a taken lock is tried again before waiting; a
        // poisoned one is taken anyway (see `lock_briefly`).
        let mut c = lock_briefly(&self.conn);
        let r = f(&mut c);
        if !c.owes_wakers() {
            return r;
        }
        // A call owes few wake-ups: they are collected on the stack, not allocated.
        let mut woken = SmallVec::<[Waker; 4]>::new();
        c.take_wakers(&mut woken);
        drop(c);
        woken.into_iter().for_each(Waker::wake);
        r
    }

    /// Whether the driver's last plan still stands (see `Connection::plan_stands`).
    pub(crate) fn plan_stands(&self, now: Instant) -> bool {
        lock_briefly(&self.conn).plan_stands(now)
    }

    /// The write side, for the driver (which waits for it; nobody holds it long).
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The write side if it is free: a stream writer that finds it busy queues instead.
    /// A poisoned lock is taken, as the driver takes it (the same in every adapter).
    pub(crate) fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        try_lock(&self.writer)
    }

    /// The write side for the driver, or `None` while a stream writes through: that
    /// stream wakes `driver` when it lets go ([`Shared::release_writer`]), so the
    /// driver reads meanwhile instead of waiting on the lock.
    pub(crate) fn driver_writer(&self, driver: &Waker) -> Option<MutexGuard<'_, Writer>> {
        (self.driver_skipped).try_or_owe(driver, || try_lock(&self.writer))
    }

    /// Says that the stream holding the write side is about to write a large frame
    /// through (see [`WakeOnRelease::hold_long`]).
    pub(crate) fn hold_writer_long(&self) {
        self.driver_skipped.hold_long();
    }

    /// Whether the stream holding the write side writes a large frame: the driver
    /// waits for it rather than read the transport meanwhile.
    pub(crate) fn writer_held_long(&self) -> bool {
        self.driver_skipped.held_long()
    }

    /// Lets go of the write side a stream took to write through.
    pub(crate) fn release_writer(&self, w: MutexGuard<'_, Writer>) {
        drop(w);
        self.driver_skipped.pay();
    }

    /// The read side, for the driver.
    pub(crate) fn reader(&self) -> MutexGuard<'_, Reader> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The read side if it is free (a stream reader that finds it busy waits).
    pub(crate) fn try_reader(&self) -> Option<MutexGuard<'_, Reader>> {
        try_lock(&self.reader)
    }

    /// Waits on a `poll_*` method of the connection that parks in a [`Slot`]; a
    /// dropped wait forgets its waker.
    pub(crate) async fn wait<R>(
        &self,
        mut f: impl FnMut(&mut Connection, &mut Slot, &Waker) -> Poll<R>,
    ) -> R {
        struct Forget<'a>(&'a Shared, Slot);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                if self.1 != Slot::default() {
                    self.0.with(|c| c.forget(&mut self.1));
                }
            }
        }
        let mut parked = Forget(self, Slot::default());
        poll_fn(|cx| self.with(|c| f(c, &mut parked.1, cx.waker()))).await
    }
}

/// One smux session over a transport: opens and accepts [`Stream`]s.
///
/// Make one with [`Session::new`] (any futures-io transport; its driver runs on smol's
/// global executor), [`Session::with_driver`] (run the driver yourself),
/// [`connect`](crate::connect) or a [`Listener`](crate::Listener).
///
/// `Session` is a cheap handle: clones share the session. Dropping the last one
/// starts a graceful close even if [`Stream`]s are still alive (their calls then
/// fail): like closing a TCP socket, what was already written still goes out, for at
/// most [`LINGER`] (10 s), then the transport is shut (within 2 s more).
/// [`Session::shutdown`] does that and waits; [`Session::close`] drops it instead.
///
/// When the session ends for any reason (closed here, the peer closed the transport,
/// keepalive timeout, protocol error, I/O error, a completed go-away), every pending
/// and later call on it and on its streams fails promptly; [`Session::end_reason`]
/// says why.
#[derive(Clone)]
pub struct Session(Arc<Handle>);

/// The part of a session handle whose drop starts the graceful close.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.with(|c| c.shutdown(Some(Instant::now() + LINGER)));
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (role, end) = self.with(|c| (c.session().role(), c.session().end_reason().cloned()));
        let mut d = f.debug_struct("Session");
        d.field("tag", &self.shared().tag).field("role", &role);
        d.field("end", &end).finish()
    }
}

static SESSION_TAGS: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// A session over `transport` with `config`, as `role` ([`Role::Dialer`] for the
    /// end that opened the connection, [`Role::Acceptor`] for the other); its driver
    /// runs on smol's global executor (`smol::spawn`). Nothing is sent before a stream
    /// is opened, a frame must be answered or the first keepalive is due.
    ///
    /// An invalid `config` fails with [`io::ErrorKind::InvalidInput`], the
    /// [`ConfigError`](crate::ConfigError) as its inner error.
    pub fn new<T>(transport: T, config: Config, role: Role) -> io::Result<Session>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (session, driver) = Session::with_driver(transport, config, role)?;
        smol::spawn(driver).detach();
        Ok(session)
    }

    /// Like [`Session::new`], but returns the [`Driver`] instead of spawning it: run it
    /// on any executor, or nothing is ever sent or received.
    pub fn with_driver<T>(
        transport: T,
        config: Config,
        role: Role,
    ) -> io::Result<(Session, Driver<T>)>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut conn = Connection::new(config, role, Instant::now()).map_err(invalid)?;
        let tag = SESSION_TAGS.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(session = tag, ?role, "smux session started");
        let (writer, tcp) = Writer::new(transport);
        if tcp.is_some() {
            conn.lend_reads();
        }
        let input = Input::new();
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            reader: Mutex::new(Reader { tcp, input }),
            writer: Mutex::new(writer),
            driver_skipped: WakeOnRelease::default(),
            tag,
        });
        let driver = Driver::new(shared.clone());
        Ok((Session(Arc::new(Handle(shared))), driver))
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.0 .0
    }

    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        self.shared().with(f)
    }

    /// Opens a new stream; its SYN goes out at once and the peer hands it out through
    /// its `accept`.
    ///
    /// Fails once the session ended, during a graceful close
    /// ([`io::ErrorKind::NotConnected`]), after a go-away (ours or the peer's;
    /// [`io::ErrorKind::ConnectionRefused`]), or when all 65,536 stream IDs are in use
    /// (open, or closing and awaiting the peer's FIN).
    pub async fn open(&self) -> io::Result<Stream> {
        let id = self.with(Connection::open)?;
        Ok(Stream::new(self.shared().clone(), id))
    }

    /// The next stream the peer opened. Waits until one arrives, also during a
    /// go-away (no new stream comes then, and the session ends once drained); fails
    /// once the session has ended, with its reason, or when a graceful close starts.
    pub async fn accept(&self) -> io::Result<Stream> {
        let id = self.shared().wait(Connection::poll_accept).await?;
        Ok(Stream::new(self.shared().clone(), id))
    }

    /// Ends the session now: every stream fails, pending calls return an error, data
    /// not yet handed to the transport is dropped, and the driver closes the
    /// transport. Does nothing if the session already ended.
    pub fn close(&self) {
        self.with(Connection::close);
    }

    /// Ends the session gracefully and waits until the transport is closed: new opens,
    /// accepts and writes are refused at once (parked ones fail now), everything
    /// already written on the streams (and the FINs of closed streams) goes out, then
    /// the session ends; if writing out takes longer than [`LINGER`] (10 s), what is
    /// left is dropped then.
    pub async fn shutdown(&self) -> EndReason {
        self.with(|c| c.shutdown(Some(Instant::now() + LINGER)));
        self.closed().await
    }

    /// Starts a graceful go-away: no new stream in either direction (opens fail with
    /// [`io::ErrorKind::ConnectionRefused`], streams the peer opened and we had not
    /// accepted are refused, and so are later ones), while open streams go on. Once
    /// every stream was released on both ends and everything written, the session
    /// ends with [`EndReason::Drained`]; [`Session::closed`] waits for that.
    ///
    /// With extensions on, the peer is told (with `code`, for its logs) and drains
    /// too; a peer without them only sees its new streams refused. Does nothing once
    /// the session ended or a go-away started.
    pub fn go_away(&self, code: u32) {
        self.with(|c| c.go_away(code));
    }

    /// Whether a go-away was started here or by the peer.
    pub fn is_going_away(&self) -> bool {
        self.with(|c| c.session().is_going_away())
    }

    /// Whether both ends agreed on the extensions (half-close, reset, go-away,
    /// windows that grow); false while the agreement is pending, with a peer without
    /// them, or when [`Config::extensions`] is off. [`Session::ready`] waits for it.
    pub fn extensions_enabled(&self) -> bool {
        self.with(|c| c.session().extensions_enabled())
    }

    /// Waits until the ends settled whether they use the extensions, and returns
    /// whether they do; fails if the session ends first.
    ///
    /// Nothing needs to wait for this: streams opened before it settles take the
    /// session's mode, and a half-close waits for it by itself. `ready` makes this end
    /// send its offer now if it has not yet; that is then its first frame, so against
    /// a server that probes each new connection and reads exactly one header (some
    /// built on the reference implementation do), open a stream first.
    pub async fn ready(&self) -> io::Result<bool> {
        self.shared().wait(Connection::poll_ready).await
    }

    /// Waits until the session has ended and the driver closed the transport; returns
    /// why the session ended.
    pub async fn closed(&self) -> EndReason {
        self.shared().wait(Connection::poll_closed).await
    }

    /// Why the session ended, or `None` while it runs.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.with(|c| c.session().end_reason().cloned())
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.with(|c| c.session().is_ended())
    }

    /// Current figures: open streams, buffered bytes, frames and bytes moved.
    pub fn stats(&self) -> Stats {
        self.with(|c| c.stats())
    }

    /// Sends a VRM challenge to measure the round-trip time; [`Session::rtt`] reports
    /// it once answered. False if a ping is outstanding or the session has ended.
    pub fn ping(&self) -> bool {
        self.with(|c| c.ping(Instant::now()))
    }

    /// The round-trip time measured by the last answered [`Session::ping`].
    pub fn rtt(&self) -> Option<Duration> {
        self.stats().rtt
    }

    /// Which end of the connection this session is.
    pub fn role(&self) -> Role {
        self.with(|c| c.session().role())
    }

    /// The session's configuration.
    pub fn config(&self) -> Config {
        self.with(|c| c.session().config().clone())
    }
}
