//! What a session needs from its transport: a read half, a write half and a way to
//! unblock both when the session ends.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// How long a write to a TCP or Unix transport may block before the writer thread
/// looks at its timers again (so a peer that neither reads nor sends is still caught by
/// the keepalive timeout while a write is stuck).
#[cfg(unix)]
const WRITE_CHECK: Duration = Duration::from_millis(250);

type Closer = Box<dyn FnOnce() + Send>;

/// A transport taken apart for the session's two threads.
///
/// The reader thread owns the read half and blocks in `read`; the writer thread owns
/// the write half and blocks in `write`. When the session ends, the closer runs once
/// (from whichever thread notices first) and must make both blocked calls return, for
/// example by shutting down the socket. Without a closer a session still ends, but its
/// reader thread stays blocked in `read` until the peer closes the connection or sends
/// something. An optional half closer ([`Parts::with_half_closer`]) lets a clean end
/// close the write side first, so the peer reads everything we wrote.
pub struct Parts {
    pub(crate) reader: Box<dyn Read + Send>,
    pub(crate) writer: Box<dyn Write + Send>,
    pub(crate) closer: Option<Closer>,
    pub(crate) half_closer: Option<Closer>,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("closer", &self.closer.is_some())
            .field("half_closer", &self.half_closer.is_some())
            .finish_non_exhaustive()
    }
}

impl Parts {
    /// Parts from two halves that can be used from two threads at once (for example the
    /// two ends of a pair of pipes, or the halves of a TLS connection built as the crate
    /// docs describe).
    pub fn new<R, W>(reader: R, writer: W) -> Parts
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        Parts {
            reader: Box::new(reader),
            writer: Box::new(writer),
            closer: None,
            half_closer: None,
        }
    }

    /// Adds the function that shuts the transport down when the session ends. It must
    /// make a `read` blocked on the read half and a `write` blocked on the write half
    /// return.
    pub fn with_closer<F>(mut self, closer: F) -> Parts
    where
        F: FnOnce() + Send + 'static,
    {
        self.closer = Some(Box::new(closer));
        self
    }

    /// Adds the function that closes only the transport's write side (sends
    /// end-of-file, like `TcpStream::shutdown(Shutdown::Write)`), used when the
    /// session ends cleanly ([`EndReason::Local`](crate::EndReason::Local) or
    /// [`EndReason::Drained`](crate::EndReason::Drained)): the session then reads and
    /// drops input until the peer closes its side too (at most 2 s) before running the
    /// closer. This keeps the tail of what we wrote from being destroyed by a TCP reset,
    /// which a socket closed with unread input sends. Without it the closer runs at
    /// once.
    pub fn with_half_closer<F>(mut self, half_closer: F) -> Parts
    where
        F: FnOnce() + Send + 'static,
    {
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
/// timers while the peer does not read. The socket is shared with any clone the
/// caller kept, so those settings apply to the clone too. After a clean end their
/// write side is shut down first (`Shutdown::Write`), and the whole socket once the
/// peer closed its side or 2 s passed.
pub trait Transport {
    /// Takes the transport apart.
    fn into_parts(self) -> io::Result<Parts>;
}

impl Transport for Parts {
    fn into_parts(self) -> io::Result<Parts> {
        Ok(self)
    }
}

impl Transport for TcpStream {
    fn into_parts(self) -> io::Result<Parts> {
        self.set_nonblocking(false)?;
        let reader = self.try_clone()?;
        let closer = self.try_clone()?;
        let half_closer = self.try_clone()?;
        // On Unix a timed-out send leaves the socket usable; Windows documents its
        // state as indeterminate after a send timeout, so there writes just block.
        #[cfg(unix)]
        self.set_write_timeout(Some(WRITE_CHECK))?;
        Ok(Parts::new(reader, self)
            .with_closer(move || {
                let _ = closer.shutdown(Shutdown::Both);
            })
            .with_half_closer(move || {
                let _ = half_closer.shutdown(Shutdown::Write);
            }))
    }
}

#[cfg(unix)]
impl Transport for std::os::unix::net::UnixStream {
    fn into_parts(self) -> io::Result<Parts> {
        self.set_nonblocking(false)?;
        let reader = self.try_clone()?;
        let closer = self.try_clone()?;
        let half_closer = self.try_clone()?;
        self.set_write_timeout(Some(WRITE_CHECK))?;
        Ok(Parts::new(reader, self)
            .with_closer(move || {
                let _ = closer.shutdown(Shutdown::Both);
            })
            .with_half_closer(move || {
                let _ = half_closer.shutdown(Shutdown::Write);
            }))
    }
}

/// A transport whose read timeout can be set, for [`is_smux`](crate::is_smux).
pub trait ReadTimeout {
    /// The current read timeout.
    fn read_timeout(&self) -> io::Result<Option<Duration>>;
    /// Sets the read timeout (`None`: reads block).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        TcpStream::read_timeout(self)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

#[cfg(unix)]
impl ReadTimeout for std::os::unix::net::UnixStream {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        std::os::unix::net::UnixStream::read_timeout(self)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
}
