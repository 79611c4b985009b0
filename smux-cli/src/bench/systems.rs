//! The systems under test behind one small interface: an end that opens streams and
//! an end that accepts them, each stream a boxed Tokio `AsyncRead + AsyncWrite`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::relay::{Relay, Shape};

/// A stream of any system.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed stream.
pub type BoxIo = Box<dyn Io>;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens streams (the client end).
pub trait Opener: Send + Sync + 'static {
    /// Opens one stream.
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>>;
}

/// Accepts streams (the server end).
pub trait Acceptor: Send + Sync + 'static {
    /// Accepts one stream; an error means the session is gone.
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>>;
}

/// The systems the benchmark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// One TCP connection per stream: the physical limit.
    Tcp,
    /// smux-rs through the Tokio adapter (extensions on, the default).
    SmuxRs,
    /// smux-rs through the Tokio adapter with extensions off: the base protocol only,
    /// as against a reference peer (fixed windows, full close).
    SmuxRsBase,
    /// The `yamux` crate (rust-yamux).
    Yamux,
    /// The `tokio-yamux` crate, default behaviour.
    TokioYamux,
    /// `tokio-yamux` with a writer that polls `poll_peek` while blocked.
    TokioYamuxPeek,
    /// The `async_smux` crate.
    AsyncSmux,
    /// smux-rs through the blocking adapter (threads; some scenarios only).
    SmuxBlocking,
    /// One TCP connection per stream on std threads and blocking sockets, with the
    /// blocking harness's threads: the physical limit of smux-blocking.
    TcpThreads,
    /// smux-rs through the smol adapter: each session's driver and the harness's
    /// tasks run on a smol executor (see [`smol_executor`] and `exec`); the harness
    /// reaches the streams through a futures-io to Tokio I/O trait wrapper.
    SmuxSmol,
    /// One TCP connection per stream (async-net / async-io sockets) on the smol
    /// executor smux-smol's runs use: the physical limit of smux-smol.
    TcpSmol,
}

impl System {
    /// All systems, in table order.
    pub const ALL: [System; 11] = [
        System::Tcp,
        System::SmuxRs,
        System::SmuxRsBase,
        System::SmuxSmol,
        System::TcpSmol,
        System::SmuxBlocking,
        System::TcpThreads,
        System::Yamux,
        System::TokioYamux,
        System::TokioYamuxPeek,
        System::AsyncSmux,
    ];

    /// The systems run when none are named.
    pub const DEFAULT: [System; 9] = [
        System::Tcp,
        System::SmuxRs,
        System::SmuxSmol,
        System::TcpSmol,
        System::SmuxBlocking,
        System::TcpThreads,
        System::Yamux,
        System::TokioYamux,
        System::AsyncSmux,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Tcp => "tcp",
            System::SmuxRs => "smux-rs",
            System::SmuxRsBase => "smux-rs-base",
            System::Yamux => "yamux",
            System::TokioYamux => "tokio-yamux",
            System::TokioYamuxPeek => "tokio-yamux+peek",
            System::AsyncSmux => "async-smux",
            System::SmuxBlocking => "smux-blocking",
            System::TcpThreads => "tcp-threads",
            System::SmuxSmol => "smux-smol",
            System::TcpSmol => "tcp-smol",
        }
    }

    /// Parses a name given by [`System::name`].
    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|sys| sys.name() == s)
    }

    /// Whether streams are separate TCP connections (no multiplexing).
    pub fn is_raw(self) -> bool {
        matches!(self, System::Tcp | System::TcpThreads | System::TcpSmol)
    }

    /// Whether the system runs on the blocking harness (std threads and sockets, a
    /// thread per busy stream) rather than on an async runtime.
    pub fn is_blocking(self) -> bool {
        matches!(self, System::SmuxBlocking | System::TcpThreads)
    }

    /// Whether the system's runs (harness tasks, drivers, sockets) are on the smol
    /// executor (see [`smol_executor`] and `exec`) rather than on Tokio's runtime.
    pub fn is_smol(self) -> bool {
        matches!(self, System::SmuxSmol | System::TcpSmol)
    }
}

/// What the two ends of one session are built from: a connected socket pair, or for
/// raw TCP a listener and its address.
pub enum Link {
    /// One end of a connected TCP pair (non-blocking, not yet registered).
    Socket(std::net::TcpStream),
    /// The listening socket (server end of raw TCP).
    Listener(std::net::TcpListener),
    /// The address to connect to (client end of raw TCP).
    Addr(SocketAddr),
}

