//! Peer detection: the verify code and the probe that uses it.
//!
//! A prober sends `VRM(v1, v2)` with random values; a smux peer answers
//! `VRM(verify_code(v1, v2))`. [`Probe`] builds the challenge from randomness the caller
//! supplies (the core has no random source) and judges the 7 bytes that come back.

use crate::error::NotSmux;
use crate::frame::{Cmd, Header, HEADER_LEN};

/// The verify transform, bit-exact with the reference implementation.
///
/// For `v1` the low byte moves to the high byte and bits 8..12 move to bits 4..8; the
/// top nibble is dropped (the reference shifts it out of a 16-bit value). For `v2` the
/// bytes `b3 b2 b1 b0` (most significant first) become `b3 b0 b2 b1`.
pub const fn verify_code(v1: u16, v2: u32) -> (u16, u32) {
    let a = ((v1 & 0x00FF) << 8) | ((v1 & 0x0F00) >> 4);
    let b = (v2 & 0xFF00_0000)
        | ((v2 & 0x00FF_0000) >> 8)
        | ((v2 & 0x0000_FF00) >> 8)
        | ((v2 & 0x0000_00FF) << 16);
    (a, b)
}

/// The outcome of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// The peer answered with the right verify code: it speaks smux.
    Smux,
    /// The peer answered something else, in no protocol recognised here.
    NotSmux,
    /// The peer answered in another protocol, recognised from its first bytes (an
    /// HTTP server's error response, an SSH banner, any printable text).
    Foreign(NotSmux),
}

impl Verdict {
    /// True only for [`Verdict::Smux`].
    pub fn is_smux(self) -> bool {
        self == Verdict::Smux
    }
}

/// A one-shot probe: send [`Probe::challenge`], read exactly 7 bytes, pass them to
/// [`Probe::judge`]. Or, to decide as soon as the answer shows it (a peer that
/// answers in text is known after its first byte differs from the expected answer),
/// pass what arrived so far to [`Probe::judge_partial`] after each read.
///
/// A timeout, or the connection ending before 7 bytes arrived, means "not smux"; that
/// is for the adapter to decide since the core has no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    v1: u16,
    v2: u32,
}

impl Probe {
    /// A probe with the given challenge values (take them from a random source).
    pub fn new(v1: u16, v2: u32) -> Probe {
        Probe { v1, v2 }
    }

    /// A probe whose challenge is derived from a 64-bit seed (for example, a hash of the
    /// current time and the socket addresses).
    pub fn from_seed(seed: u64) -> Probe {
        let x = crate::util::mix64(seed);
        Probe::new((x >> 48) as u16, x as u32)
    }

    /// The 7 bytes to send.
    pub fn challenge(&self) -> [u8; HEADER_LEN] {
        Header::new(Cmd::Vrm, self.v1, self.v2).to_bytes()
    }

    /// The answer a smux peer gives.
    pub fn expected(&self) -> [u8; HEADER_LEN] {
        let (a, b) = verify_code(self.v1, self.v2);
        Header::new(Cmd::Vrm, a, b).to_bytes()
    }

    /// Judges the first 7 bytes the peer sent back.
    pub fn judge(&self, answer: &[u8; HEADER_LEN]) -> Verdict {
        if *answer == self.expected() {
            Verdict::Smux
        } else {
            NotSmux::recognise(answer).map_or(Verdict::NotSmux, Verdict::Foreign)
        }
    }

    /// Judges the bytes received so far, as soon as they decide: `None` while they
    /// are too few. The verdict is the one [`Probe::judge`] gives on the first 7 bytes
    /// however they are split into reads; it comes early when fewer already decide
    /// it: a byte that differs from the expected answer means not smux, and the
    /// protocol is named as soon as its known prefix is in (`HTTP/`, `SSH-`...), or
    /// once 7 bytes of other text are. Bytes past the first 7 are not looked at.
    pub fn judge_partial(&self, received: &[u8]) -> Option<Verdict> {
        if let Some(answer) = received.first_chunk::<HEADER_LEN>() {
            return Some(self.judge(answer));
        }
        if self.expected().starts_with(received) {
            return None;
        }
        match NotSmux::recognise(received) {
            Some(kind) => Some(Verdict::Foreign(kind)),
            None if NotSmux::may_become(received) => None,
            None => Some(Verdict::NotSmux),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_code_vectors() {
        assert_eq!(verify_code(0x1234, 0x11223344), (0x3420, 0x11442233));
        assert_eq!(verify_code(0xFFFF, 0xDEADBEEF), (0xFFF0, 0xDEEFADBE));
        assert_eq!(verify_code(0, 0), (0, 0));
    }

    #[test]
    fn probe_accepts_only_the_verify_answer() {
        let p = Probe::new(0x1234, 0x11223344);
        assert_eq!(p.challenge(), [4, 0x34, 0x12, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(
            p.judge(&[4, 0x20, 0x34, 0x33, 0x22, 0x44, 0x11]),
            Verdict::Smux
        );
        assert_eq!(p.judge(&p.challenge()), Verdict::NotSmux);
        assert_eq!(p.judge(b"HTTP/1."), Verdict::Foreign(NotSmux::Http));
        assert_eq!(
            p.judge(b"<html>\n"),
            Verdict::Foreign(NotSmux::Text(*b"<html>\n"))
        );
        assert!(p.judge(&p.expected()).is_smux());
    }

    /// Every way of splitting an answer into reads gives the verdict of the whole
    /// first 7 bytes, and an early verdict never differs from it.
    #[test]
    fn partial_verdicts_agree_with_the_whole_answer() {
        let p = Probe::new(0x1234, 0x11223344);
        let answers: [&[u8]; 9] = [
            &p.expected(),
            &p.challenge(),
            b"HTTP/1.1 400 Bad Request\r\n",
            b"SSH-2.0-OpenSSH",
            b"<html>\n",
            b"+OK POP3 ready\r\n",
            &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
            &[0x15, 0x04, 0x03, 0x00, 0x02, 0x02, 0x28],
            &[4, 0x20, 0x34, 0x33, 0x22, 0x44, 0x12],
        ];
        for answer in answers {
            let whole = p.judge(answer.first_chunk::<HEADER_LEN>().unwrap());
            let mut decided = None;
            for n in 0..=answer.len() {
                match (p.judge_partial(&answer[..n]), decided) {
                    (Some(v), _) => {
                        assert_eq!(v, whole, "{answer:?} after {n} bytes");
                        decided.get_or_insert(n);
                    }
                    (None, None) => {}
                    (None, Some(at)) => panic!("{answer:?}: decided at {at}, undecided at {n}"),
                }
            }
            assert!(decided.is_some_and(|n| n <= HEADER_LEN), "{answer:?}");
        }
        // Decided early: HTTP after 5 bytes, a binary mismatch after 1, text only at 7.
        assert_eq!(
            p.judge_partial(b"HTTP/"),
            Some(Verdict::Foreign(NotSmux::Http))
        );
        assert_eq!(p.judge_partial(&[0xff]), Some(Verdict::NotSmux));
        assert_eq!(p.judge_partial(b"<html>"), None);
        assert_eq!(p.judge_partial(&[4, 0x20]), None);
        assert_eq!(p.judge_partial(&[4, 0x21]), Some(Verdict::NotSmux));
    }
}
