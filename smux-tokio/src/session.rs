//! The session handle.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::any::Any;
use std::pin::Pin;

use smux_proto::{Config, ConfigError, Connection, EndReason, Input, Output, Role, Stats, LINGER};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::driver::Driver;
use crate::shared::{now, ReadSide, Reader, Shared, Writer};
use crate::stream::Stream;

/// A smux session over one transport: opens and accepts [`Stream`]s.
///
/// [`Session::new`] spawns **one** Tokio task, the session's driver, which owns the
/// transport; streams add no task of their own. The handle is cheap to clone (all
/// clones share the session). Dropping the last clone closes the session gracefully
/// in the background, even if [`Stream`]s are still alive (their new writes then
/// fail): like closing a TCP socket, what was already written is written out first,
/// for at most 10 seconds. [`Session::shutdown`] does the same and waits for it;
/// [`Session::close`] drops what is queued instead.
///
/// When the session ends for any reason (closed here, the peer closed the transport,
/// keepalive timeout, protocol error, I/O error, drained after a go-away), every
/// pending and later call on its streams returns an error, the driver shuts the
/// transport down, and its task ends.
#[derive(Clone, Debug)]
pub struct Session {
    handle: Arc<Handle>,
}

/// Starts the graceful close when the last [`Session`] clone is dropped.
#[derive(Debug)]
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.with(|c| c.shutdown(Some(now() + LINGER)));
    }
}

/// A transport's read and write sides (both shared): a TCP stream's own halves, else
/// Tokio's generic split.
fn split<T>(transport: T) -> (ReadSide, Pin<Box<dyn AsyncWrite + Send>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let any: Box<dyn Any + Send> = Box::new(transport);
    match any.downcast::<TcpStream>() {
        Ok(tcp) => {
            let (r, w) = tcp.into_split();
            (ReadSide::Tcp(r), Box::pin(w))
        }
        Err(any) => {
            let t = *any.downcast::<T>().expect("the transport's own type");
            let (r, w) = tokio::io::split(t);
            (ReadSide::Other(Box::pin(r)), Box::pin(w))
        }
    }
}

/// An invalid configuration as an I/O error (kind `InvalidInput`, the
/// [`ConfigError`] inside).
pub(crate) fn invalid(e: ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

static SESSION_TAGS: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// Starts a session over `transport` and spawns its driver task on the current
    /// Tokio runtime (which needs its `time` driver).
    ///
    /// `role` says which end this is: [`Role::Dialer`] for the end that opened the
    /// connection, [`Role::Acceptor`] for the end that accepted it (the two ends take
    /// new stream IDs from opposite ends of the ID space). Fails with
    /// [`io::ErrorKind::InvalidInput`] if `config` is invalid (the [`ConfigError`] is
    /// the inner error), and with an error of kind `Other` outside a Tokio runtime.
    pub fn new<T>(transport: T, config: Config, role: Role) -> io::Result<Session>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let mut conn = Connection::new(config, role, now()).map_err(invalid)?;
        let tag = SESSION_TAGS.fetch_add(1, Ordering::Relaxed);
        let vectored = transport.is_write_vectored();
        let (read, write) = split(transport);
        if let ReadSide::Tcp(_) = read {
            conn.lend_reads();
        }
        // Tokio's scheduler steals work when one wake-up displaces another.
        conn.pace_wakes();
        let writer = Writer {
            io: write,
            output: Output::new(vectored),
        };
        let reader = Reader {
            io: read,
            input: Input::new(),
        };
        let shared = Arc::new(Shared::new(conn, reader, writer, tag));
        tracing::debug!(session = tag, ?role, "smux session started");
        runtime.spawn(Driver::new(shared.clone()));
        Ok(Session {
            handle: Arc::new(Handle(shared)),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.0
    }

    /// Opens a new stream. The peer learns of it with the stream's first frame; data
    /// can be written at once.
    ///
    /// Fails when the session has ended, with [`io::ErrorKind::NotConnected`] during a
    /// graceful close, with [`io::ErrorKind::ConnectionRefused`] after a go-away (see
    /// [`Session::go_away`]), or with a clear error when all 65,536 stream IDs are in
    /// use (open, or closing and awaiting the peer's FIN).
    pub async fn open(&self) -> io::Result<Stream> {
        let id = self.shared().with(Connection::open)?;
        Ok(Stream::new(self.shared().clone(), id))
    }

    /// Waits for the next stream the peer opened.
    ///
    /// During a go-away it waits until the session ends (no new stream comes); it
    /// fails once the session has ended (with its reason) or is closing.
    pub async fn accept(&self) -> io::Result<Stream> {
        let id = self.shared().wait(|c, s, w| c.poll_accept(s, w)).await?;
        Ok(Stream::new(self.shared().clone(), id))
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
    /// one closes it as described on [`Session`].
    pub fn go_away(&self, code: u32) {
        self.shared().with(|c| c.go_away(code));
    }

    /// True once a go-away was sent ([`Session::go_away`]) or received from the peer:
    /// no new streams in either direction.
    pub fn is_going_away(&self) -> bool {
        self.shared().with(|c| c.session().is_going_away())
    }

    /// True once both ends agreed on the extensions (growing windows, half-close,
    /// reset, go-away): every stream of the session is then extended
    /// ([`Stream::is_extended`]). False while the agreement is pending and against a
    /// base peer; [`Session::ready`] waits until it is settled.
    pub fn extensions_enabled(&self) -> bool {
        self.shared().with(|c| c.session().extensions_enabled())
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
        self.shared().wait(|c, s, w| c.poll_ready(s, w)).await
    }

    /// Ends the session now (a hard close): every stream fails, data not yet written to
    /// the transport is dropped, and the driver shuts the transport down and ends. See
    /// [`Session::shutdown`] to write it out first.
    pub fn close(&self) {
        self.shared().with(Connection::close);
    }

    /// Ends the session gracefully and waits until it has ended: new opens and writes
    /// are refused at once (calls waiting for room or a stream fail now), everything
    /// already written on its streams (and the FINs of closed streams) is written to
    /// the transport, then the session ends as with [`Session::close`] and the driver
    /// finishes. Waits as long as the transport takes the data: bound it with a
    /// timeout, and call [`Session::close`] after one.
    pub async fn shutdown(&self) -> EndReason {
        self.shared().with(|c| c.shutdown(None));
        self.closed().await
    }

    /// Waits until the session has ended and its driver task has finished (the
    /// transport is shut down and dropped); returns why it ended. Does not end the
    /// session itself: see [`Session::close`].
    pub async fn closed(&self) -> EndReason {
        self.shared().wait(|c, s, w| c.poll_closed(s, w)).await
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared().with(|c| c.session().is_ended())
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.shared().with(|c| c.session().end_reason().cloned())
    }

    /// Current figures: streams, buffered bytes, frames and bytes moved, round-trip
    /// time.
    pub fn stats(&self) -> Stats {
        self.shared().with(|c| c.stats())
    }

    /// Sends a VRM challenge to measure the round-trip time; [`Session::rtt`] reports
    /// it once the answer arrived. Returns false if a ping is already outstanding or
    /// the session has ended.
    pub fn ping(&self) -> bool {
        self.shared().with(|c| c.ping(now()))
    }

    /// The round-trip time measured by the last answered [`Session::ping`].
    pub fn rtt(&self) -> Option<Duration> {
        self.stats().rtt
    }

    /// Which end of the connection this session is.
    pub fn role(&self) -> Role {
        self.shared().with(|c| c.session().role())
    }

    /// The session's configuration.
    pub fn config(&self) -> Config {
        self.shared().with(|c| c.session().config().clone())
    }
}