/// Makes the links of one session: (client link, server link).
pub fn links(system: System) -> io::Result<(Link, Link)> {
    let (client, server, _) = links_through(system, None)?;
    Ok((client, server))
}

/// Makes the links of one session, through a relay of `shape` between the ends when
/// one is given (returned too: dropping it cuts the links).
pub fn links_through(
    system: System,
    shape: Option<Shape>,
) -> io::Result<(Link, Link, Option<Relay>)> {
    let listener = if system.is_raw() {
        // std's backlog (128) would drop SYNs when a scenario opens 1024 connections
        // at once; tokio's socket builder lets us ask for more. Needs a runtime.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(([127, 0, 0, 1], 0).into())?;
        socket.listen(4096)?.into_std()?
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
    };
    let mut addr = listener.local_addr()?;
    let relay = shape.map(|s| Relay::start(addr, s)).transpose()?;
    if let Some(r) = &relay {
        addr = r.addr();
    }
    if system.is_raw() {
        return Ok((Link::Addr(addr), Link::Listener(listener), relay));
    }
    let client = std::net::TcpStream::connect(addr)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
    }
    Ok((Link::Socket(client), Link::Socket(server), relay))
}

/// Tasks that die with the end that owns them (Tokio tasks are aborted, smol tasks
/// cancelled when dropped).
#[derive(Default)]
pub struct Tasks(Vec<JoinHandle<()>>, Vec<smol::Task<smux_smol::EndReason>>);

