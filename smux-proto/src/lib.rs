//! The smux protocol as a sans-IO state machine.
//!
//! smux carries many independent byte streams over one reliable, ordered connection
//! (TCP, TLS, a Unix socket...). This crate is the whole protocol and nothing else: it
//! does no I/O, reads no clock, spawns nothing, and never panics on input. It is fed
//! the bytes that arrived and the current time, and is polled for bytes to send,
//! events and its next timer. `smux-tokio`, `smux-smol` and `smux-blocking` bind it to
//! real sockets; a custom event loop can drive it directly.
//!
//! The wire format is that of the reference implementation (yddeng/smux, in Go): a
//! 7-byte header (`cmd` u8, stream `id` u16 little-endian, `length` u32
//! little-endian), 16-bit stream IDs recycled through a bitmap, a 512 KiB window per
//! stream and direction confirmed with CFM frames, a FIN handshake before an ID is
//! reused, PIN keepalives and a VRM verify code for peer detection. [PROTOCOL.md] in
//! the repository describes it.
//!
//! [PROTOCOL.md]: https://github.com/smux-rs/smux-rs/blob/main/docs/PROTOCOL.md
//!
//! # The drive loop
//!
//! Every adapter runs the same loop around one [`Session`]:
//!
//! 1. bytes arrived → [`Session::handle_input`] (while [`Session::wants_input`]);
//! 2. [`Session::poll_transmit`] → write the [`Transmit`] to the transport;
//! 3. [`Session::poll_event`] → wake whoever waits on the named stream;
//! 4. [`Session::poll_timeout`] → arm a timer; when it fires, [`Session::handle_timeout`].
//!
//! The application calls [`Session::open`], [`Session::accept`], [`Session::read`],
//! [`Session::write`] and [`Session::close`] in between; after each call, run steps
//! 2-4 again. Here two sessions talk through an in-memory link:
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use smux_proto::{Config, Event, Role, Session, Transmit};
//!
//! let now = Instant::now();
//! let mut client = Session::new(Config::default(), Role::Dialer, now).unwrap();
//! let mut server = Session::new(Config::default(), Role::Acceptor, now).unwrap();
//!
//! // Moves what one session wants to send into the other; returns the byte count.
//! fn pump(from: &mut Session, to: &mut Session, now: Instant) -> usize {
//!     let mut tx = Transmit::new();
//!     from.poll_transmit(now, &mut tx, usize::MAX);
//!     let mut wire = Vec::new();
//!     tx.drain_into(&mut wire);
//!     to.handle_input(now, &mut BytesMut::from(&wire[..]));
//!     wire.len()
//! }
//! // Both ways, until nothing moves.
//! fn settle(a: &mut Session, b: &mut Session, now: Instant) {
//!     while pump(a, b, now) + pump(b, a, now) > 0 {}
//! }
//!
//! let id = client.open().unwrap();
//! assert_eq!(client.write(id, b"hello").unwrap(), 5);
//! settle(&mut client, &mut server, now);
//!
//! let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
//! assert!(events.contains(&Event::Incoming(id)));
//! let accepted = server.accept().unwrap();
//! let mut buf = [0u8; 16];
//! let n = server.read(accepted, &mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//!
//! // Full close: each end's FIN, and both IDs are free again.
//! client.close(id).unwrap();
//! settle(&mut client, &mut server, now);
//! assert_eq!(server.read(accepted, &mut buf).unwrap(), 0); // end-of-file
//! server.close(accepted).unwrap();
//! settle(&mut client, &mut server, now);
//! // The FINs that only complete the handshake wait up to a millisecond for other
//! // frames to leave with (none come here): at the time `poll_timeout` names, they go.
//! for _ in 0..2 {
//!     let timers = [client.poll_timeout(), server.poll_timeout()];
//!     let later = timers.into_iter().flatten().min().unwrap();
//!     assert!(later <= now + std::time::Duration::from_millis(2));
//!     settle(&mut client, &mut server, later);
//! }
//! assert_eq!(client.stats().streams, 0);
//! assert_eq!(server.stats().streams, 0);
//! ```
//!
//! # Extensions
//!
//! Two ends of this crate agree on extensions within the first round trip, a
//! reference peer never noticing ([PROTOCOL.md], section 15):
//! windows that grow with the measured round-trip time up to [`Config::max_window`],
//! half-close ([`Session::shutdown`]), reset with an error code ([`Session::reset`]),
//! a graceful end ([`Session::go_away`]) and the exchange of receive windows.
//! [`Session::agreement`] says where it stands; once it is
//! [`Agreement::Extended`] every stream of the session is extended, including those
//! opened before. [`Config::extensions`] turns them off. Continuing the example above:
//!
//! ```
//! # use std::time::Instant;
//! # use bytes::BytesMut;
//! # use smux_proto::{Agreement, Config, Role, Session, Transmit, WriteError};
//! # let now = Instant::now();
//! # let mut client = Session::new(Config::default(), Role::Dialer, now).unwrap();
//! # let mut server = Session::new(Config::default(), Role::Acceptor, now).unwrap();
//! # fn pump(from: &mut Session, to: &mut Session, now: Instant) -> usize {
//! #     let mut tx = Transmit::new();
//! #     from.poll_transmit(now, &mut tx, usize::MAX);
//! #     let mut wire = Vec::new();
//! #     tx.drain_into(&mut wire);
//! #     to.handle_input(now, &mut BytesMut::from(&wire[..]));
//! #     wire.len()
//! # }
//! # fn settle(a: &mut Session, b: &mut Session, now: Instant) {
//! #     while pump(a, b, now) + pump(b, a, now) > 0 {}
//! # }
//! // Half-close right after connecting: it waits for the agreement (one round trip).
//! let id = client.open().unwrap();
//! client.write(id, b"request").unwrap();
//! assert_eq!(client.shutdown(id), Err(WriteError::Blocked));
//! settle(&mut client, &mut server, now);
//! assert_eq!(client.agreement(), Agreement::Extended);
//! client.shutdown(id).unwrap();
//! settle(&mut client, &mut server, now);
//!
//! let s = server.accept().unwrap();
//! let mut buf = [0u8; 16];
//! assert_eq!(server.read(s, &mut buf).unwrap(), 7);
//! assert_eq!(server.read(s, &mut buf).unwrap(), 0); // end-of-file
//! server.write(s, b"answer").unwrap(); // the other direction is still open
//! server.close(s).unwrap();
//! settle(&mut client, &mut server, now);
//! assert_eq!(client.read(id, &mut buf).unwrap(), 6);
//! assert_eq!(client.read(id, &mut buf).unwrap(), 0);
//! client.close(id).unwrap();
//! settle(&mut client, &mut server, now);
//! // The last FINs go at the sessions' timers (up to a millisecond later).
//! for _ in 0..2 {
//!     let timers = [client.poll_timeout(), server.poll_timeout()];
//!     settle(&mut client, &mut server, timers.into_iter().flatten().min().unwrap());
//! }
//! assert_eq!(client.stats().streams + server.stats().streams, 0);
//! ```
//!
//! # Costs
//!
//! Measured by `tests/cost.rs` with a counting allocator (10,000 streams): an idle
//! open stream costs 113 bytes of heap on the opening end and 110 on the accepting end
//! (a 48-byte record, with both windows and the window-tuning clock, plus its
//! hash-table slot); buffers exist only while data is queued and go back to a small
//! pool when drained. Moving 64 KiB writes on four
//! streams between two sessions made 0 allocations in 1,000 frames once warm. A
//! written payload is copied once (into the stream's send buffer), and frames of 1 KiB
//! and more go to the transport as their own segment of a vectored write. A received
//! payload is copied once into its stream's buffer, except a large one that arrives
//! on a stream with nothing else buffered (a reader that keeps up): it is kept as a
//! slice of the adapter's read buffer, within a per-session budget
//! (`max_buffered_in / 8`) that bounds how much read-buffer memory slices can keep
//! alive.

