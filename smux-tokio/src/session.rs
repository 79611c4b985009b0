//! The session handle.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use smux_proto::{Agreement, Config, ConfigError, EndReason, OpenError, Role, Stats};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::driver::Driver;
use crate::shared::{now, wake, Shared};
use crate::stream::Stream;

/// A smux session over one transport: opens and accepts [`Stream`]s.
///
/// `Session::new` spawns **one** Tokio task, the session's driver, which owns the
/// transport; streams add no task of their own. The handle is cheap to clone (all
/// clones share the session). Dropping the last clone ends the session, even if
/// [`Stream`]s are still alive (their calls then fail), but like closing a TCP
/// socket it lets the driver write out what was already written first (at most for
/// 10 seconds); see [`Session::shutdown`] to wait for that, and [`Session::close`]
/// to drop it instead.
///
/// When the session ends for any reason (closed here, the peer closed the transport,
/// keepalive timeout, protocol error, I/O error), every pending and later call on its
/// streams returns an error, the driver shuts the transport down, and its task ends.
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

/// Ends the session when the last [`Session`] clone is dropped.
struct Handle {
    shared: Arc<Shared>,
}

/// How long a dropped session may take to write out what was queued.
const LINGER: Duration = Duration::from_secs(10);

impl Drop for Handle {
    fn drop(&mut self) {
        let driver = self.shared.lock().start_closing(Some(now() + LINGER));
        wake(driver);
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.shared().lock();
        f.debug_struct("Session")
            .field("tag", &self.shared().tag)
            .field("core", &g.core)
            .finish()
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
        let mut g = self.shared.lock();
        if g.driver_done {
            return Poll::Ready(g.core.end_reason().cloned().unwrap_or(EndReason::Local));
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
            self.shared.lock().done_waiters.remove(&key);
        }
    }
}