impl Tasks {
    fn spawn(&mut self, f: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(f));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The smol executor that runs the smux-smol drivers made on this thread: one shared
/// by the whole bench, or, on a thread tagged for the allocation counter (the idle
/// scenario), one of a single thread with the same tag, so each end's heap is
/// charged to that end. Its threads run smol's `block_on`, which drives the async-io
/// reactor while they wait, as a smol application's threads do. The shared one has
/// a thread fewer than the Tokio runtime has workers: the bench's main thread runs
/// it too during a run (see `exec`), so both runtimes have as many threads at work.
pub fn smol_executor() -> Arc<smol::Executor<'static>> {
    use std::sync::OnceLock;
    static EXECUTORS: [OnceLock<Arc<smol::Executor<'static>>>; crate::alloc::TAGS] =
        [const { OnceLock::new() }; crate::alloc::TAGS];
    let tag = crate::alloc::thread_tag();
    EXECUTORS[tag]
        .get_or_init(|| {
            let ex = Arc::new(smol::Executor::new());
            let threads = if tag == 0 { super::WORKERS - 1 } else { 1 };
            for i in 0..threads {
                let ex = ex.clone();
                // The threads live as long as the process: a bench run is one process.
                let spawned = std::thread::Builder::new()
                    .name(format!("smol-{tag}-{i}"))
                    .spawn(move || {
                        crate::alloc::set_thread_tag(tag);
                        smol::block_on(ex.run(std::future::pending::<()>()));
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a smol executor thread: {e}");
                }
            }
            ex
        })
        .clone()
}

/// The client end of a session.
pub struct ClientEnd {
    /// Opens streams.
    pub opener: Arc<dyn Opener>,
    _tasks: Tasks,
}

/// The server end of a session.
pub struct ServerEnd {
    /// Accepts streams.
    pub acceptor: Arc<dyn Acceptor>,
    _tasks: Tasks,
}

fn socket(link: Link) -> io::Result<TcpStream> {
    match link {
        Link::Socket(s) => TcpStream::from_std(s),
        _ => Err(io::Error::other("expected a connected socket")),
    }
}

/// Builds the client end (inside the runtime that will drive it).
pub fn client(system: System, link: Link) -> io::Result<ClientEnd> {
    let mut tasks = Tasks::default();
    let opener: Arc<dyn Opener> = match system {
        System::SmuxBlocking | System::TcpThreads => {
            return Err(io::Error::other("a blocking system has no async end"))
        }
        System::Tcp | System::TcpSmol => match link {
            Link::Addr(addr) => Arc::new(TcpOpener {
                addr,
                smol: system.is_smol(),
            }),
            _ => return Err(io::Error::other("raw TCP needs an address")),
        },
        System::SmuxRs | System::SmuxRsBase => Arc::new(SmuxOpener(
            smux_tokio::Session::new(socket(link)?, smux_config(system), smux_tokio::Role::Dialer)?,
            system == System::SmuxRs,
        )),
        System::SmuxSmol => Arc::new(SmolOpener(smol_end(
            link,
            smux_smol::Role::Dialer,
            &mut tasks,
        )?)),
        System::Yamux => {
            let (opener, _acceptor) = yamux_end(socket(link)?, yamux::Mode::Client, &mut tasks);
            Arc::new(opener)
        }
        System::TokioYamux | System::TokioYamuxPeek => {
            let session =
                tokio_yamux::Session::new_client(socket(link)?, tokio_yamux::Config::default());
            let (control, _acceptor) = tokio_yamux_end(session, &mut tasks);
            Arc::new(TokioYamuxOpener {
                control,
                peek: system == System::TokioYamuxPeek,
            })
        }
        System::AsyncSmux => {
            let (connector, _acceptor, worker) = async_smux::MuxBuilder::client()
                .with_connection(socket(link)?)
                .build();
            tasks.spawn(async move {
                let _ = worker.await;
            });
            Arc::new(AsyncSmuxOpener(connector))
        }
    };
    Ok(ClientEnd {
        opener,
        _tasks: tasks,
    })
}

/// Builds the server end (inside the runtime that will drive it).
pub fn server(system: System, link: Link) -> io::Result<ServerEnd> {
    let mut tasks = Tasks::default();
    let acceptor: Arc<dyn Acceptor> = match system {
        System::SmuxBlocking | System::TcpThreads => {
            return Err(io::Error::other("a blocking system has no async end"))
        }
        System::Tcp => match link {
            Link::Listener(l) => Arc::new(TcpAcceptor::Tokio(TcpListener::from_std(l)?)),
            _ => return Err(io::Error::other("raw TCP needs a listener")),
        },
        System::TcpSmol => match link {
            Link::Listener(l) => Arc::new(TcpAcceptor::Smol(l.try_into()?)),
            _ => return Err(io::Error::other("raw TCP needs a listener")),
        },
        System::SmuxRs | System::SmuxRsBase => Arc::new(SmuxAcceptor(
            smux_tokio::Session::new(
                socket(link)?,
                smux_config(system),
                smux_tokio::Role::Acceptor,
            )?,
            system == System::SmuxRs,
        )),
        System::SmuxSmol => Arc::new(SmolAcceptor(smol_end(
            link,
            smux_smol::Role::Acceptor,
            &mut tasks,
        )?)),
        System::Yamux => {
            let (_opener, acceptor) = yamux_end(socket(link)?, yamux::Mode::Server, &mut tasks);
            Arc::new(acceptor)
        }
        System::TokioYamux | System::TokioYamuxPeek => {
            let session =
                tokio_yamux::Session::new_server(socket(link)?, tokio_yamux::Config::default());
            let (_control, acceptor) = tokio_yamux_end(session, &mut tasks);
            Arc::new(acceptor)
        }
        System::AsyncSmux => {
            let (_connector, acceptor, worker) = async_smux::MuxBuilder::server()
                .with_connection(socket(link)?)
                .build();
            tasks.spawn(async move {
                let _ = worker.await;
            });
            Arc::new(AsyncSmuxAcceptor(Mutex::new(acceptor)))
        }
    };
    Ok(ServerEnd {
        acceptor,
        _tasks: tasks,
    })
}

// ---- raw TCP, on Tokio's sockets or smol's ----

/// Connects to `addr`, with smol's sockets if `smol` (async-net on the async-io
/// reactor, reached through the futures-io to Tokio I/O wrapper, as smux-smol's
/// streams are), else Tokio's.
struct TcpOpener {
    addr: SocketAddr,
    smol: bool,
}

impl Opener for TcpOpener {
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            if self.smol {
                smol_tcp(smol::net::TcpStream::connect(self.addr).await?)
            } else {
                tokio_tcp(TcpStream::connect(self.addr).await?)
            }
        })
    }
}

/// The listening socket, on Tokio's reactor or smol's.
enum TcpAcceptor {
    Tokio(TcpListener),
    Smol(smol::net::TcpListener),
}

impl Acceptor for TcpAcceptor {
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            match self {
                TcpAcceptor::Tokio(l) => tokio_tcp(l.accept().await?.0),
                TcpAcceptor::Smol(l) => smol_tcp(l.accept().await?.0),
            }
        })
    }
}

/// A Tokio TCP stream as the scenarios use it: `TCP_NODELAY` on, boxed.
fn tokio_tcp(s: TcpStream) -> io::Result<BoxIo> {
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}

/// A smol TCP stream as the scenarios use it: `TCP_NODELAY` on, behind the
/// futures-io to Tokio I/O wrapper, boxed.
fn smol_tcp(s: smol::net::TcpStream) -> io::Result<BoxIo> {
    s.set_nodelay(true)?;
    Ok(Box::new(s.compat()))
}

