//! The three adapters behind one blocking shape, for the conformance suite
//! (`tests/conformance.rs`): each test body is written once against [`Adapter`] and runs
//! on smux-tokio ([`Tokio`]), smux-smol ([`Smol`]) and smux-blocking ([`Blocking`]).
//!
//! The shape is the adapter spec's (docs/ARCHITECTURE.md, issue 11) made blocking, so a
//! body is plain code with one thread per concurrent task. Each shim maps a call onto
//! its adapter as directly as the adapter's API allows: the async adapters block on a
//! future (a shared two-worker Tokio runtime for smux-tokio, `smol::block_on` with the
//! drivers on smol's global executor for smux-smol). A shim never makes up a result the
//! adapter did not give: where an adapter's API cannot express a call of the spec, the
//! shim fails that call with [`gap`], an `Unsupported` error that says so, and the
//! tests that need it fail with that message.
//!
//! A stream handle is shared by reference (`&self` everywhere) so one thread can read
//! while another writes: the async shims keep the adapter's two halves
//! (`into_split`) each behind its own lock, taken for one poll at a time, never across
//! a wait. Dropping the shim's stream drops the adapter's handle(s), which releases it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use smux_proto::{Config, EndReason, PartialWrite, Role, Stats, StreamId};

pub mod blocking;
pub mod smol;
pub mod tokio;

pub use self::blocking::Blocking;
pub use self::smol::Smol;
pub use self::tokio::Tokio;

/// One adapter crate, as the conformance suite drives it.
pub trait Adapter: Send + Sync + 'static {
    /// The adapter's name, as it appears in test names (`tokio`, `smol`, `blocking`).
    const NAME: &'static str;
    /// A session handle.
    type Session: Session<Stream = Self::Stream>;
    /// A stream handle.
    type Stream: Stream;
    /// A TCP listener that starts an accepting session per connection.
    type Listener: Listener<Session = Self::Session>;

    /// `Listener::bind` on 127.0.0.1, port chosen by the system.
    fn bind(config: Config) -> io::Result<Self::Listener>;
    /// The adapter's `connect`: a dialling session over a new TCP connection.
    fn connect(addr: SocketAddr, config: Config) -> io::Result<Self::Session>;
    /// `Session::new` over a connected socket (a running session, driver spawned).
    fn new_session(tcp: TcpStream, config: Config, role: Role) -> io::Result<Self::Session>;
    /// `Session::new` over `tcp` wrapped so that every other read and every other write
    /// of the transport fails with `Interrupted` before it does anything.
    fn new_session_interrupted(
        tcp: TcpStream,
        config: Config,
        role: Role,
    ) -> io::Result<Self::Session>;
    /// The count of the adapter's `PartialWrite` inside an `io::Error` made from one
    /// (`io::Error::from`), if the error still holds it.
    fn partial_written(e: &io::Error) -> Option<usize>;
    /// Whether the adapter's `PartialWrite` is the core's (`smux_proto::PartialWrite`).
    fn partial_write_is_the_cores() -> bool;
}

/// The accepting side of [`Adapter::bind`].
pub trait Listener: Send + Sync + fmt::Debug + 'static {
    /// The session type it makes.
    type Session;
    /// The bound address.
    fn local_addr(&self) -> SocketAddr;
    /// Waits for a connection and starts an accepting session on it.
    fn accept(&self) -> io::Result<Self::Session>;
}

/// A session, as the spec shapes it.
pub trait Session: Clone + Send + Sync + fmt::Debug + 'static {
    /// Its stream type.
    type Stream: Stream;
    /// Opens a stream.
    fn open(&self) -> io::Result<Self::Stream>;
    /// Waits for a stream the peer opened.
    fn accept(&self) -> io::Result<Self::Stream>;
    /// Waits until the agreement on extensions settled; true if both ends use them.
    fn ready(&self) -> io::Result<bool>;
    /// Waits until the session ended and its I/O side finished; why it ended.
    fn closed(&self) -> EndReason;
    /// Hard close: ends the session now, dropping what is queued.
    fn close(&self);
    /// Graceful close: refuses new work, writes out what was written, ends; waits.
    fn shutdown(&self) -> EndReason;
    /// Starts a go-away with `code`.
    fn go_away(&self, code: u32);
    /// Why the session ended, once it has.
    fn end_reason(&self) -> Option<EndReason>;
    /// True once the session ended.
    fn is_closed(&self) -> bool;
    /// True once a go-away started on either end.
    fn is_going_away(&self) -> bool;
    /// True once both ends agreed on the extensions.
    fn extensions_enabled(&self) -> bool;
    /// The session's figures.
    fn stats(&self) -> Stats;
    /// Sends a ping; false if one is outstanding or the session ended.
    fn ping(&self) -> bool;
}

/// A stream, as the spec shapes it, usable from two threads at once.
pub trait Stream: Send + Sync + fmt::Debug + 'static {
    /// The stream's ID.
    fn id(&self) -> StreamId;
    /// Whether the stream has the extensions.
    fn is_extended(&self) -> bool;
    /// One read: `Ok(0)` is end-of-file.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// One write: how many bytes the session accepted.
    fn write(&self, data: &[u8]) -> io::Result<usize>;
    /// One read given up after `limit` (`TimedOut`): the async shims drop the read
    /// future mid-wait, the blocking shim uses the stream's read timeout.
    fn read_for(&self, buf: &mut [u8], limit: Duration) -> io::Result<usize>;
    /// One write given up after `limit` (`TimedOut`), as [`Stream::read_for`].
    fn write_for(&self, data: &[u8], limit: Duration) -> io::Result<usize>;
    /// Half-close: shuts our write side.
    fn shutdown(&self) -> io::Result<()>;
    /// Aborts the stream both ways with `code` (a close on a base stream).
    fn reset(&self, code: u32) -> io::Result<()>;
    /// The adapter's `read_before`.
    fn read_before(&self, buf: &mut [u8], deadline: Instant) -> io::Result<usize>;
    /// The adapter's `write_all_before`, its error carried over into the core's type.
    fn write_all_before(&self, data: &[u8], deadline: Instant) -> Result<(), PartialWrite>;
    /// The adapter's `write_all_before` with its error turned into an `io::Error` by
    /// the adapter's own `From` (what `?` does).
    fn write_all_before_io(&self, data: &[u8], deadline: Instant) -> io::Result<()>;

    /// Writes all of `data`.
    fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.write(data)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => data = &data[n..],
            }
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes; end-of-file first is `UnexpectedEof`.
    fn read_exact(&self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Reads to end-of-file.
    fn read_to_end(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// The error a shim returns for a call its adapter's API cannot make as the spec
/// says (`Unsupported`, naming the adapter and the gap).
pub fn gap(adapter: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("conformance shim: {adapter}: {what}"),
    )
}

/// The error of a shim's [`Stream::read_for`] or [`Stream::write_for`] given up.
pub fn given_up() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "call given up by the test")
}

/// Decides which transport calls fail with `Interrupted`: every other one, starting
/// with the first.
#[derive(Debug, Default)]
pub struct Interrupter {
    calls: u64,
}

impl Interrupter {
    /// True if this call is to fail with `Interrupted`.
    pub fn interrupt(&mut self) -> bool {
        self.calls += 1;
        self.calls % 2 == 1
    }

    /// The error to fail it with.
    pub fn error() -> io::Error {
        io::Error::new(io::ErrorKind::Interrupted, "interrupted by the test")
    }
}

/// Locks `m`, ignoring poisoning (a panicking thread already failed the test).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
