//! What the blocking harness runs between, for either of its systems: the two ends of
//! one smux-blocking session (streams multiplexed on one connection), or raw TCP on
//! blocking std sockets with one connection per stream (tcp-threads). The scenarios
//! see only [`End`] and [`Conn`], so both systems run the same code.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use smux_blocking::{Session, Stream};

/// One end of a run: the client opens streams, the server accepts them. Clones share
/// the end.
#[derive(Clone)]
pub(super) enum End {
    /// One end of a smux-blocking session.
    Smux(Session),
    /// Raw TCP: both ends are the same, the listener and every socket of the run.
    Tcp(Arc<Tcp>),
}

impl End {
    /// Opens a stream: a new stream of the session, or a new TCP connection.
    pub(super) fn open(&self) -> io::Result<Conn> {
        match self {
            End::Smux(s) => s.open().map(Conn::Smux),
            End::Tcp(t) => t.adopt(TcpStream::connect_timeout(&t.addr, t.connect_limit)?),
        }
    }

    /// Accepts a stream; an error means the end was closed.
    pub(super) fn accept(&self) -> io::Result<Conn> {
        match self {
            End::Smux(s) => s.accept().map(Conn::Smux),
            End::Tcp(t) => t.adopt(t.listener.accept()?.0),
        }
    }

    /// Closes the end: every call blocked on it or on one of its streams fails now,
    /// and so does every later one.
    pub(super) fn close(&self) {
        match self {
            End::Smux(s) => s.close(),
            End::Tcp(t) => t.close(),
        }
    }
}

/// The raw TCP of one run: the listener, and a handle to every open connection's
/// socket so that closing the run wakes every thread blocked on one.
pub(super) struct Tcp {
    listener: TcpListener,
    /// Where streams connect: the listener, or a relay in front of it.
    addr: SocketAddr,
    /// Bound on one connect (a full accept queue drops SYNs and would retry them
    /// for minutes).
    connect_limit: Duration,
    sockets: Mutex<Sockets>,
}

#[derive(Default)]
struct Sockets {
    /// A clone of each open connection's socket, by key; a connection's clone goes
    /// when the connection is dropped, so the descriptors of closed ones do too.
    open: HashMap<u64, TcpStream>,
    next: u64,
    closed: bool,
}

impl Tcp {
    /// Raw TCP through `listener`, connecting to `addr`.
    pub(super) fn new(
        listener: TcpListener,
        addr: SocketAddr,
        connect_limit: Duration,
    ) -> Arc<Tcp> {
        Arc::new(Tcp {
            listener,
            addr,
            connect_limit,
            sockets: Mutex::default(),
        })
    }

    fn sockets(&self) -> MutexGuard<'_, Sockets> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connected socket as a stream of the run (`TCP_NODELAY`, as the async
    /// harness's raw TCP), registered so that closing shuts it down.
    fn adopt(self: &Arc<Tcp>, s: TcpStream) -> io::Result<Conn> {
        s.set_nodelay(true)?;
        let clone = s.try_clone()?;
        let mut sockets = self.sockets();
        if sockets.closed {
            let _ = s.shutdown(Shutdown::Both);
            return Err(io::Error::new(io::ErrorKind::NotConnected, "closed"));
        }
        let key = sockets.next;
        sockets.next += 1;
        sockets.open.insert(key, clone);
        Ok(Conn::Tcp(TcpConn {
            s,
            key,
            tcp: self.clone(),
        }))
    }

    /// Shuts every connection down (a blocked read sees end-of-file, a blocked write
    /// fails) and wakes the accepting thread with a connection of its own, which it
    /// then refuses: the end is closed.
    fn close(&self) {
        {
            let mut sockets = self.sockets();
            if sockets.closed {
                return;
            }
            sockets.closed = true;
            for s in sockets.open.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Ok(addr) = self.listener.local_addr() {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
    }
}

/// One raw TCP connection of a run.
pub(super) struct TcpConn {
    s: TcpStream,
    key: u64,
    tcp: Arc<Tcp>,
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        self.tcp.sockets().open.remove(&self.key);
    }
}

/// A stream of either system.
pub(super) enum Conn {
    /// A smux-blocking stream.
    Smux(Stream),
    /// A TCP connection.
    Tcp(TcpConn),
}

impl Conn {
    /// How long a read waits; `None` forever.
    pub(super) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Smux(s) => s.set_read_timeout(t),
            Conn::Tcp(c) => c.s.set_read_timeout(t),
        }
    }

    /// How long a write waits; `None` forever.
    pub(super) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Smux(s) => s.set_write_timeout(t),
            Conn::Tcp(c) => c.s.set_write_timeout(t),
        }
    }

    /// Shuts down a half or both, as [`TcpStream::shutdown`].
    pub(super) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Smux(s) => s.shutdown(how),
            Conn::Tcp(c) => c.s.shutdown(how),
        }
    }

    /// Gives the stream up: smux closes it (our FIN after every accepted byte); TCP
    /// shuts its write side down and closes the socket.
    pub(super) fn close(self) {
        match self {
            Conn::Smux(s) => s.close(),
            Conn::Tcp(c) => {
                let _ = c.s.shutdown(Shutdown::Write);
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Smux(s) => s.read(buf),
            Conn::Tcp(c) => c.s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Smux(s) => s.write(buf),
            Conn::Tcp(c) => c.s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Smux(s) => s.flush(),
            Conn::Tcp(c) => c.s.flush(),
        }
    }
}
