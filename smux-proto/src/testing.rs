//! Internals for the fuzzing harness (`smux-fuzzing` in the repository), compiled only
//! with the `testing` feature. Not part of the API: no stability promise, and nothing
//! but that harness should turn the feature on.

use std::time::Instant;

use crate::negotiate;
use crate::session::{Session, StreamId};

/// First value of HELLO, the acceptor's offer of the extensions.
pub const HELLO_ID: u16 = negotiate::HELLO_ID;
/// First value of ASK, the dialer's offer of the extensions.
pub const ASK_ID: u16 = negotiate::ASK_ID;
/// Second value of HELLO and ASK: the check and the capabilities.
pub const CAPS: u32 = negotiate::CAPS;
/// Key of the `SET` setting that carries an end's receive window.
pub const SET_RECV_WINDOW: u16 = negotiate::SET_RECV_WINDOW;
/// The window a sender assumes before the peer told its own.
pub const ASSUMED_WINDOW: u32 = negotiate::ASSUMED_WINDOW;

/// Session internals the harness checks. Same names as the crate's own (private)
/// methods, so that the harness reads like the crate's tests.
pub trait Internals {
    /// Checks the session's internal invariants; panics if one is broken.
    fn assert_invariants(&self);
    /// Numbers of every stream record (open, or closing and awaiting the handshake),
    /// sorted.
    fn stream_ids(&self) -> Vec<u16>;
    /// The handle of stream number `num` as it is now; for a number without a stream,
    /// a handle that names none (so calls on unknown streams can be tried).
    fn sid(&self, num: u16) -> StreamId;
    /// When the frames that wait to leave with others (closing FINs no application
    /// waits for) leave at the latest; `None` when none waits.
    fn deferred_until(&self) -> Option<Instant>;
}

impl Internals for Session {
    fn assert_invariants(&self) {
        Session::assert_invariants(self);
    }

    fn stream_ids(&self) -> Vec<u16> {
        Session::stream_ids(self)
    }

    fn sid(&self, num: u16) -> StreamId {
        Session::sid(self, num)
    }

    fn deferred_until(&self) -> Option<Instant> {
        Session::deferred_until(self)
    }
}
