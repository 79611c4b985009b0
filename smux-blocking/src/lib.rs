//! smux over std sockets and threads, with a readiness poller for event loops.
//!
//! This crate binds the [`smux_proto`] state machine to blocking std I/O. Many
//! independent byte streams ([`Stream`], std [`Read`](std::io::Read) +
//! [`Write`](std::io::Write)) share one connection ([`Session`]) over TCP, a Unix
//! socket, TLS or anything else that moves bytes in order. Each stream has its own
//! 512 KiB window, so a stream nobody reads never stalls the others. The wire protocol
//! is that of the reference implementation (yddeng/smux), in both directions.
//!
//! # Quick start
//!
//! ```
//! use std::io::{Read, Write};
//! use smux_blocking::{connect, Config, Listener};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = Listener::bind("127.0.0.1:0", Config::default())?;
//! let addr = listener.local_addr()?;
//! let server = std::thread::spawn(move || -> std::io::Result<()> {
//!     let (session, _peer) = listener.accept()?;
//!     let stream = session.accept()?;
//!     // Echo: read and write the same stream through two shared references.
//!     std::io::copy(&mut &stream, &mut &stream)?;
//!     Ok(())
//! });
//!
//! let session = connect(addr, Config::default())?;
//! let mut stream = session.open()?;
//! stream.write_all(b"hello")?;
//! let mut buf = [0u8; 5];
//! stream.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hello");
//! drop(stream); // our FIN: the server's copy sees end-of-file and returns
//! server.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Threads
//!
//! A session runs **two threads**, whatever its number of streams. Both drive one
//! [`smux_proto::Connection`], the connection life cycle that every smux-rs adapter
//! shares, kept behind the session's lock: a reader thread reads the transport while
//! the connection takes input (it never waits on writing), and a writer thread runs
//! the timers (keepalive) and writes what the connection hands out, with the lock
//! released. Each thread waits on its own condition variable when it has nothing to
//! do. Blocked calls wait on a condition variable too, woken through the connection.
//!
//! Over a socket, a stream call does the writing it causes itself instead of handing
//! it to the writer thread, when the socket's write side is free: a write with
//! nothing queued ahead of it goes out as one vectored write of header and the
//! caller's own bytes (only what the socket does not take is copied, for the writer
//! thread to finish), and confirmations a read owes go out from the reading thread.
//! Such a call may wait in the socket's write while its buffer is full, as a
//! `TcpStream` write would (at most 250 ms at a time on Unix); the session's lock is
//! never held across it. Non-blocking streams always leave the writing to the
//! writer thread.
//!
//! Reading works the same way over a socket on Unix: a call that must wait for
//! input (a read on an empty stream, a write waiting for window, an accept, a
//! poller's wait) reads the socket itself while no other thread does, waiting in
//! `poll(2)` on the socket and on its own wake-up, so the input it waits for wakes
//! its own thread, with no hand-off from the reader thread. One thread reads at a
//! time; the input it reads wakes whoever it was for. The reader thread reads
//! whenever no call does, and at once when a stream call waits for input that no
//! other thread reads. Input that comes while no thread reads and no stream call
//! waits (a keepalive, a stream to accept) is read within about a millisecond.
//!
//! # Streams
//!
//! [`Session::open`] opens a stream; [`Session::accept`] (or
//! [`Session::accept_timeout`], [`Session::try_accept`]) returns the streams the peer
//! opened. `&Stream` implements `Read` and `Write` too, so one thread can read while
//! another writes; [`Stream::try_clone`] gives another owned handle.
//! [`Stream::close`] or dropping the last handle gives the stream up: our FIN goes out
//! after every byte already written, and unread data is dropped. The peer reads the
//! remaining data, then end-of-file, and can no longer write. The stream's ID is freed
//! once the peer's FIN has come back.
//!
//! # Extensions: half-close, reset, go-away
//!
//! When both ends are smux-rs with [`Config::extensions`](smux_proto::Config) on (the
//! default), they agree on protocol extensions within the first round trip
//! ([`Session::ready`] waits for it and says whether they did), and every stream of the
//! session is extended ([`Stream::is_extended`]), including those opened before it
//! settled. A peer without them (another implementation, or extensions off) keeps
//! seeing the base protocol, and these calls fall back as described:
//!
//! - **Half-close.** [`Stream::shutdown`]`(`[`Shutdown::Write`](std::net::Shutdown)`)`
//!   sends our FIN after the bytes already written and keeps the read side open, like
//!   a `TcpStream`: a client can send a request, shut its write side and read the
//!   whole answer of a server that answers only after end-of-file, right after
//!   connecting (the shutdown waits for the agreement if it has to). On a base stream
//!   it fails with [`Unsupported`](std::io::ErrorKind::Unsupported) and sends nothing:
//!   a base FIN would end both directions and hide the rest of the answer behind a
//!   clean end-of-file. `Shutdown::Read` and `Shutdown::Both` are [`Stream::close`].
//! - **Reset.** [`Stream::reset`]`(code)` aborts a stream in both directions and drops
//!   what is buffered; the peer's reads and writes fail with
//!   [`ConnectionReset`](std::io::ErrorKind::ConnectionReset), and [`reset_code`]
//!   gives the code. A [`Poller`] reports such a stream readable and writable (and
//!   closed), so event loops learn of it. On a base stream it is a full close.
//! - **Go-away.** [`Session::go_away`]`(code)` stops new streams in both directions
//!   (opens fail with [`ConnectionRefused`](std::io::ErrorKind::ConnectionRefused),
//!   accepts wait for the end) while open streams finish; the session then ends with
//!   [`EndReason::Drained`], on the peer too. A base peer only sees its new streams
//!   refused.
//!
//! Windows of extended streams also grow beyond 512 KiB on long, fast links (up to
//! [`Config::max_window`](smux_proto::Config)), which needs nothing from the
//! application.
//!
//! A request, then a half-close, then the whole answer, right after connecting:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::Shutdown;
//! use smux_blocking::{connect, Config, Listener};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = Listener::bind("127.0.0.1:0", Config::default())?;
//! let client = connect(listener.local_addr()?, Config::default())?;
//! let (server, _) = listener.accept()?;
//! let answerer = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut stream = server.accept()?;
//!     let mut request = Vec::new();
//!     stream.read_to_end(&mut request)?; // up to the client's FIN
//!     stream.write_all(&request.to_ascii_uppercase())?;
//!     Ok(()) // dropping the stream sends our FIN after the answer
//! });
//! let mut stream = client.open()?;
//! stream.write_all(b"request")?;
//! stream.shutdown(Shutdown::Write)?; // "no more from me"; reading goes on
//! let mut answer = Vec::new();
//! stream.read_to_end(&mut answer)?;
//! assert_eq!(answer, b"REQUEST");
//! assert!(stream.is_extended() && client.ready()?);
//! answerer.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! Writes return as soon as the stream's window accepted some bytes; those bytes will
//! be sent unless the session fails, so [`Write::flush`](std::io::Write::flush) has
//! nothing to do.
//!
//! # Ending a session
//!
//! - [`Session::shutdown`] is graceful: new opens and writes are refused at once
//!   (calls waiting for room or a stream fail), everything already written goes out,
//!   for at most 10 s, then the session closes; it waits for that and returns the
//!   [`EndReason`]. Dropping the last [`Session`] handle starts the same, without the
//!   wait.
//! - [`Session::close`] is immediate: frames not yet written are dropped.
//! - [`Session::closed`] waits until the session ended and its transport is closed.
//!
//! Once the session has ended, every pending and later call fails promptly with an
//! error that carries the [`EndReason`], and both threads exit. After a clean end
//! (closed here, drained after a go-away, or the peer's end-of-file) what is left to
//! write goes out and the transport's write side is shut; after our own clean end the
//! reader then reads and drops input until the peer closes too (at most 2 s), so that
//! closing a socket with unread input does not reset the connection before the peer
//! read our last bytes.
//!
//! # Deadlines
//!
//! [`Stream::set_read_timeout`] and [`Stream::set_write_timeout`] bound each call.
//! Write deadlines are honest: a write that hits its deadline after some bytes were
//! accepted returns `Ok(n)` with exactly that count, and fails with
//! [`TimedOut`](std::io::ErrorKind::TimedOut) only if nothing was accepted. So
//! resending exactly the rest never duplicates or loses a byte.
//! [`Stream::write_all_before`] keeps writing until all of the buffer is taken or the
//! deadline passes, and reports a shortfall as a [`PartialWrite`] that carries the
//! count (turned into an `io::Error` with `?`, it keeps the count as its inner error).
//! [`Stream::read_before`] reads with a deadline.
//!
//! # Event-driven use ("aio")
//!
//! [`Stream::set_nonblocking`] makes reads and writes fail with
//! [`WouldBlock`](std::io::ErrorKind::WouldBlock) instead of waiting, and a
//! [`Poller`] reports which streams of a session are readable, writable or closed,
//! and when streams wait to be accepted, like `epoll` (level-triggered). One thread
//! can serve thousands of streams this way (`examples/aio_server.rs` serves 10,000):
//!
//! ```
//! use std::io::{ErrorKind, Read, Write};
//! use std::time::Duration;
//! use smux_blocking::{connect, Config, Events, Interest, Listener};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = Listener::bind("127.0.0.1:0", Config::default())?;
//! let client = connect(listener.local_addr()?, Config::default())?;
//! let (server, _) = listener.accept()?;
//!
//! let poller = server.poller();
//! poller.watch_accept(usize::MAX);
//! let mut streams = Vec::new();
//! for i in 0..3u8 {
//!     client.open()?.write_all(&[i])?; // the handle is dropped: FIN follows the byte
//! }
//! let mut events = Events::with_capacity(64);
//! let (mut got, mut finished) = (Vec::new(), 0);
//! while finished < 3 {
//!     poller.wait(&mut events, Some(Duration::from_secs(10)))?;
//!     for ev in &events {
//!         if ev.is_accept() {
//!             while let Some(s) = server.try_accept()? {
//!                 s.set_nonblocking(true)?;
//!                 poller.register(&s, streams.len(), Interest::READABLE)?;
//!                 streams.push(Some(s));
//!             }
//!         } else if let Some(s) = streams[ev.token()].as_mut() {
//!             let mut buf = [0u8; 16];
//!             match s.read(&mut buf) {
//!                 Ok(0) => {
//!                     streams[ev.token()] = None; // end-of-file: close our side
//!                     finished += 1;
//!                 }
//!                 Ok(n) => got.extend_from_slice(&buf[..n]),
//!                 Err(e) if e.kind() == ErrorKind::WouldBlock => {}
//!                 Err(e) => return Err(e),
//!             }
//!         }
//!     }
//! }
//! got.sort();
//! assert_eq!(got, [0, 1, 2]);
//! # Ok(())
//! # }
//! ```
//!
//! # Transports
//!
//! [`Session::new`] takes any [`Transport`]: [`std::net::TcpStream`] and (on Unix)
//! `UnixStream` are split with `try_clone` into a read handle, a write handle and a
//! handle that shuts the socket down when the session ends (and one that shuts its
//! write side first). For other transports, build [`Parts`] from a reader and a
//! writer that can be used from two threads at once, with a closer that makes their
//! blocked calls return. The transport must be in blocking mode.
//!
//! **TLS.** A TLS stream such as `rustls::StreamOwned` or `native_tls::TlsStream` is
//! one object that needs `&mut` to read and to write, so it cannot be split. Putting
//! it behind a mutex shared by the two halves does *not* work: the reader thread would
//! hold the lock while blocked in `read`, and the writer (and with it the keepalive)
//! would wait until the peer sends something; if the peer waits for us, both stop.
//! What works is to lock only for the in-memory TLS work and do the socket I/O
//! outside the lock, on two clones of the TCP socket: the read half reads ciphertext
//! from its socket clone without the lock, then locks the TLS state to feed it
//! (`read_tls`, `process_new_packets`) and takes out plaintext; the write half locks
//! to encrypt (`writer().write_all`, then `write_tls` into a buffer), unlocks, and
//! writes the ciphertext to its clone. Records the TLS layer wants to send while
//! reading (alerts, key updates) must be written too, e.g. by the read half through
//! a mutex around the write socket. The closer shuts the TCP socket down. Terminating
//! TLS in front of the process, or an async adapter (`smux-tokio` with a splittable
//! TLS stream), are the alternatives.
//!
//! # Peer detection
//!
//! [`is_smux`] sends the protocol's VRM challenge on a fresh connection and waits
//! for the verify code; it reads exactly the 7 answer bytes, so the connection can
//! then be given to a session. [`is_smux_at`] connects and probes.
//!
//! # Keepalive and timers
//!
//! The writer thread sends a PIN every `keepalive_interval` and ends the session
//! ([`EndReason::KeepaliveTimeout`]) when nothing arrived for `keepalive_timeout`.
//! Timers wait on a condition variable until the connection's next deadline; nothing
//! polls. While a transport write is blocked (the peer does not read), the timers run
//! when the write returns: on Unix, TCP and Unix-socket transports get a 250 ms write
//! timeout on the writer's handle for this; with other transports the timers run when
//! the blocked write returns.
//!
//! # Logging
//!
//! Through the [`tracing`](https://docs.rs/tracing) facade: session start and end
//! with the reason (`debug`, or `info` for keepalive and transport failures, `warn`
//! for protocol errors). Nothing is printed.

// The README (what crates.io shows) runs with the doctests, so its example keeps up
// with the API.
#![cfg_attr(doctest, doc = include_str!("../README.md"))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod net;
mod poller;
mod probe;
mod session;
mod signal;
mod stream;
mod transport;

pub use net::{connect, Listener};
pub use poller::{Event, Events, Interest, Poller};
pub use probe::{is_smux, is_smux_at};
pub use session::Session;
pub use smux_proto::{
    reset_code, Config, ConfigError, EndReason, OpenError, PartialWrite, ReadError, Role, Stats,
    StreamId, TransportError, WriteError, RESET_REFUSED,
};
pub use stream::Stream;
pub use transport::{Parts, ReadTimeout, Transport};