// ---- smux-rs ----

fn smux_config(system: System) -> smux_tokio::Config {
    smux_tokio::Config::default().with_extensions(system != System::SmuxRsBase)
}

/// A session, and whether it has the extensions (known from the system, so no
/// stream pays a lock to ask the session).
struct SmuxOpener(smux_tokio::Session, bool);

impl Opener for SmuxOpener {
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move { Ok(smux_io(self.1, self.0.open().await?)) })
    }
}

/// A session, and whether it has the extensions.
struct SmuxAcceptor(smux_tokio::Session, bool);

impl Acceptor for SmuxAcceptor {
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move { Ok(smux_io(self.1, self.0.accept().await?)) })
    }
}

/// A stream as the scenarios use it. With extensions off there is no half-close, so
/// a shutdown is a full close there (the stream is released, as async-smux does).
fn smux_io(extensions: bool, s: smux_tokio::Stream) -> BoxIo {
    if extensions {
        Box::new(s)
    } else {
        Box::new(FullClose(Some(s)))
    }
}

/// A base stream whose shutdown releases it; reads after that see end-of-file.
struct FullClose(Option<smux_tokio::Stream>);

impl AsyncRead for FullClose {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for FullClose {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

// ---- smux-rs on smol ----

/// One end of a smux-smol session; its driver is spawned on [`smol_executor`].
fn smol_end(
    link: Link,
    role: smux_smol::Role,
    tasks: &mut Tasks,
) -> io::Result<smux_smol::Session> {
    let Link::Socket(s) = link else {
        return Err(io::Error::other("expected a connected socket"));
    };
    let transport = smux_smol::TcpTransport::new(s)?;
    let (session, driver) =
        smux_smol::Session::with_driver(transport, smux_smol::Config::default(), role)?;
    tasks.1.push(smol_executor().spawn(driver));
    Ok(session)
}

struct SmolOpener(smux_smol::Session);

impl Opener for SmolOpener {
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move { Ok(Box::new(self.0.open().await?.compat()) as BoxIo) })
    }
}

struct SmolAcceptor(smux_smol::Session);

impl Acceptor for SmolAcceptor {
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move { Ok(Box::new(self.0.accept().await?.compat()) as BoxIo) })
    }
}

// ---- yamux (rust-yamux): one task owns the connection and must keep polling it ----

type YamuxResult = Result<yamux::Stream, yamux::ConnectionError>;

struct YamuxOpener(mpsc::UnboundedSender<oneshot::Sender<YamuxResult>>);

impl Opener for YamuxOpener {
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.0.send(tx).map_err(|_| closed())?;
            let s = rx.await.map_err(|_| closed())?.map_err(io::Error::other)?;
            Ok(Box::new(s.compat()) as BoxIo)
        })
    }
}

struct YamuxAcceptor(Mutex<mpsc::UnboundedReceiver<yamux::Stream>>);

impl Acceptor for YamuxAcceptor {
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let s = self.0.lock().await.recv().await.ok_or_else(closed)?;
            Ok(Box::new(s.compat()) as BoxIo)
        })
    }
}

fn yamux_end(tcp: TcpStream, mode: yamux::Mode, tasks: &mut Tasks) -> (YamuxOpener, YamuxAcceptor) {
    let mut cfg = yamux::Config::default();
    // The default allows 512 streams; bulk-1024 and idle need more. Lifting the
    // per-connection receive window cap first is what the crate requires for that.
    cfg.set_max_connection_receive_window(None);
    cfg.set_max_num_streams(65_536);
    let mut conn = yamux::Connection::new(tcp.compat(), cfg, mode);
    let (open_tx, mut open_rx) = mpsc::unbounded_channel::<oneshot::Sender<YamuxResult>>();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    tasks.spawn(async move {
        let mut waiting: Option<oneshot::Sender<YamuxResult>> = None;
        let mut requests_open = true;
        futures::future::poll_fn(|cx| {
            loop {
                if waiting.is_none() && requests_open {
                    match open_rx.poll_recv(cx) {
                        Poll::Ready(Some(tx)) => waiting = Some(tx),
                        Poll::Ready(None) => requests_open = false,
                        Poll::Pending => {}
                    }
                }
                let Some(tx) = waiting.take() else { break };
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(r) => {
                        let _ = tx.send(r);
                    }
                    Poll::Pending => {
                        waiting = Some(tx);
                        break;
                    }
                }
            }
            loop {
                match conn.poll_next_inbound(cx) {
                    Poll::Ready(Some(Ok(s))) => {
                        let _ = in_tx.send(s);
                    }
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
    });
    (YamuxOpener(open_tx), YamuxAcceptor(Mutex::new(in_rx)))
}

// ---- tokio-yamux: the session is a `Stream` of inbound streams to keep polling ----

struct TokioYamuxOpener {
    control: tokio_yamux::Control,
    peek: bool,
}

impl Opener for TokioYamuxOpener {
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let s = self
                .control
                .clone()
                .open_stream()
                .await
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            if self.peek {
                Ok(Box::new(PeekWhileBlocked(s)) as BoxIo)
            } else {
                Ok(Box::new(s) as BoxIo)
            }
        })
    }
}

