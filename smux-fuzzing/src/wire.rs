//! Checks shared by the scenarios that drive sessions: the frames a session takes and
//! sends (decoded independently, against its statistics), the ID `open` must hand out,
//! and the VRM frames each end owes.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use smux_proto::frame::{Cmd, Decoder, Frame, Header, HEADER_LEN};
use smux_proto::{verify_code, Role, Session, Transmit};

/// Decodes the bytes a session emitted or consumed: they must be whole, valid frames.
pub(crate) fn frames_of(dec: &mut Decoder, buf: &mut BytesMut, what: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        match dec.decode(buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => break,
            Err(e) => panic!("{what} holds an invalid frame: {e:?}"),
        }
    }
    assert!(buf.is_empty(), "{what} ends in a partial frame");
    frames
}

/// A session's input buffer plus a copy of it, so the frames the session consumed can
/// be decoded independently.
pub(crate) struct InputLog {
    /// Bytes pushed and not yet consumed, as the session sees them.
    pub(crate) buf: BytesMut,
    shadow: BytesMut,
    decoder: Decoder,
    consumed: BytesMut,
    /// The PSH whose payload the session is taking piece by piece: its stream and the
    /// payload bytes still to come.
    payload: Option<(u16, u32)>,
    /// Bytes and frame headers consumed so far.
    pub(crate) total: u64,
    frames: u64,
}

impl InputLog {
    pub(crate) fn new(max_frame: u32) -> InputLog {
        InputLog::with_decoder(Decoder::new(max_frame))
    }

    /// A log that decodes the consumed bytes with `decoder` (an extended one where the
    /// session may take extension frames).
    pub(crate) fn with_decoder(decoder: Decoder) -> InputLog {
        InputLog {
            buf: BytesMut::new(),
            shadow: BytesMut::new(),
            decoder,
            consumed: BytesMut::new(),
            payload: None,
            total: 0,
            frames: 0,
        }
    }

    /// True while the session is taking a PSH payload piece by piece.
    pub(crate) fn in_payload(&self) -> bool {
        self.payload.is_some()
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.shadow.extend_from_slice(bytes);
    }

    /// Calls `handle_input` and returns what it consumed: whole frames, and a PSH with
    /// a payload as its header (an empty PSH) followed by the pieces of the payload as
    /// the session took them, each a PSH of the piece's length.
    pub(crate) fn feed(&mut self, s: &mut Session, now: Instant) -> Vec<Frame> {
        let before = self.buf.len();
        s.handle_input(now, &mut self.buf);
        let after = self.buf.len();
        assert!(after <= before, "handle_input grew its input");
        self.consumed
            .extend_from_slice(&self.shadow.split_to(before - after));
        self.total += (before - after) as u64;
        let mut frames = Vec::new();
        loop {
            if let Some((id, left)) = self.payload {
                if self.consumed.is_empty() {
                    break;
                }
                let n = self.consumed.len().min(left as usize);
                let piece = self.consumed.split_to(n).freeze();
                frames.push(Frame {
                    header: Header::new(Cmd::Psh, id, n as u32),
                    payload: piece,
                });
                self.payload = (left as usize > n).then_some((id, left - n as u32));
                continue;
            }
            let h = match self.decoder.peek_header(&self.consumed) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => panic!("consumed input holds an invalid frame: {e:?}"),
            };
            self.frames += 1;
            if h.cmd == Cmd::Psh && h.length > 0 {
                // The header is reported as an empty piece: the session acted on it
                // (its stream, its window) before any payload byte.
                self.consumed.advance(HEADER_LEN);
                self.payload = Some((h.id, h.length));
                frames.push(Frame {
                    header: Header::new(Cmd::Psh, h.id, 0),
                    payload: bytes::Bytes::new(),
                });
                continue;
            }
            let f = self
                .decoder
                .decode(&mut self.consumed)
                .expect("checked above");
            frames.push(f.expect("a whole header"));
        }
        assert!(
            self.consumed.is_empty(),
            "consumed input ends in a partial header"
        );
        let st = s.stats();
        assert_eq!(st.bytes_received, self.total, "bytes_received disagrees");
        assert_eq!(st.frames_received, self.frames, "frames_received disagrees");
        frames
    }
}

