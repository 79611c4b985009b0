//! TCP conveniences: connect to an address, or listen and get a session per
//! accepted connection.

use std::io;
use std::net::SocketAddr;

use smux_proto::{Config, Role};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::session::{invalid, Session};

/// Connects to `addr` over TCP (with `TCP_NODELAY`) and starts a session on it as
/// the dialling end. An invalid `config` fails first, with
/// [`io::ErrorKind::InvalidInput`].
pub async fn connect(addr: impl ToSocketAddrs, config: Config) -> io::Result<Session> {
    config.validate().map_err(invalid)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Session::new(tcp, config, Role::Dialer)
}

/// A TCP listener that starts a session (as the accepting end) on every connection.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    config: Config,
}

impl Listener {
    /// Binds a TCP listener to `addr`. An invalid `config` fails with
    /// [`io::ErrorKind::InvalidInput`].
    pub async fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Listener> {
        config.validate().map_err(invalid)?;
        let tcp = TcpListener::bind(addr).await?;
        Ok(Listener { tcp, config })
    }

    /// Wraps a bound Tokio TCP listener.
    pub fn from_tcp(tcp: TcpListener, config: Config) -> io::Result<Listener> {
        config.validate().map_err(invalid)?;
        Ok(Listener { tcp, config })
    }

    /// Waits for the next connection and starts a session on it (with `TCP_NODELAY`).
    /// Returns the session and the peer's address. Errors are those of the TCP
    /// listener's `accept`; like them, most concern one connection only (a reset,
    /// running out of file descriptors), so a server loop should log them and go on.
    pub async fn accept(&self) -> io::Result<(Session, SocketAddr)> {
        let (tcp, addr) = self.tcp.accept().await?;
        if let Err(e) = tcp.set_nodelay(true) {
            // Only a latency optimisation; the connection is still usable.
            tracing::debug!(%addr, error = %e, "smux: could not set TCP_NODELAY");
        }
        let session = Session::new(tcp, self.config.clone(), Role::Acceptor)?;
        Ok((session, addr))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The configuration given to accepted sessions.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The underlying Tokio listener.
    pub fn into_inner(self) -> TcpListener {
        self.tcp
    }
}
