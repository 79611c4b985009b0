//! Agreeing on extensions without a reference peer ever noticing.
//!
//! A reference session answers every `VRM(v1, v2)` with `VRM(verify_code(v1, v2))`,
//! never sends a VRM request of its own inside a session, ignores the `length` of a
//! SYN, and ends the session on any unknown command. Reference servers also probe each
//! accepted connection first (they read exactly one 7-byte header and expect the verify
//! answer), so a dialer must not speak first. Hence:
//!
//! 1. An end with extensions on opens every stream with `SYN(1)` ("I have them"); a
//!    reference end ignores the flag.
//! 2. The dialer sends `ASK = VRM(ASK_ID, caps)` right after its first frame of its own
//!    (a SYN, a PIN or a ping; never ahead of the answer to a probe), or first thing
//!    when the application asks for the agreement.
//! 3. The acceptor sends `HELLO = VRM(HELLO_ID, caps)` once the session's first frame
//!    arrived (behind its answer if that frame was a probe), or before its own first
//!    frame, whichever comes first; and always ahead of its answer to ASK.
//! 4. Each end learns the other's choice within one round trip, from the order of
//!    frames on the wire, which both ends see alike:
//!    - the acceptor: ASK or `SYN(1)` means yes; the verify answer to HELLO, `SYN(0)`, or
//!      any frame on a stream the acceptor opened, arriving first, means no (a dialer of
//!      ours sends ASK ahead of all of them);
//!    - the dialer: HELLO or `SYN(1)` means yes; the verify answer to ASK, or any frame
//!      but a VRM, arriving first means no (an acceptor of ours sends HELLO ahead of
//!      everything but the answer to a probe).
//!
//! Every stream of a session is extended if and only if both ends have extensions on,
//! so the two ends always agree on a stream's mode, whoever opened it and whenever.
//! Until an end knows, what it does on its own streams is the same in both modes
//! (data, confirmations, a first FIN); what differs (half-close, reset, the last FIN,
//! window growth) waits for the answer.
//!
//! Once an end knows the peer has them, it sends `SET(RECV_WINDOW, window)`: its
//! receive window, which the peer's writes then honour (until then a sender assumes the
//! smaller of its own window and the protocol's 512 KiB).
//!
//! Why nothing of a reference peer can look like HELLO or ASK: the verify transform
//! puts bits 8..12 of `v1` at bits 4..8 and the low byte at the top, so the low nibble
//! of every answer's first value is 0; `HELLO_ID` and `ASK_ID` end in 1 and 2. A
//! reference end sends a VRM request only as a probe before a session starts, with
//! random values; it matches HELLO or ASK (all 48 bits) with probability 2^-48 and an
//! answer never matches.

/// First value of HELLO, the acceptor's offer (low nibble non-zero: no verify answer
/// has it).
pub(crate) const HELLO_ID: u16 = 0x5E71;
/// First value of ASK, the dialer's offer (low nibble non-zero, like `HELLO_ID`).
pub(crate) const ASK_ID: u16 = 0x5E72;
/// Top 16 bits of the caps value in HELLO and ASK ("SX").
const CHECK: u32 = 0x5358_0000;
/// Capability bit: growing windows, half-close, reset, go-away and settings, as one set.
const CAP_V1: u32 = 1;
/// The second value of HELLO and ASK: the check and the capabilities of this version.
/// Matched exactly: every one of its bits counts against a chance match.
pub(crate) const CAPS: u32 = CHECK | CAP_V1;

/// Key of the `SET` setting that carries an end's receive window per stream.
pub(crate) const SET_RECV_WINDOW: u16 = 1;

/// The window a sender assumes before the peer told its own (the reference's fixed
/// window, which every end accepts).
pub(crate) const ASSUMED_WINDOW: u32 = 512 * 1024;

/// Whether an end uses the extensions with this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Agreement {
    /// Not known yet: this end has extensions on and has not heard enough from the
    /// peer. Takes at most one round trip once this end has sent its first frame.
    Pending,
    /// Both ends have extensions on: every stream of the session is extended.
    Extended,
    /// The peer is a reference implementation (or has extensions off), or this end has
    /// them off: every stream keeps the base protocol.
    Base,
}

/// Where our own offer (HELLO or ASK) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Not queued yet.
    Idle,
    /// In the control queue.
    Queued,
    /// Handed to the transport; its verify answer has not arrived.
    Sent,
    /// Its verify answer arrived (or it is no longer expected).
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::verify_code;

    #[test]
    fn no_verify_answer_looks_like_hello_or_ask() {
        for v1 in 0..=u16::MAX {
            let (a, _) = verify_code(v1, 0);
            assert_eq!(a & 0xF, 0);
            assert_ne!(a, HELLO_ID);
            assert_ne!(a, ASK_ID);
        }
        // The answers to our offers are not offers either.
        for id in [HELLO_ID, ASK_ID] {
            let (a, b) = verify_code(id, CAPS);
            assert!(a != HELLO_ID && a != ASK_ID, "{a:#x} {b:#x}");
        }
    }
}
