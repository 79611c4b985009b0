//! TCP conveniences: dial a session, or listen for them.

use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{Config, Role};

use crate::session::Session;

/// A TCP connection as a session transport: the transport of sessions made by
/// [`connect`] and [`Listener`].
///
/// It is `Async<TcpStream>` with one difference: closing it (`poll_close`) shuts the
/// connection's write side down, so the peer sees end-of-file, whereas
/// `Async<TcpStream>` only flushes there. The session's driver relies on that to
/// end a session cleanly (it then reads until the peer closes too).
#[derive(Debug)]
pub struct TcpTransport {
    /// Shared only inside a session: its driver reads with a second handle on the
    /// socket while stream writers write with this one (`&Async` does I/O without
    /// `&mut`). A `TcpTransport` the user holds is the only one.
    pub(crate) inner: Arc<Async<TcpStream>>,
}

impl TcpTransport {
    /// Wraps a connected socket (made non-blocking and registered with the reactor).
    pub fn new(stream: TcpStream) -> io::Result<TcpTransport> {
        Ok(TcpTransport::from(Async::new(stream)?))
    }

    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        self.inner.get_ref()
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// The reactor-registered socket.
    pub fn into_inner(self) -> Async<TcpStream> {
        Arc::into_inner(self.inner).expect("only a session shares the socket")
    }
}

impl From<Async<TcpStream>> for TcpTransport {
    fn from(inner: Async<TcpStream>) -> TcpTransport {
        let inner = Arc::new(inner);
        TcpTransport { inner }
    }
}

impl AsyncRead for TcpTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.inner).poll_flush(cx)
    }

    /// Flushes, then shuts the write side down (the peer reads end-of-file).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut &*self.inner).poll_flush(cx))?;
        match self.inner.get_ref().shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Opens a TCP connection to the first address of `addr` that answers.
pub(crate) async fn connect_tcp<A: ToSocketAddrs>(addr: A) -> io::Result<TcpTransport> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match Async::<TcpStream>::connect(a).await {
            Ok(s) => {
                // The session coalesces frames itself; small ones must not wait.
                s.get_ref().set_nodelay(true)?;
                return Ok(TcpTransport::from(s));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
    }))
}

/// Connects to `addr` over TCP and starts a dialling session on the connection (its
/// driver on smol's global executor). Host names are resolved with the system's
/// blocking resolver on the calling thread; pass an IP address (or resolve first,
/// e.g. with `async-net`) to avoid that.
pub async fn connect<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Session> {
    config.validate().map_err(invalid)?;
    let tcp = connect_tcp(addr).await?;
    Session::new(tcp, config, Role::Dialer)
}

pub(crate) fn invalid(e: smux_proto::ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// A TCP listener that yields a session for every accepted connection.
#[derive(Debug)]
pub struct Listener {
    tcp: Async<TcpListener>,
    config: Config,
}

impl Listener {
    /// Listens on `addr`; accepted connections get sessions with `config` (checked
    /// here: an invalid one fails with [`io::ErrorKind::InvalidInput`]).
    pub fn bind<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Listener> {
        Listener::from_tcp(Async::new(TcpListener::bind(addr)?)?, config)
    }

    /// Wraps a listener that is already bound.
    pub fn from_tcp(tcp: Async<TcpListener>, config: Config) -> io::Result<Listener> {
        config.validate().map_err(invalid)?;
        Ok(Listener { tcp, config })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.get_ref().local_addr()
    }

    /// Waits for the next connection and starts an accepting session on it (its
    /// driver on smol's global executor). Returns the session and the peer's address.
    pub async fn accept(&self) -> io::Result<(Session, SocketAddr)> {
        let (tcp, peer) = self.tcp.accept().await?;
        // Best effort: a connection already reset by its peer still gets a session,
        // which then ends at once, instead of failing the accept loop.
        let _ = tcp.get_ref().set_nodelay(true);
        let session = Session::new(TcpTransport::from(tcp), self.config.clone(), Role::Acceptor)?;
        Ok((session, peer))
    }
}
