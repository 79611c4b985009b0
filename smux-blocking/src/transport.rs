//! What a session needs from its transport: a read half, a write half and ways to
//! end them.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// How long a write to a TCP or Unix transport may block before the writer thread
/// runs its timers again (so a peer that neither reads nor sends is still caught by
/// the keepalive timeout while a write is stuck).
#[cfg(unix)]
const WRITE_CHECK: Duration = Duration::from_millis(250);

pub(crate) type Closer = Box<dyn FnOnce() + Send>;

/// A transport taken apart for the session's two threads.
///
/// The reader thread owns the read half and blocks in `read`; the writer thread owns
/// the write half and blocks in `write`. When the session has ended, the closer runs
/// once and must make both blocked calls return, for example by shutting the socket
/// down. Without a closer a session still ends, but its reader thread stays blocked in
/// `read` until the peer closes the connection or sends something. A half closer
/// ([`Parts::with_half_closer`]) lets the session end the write side first, so the
/// peer reads everything we wrote before the connection closes.
///
/// The write half is given one buffer per write (frames gathered up to 64 KiB), as it
/// may not implement vectored writes; sockets get vectored writes.
pub struct Parts {
    pub(crate) reader: Box<dyn Read + Send>,
    pub(crate) writer: Box<dyn Write + Send>,
    pub(crate) closer: Option<Closer>,
    pub(crate) half_closer: Option<Closer>,
    pub(crate) vectored: bool,
    /// The socket itself, so a caller waiting for input can wait in `poll(2)` for it
    /// and for a wake-up at once (see `Shared::park`).
    #[cfg(unix)]
    pub(crate) socket: Option<std::os::fd::OwnedFd>,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, h) = (self.closer.is_some(), self.half_closer.is_some());
        write!(f, "Parts {{ closer: {c}, half_closer: {h}, .. }}")
    }
}

impl Parts {
    /// Parts from two halves that can be used from two threads at once (for example the
    /// two ends of a pair of pipes, or the halves of a TLS connection built as the crate
    /// docs describe).
    pub fn new(reader: impl Read + Send + 'static, writer: impl Write + Send + 'static) -> Parts {
        Parts {
            reader: Box::new(reader),
            writer: Box::new(writer),
            closer: None,
            half_closer: None,
            vectored: false,
            #[cfg(unix)]
            socket: None,
        }
    }

    /// Adds the function that shuts the transport down when the session has ended. It
    /// must make a `read` blocked on the read half and a `write` blocked on the write
    /// half return.
    pub fn with_closer(mut self, closer: impl FnOnce() + Send + 'static) -> Parts {
        self.closer = Some(Box::new(closer));
        self
    }

    /// Adds the function that closes only the transport's write side (sends
    /// end-of-file, like `TcpStream::shutdown(Shutdown::Write)`). After the session
    /// ended cleanly on this end ([`Session::close`](crate::Session::close),
    /// [`Session::shutdown`](crate::Session::shutdown), a drained go-away) it runs once
    /// everything was written, and the session then reads and drops input until the
    /// peer closes its side too (at most 2 s) before running the closer: a socket
    /// closed with unread input sends a TCP reset, which can destroy the tail of what
    /// we wrote before the peer read it. Without a half closer the closer runs then.
    pub fn with_half_closer(mut self, half_closer: impl FnOnce() + Send + 'static) -> Parts {
        self.half_closer = Some(Box::new(half_closer));
        self
    }
}

/// A transport a [`Session`](crate::Session) can run over: anything that can be taken
/// apart into [`Parts`].
///
/// Implemented for [`TcpStream`] and (on Unix) `UnixStream` through `try_clone`, and for
/// [`Parts`] itself. Both sockets are switched to blocking mode, and on Unix their write
/// half gets a short write timeout (250 ms) so the writer thread keeps running its
/// timers while the peer does not read. The socket is shared with any clone the caller
/// kept, so those settings apply to the clone too. Their half closer shuts the
/// socket's write side down, their closer the whole socket.
pub trait Transport {
    /// Takes the transport apart.
    fn into_parts(self) -> io::Result<Parts>;
}

impl Transport for Parts {
    fn into_parts(self) -> io::Result<Parts> {
        Ok(self)
    }
}

/// A transport whose read timeout can be set, for [`is_smux`](crate::is_smux).
pub trait ReadTimeout {
    /// The current read timeout.
    fn read_timeout(&self) -> io::Result<Option<Duration>>;
    /// Sets the read timeout (`None`: reads block).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Transport for $t {
            fn into_parts(self) -> io::Result<Parts> {
                self.set_nonblocking(false)?;
                let (reader, closer, half) =
                    (self.try_clone()?, self.try_clone()?, self.try_clone()?);
                // On Unix a timed-out send leaves the socket usable; Windows documents
                // its state as indeterminate after a send timeout, so there writes
                // just block.
                #[cfg(unix)]
                self.set_write_timeout(Some(WRITE_CHECK))?;
                let mut parts = Parts::new(reader, self.try_clone()?)
                    .with_closer(move || drop(closer.shutdown(Shutdown::Both)))
                    .with_half_closer(move || drop(half.shutdown(Shutdown::Write)));
                parts.vectored = true;
                #[cfg(unix)]
                let _ = parts.socket.insert(self.into());
                Ok(parts)
            }
        }

        impl ReadTimeout for $t {
            fn read_timeout(&self) -> io::Result<Option<Duration>> {
                <$t>::read_timeout(self)
            }
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, timeout)
            }
        }
    };
}

socket!(TcpStream);
#[cfg(unix)]
socket!(std::os::unix::net::UnixStream);
