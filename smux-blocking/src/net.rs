//! TCP conveniences: dial a session, listen for sessions.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use smux_proto::{Config, Role};

use crate::session::Session;

/// Connects to `addr` over TCP and starts a dialling session on the connection
/// (`TCP_NODELAY` is set: the writer thread already batches frames).
pub fn connect<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Session> {
    let config = checked(config)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    Session::new(tcp, config, Role::Dialer)
}

/// `config` if it is valid: checked before any connection is made.
fn checked(config: Config) -> io::Result<Config> {
    let r = config.validate();
    r.map(|()| config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// A TCP listener that yields a session for each accepted connection.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    config: Config,
}

impl Listener {
    /// Binds a TCP listener to `addr`; accepted sessions use `config`.
    pub fn bind<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Listener> {
        let config = checked(config)?;
        Listener::from_tcp(TcpListener::bind(addr)?, config)
    }

    /// Wraps a bound TCP listener.
    pub fn from_tcp(tcp: TcpListener, config: Config) -> io::Result<Listener> {
        let config = checked(config)?;
        Ok(Listener { tcp, config })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The configuration of accepted sessions.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes the TCP listener back.
    pub fn into_inner(self) -> TcpListener {
        self.tcp
    }

    /// Waits for the next connection and starts an accepting session on it.
    pub fn accept(&self) -> io::Result<(Session, SocketAddr)> {
        let (tcp, addr) = self.tcp.accept()?;
        tcp.set_nodelay(true)?;
        let session = Session::new(tcp, self.config.clone(), Role::Acceptor)?;
        Ok((session, addr))
    }

    /// An endless iterator of sessions for accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<Session>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
}