// The README (what crates.io shows) runs with the doctests, so its example keeps up
// with the API.
#![cfg_attr(doctest, doc = include_str!("../README.md"))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod conn;
mod error;
pub mod frame;
mod id;
mod link;
mod negotiate;
pub mod probe;
mod session;
mod stream;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod transmit;
mod util;
pub mod wake;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use conn::{
    poll_read_through, read_through_into, Connection, ReadThrough, Readiness, Slot, Stall,
    FINISH_GRACE, LEND_GRACE, LINGER, PACE_LIMIT, ROUNDS_PER_WAKE, STALL_NOTICE, TX_BATCH,
    TX_LIMIT, WRITE_FAIL_GRACE,
};
pub use error::{
    read_timed_out, reset_code, EndReason, NotSmux, OpenError, PartialWrite, ProtocolError,
    ReadError, SessionEnded, TransportError, WriteError,
};
pub use frame::{Cmd, Frame, Header, HEADER_LEN};
pub use id::Role;
pub use link::{Direct, Input, Output, Plan, MAX_SLICES};
pub use negotiate::Agreement;
pub use probe::{verify_code, Probe, Verdict};
pub use session::{Event, Session, Stats, StreamId, StreamState, RESET_REFUSED};
pub use transmit::Transmit;
pub use wake::{lock_briefly, try_lock, Waiters, WakeOnRelease};
