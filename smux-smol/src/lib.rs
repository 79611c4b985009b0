//! smux for smol and every futures-io transport.
//!
//! This crate binds the sans-IO protocol core [`smux_proto`] to
//! [futures-io](https://docs.rs/futures-io) transports and the
//! [async-io](https://docs.rs/async-io) reactor that smol uses. One
//! [`Session`] carries many independent [`Stream`]s over one reliable, ordered
//! connection (TCP, TLS, a Unix socket...); each stream implements
//! `AsyncRead` + `AsyncWrite`.
//!
//! # Tasks
//!
//! Each session has one driver: a future that moves bytes between the transport and
//! the protocol core, fires the keepalive timer and wakes the tasks waiting on
//! streams. [`Session::new`], [`connect`] and [`Listener::accept`] spawn it on smol's
//! global executor (`smol::spawn`); [`Session::with_driver`] returns it as a
//! [`Driver`] instead, to run on any other executor. That is the only task a session
//! needs: **one task per session, none per stream**. The driver completes (with the
//! session's [`EndReason`]) once the session has ended and the transport is closed;
//! every pending and later call on the session or its streams then fails promptly.
//!
//! # Ending a session
//!
//! [`Session::close`] ends it at once (unsent data is dropped);
//! [`Session::shutdown`] first writes out everything already written on its
//! streams (for at most 10 seconds), then ends it and waits for the transport to
//! close (at most 2 seconds more); dropping the last [`Session`] handle does the same
//! in the background. [`Session::go_away`] instead
//! lets the open streams finish, however long they take, and the session then ends by
//! itself. Streams the peer had finished still read their data and end-of-file
//! afterwards. [`Session::end_reason`] says why a session ended: closed here, peer
//! closed, keepalive timeout, protocol error, I/O error, or a completed go-away.
//!
//! # Extensions: half-close, reset, go-away
//!
//! Two smux-rs ends agree on protocol extensions by themselves within the first round
//! trip ([`Config::extensions`], on by default; [`Session::ready`] waits for it and
//! says whether they did); a peer running the reference implementation (yddeng/smux)
//! never sees them and keeps the base behaviour. Every stream of a session that agreed
//! is *extended* ([`Stream::is_extended`]), including streams opened before it
//! settled:
//!
//! - **Half-close**: `AsyncWriteExt::close` sends our FIN but keeps reading until the
//!   peer's end-of-file, so a client can send a request, close, and read the whole
//!   answer, right after connecting (close waits for the agreement if it has to). On a
//!   base stream it fails with `Unsupported` and sends nothing: a base FIN would end
//!   both directions and hide the rest of the answer behind a clean end-of-file.
//! - **Reset**: [`Stream::reset`] aborts a stream both ways with a 32-bit code; the
//!   peer's reads and writes fail with `ConnectionReset`, and [`reset_code`] extracts
//!   the code. A stream the peer refused (accept backlog full, or going away) fails
//!   the same way with [`RESET_REFUSED`]; a base stream gets end-of-file instead.
//! - **Go-away**: [`Session::go_away`] refuses new streams in both directions
//!   (`ConnectionRefused`) while open ones finish; then both sessions end with
//!   [`EndReason::Drained`]. (A peer without extensions is not told: its new streams
//!   are refused, and it sees the connection close once ours drained.)
//! - Stream windows grow beyond [`Config::window`] on links with a large
//!   bandwidth-delay product, up to [`Config::max_window`].
//!
//! [`connect`] and [`Listener`] cover TCP (with `TCP_NODELAY`, over
//! [`TcpTransport`]); [`Session::new`] takes any futures-io transport, e.g. a TLS
//! stream or a Unix socket.
//!
//! # Example
//!
//! An echo server and a client over loopback TCP:
//!
//! ```
//! use smol::io::{AsyncReadExt, AsyncWriteExt};
//! use smux_smol::{connect, Config, EndReason, Listener};
//!
//! # fn main() -> std::io::Result<()> {
//! smol::block_on(async {
//!     let listener = Listener::bind("127.0.0.1:0", Config::default())?;
//!     let addr = listener.local_addr()?;
//!
//!     // Server: one session per connection, one task per stream it serves.
//!     smol::spawn(async move {
//!         let (session, _peer) = listener.accept().await?;
//!         while let Ok(stream) = session.accept().await {
//!             smol::spawn(async move {
//!                 let (reader, mut writer) = stream.into_split();
//!                 let _ = smol::io::copy(reader, &mut writer).await;
//!             })
//!             .detach();
//!         }
//!         std::io::Result::Ok(())
//!     })
//!     .detach();
//!
//!     // Client.
//!     let session = connect(addr, Config::default()).await?;
//!     let mut stream = session.open().await?;
//!     stream.write_all(b"hello smux").await?;
//!     let mut buf = [0u8; 10];
//!     stream.read_exact(&mut buf).await?;
//!     assert_eq!(&buf, b"hello smux");
//!
//!     // Half-close: our FIN goes out; the echo ends, so does the stream.
//!     stream.close().await?;
//!     assert_eq!(stream.read(&mut buf).await?, 0);
//!     // A graceful end writes out what is left, then closes the connection.
//!     assert_eq!(session.shutdown().await, EndReason::Local);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Flow control and head-of-line freedom
//!
//! Each stream has its own window (512 KiB by default): a writer waits once that many
//! of its bytes are unconfirmed, and the reader confirms bytes as the application
//! consumes them. A stream that is never read therefore holds back only its own
//! writer; every other stream keeps flowing. The driver keeps reading the transport
//! while its own writes are blocked, so two ends can never wait on each other.
//!
//! # Deadlines
//!
//! [`Stream::write_all_before`] writes a whole buffer unless a deadline passes; on
//! timeout its [`PartialWrite`] error reports exactly how many bytes were accepted
//! (they will be delivered), so the application resends precisely the rest.
//! [`Stream::read_before`] bounds a read. Plain `AsyncWrite::poll_write`
//! returns as soon as some bytes were accepted, so cancelling it (with a timeout
//! combinator) never loses a count either. A [`PartialWrite`] turned into an
//! `io::Error` keeps its count (as the inner error).
//!
//! # Peer detection
//!
//! [`is_smux`] sends the protocol's VRM challenge on a fresh connection and checks the
//! answer, reading exactly the 7 answer bytes, so the connection can then be wrapped
//! in a session. [`is_smux_at`] connects first.
//!
//! # Logging
//!
//! Through the [`tracing`](https://docs.rs/tracing) facade: session start and end
//! (with the reason) at `debug`/`info`, protocol errors at `warn`. The library never
//! prints.

// The README (what crates.io shows) runs with the doctests, so its example keeps up
// with the API.
#![cfg_attr(doctest, doc = include_str!("../README.md"))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod driver;
mod net;
mod probe;
mod session;
mod stream;

pub use driver::Driver;
pub use net::{connect, Listener, TcpTransport};
pub use probe::{is_smux, is_smux_at};
pub use session::Session;
pub use stream::{ReadHalf, Stream, WriteHalf};

pub use smux_proto::{
    reset_code, Config, ConfigError, EndReason, OpenError, PartialWrite, ReadError, Role, Stats,
    StreamId, TransportError, WriteError, RESET_REFUSED,
};