/// Polls a session's output and returns it, decoded and as bytes, after checking it
/// against the session's own figures.
pub(crate) fn transmit(
    s: &mut Session,
    now: Instant,
    limit: usize,
    dec: &mut Decoder,
) -> (Vec<Frame>, Vec<u8>) {
    let before = s.stats();
    let mut tx = Transmit::new();
    s.poll_transmit(now, &mut tx, limit);
    let mut wire = Vec::with_capacity(tx.len());
    let len = tx.len();
    tx.drain_into(&mut wire);
    assert_eq!(wire.len(), len, "Transmit::len disagrees with its bytes");
    let frames = frames_of(dec, &mut BytesMut::from(&wire[..]), "transmitted output");
    let after = s.stats();
    assert_eq!(after.bytes_sent - before.bytes_sent, wire.len() as u64);
    assert_eq!(after.frames_sent - before.frames_sent, frames.len() as u64);
    // It stops at the limit (at least one frame, even with limit 0) or when nothing is
    // left; a go-away that ran its course is then still "to transmit" (the next call
    // ends the session).
    assert!(
        wire.len() >= limit.max(1) || !s.has_transmit() || s.is_going_away(),
        "poll_transmit stopped at {} bytes below its limit {limit} with frames left",
        wire.len()
    );
    if before.buffered_out == 0 {
        assert!(
            frames
                .iter()
                .all(|f| f.header.cmd != Cmd::Psh || f.payload.is_empty()),
            "data sent that no write accepted"
        );
    }
    (frames, wire)
}

/// The ID `open` must hand out next on an end of `role` whose last open returned
/// `last`, with `used` the IDs its session has records for: the first free one going
/// on from the last (upward for the dialer, downward for the acceptor, wrapping), so a
/// freed ID comes back as late as possible. `None` when every ID is in use.
pub(crate) fn next_free_id(role: Role, last: Option<u16>, used: &[u16]) -> Option<u16> {
    let used: HashSet<u16> = used.iter().copied().collect();
    let (start, step): (u16, fn(u16) -> u16) = match (role, last) {
        (Role::Dialer, None) => (0, |x| x.wrapping_add(1)),
        (Role::Dialer, Some(l)) => (l.wrapping_add(1), |x| x.wrapping_add(1)),
        (Role::Acceptor, None) => (u16::MAX, |x| x.wrapping_sub(1)),
        (Role::Acceptor, Some(l)) => (l.wrapping_sub(1), |x| x.wrapping_sub(1)),
    };
    let mut id = start;
    for _ in 0..=u16::MAX as usize {
        if !used.contains(&id) {
            return Some(id);
        }
        id = step(id);
    }
    None
}

/// One end's VRM frames as the checks follow them: the answers it owes (one per
/// request it took, sent once each and in order), its ping on the wire, and the answer
/// its offer of the extensions would get (never answered itself).
#[derive(Debug, Default)]
pub(crate) struct Vrms {
    pub(crate) owed: VecDeque<(u16, u32)>,
    pub(crate) ping: Option<(u16, u32)>,
    pub(crate) offer_answer: Option<(u16, u32)>,
}

/// What a VRM an end took was to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VrmIn {
    /// The answer to its ping: a round-trip sample, not answered.
    PingAnswer,
    /// The answer to its offer of the extensions: not answered.
    OfferAnswer,
    /// A request (a probe, a ping, an offer): it owes the verify answer.
    Request,
}

impl Vrms {
    /// Follows a VRM the end took.
    pub(crate) fn took(&mut self, v: (u16, u32)) -> VrmIn {
        if self.ping.map(|(a, b)| verify_code(a, b)) == Some(v) {
            self.ping = None;
            return VrmIn::PingAnswer;
        }
        if self.offer_answer == Some(v) {
            return VrmIn::OfferAnswer;
        }
        self.owed.push_back(verify_code(v.0, v.1));
        VrmIn::Request
    }

    /// Follows a VRM the end sent that is not an offer: the next answer it owes, or
    /// else its ping (random values, one outstanding at a time).
    pub(crate) fn sent(&mut self, v: (u16, u32), who: &str) {
        if self.owed.front() == Some(&v) {
            self.owed.pop_front();
            return;
        }
        assert!(
            self.ping.is_none(),
            "{who}: VRM {v:x?} is neither the answer owed next ({:x?}) nor a ping (one is \
             outstanding)",
            self.owed.front()
        );
        self.ping = Some(v);
    }
}
