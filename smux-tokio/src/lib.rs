//! smux on Tokio: many independent byte streams over one connection.
//!
//! This crate binds the sans-IO protocol core [`smux_proto`] to Tokio. A [`Session`]
//! runs over any `AsyncRead + AsyncWrite + Unpin + Send` transport (a TCP stream, a
//! TLS stream, a Unix socket...); it opens and accepts [`Stream`]s, which implement
//! Tokio's [`AsyncRead`](tokio::io::AsyncRead) and
//! [`AsyncWrite`](tokio::io::AsyncWrite). The wire format is that of the reference
//! implementation (yddeng/smux, in Go): 7-byte headers, 16-bit recycled stream IDs, a
//! 512 KiB window per stream, so either end may be a reference peer.
//!
//! ```
//! use smux_tokio::{Config, Listener};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // A server that echoes every stream back.
//! let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((session, _peer)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             while let Ok(stream) = session.accept().await {
//!                 tokio::spawn(async move {
//!                     let (mut r, mut w) = tokio::io::split(stream);
//!                     let _ = tokio::io::copy(&mut r, &mut w).await;
//!                 });
//!             }
//!         });
//!     }
//! });
//!
//! // A client with two streams on one connection.
//! let session = smux_tokio::connect(addr, Config::default()).await?;
//! let mut a = session.open().await?;
//! let mut b = session.open().await?;
//! a.write_all(b"hello").await?;
//! b.write_all(b"world").await?;
//! let mut buf = [0u8; 5];
//! b.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"world");
//! a.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Tasks
//!
//! Each session spawns exactly **one** task, its driver, which owns the transport;
//! streams have none. The protocol and the whole life cycle of the connection (closing,
//! lingering, draining, timers) live in the sans-IO core, [`smux_proto::Connection`];
//! the driver only carries out what it asks for: read the transport, write what the
//! core has to send with vectored writes, flush, shut the write side down, and sleep
//! until the core's next deadline (keepalive, send-queue turns, graces; no polling).
//! It keeps reading while its writes are blocked, so a peer that stops reading only
//! while its own writes are blocked cannot deadlock with it, and it yields to the
//! runtime after a bounded amount of work per wake-up. When the session ends, every
//! pending and later call fails promptly, the driver shuts the transport down and its
//! task ends. A session must be created inside a Tokio runtime (with the `time`
//! driver enabled); time is Tokio's clock, so sessions follow a paused test clock.
//!
//! State is one `std::sync::Mutex` per session around the connection; it is never
//! held across an await point or a system call, and tasks are woken after it is
//! released.
//!
//! # Streams
//!
//! * No head-of-line blocking: each stream has its own window, so a stream nobody
//!   reads stalls only itself.
//! * Shutting a stream down ([`AsyncWriteExt::shutdown`](tokio::io::AsyncWriteExt::shutdown))
//!   is a half-close: our FIN follows everything written, and the peer's data can
//!   still be read to its end. It needs the extensions (below); against a base peer
//!   it fails with `Unsupported` and sends nothing. Dropping a stream sends our FIN
//!   too and releases it.
//! * [`Stream::into_split`] gives halves for two tasks.
//! * Deadlines with honest counts: [`Stream::write_all_before`] reports exactly how
//!   many bytes were accepted when the deadline passed ([`PartialWrite`]), so the
//!   caller resends exactly the rest; [`Stream::read_before`] bounds a read.
//!
//! # Extensions
//!
//! Two smux-rs ends with [`Config::extensions`] on (the default) agree on extensions
//! that a reference peer never sees ([PROTOCOL.md] describes them), within the first
//! round trip; [`Session::ready`] waits for that and says whether they did. Every
//! stream of the session is then extended ([`Stream::is_extended`]), including those
//! opened before the agreement settled:
//!
//! [PROTOCOL.md]: https://github.com/smux-rs/smux-rs/blob/main/docs/PROTOCOL.md
//!
//! * windows grow beyond 512 KiB when the round-trip time calls for it (up to
//!   [`Config::max_window`]), so one stream can fill a long fat link;
//! * half-close: shutdown means "I will write no more", and the stream can still be
//!   read to end-of-file;
//! * [`Stream::reset`] aborts a stream both ways with a code the peer's reads and
//!   writes report (kind `ConnectionReset`, code from [`reset_code`]);
//! * [`Session::go_away`] refuses new streams, lets open ones finish, then ends the
//!   session with [`EndReason::Drained`].
//!
//! With a base peer (the reference implementation, or extensions off on either end)
//! the base protocol applies: shutdown fails with `Unsupported` (a base FIN would
//! end both directions and hide the rest of the peer's data behind a clean
//! end-of-file), reset closes the stream, and a go-away only refuses streams. A
//! request, a half-close, then the answer, right after connecting:
//!
//! ```
//! use smux_tokio::{Config, Listener};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (session, _) = listener.accept().await?;
//!     let mut s = session.accept().await?;
//!     // Read the whole request (up to the client's half-close), then answer.
//!     let mut request = Vec::new();
//!     s.read_to_end(&mut request).await?;
//!     request.reverse();
//!     s.write_all(&request).await?;
//!     drop(s); // our FIN follows the answer: the client reads to end-of-file
//!     session.go_away(0); // no new streams; the session ends once the client is done
//!     session.closed().await;
//!     std::io::Result::Ok(())
//! });
//!
//! let session = smux_tokio::connect(addr, Config::default()).await?;
//! let mut s = session.open().await?;
//! s.write_all(b"request").await?;
//! s.shutdown().await?; // half-close (waits for the agreement): we can still read
//! let mut answer = Vec::new();
//! s.read_to_end(&mut answer).await?;
//! assert_eq!(answer, b"tseuqer");
//! assert!(s.is_extended());
//! assert!(session.ready().await?); // settled long ago: both ends have the extensions
//! drop(s);
//! assert_eq!(session.closed().await, smux_tokio::EndReason::Drained);
//! # Ok(())
//! # }
//! ```
//!
//! # Sessions
//!
//! [`connect`] and [`Listener`] cover TCP (with `TCP_NODELAY`); [`Session::new`] takes
//! any transport (an invalid [`Config`] is an error of kind `InvalidInput` with the
//! [`ConfigError`] inside). [`Session::close`] ends the session at once, dropping what
//! is still queued; [`Session::shutdown`] refuses new opens and writes (waiting ones
//! fail at once), writes out everything already written on its streams, then ends it,
//! and dropping the last [`Session`] clone does the same in the background (like
//! closing a TCP socket, for at most 10 s). [`Session::go_away`] instead lets the open
//! streams finish first (see above); [`Session::accept`] waits until the session
//! then ends. [`Session::end_reason`] says why it ended (closed here, peer closed,
//! keepalive timeout, protocol error, I/O error, drained after a go-away);
//! [`Session::closed`] waits for it; [`Session::stats`] gives counters. [`is_smux`]
//! tells whether the peer of a fresh connection speaks smux.
//!
//! A stream handle names one stream for good ([`StreamId`] carries which stream with
//! that number it is): once this end reset it, its calls fail with `NotConnected`,
//! also after its number was reused for a new stream, which the old handle never
//! reaches.
//!
//! # Logging
//!
//! Through the [`tracing`](https://docs.rs/tracing) facade: session start and end
//! (with the reason) at debug level, abnormal ends at info, protocol errors at warn.
//! Nothing is printed.

// The README (what crates.io shows) runs with the doctests, so its example keeps up
// with the API.
#![cfg_attr(doctest, doc = include_str!("../README.md"))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod driver;
mod net;
mod probe;
mod session;
mod shared;
mod stream;

pub use net::{connect, Listener};
pub use probe::{is_smux, is_smux_at};
pub use session::Session;
pub use smux_proto::{reset_code, PartialWrite, TransportError, RESET_REFUSED};
pub use smux_proto::{Config, ConfigError, EndReason, Role, Stats, StreamId};
pub use smux_proto::{OpenError, ReadError, WriteError};
pub use stream::{ReadHalf, Stream, WriteHalf};
