//! Agreeing on extensions without a reference peer ever noticing.
//!
//! A reference session answers every `VRM(v1, v2)` with `VRM(verify_code(v1, v2))`,
//! never sends a VRM of its own inside a session, and ends the session on any unknown
//! command. Reference servers also probe each accepted connection first (they read
//! exactly one 7-byte header and expect the verify answer), so a dialler must not speak
//! first. Hence:
//!
//! 1. The dialler never starts. The acceptor sends `HELLO = VRM(HELLO_ID, caps)` after
//!    it received the session's first frame, and after its answer if that frame was a
//!    probe: a probe from either side still gets the verify answer as the first header.
//! 2. A dialler of ours answers HELLO like any VRM (its verify answer, which the acceptor
//!    takes as an RTT sample and does not answer) and then sends
//!    `ACK = VRM(ACK_ID, caps)`. It turns extensions on as the ACK leaves; everything it
//!    sends after the ACK may use them.
//! 3. The acceptor turns them on when the ACK arrives. A reference dialler sends only
//!    the verify answer, so the acceptor stays on the base protocol.
//!
//! Why nothing of a reference peer can look like HELLO or ACK: the verify transform puts
//! bits 8..12 of `v1` at bits 4..8 and the low byte at the top, so the low nibble of every
//! answer's first value is 0. `HELLO_ID` and `ACK_ID` have a low nibble of 1 and 2. The
//! caps value carries a 16-bit check (`CHECK`) too, so a random probe challenge (the only
//! VRM request a reference end sends, before a session starts) matches HELLO with
//! probability 2^-48 and can never match an answer.

use std::time::Instant;

/// First value of HELLO (low nibble non-zero: no verify answer has it).
pub const HELLO_ID: u16 = 0x5E71;
/// First value of ACK (low nibble non-zero, like `HELLO_ID`).
pub const ACK_ID: u16 = 0x5E72;
/// Top 16 bits of the caps value in HELLO and ACK ("SX").
pub const CHECK: u32 = 0x5358_0000;
/// Capability bit: growing windows, half-close, reset and go-away, as one set.
pub const CAP_V1: u16 = 1;

/// The capabilities this implementation offers.
pub(crate) const OURS: u16 = CAP_V1;

/// The second value of HELLO or ACK carrying `caps`.
pub const fn caps_value(caps: u16) -> u32 {
    CHECK | caps as u32
}

/// The capabilities in a HELLO or ACK value, `None` if its check field is wrong.
pub const fn parse_caps(v: u32) -> Option<u16> {
    if v & 0xFFFF_0000 == CHECK {
        Some(v as u16)
    } else {
        None
    }
}

/// Where a session is in the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiation {
    /// `Config::extensions` is off: behave exactly like the reference.
    Off,
    /// Acceptor: no frame arrived yet. Dialler: no HELLO arrived yet.
    Waiting,
    /// Acceptor: HELLO is queued.
    HelloQueued,
    /// Acceptor: HELLO left at `at`; `answered` once its verify answer came back.
    HelloSent { at: Instant, answered: bool },
    /// Dialler: its ACK is queued; extensions start as it leaves.
    AckQueued,
    /// Both ends use the extensions.
    On,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::verify_code;

    #[test]
    fn no_verify_answer_looks_like_hello_or_ack() {
        for v1 in 0..=u16::MAX {
            let (a, _) = verify_code(v1, 0);
            assert_eq!(a & 0xF, 0);
            assert_ne!(a, HELLO_ID);
            assert_ne!(a, ACK_ID);
        }
        assert_eq!(parse_caps(caps_value(OURS)), Some(OURS));
        assert_eq!(parse_caps(0x1234_0001), None);
    }
}