struct TokioYamuxAcceptor(Mutex<mpsc::UnboundedReceiver<tokio_yamux::StreamHandle>>);

impl Acceptor for TokioYamuxAcceptor {
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let s = self.0.lock().await.recv().await.ok_or_else(closed)?;
            Ok(Box::new(s) as BoxIo)
        })
    }
}

fn tokio_yamux_end(
    mut session: tokio_yamux::Session<TcpStream>,
    tasks: &mut Tasks,
) -> (tokio_yamux::Control, TokioYamuxAcceptor) {
    let control = session.control();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    tasks.spawn(async move {
        while let Some(Ok(s)) = session.next().await {
            let _ = in_tx.send(s);
        }
    });
    (control, TokioYamuxAcceptor(Mutex::new(in_rx)))
}

/// The workaround for tokio-yamux's write-only stall: window updates are processed
/// only when the stream's read side is polled, so a blocked write also polls
/// `poll_peek` (which reads nothing out of the stream).
struct PeekWhileBlocked(tokio_yamux::StreamHandle);

impl AsyncRead for PeekWhileBlocked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeekWhileBlocked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.0).poll_write(cx, buf) {
            Poll::Pending => {
                let mut byte = [0u8; 1];
                let mut peek = ReadBuf::new(&mut byte);
                let _ = self.0.poll_peek(cx, &mut peek);
                Pin::new(&mut self.0).poll_write(cx, buf)
            }
            ready => ready,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

// ---- async-smux ----

struct AsyncSmuxOpener(async_smux::MuxConnector<TcpStream>);

impl Opener for AsyncSmuxOpener {
    fn open(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let s = self
                .0
                .connect()
                .map_err(|e| io::Error::other(e.to_string()))?;
            Ok(Box::new(s) as BoxIo)
        })
    }
}

struct AsyncSmuxAcceptor(Mutex<async_smux::MuxAcceptor<TcpStream>>);

impl Acceptor for AsyncSmuxAcceptor {
    fn accept(&self) -> BoxFut<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let s = self.0.lock().await.accept().await.ok_or_else(closed)?;
            Ok(Box::new(s) as BoxIo)
        })
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "session closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_are_known() {
        for sys in System::ALL {
            assert_eq!(System::parse(sys.name()), Some(sys), "{}", sys.name());
        }
        let names: Vec<&str> = System::ALL.iter().map(|s| s.name()).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n} twice");
        }
        assert!(System::DEFAULT.iter().all(|s| System::ALL.contains(s)));
        assert_eq!(System::parse("tcp-threads"), Some(System::TcpThreads));
        assert_eq!(System::parse("tcp-smol"), Some(System::TcpSmol));
        // Each adapter's physical limit right after it, in the table and in the
        // default set.
        for list in [&System::ALL[..], &System::DEFAULT[..]] {
            for (adapter, limit) in [
                (System::SmuxBlocking, System::TcpThreads),
                (System::SmuxSmol, System::TcpSmol),
            ] {
                let at = list.iter().position(|&s| s == adapter).unwrap();
                assert_eq!(list[at + 1], limit);
            }
        }
        assert!(System::TcpThreads.is_raw() && System::TcpThreads.is_blocking());
        assert!(System::SmuxBlocking.is_blocking() && !System::SmuxBlocking.is_raw());
        assert!(System::Tcp.is_raw() && !System::Tcp.is_blocking());
        assert!(System::TcpSmol.is_raw() && !System::TcpSmol.is_blocking());
        let smol: Vec<System> = System::ALL.into_iter().filter(|s| s.is_smol()).collect();
        assert_eq!(smol, [System::SmuxSmol, System::TcpSmol]);
        assert_eq!(System::parse("nonesuch"), None);
    }
}