static SESSION_TAGS: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// Starts a session over `transport` and spawns its driver task.
    ///
    /// `role` says which end this is: [`Role::Dialer`] for the end that opened the
    /// connection, [`Role::Acceptor`] for the end that accepted it (the two ends take
    /// new stream IDs from opposite ends of the ID space).
    ///
    /// # Panics
    ///
    /// If `config` is invalid (see [`Config::validate`]; [`Session::try_new`] returns
    /// the error instead) or if called outside a Tokio runtime.
    pub fn new<T>(transport: T, config: Config, role: Role) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match Session::try_new(transport, config, role) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Session::new`], but returns an invalid configuration as an error.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime.
    pub fn try_new<T>(transport: T, config: Config, role: Role) -> Result<Session, ConfigError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let core = smux_proto::Session::new(config, role, now())?;
        let tag = SESSION_TAGS.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::new(core, tag));
        tracing::debug!(session = tag, ?role, "smux session started");
        tokio::spawn(Driver::new(transport, shared.clone()));
        Ok(Session {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Opens a new stream. The peer learns of it with the stream's first frame; data
    /// can be written at once.
    ///
    /// Fails when the session has ended, with [`io::ErrorKind::ConnectionRefused`]
    /// after a go-away (see [`Session::go_away`]), or with a clear error when all
    /// 65,536 stream IDs are in use (open, or closing and awaiting the peer's FIN).
    pub async fn open(&self) -> io::Result<Stream> {
        let (result, driver) = {
            let mut g = self.shared().lock();
            if g.closing && !g.core.is_ended() {
                return Err(crate::shared::Inner::closing_error());
            }
            let r = g.core.open();
            let d = if r.is_ok() { g.take_driver() } else { None };
            (r, d)
        };
        wake(driver);
        match result {
            Ok(id) => Ok(Stream::new(self.shared().clone(), id)),
            Err(OpenError::IdsExhausted) => Err(io::Error::other(
                "smux: all 65536 stream IDs are in use; close streams or open another session",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the next stream the peer opened.
    ///
    /// Fails once the session has ended and no opened stream is left to accept.
    pub async fn accept(&self) -> io::Result<Stream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next stream the peer opened (see [`Session::accept`]).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        let mut g = self.shared().lock();
        let inner = &mut *g;
        if let Some(id) = inner.core.accept() {
            drop(g);
            return Poll::Ready(Ok(Stream::new(self.shared().clone(), id)));
        }
        if let Some(reason) = inner.core.end_reason() {
            return Poll::Ready(Err(reason.to_io_error()));
        }
        if inner.closing {
            return Poll::Ready(Err(crate::shared::Inner::closing_error()));
        }
        inner.waiters.wait_accept(cx.waker());
        Poll::Pending
    }

    /// Starts a graceful shutdown that lets the open streams finish: from now on no new
    /// stream is opened in either direction ([`Session::open`] fails with
    /// [`io::ErrorKind::ConnectionRefused`]; streams the peer opens, and those not yet
    /// accepted, are refused), while the streams already open keep working. When the
    /// last of them is closed on both ends and everything was written, the session
    /// ends with [`EndReason::Drained`]; [`Session::closed`] waits for that, and
    /// [`Session::accept`] keeps waiting until then.
    ///
    /// With extensions on (see [`Session::extensions_enabled`]) the peer is told, with
    /// `code`, and stops opening streams too; its session also ends `Drained` once the
    /// streams are gone. A peer without extensions is not told: it only sees its new
    /// streams refused. Keep a handle to the session while it drains: dropping the last
    /// one ends it as described on [`Session`].
    pub fn go_away(&self, code: u32) {
        let driver = {
            let mut g = self.shared().lock();
            g.core.go_away(code);
            g.take_driver()
        };
        wake(driver);
    }

    /// True once a go-away was sent ([`Session::go_away`]) or received from the peer:
    /// no new streams in either direction.
    pub fn is_going_away(&self) -> bool {
        self.shared().lock().core.is_going_away()
    }

    /// True once both ends agreed on the extensions (growing windows, half-close,
    /// reset, go-away): every stream of the session is then extended
    /// ([`Stream::is_extended`]). False while the agreement is pending and against a
    /// base peer; [`Session::ready`] waits until it is settled.
    pub fn extensions_enabled(&self) -> bool {
        self.shared().lock().core.extensions_enabled()
    }

    /// Waits until the two ends have settled whether they use the extensions, and
    /// returns whether they do (see [`Session::extensions_enabled`]). Fails if the
    /// session ends first.
    ///
    /// Nothing needs to wait for this: streams opened before it settles take the
    /// session's mode, and a shutdown waits for it on its own. It settles within one
    /// round trip once this end has sent something; `ready` makes this end send its
    /// offer now if it has not yet. That is then its first frame, so against a server
    /// that probes each new connection and reads exactly one header (some servers
    /// built on the reference implementation do), open a stream first instead.
    pub async fn ready(&self) -> io::Result<bool> {
        let driver = {
            let mut g = self.shared().lock();
            g.core.start_agreement();
            g.take_driver()
        };
        wake(driver);
        poll_fn(|cx| {
            let mut g = self.shared().lock();
            let inner = &mut *g;
            match inner.core.agreement() {
                Agreement::Extended => return Poll::Ready(Ok(true)),
                Agreement::Base => return Poll::Ready(Ok(false)),
                _ => {}
            }
            if let Some(reason) = inner.core.end_reason() {
                return Poll::Ready(Err(reason.to_io_error()));
            }
            inner.waiters.wait_agreement(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Ends the session now: every stream fails, data not yet sent is dropped, and the
    /// driver shuts the transport down and ends. To finish streams gracefully, shut
    /// them down and wait for the peer before closing the session.
    pub fn close(&self) {
        let driver = {
            let mut g = self.shared().lock();
            g.core.close_session();
            g.take_driver()
        };
        wake(driver);
    }

    /// Ends the session gracefully and waits until it has ended: new opens and
    /// writes are refused at once, everything already written on its streams (and the
    /// FINs of closed streams) is written to the transport, then the session ends as
    /// with [`Session::close`] and the driver finishes. Waits as long as the transport
    /// takes the data: bound it with a timeout, and call [`Session::close`] after one.
    pub async fn shutdown(&self) -> EndReason {
        let driver = self.shared().lock().start_closing(None);
        wake(driver);
        self.closed().await
    }

    /// Waits until the session has ended and its driver task has finished (the
    /// transport is shut down and dropped); returns why it ended. Does not end the
    /// session itself: see [`Session::close`].
    pub async fn closed(&self) -> EndReason {
        let mut waiter = DoneWaiter {
            shared: self.shared(),
            key: None,
        };
        poll_fn(|cx| waiter.poll(cx)).await
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared().lock().core.is_ended()
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.shared().lock().core.end_reason().cloned()
    }

    /// Current figures: streams, buffered bytes, frames and bytes moved, round-trip
    /// time.
    pub fn stats(&self) -> Stats {
        self.shared().lock().core.stats()
    }

    /// Sends a VRM challenge to measure the round-trip time; [`Session::rtt`] reports
    /// it once the answer arrived. Returns false if a ping is already outstanding or
    /// the session has ended.
    pub fn ping(&self) -> bool {
        let (sent, driver) = {
            let mut g = self.shared().lock();
            let sent = g.core.ping(now());
            (sent, if sent { g.take_driver() } else { None })
        };
        wake(driver);
        sent
    }

    /// The round-trip time measured by the last answered [`Session::ping`].
    pub fn rtt(&self) -> Option<Duration> {
        self.shared().lock().core.stats().rtt
    }

    /// Which end of the connection this session is.
    pub fn role(&self) -> Role {
        self.shared().lock().core.role()
    }

    /// The session's configuration.
    pub fn config(&self) -> Config {
        self.shared().lock().core.config().clone()
    }
}
