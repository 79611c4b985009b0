//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/`) and the tests that
//! replay their corpus (`tests/fuzz_replay.rs`). Not part of the public API: the input
//! formats below may change whenever the checks grow.
//!
//! Each function reads arbitrary bytes as a scenario, runs it, and panics (through
//! `assert!`) only when an invariant of the protocol core is broken. A crash of a fuzz
//! target is therefore a bug, either in the core or in these checks; it never means
//! "the input was invalid".
//!
//! - [`decode`]: the frame [`Decoder`] run over the input in one piece and in chunks
//!   chosen by the input must produce the same frames and the same error, and
//!   re-encoding the frames must give back exactly the bytes they were decoded from.
//! - [`session`]: one [`Session`] fed arbitrary bytes and frames mixed with arbitrary
//!   application calls. It never panics; it ends only with a protocol error or for a
//!   reason the scenario caused (keepalive silence, end-of-file, a transport error, a
//!   local close); its memory stays within the configured bounds at every step; what
//!   it sends is well-formed and respects the window; and at the end it still works.
//! - [`pair`]: two sessions joined by an in-memory link whose delivery the input
//!   controls. Every byte one end's writes accepted reaches the other end's reads,
//!   once, in order and on the right stream; no ID is reused before its close
//!   handshake; once the link is drained both ends agree and every stream closes.
//! - [`ext`](fn@ext): two sessions that agree on the extensions (or fall back, when one end
//!   has them off), with half-close, reset and go-away: on top of what `pair` checks,
//!   each end's agreement follows from the frames it took and is the truth, the offers
//!   come once and in their place, every stream takes the session's mode on both ends,
//!   and no end sends a frame the other cannot decode.
//!
//! The scenario encodings are described on [`SessionOp`], [`PairOp`], [`ExtOp`],
//! [`ExtSetup`] and [`config_from`]; [`seeds`] builds the seed corpus from them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::{EndReason, OpenError, ProtocolError, ReadError, WriteError};
use crate::frame::{Cmd, Decoder, Frame, Header, HEADER_LEN};
use crate::id::Role;
use crate::negotiate::ASSUMED_WINDOW;
use crate::probe::verify_code;
use crate::session::{Event, Session, StreamId};
use crate::transmit::Transmit;
use crate::Config;

mod ext;

pub use ext::{encode_ext, ext, ExtOp, ExtSetup, EXT_SETUP_LEN};

/// A fuzz target: its name (also its directory under `fuzz/corpus/`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, in the order `decode`, `session`, `pair`, `ext`.
pub const TARGETS: [Target; 4] = [
    ("decode", decode),
    ("session", session),
    ("pair", pair),
    ("ext", ext),
];

/// The function of the target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|t| t.1)
}

// ----- input reading --------------------------------------------------------------

/// Reads scenario values off the front of the fuzzer's input. Once the input is
/// exhausted every value reads as zero, so any byte string is a valid scenario.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer if the input ends first).
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A deterministic byte pattern: byte `off` of the data stream `serial`. Writers send
/// it and readers check it, so a byte delivered twice, lost, reordered or delivered on
/// the wrong stream shows up without keeping copies of the data.
fn pattern(serial: u64, off: u64) -> u8 {
    let mut x = serial
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(off.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 56) as u8
}

fn fill_pattern(serial: u64, off: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = pattern(serial, off + i as u64);
    }
}

// ----- configuration --------------------------------------------------------------

/// Number of input bytes [`config_from`] reads.
pub const CONFIG_LEN: usize = 8;

const WINDOWS: [u32; 8] = [1, 7, 100, 1024, 4096, 65_536, 300_000, 512 * 1024];
const FRAMES: [u32; 6] = [1, 3, 100, 1024, 20_000, 65_536];
const BACKLOGS: [usize; 8] = [0, 1, 2, 3, 5, 8, 64, 1024];
const OUT_BOUNDS: [usize; 6] = [1, 10, 1000, 4096, 70_000, 4 << 20];

/// Builds a valid session configuration from [`CONFIG_LEN`] input bytes, favouring
/// small bounds so that a short scenario can reach them:
///
/// | byte | setting |
/// |---|---|
/// | 0 | `window`: one of 1, 7, 100, 1024, 4096, 64 Ki, 300 000, 512 Ki (`b % 8`), at most 64 frames |
/// | 1 | `cfm_threshold`: `window >> (b % 8)`, at least 1 |
/// | 2 | `max_frame`: one of 1, 3, 100, 1024, 20 000, 64 Ki (`b % 6`) |
/// | 3 | `accept_backlog`: one of 0, 1, 2, 3, 5, 8, 64, 1024 (`b % 8`) |
/// | 4 | `max_buffered_in`: `max_frame * (1 + b % 4) + 37 * (b >> 2)` |
/// | 5 | `max_buffered_out`: one of 1, 10, 1000, 4096, 70 000, 4 Mi (`b % 6`) |
/// | 6 | `max_pending_answers`: `1 + b % 4`; `keepalive_interval`: `1 + (b >> 2) % 16` s |
/// | 7 | `keepalive_timeout`: `keepalive_interval * (2 + b % 10)`; bit 7: the role ([`session`] only) |
pub fn config_from(b: [u8; CONFIG_LEN]) -> Config {
    let max_frame = FRAMES[usize::from(b[2]) % FRAMES.len()];
    // A window of more than 64 frames adds run time, not behaviour.
    let window = WINDOWS[usize::from(b[0]) % WINDOWS.len()].min(64 * max_frame);
    let keepalive_interval = Duration::from_secs(1 + u64::from(b[6] >> 2) % 16);
    let config = Config {
        window,
        cfm_threshold: (window >> (b[1] % 8)).max(1),
        max_frame,
        keepalive_interval,
        keepalive_timeout: keepalive_interval * (2 + u32::from(b[7] % 10)),
        accept_backlog: BACKLOGS[usize::from(b[3]) % BACKLOGS.len()],
        max_buffered_in: max_frame as usize * (1 + usize::from(b[4] % 4))
            + 37 * usize::from(b[4] >> 2),
        max_buffered_out: OUT_BOUNDS[usize::from(b[5]) % OUT_BOUNDS.len()],
        max_pending_answers: 1 + usize::from(b[6] % 4),
        // These models check the base protocol; the `ext` target checks extensions.
        extensions: false,
        ..Config::default()
    };
    debug_assert_eq!(config.validate(), Ok(()));
    config
}

// ----- decode ---------------------------------------------------------------------

/// `max_frame` values [`decode`] picks from.
const DECODE_MAX_FRAMES: [u32; 8] = [0, 1, 7, 64, 1024, 65_536, 1 << 20, u32::MAX];

/// What one run of the decoder over some wire bytes produced.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<ProtocolError>,
    /// Bytes taken by the decoded frames.
    consumed: usize,
}

/// Runs a fresh decoder over `wire`, appending it to the buffer `sizes` bytes at a time
/// (cycled; a zero size calls the decoder without new bytes) and taking every complete
/// frame after each append. With `ext_after = Some(k)` the decoder is switched to
/// extended mode once `k` frames were taken, as a session does when the negotiation
/// completes between two frames.
fn decode_in_chunks(
    max_frame: u32,
    wire: &[u8],
    sizes: &[usize],
    ext_after: Option<usize>,
) -> Decoded {
    assert!(
        sizes.iter().any(|&n| n > 0),
        "chunk plan must make progress"
    );
    let extended_at = |i: usize| ext_after.is_some_and(|k| i >= k);
    let mut dec = Decoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        frames: Vec::new(),
        error: None,
        consumed: 0,
    };
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        let take = size.min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + take]);
        pos += take;
        loop {
            if extended_at(out.frames.len()) {
                dec.set_extended();
            }
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_frame(&frame, max_frame, extended_at(out.frames.len()));
                    out.consumed += Decoder::frame_len(&frame.header);
                    out.frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        // The decoder consumes whole frames only and leaves the rest in place.
        assert_eq!(buf.len(), pos - out.consumed, "decoder lost or kept bytes");
        assert_eq!(
            &buf[..],
            &wire[out.consumed..pos],
            "decoder altered the buffer"
        );
        if out.error.is_some() || pos == wire.len() {
            break;
        }
    }
    let extended = extended_at(out.frames.len());
    let rest = &wire[out.consumed..];
    match out.error {
        None => {
            // Whatever is left must be a strict prefix of a frame.
            if let Some(raw) = rest.first_chunk::<HEADER_LEN>() {
                let header =
                    Header::parse_in(raw, extended).expect("the decoder accepted this header");
                assert!(
                    rest.len() < Decoder::frame_len(&header),
                    "complete frame left"
                );
            }
        }
        Some(ProtocolError::UnknownCommand(b)) => {
            assert_eq!(
                rest.first(),
                Some(&b),
                "UnknownCommand names the wrong byte"
            );
            assert_eq!(
                Cmd::from_u8_in(b, extended),
                None,
                "UnknownCommand for a command valid in this mode (extended: {extended})"
            );
        }
        Some(_) => {}
    }
    out
}

/// The shape every decoded frame must have; `extended` if the decoder took extension
/// commands when it decoded it.
fn check_frame(frame: &Frame, max_frame: u32, extended: bool) {
    let h = frame.header;
    assert!(
        extended || !is_extension(h.cmd),
        "extension command {:?} decoded in base mode",
        h.cmd
    );
    if h.cmd == Cmd::Psh {
        assert_eq!(
            h.length as usize,
            frame.payload.len(),
            "PSH length mismatch"
        );
        assert!(h.length <= max_frame, "PSH over max_frame accepted");
    } else {
        assert!(frame.payload.is_empty(), "payload on a {:?} frame", h.cmd);
    }
    assert_eq!(
        Header::parse_in(&h.to_bytes(), extended),
        Ok(h),
        "header does not round-trip"
    );
}

/// Whether `cmd` exists only in the extended protocol.
fn is_extension(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set)
}

/// Checks that decoding in pieces gave what decoding in one piece gave (including the
/// error: a foreign protocol is named however its first bytes are split, see
/// `fuzz/regressions/decode/not-smux-options-split-at-7`).
fn assert_same_decoding(whole: &Decoded, split: &Decoded, how: &str) {
    assert_eq!(whole, split, "{how} input changed the decoder's result");
}

/// Fuzzes the frame decoder.
///
/// Input: byte 0 picks `max_frame` with its low 3 bits (0, 1, 7, 64, 1024, 64 Ki, 1 Mi
/// or `u32::MAX`); bit 3 turns on extended mode ([`Decoder::set_extended`]) once
/// `b >> 4` frames were decoded (0: from the start); byte 1 gives the number `k`
/// (`% 16`) of chunk sizes that follow, one byte each (cycled; 0 feeds nothing; no
/// sizes at all means one byte at a time); the rest is the wire.
///
/// Checks: decoding the wire in one piece and in the chosen chunks (and byte by byte)
/// yields the same frames, the same error and consumes the same bytes; every frame is
/// well-formed (PSH length = payload length ≤ `max_frame`, no payload otherwise,
/// extension commands only in extended mode); an `UnknownCommand` error names the
/// next byte, which is no command of the current mode; re-encoding the frames
/// reproduces the consumed bytes exactly; the decoder never drops or alters unconsumed
/// bytes and never leaves a complete frame behind. In extended mode, a base decoder
/// over the same wire must give the same frames up to the first extension command and
/// stop there with `UnknownCommand`.
pub fn decode(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let max_frame = DECODE_MAX_FRAMES[usize::from(mode & 7)];
    let ext_after = (mode & 8 != 0).then_some(usize::from(mode >> 4));
    let k = inp.u8() % 16;
    let mut sizes: Vec<usize> = (0..k).map(|_| usize::from(inp.u8())).collect();
    if sizes.iter().all(|&n| n == 0) {
        sizes.push(1);
    }
    let wire = inp.rest();
    let all = [wire.len().max(1)];

    let whole = decode_in_chunks(max_frame, wire, &all, ext_after);
    let chunked = decode_in_chunks(max_frame, wire, &sizes, ext_after);
    assert_same_decoding(&whole, &chunked, "chunked");
    if wire.len() <= 4096 {
        let bytewise = decode_in_chunks(max_frame, wire, &[1], ext_after);
        assert_same_decoding(&whole, &bytewise, "byte-by-byte");
    }

    let mut again = Vec::with_capacity(whole.consumed);
    for f in &whole.frames {
        f.encode(&mut again);
    }
    assert_eq!(&again[..], &wire[..whole.consumed], "re-encoding differs");

    if ext_after.is_some() {
        // The modes differ only in the extension commands.
        let base = decode_in_chunks(max_frame, wire, &all, None);
        match whole.frames.iter().position(|f| is_extension(f.header.cmd)) {
            None => assert_same_decoding(&whole, &base, "base-mode"),
            Some(k) => {
                let cmd = whole.frames[k].header.cmd;
                let consumed: usize = whole.frames[..k]
                    .iter()
                    .map(|f| Decoder::frame_len(&f.header))
                    .sum();
                let mut expected = Decoded {
                    frames: whole.frames[..k].to_vec(),
                    error: Some(ProtocolError::UnknownCommand(cmd as u8)),
                    consumed,
                };
                if k == 0 && matches!(base.error, Some(ProtocolError::NotSmux(_))) {
                    // As the first header, an extension command's byte may start text
                    // (9 is a tab), which a base decoder names as a foreign protocol.
                    expected.error = base.error;
                }
                assert_same_decoding(&expected, &base, "base-mode");
            }
        }
    }
}

// ----- frames on the wire, as seen by the checks -------------------------------------

/// Decodes the bytes a session emitted or consumed: they must be whole, valid frames.
fn frames_of(dec: &mut Decoder, buf: &mut BytesMut, what: &str) -> Vec<Frame> {
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
struct InputLog {
    buf: BytesMut,
    shadow: BytesMut,
    decoder: Decoder,
    consumed: BytesMut,
    /// Bytes and frames consumed so far.
    total: u64,
    frames: u64,
}

impl InputLog {
    fn new(max_frame: u32) -> InputLog {
        InputLog::with_decoder(Decoder::new(max_frame))
    }

    /// A log that decodes the consumed bytes with `decoder` (an extended one where the
    /// session may take extension frames).
    fn with_decoder(decoder: Decoder) -> InputLog {
        InputLog {
            buf: BytesMut::new(),
            shadow: BytesMut::new(),
            decoder,
            consumed: BytesMut::new(),
            total: 0,
            frames: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.shadow.extend_from_slice(bytes);
    }

    /// Calls `handle_input` and returns the frames it consumed.
    fn feed(&mut self, s: &mut Session, now: Instant) -> Vec<Frame> {
        let before = self.buf.len();
        s.handle_input(now, &mut self.buf);
        let after = self.buf.len();
        assert!(after <= before, "handle_input grew its input");
        self.consumed
            .extend_from_slice(&self.shadow.split_to(before - after));
        self.total += (before - after) as u64;
        let frames = frames_of(&mut self.decoder, &mut self.consumed, "consumed input");
        self.frames += frames.len() as u64;
        let st = s.stats();
        assert_eq!(st.bytes_received, self.total, "bytes_received disagrees");
        assert_eq!(st.frames_received, self.frames, "frames_received disagrees");
        frames
    }
}

/// Polls a session's output and returns it, decoded and as bytes, after checking it
/// against the session's own figures.
fn transmit(
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
fn next_free_id(role: Role, last: Option<u16>, used: &[u16]) -> Option<u16> {
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
struct Vrms {
    owed: VecDeque<(u16, u32)>,
    ping: Option<(u16, u32)>,
    offer_answer: Option<(u16, u32)>,
}

/// What a VRM an end took was to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VrmIn {
    /// The answer to its ping: a round-trip sample, not answered.
    PingAnswer,
    /// The answer to its offer of the extensions: not answered.
    OfferAnswer,
    /// A request (a probe, a ping, an offer): it owes the verify answer.
    Request,
}

impl Vrms {
    /// Follows a VRM the end took.
    fn took(&mut self, v: (u16, u32)) -> VrmIn {
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
    fn sent(&mut self, v: (u16, u32), who: &str) {
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

// ----- session ----------------------------------------------------------------------

/// One application call or arrival in a [`session`] scenario.
///
/// Encoding: one opcode byte (`% 16`, in the order of the variants), then the
/// variant's fields, little-endian. A `stream` byte picks one of the stream IDs the
/// scenario has seen so far (`stream % count`; the raw byte when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// 0: bytes from the peer, as they are (`len: u8`, then the bytes).
    Feed(Vec<u8>),
    /// 1: one frame from the peer (`cmd: u8, id: u16, length: u32`). `cmd & 0x7f` is
    /// the command byte; with bit 7 set, `id` picks a seen stream (`id % count`). A PSH
    /// whose `length` is at most 64 Ki carries that many pattern bytes.
    Frame {
        /// Command byte; bit 7 = `id` selects a seen stream.
        cmd: u8,
        /// Stream ID, or its selector.
        id: u16,
        /// Length field.
        length: u32,
    },
    /// 2: [`Session::open`].
    Open,
    /// 3: [`Session::accept`].
    Accept,
    /// 4: [`Session::read`] into a buffer of `len` bytes (`stream: u8, len: u16`).
    Read {
        /// Stream selector.
        stream: u8,
        /// Buffer size.
        len: u16,
    },
    /// 5: [`Session::read_chunk`] (`stream: u8, max: u16`).
    ReadChunk {
        /// Stream selector.
        stream: u8,
        /// Largest chunk.
        max: u16,
    },
    /// 6: [`Session::write`] of `len * 3` pattern bytes (`stream: u8, len: u16`).
    Write {
        /// Stream selector.
        stream: u8,
        /// A third of the write's size.
        len: u16,
    },
    /// 7: [`Session::close`] (`stream: u8`).
    Close {
        /// Stream selector.
        stream: u8,
    },
    /// 8: [`Session::ping`].
    Ping,
    /// 9: time passes by `ms * 4` milliseconds (`ms: u16`), then `handle_timeout`.
    Advance {
        /// A quarter of the step, in milliseconds.
        ms: u16,
    },
    /// 10: time jumps to [`Session::poll_timeout`], then `handle_timeout`.
    Timer,
    /// 11: [`Session::poll_transmit`] with a data limit of `limit` bytes (`limit: u16`).
    Transmit {
        /// The limit.
        limit: u16,
    },
    /// 12: up to `n` calls of [`Session::poll_event`] (`n: u8`).
    Events {
        /// How many.
        n: u8,
    },
    /// 13: [`Session::handle_eof`] with the unconsumed input as leftover.
    Eof,
    /// 14: [`Session::close_session`].
    CloseSession,
    /// 15: [`Session::handle_transport_error`].
    TransportError,
}

impl SessionOp {
    /// Appends the op's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SessionOp::Feed(b) => {
                let b = &b[..b.len().min(255)];
                out.extend_from_slice(&[0, b.len() as u8]);
                out.extend_from_slice(b);
            }
            SessionOp::Frame { cmd, id, length } => {
                out.extend_from_slice(&[1, *cmd]);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&length.to_le_bytes());
            }
            SessionOp::Open => out.push(2),
            SessionOp::Accept => out.push(3),
            SessionOp::Read { stream, len } => {
                out.extend_from_slice(&[4, *stream]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            SessionOp::ReadChunk { stream, max } => {
                out.extend_from_slice(&[5, *stream]);
                out.extend_from_slice(&max.to_le_bytes());
            }
            SessionOp::Write { stream, len } => {
                out.extend_from_slice(&[6, *stream]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            SessionOp::Close { stream } => out.extend_from_slice(&[7, *stream]),
            SessionOp::Ping => out.push(8),
            SessionOp::Advance { ms } => {
                out.push(9);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            SessionOp::Timer => out.push(10),
            SessionOp::Transmit { limit } => {
                out.push(11);
                out.extend_from_slice(&limit.to_le_bytes());
            }
            SessionOp::Events { n } => out.extend_from_slice(&[12, *n]),
            SessionOp::Eof => out.push(13),
            SessionOp::CloseSession => out.push(14),
            SessionOp::TransportError => out.push(15),
        }
    }

    fn decode(inp: &mut Input<'_>) -> SessionOp {
        match inp.u8() % 16 {
            0 => {
                let n = usize::from(inp.u8());
                SessionOp::Feed(inp.bytes(n).to_vec())
            }
            1 => SessionOp::Frame {
                cmd: inp.u8(),
                id: inp.u16(),
                length: inp.u32(),
            },
            2 => SessionOp::Open,
            3 => SessionOp::Accept,
            4 => SessionOp::Read {
                stream: inp.u8(),
                len: inp.u16(),
            },
            5 => SessionOp::ReadChunk {
                stream: inp.u8(),
                max: inp.u16(),
            },
            6 => SessionOp::Write {
                stream: inp.u8(),
                len: inp.u16(),
            },
            7 => SessionOp::Close { stream: inp.u8() },
            8 => SessionOp::Ping,
            9 => SessionOp::Advance { ms: inp.u16() },
            10 => SessionOp::Timer,
            11 => SessionOp::Transmit { limit: inp.u16() },
            12 => SessionOp::Events { n: inp.u8() },
            13 => SessionOp::Eof,
            14 => SessionOp::CloseSession,
            _ => SessionOp::TransportError,
        }
    }
}

/// Encodes a whole [`session`] scenario: configuration bytes, then ops.
pub fn encode_session(config: [u8; CONFIG_LEN], ops: &[SessionOp]) -> Vec<u8> {
    let mut out = config.to_vec();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// What the scenario did that may legitimately end the session.
#[derive(Default)]
struct Causes {
    eof_clean: bool,
    eof_truncated: bool,
    local: bool,
    transport: bool,
}

/// The [`session`] scenario's state and its model of the session.
struct SessionRun {
    s: Session,
    config: Config,
    now: Instant,
    input: InputLog,
    out_dec: Decoder,
    /// Stream IDs seen (opened, accepted, named by a consumed frame), for selectors.
    seen: Vec<u16>,
    seen_set: HashSet<u16>,
    /// Per ID: PSH bytes emitted, and the credit the peer gave (a window per SYN in
    /// either direction, plus every CFM): emitted data may never exceed it.
    sent: HashMap<u16, (u64, u64)>,
    /// Per ID: PSH bytes received, and CFM bytes emitted (never more than received).
    received: HashMap<u16, (u64, u64)>,
    /// When a frame last arrived.
    last_input: Instant,
    causes: Causes,
    ended_checked: bool,
    /// The ID the last successful `open` returned.
    last_opened: Option<u16>,
}

impl SessionRun {
    /// Most a stream's receive buffer may hold: the window, or the protocol's 512 KiB
    /// that a peer may always send before it learns a smaller window.
    fn recv_limit(&self) -> u32 {
        self.config.window.max(ASSUMED_WINDOW)
    }

    fn see(&mut self, id: u16) {
        if self.seen_set.insert(id) {
            self.seen.push(id);
        }
    }

    fn pick(&self, sel: u8) -> StreamId {
        if self.seen.is_empty() {
            self.s.sid(u16::from(sel))
        } else {
            self.s.sid(self.seen[usize::from(sel) % self.seen.len()])
        }
    }

    fn feed(&mut self) {
        let was_ended = self.s.is_ended();
        let frames = self.input.feed(&mut self.s, self.now);
        let last = frames.last().map(|f| f.header);
        if !frames.is_empty() {
            self.last_input = self.now;
        }
        let window = u64::from(self.config.window);
        for f in frames {
            let h = f.header;
            match h.cmd {
                Cmd::Syn => {
                    self.see(h.id);
                    self.sent.entry(h.id).or_default().1 += window;
                }
                Cmd::Cfm => self.sent.entry(h.id).or_default().1 += u64::from(h.length),
                Cmd::Psh => {
                    self.see(h.id);
                    self.received.entry(h.id).or_default().0 += u64::from(h.length);
                }
                Cmd::Fin => self.see(h.id),
                Cmd::Vrm | Cmd::Pin => {}
                Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set => {
                    unreachable!("base decoder took {h:?}")
                }
            }
        }
        if let (false, Some(EndReason::Protocol(e))) = (was_ended, self.s.end_reason()) {
            self.justify(*e, last);
        }
    }

    /// Checks that the protocol error the last input caused is what the input shows.
    fn justify(&self, e: ProtocolError, last: Option<Header>) {
        let next = &self.input.buf;
        let next_header = next.first_chunk::<HEADER_LEN>();
        match e {
            ProtocolError::NotSmux(_) => {
                assert_eq!(self.input.total, 0, "NotSmux after valid frames");
            }
            ProtocolError::UnknownCommand(b) => {
                assert!(
                    next_header.is_some(),
                    "UnknownCommand without a whole header"
                );
                assert_eq!(next[0], b, "UnknownCommand names the wrong byte");
                assert_eq!(Cmd::from_u8(b), None, "UnknownCommand for a known command");
            }
            ProtocolError::FrameTooLarge { len, max } => {
                let raw = next_header.expect("FrameTooLarge without a whole header");
                let h = Header::parse(raw).expect("FrameTooLarge for an invalid header");
                assert_eq!(
                    (h.cmd, h.length),
                    (Cmd::Psh, len),
                    "FrameTooLarge misreports"
                );
                assert!(len > max && max == self.config.max_frame);
            }
            ProtocolError::WindowExceeded {
                id,
                unconfirmed,
                window,
            } => {
                let h = last.expect("WindowExceeded without a frame");
                assert_eq!((h.cmd, h.id), (Cmd::Psh, id), "WindowExceeded misreports");
                // A receiver takes the protocol's 512 KiB from a peer that cannot know a
                // smaller window (this one never tells: extensions are off).
                assert!(
                    unconfirmed > u64::from(window) && window == self.recv_limit(),
                    "WindowExceeded against window {window}"
                );
                let (recv, confirmed) = self.received.get(&id).copied().unwrap_or_default();
                assert!(
                    recv - confirmed > u64::from(window),
                    "WindowExceeded although at most a window was unconfirmed on {id}"
                );
            }
            ProtocolError::TruncatedFrame { .. } => panic!("TruncatedFrame from input"),
        }
    }

    fn transmit(&mut self, limit: usize) {
        let ended = self.s.is_ended();
        let (frames, _) = transmit(&mut self.s, self.now, limit, &mut self.out_dec);
        assert!(!ended || frames.is_empty(), "an ended session sent frames");
        let window = u64::from(self.config.window);
        for f in frames {
            let h = f.header;
            match h.cmd {
                Cmd::Syn => self.sent.entry(h.id).or_default().1 += window,
                Cmd::Psh => {
                    assert!(h.length > 0, "empty PSH sent");
                    assert!(h.length <= self.config.max_frame, "PSH over max_frame sent");
                    let (sent, credit) = self.sent.entry(h.id).or_default();
                    *sent += u64::from(h.length);
                    assert!(*sent <= *credit, "stream {} sent past its window", h.id);
                }
                Cmd::Cfm => {
                    assert!(h.length > 0, "empty CFM sent");
                    let (recv, confirmed) = self.received.entry(h.id).or_default();
                    *confirmed += u64::from(h.length);
                    assert!(
                        *confirmed <= *recv,
                        "stream {} confirmed unreceived bytes",
                        h.id
                    );
                }
                Cmd::Pin => assert_eq!((h.id, h.length), (0, 0), "malformed PIN"),
                Cmd::Fin | Cmd::Vrm => {}
                Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set => panic!("extension frame sent: {h:?}"),
            }
        }
    }

    fn poll_events(&mut self, n: usize) {
        for _ in 0..n {
            let Some(ev) = self.s.poll_event() else {
                break;
            };
            match ev {
                Event::Incoming(id)
                | Event::Readable(id)
                | Event::Writable(id)
                | Event::Finished(id)
                | Event::Closed(id) => self.see(id.num),
                Event::Reset(..) => panic!("reset without extensions"),
                Event::Agreed(a) => panic!("Agreed({a:?}) with the extensions off"),
                Event::Ended(reason) => {
                    assert_eq!(Some(&reason), self.s.end_reason(), "Ended event disagrees");
                }
            }
        }
    }

    fn read(&mut self, id: StreamId, len: usize, chunk: bool) {
        let before = self.s.stats();
        let readable = self.s.readable_len(id);
        let n = if chunk {
            match self.s.read_chunk(id, len) {
                Ok(Some(b)) => {
                    assert!(b.len() <= len, "read_chunk returned more than asked");
                    b.len()
                }
                Ok(None) => 0,
                Err(e) => return self.read_error(&e, readable),
            }
        } else {
            let mut buf = vec![0u8; len];
            match self.s.read(id, &mut buf) {
                Ok(n) => {
                    assert!(n <= len, "read returned more than the buffer");
                    n
                }
                Err(e) => return self.read_error(&e, readable),
            }
        };
        assert!(n <= readable, "read more than readable_len");
        assert_eq!(
            self.s.readable_len(id),
            readable - n,
            "readable_len after read"
        );
        assert_eq!(self.s.stats().buffered_in, before.buffered_in - n);
    }

    fn read_error(&self, e: &ReadError, readable: usize) {
        match e {
            ReadError::Blocked => assert_eq!(readable, 0, "Blocked with data buffered"),
            ReadError::SessionEnded(r) => assert_eq!(Some(r), self.s.end_reason()),
            ReadError::Closed | ReadError::UnknownStream => {}
            ReadError::Reset(_) => panic!("reset without extensions"),
        }
    }

    fn write(&mut self, id: StreamId, len: usize) {
        // The content does not matter here (the pair target checks it); a zeroed buffer
        // keeps large writes cheap.
        let data = vec![0u8; len];
        let before = self.s.stats();
        let writable = self.s.writable_len(id);
        match self.s.write(id, &data) {
            Ok(n) => {
                assert!(n <= len, "write accepted more than given");
                assert!(n > 0 || len == 0, "write accepted nothing without Blocked");
                assert_eq!(n, len.min(writable), "write disagrees with writable_len");
                assert_eq!(self.s.stats().buffered_out, before.buffered_out + n);
            }
            Err(WriteError::Blocked) => {
                assert_eq!(writable, 0, "Blocked while writable_len > 0");
                assert_eq!(
                    self.s.stats(),
                    before,
                    "a Blocked write changed the session"
                );
            }
            Err(WriteError::SessionEnded(r)) => assert_eq!(Some(&r), self.s.end_reason()),
            Err(WriteError::Closed | WriteError::PeerClosed | WriteError::UnknownStream) => {
                assert_eq!(
                    writable, 0,
                    "writable_len > 0 on a stream that fails writes"
                );
            }
            Err(WriteError::Reset(_)) => panic!("reset without extensions"),
            Err(WriteError::HalfCloseUnsupported) => panic!("write reported a shutdown's error"),
        }
    }

    fn advance(&mut self, to: Instant) {
        self.now = self.now.max(to);
        self.s.handle_timeout(self.now);
        if let Some(next) = self.s.poll_timeout() {
            assert!(
                next > self.now,
                "timer due again right after handle_timeout"
            );
        }
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let st = self.s.stats();
        let c = &self.config;
        assert!(
            st.buffered_in <= c.max_buffered_in,
            "buffered_in over its bound"
        );
        assert!(
            st.buffered_out <= c.max_buffered_out,
            "buffered_out over its bound"
        );
        assert!(
            st.accept_backlog <= c.accept_backlog,
            "backlog over its bound"
        );
        assert!(st.accept_backlog <= st.streams);
        assert!(st.protocol_errors <= 1);
        let mut readable = 0;
        for &id in &self.seen {
            let n = self.s.readable_len(self.s.sid(id));
            assert!(
                n <= self.recv_limit() as usize,
                "stream {id} buffers more than the window"
            );
            readable += n;
        }
        assert!(
            readable <= st.buffered_in,
            "streams hold more than buffered_in"
        );
        if let Some(reason) = self.s.end_reason().cloned() {
            self.check_ended(&reason);
        } else {
            assert_eq!(st.protocol_errors, 0, "protocol error without ending");
            assert!(
                self.s.poll_timeout().is_some(),
                "a live session has no timer"
            );
        }
    }

    fn check_ended(&mut self, reason: &EndReason) {
        let st = self.s.stats();
        match reason {
            EndReason::Protocol(ProtocolError::TruncatedFrame { .. }) => {
                assert!(
                    self.causes.eof_truncated,
                    "TruncatedFrame without a cut-off eof"
                );
            }
            EndReason::Protocol(_) => {}
            EndReason::PeerClosed => assert!(self.causes.eof_clean, "PeerClosed without eof"),
            EndReason::Local => assert!(self.causes.local, "Local end without close_session"),
            EndReason::Transport(..) => assert!(self.causes.transport, "unrequested Transport"),
            EndReason::Drained => panic!("drained without a go-away"),
            EndReason::KeepaliveTimeout => assert!(
                self.now >= self.last_input + self.config.keepalive_timeout,
                "keepalive timeout although input arrived recently"
            ),
        }
        assert_eq!(
            st.protocol_errors,
            u64::from(matches!(reason, EndReason::Protocol(_))),
            "protocol_errors disagrees with the end reason"
        );
        assert_eq!(st.buffered_out, 0, "an ended session keeps send data");
        assert!(!self.s.wants_input() && !self.s.has_transmit());
        assert_eq!(self.s.poll_timeout(), None);
        if !self.ended_checked {
            self.ended_checked = true;
            match self.s.open() {
                Err(OpenError::SessionEnded(r)) => assert_eq!(&r, reason),
                other => panic!("open on an ended session: {other:?}"),
            }
            for &id in &self.seen {
                match self.s.write(self.s.sid(id), b"x") {
                    Err(WriteError::SessionEnded(r)) => assert_eq!(&r, reason),
                    other => panic!("write on an ended session: {other:?}"),
                }
            }
        }
    }

    fn step(&mut self, op: SessionOp) {
        match op {
            SessionOp::Feed(bytes) => {
                self.input.push(&bytes);
                self.feed();
            }
            SessionOp::Frame { cmd, id, length } => {
                let id = if cmd & 0x80 != 0 {
                    self.pick(id as u8).num
                } else {
                    id
                };
                let cmd = cmd & 0x7f;
                let mut wire = vec![cmd];
                wire.extend_from_slice(&id.to_le_bytes());
                wire.extend_from_slice(&length.to_le_bytes());
                if cmd == Cmd::Psh as u8 && length <= 65_536 {
                    let at = wire.len();
                    wire.resize(at + length as usize, 0);
                    fill_pattern(u64::from(id), 0, &mut wire[at..]);
                }
                self.input.push(&wire);
                self.feed();
            }
            SessionOp::Open => match (self.s.stream_ids(), self.s.open()) {
                (used, Ok(id)) => {
                    assert!(!self.s.is_ended());
                    let want = next_free_id(self.s.role(), self.last_opened, &used);
                    assert_eq!(Some(id.num), want, "open did not hand out the next free ID");
                    self.last_opened = Some(id.num);
                    self.see(id.num);
                }
                (_, Err(OpenError::SessionEnded(r))) => {
                    assert_eq!(Some(&r), self.s.end_reason())
                }
                (_, Err(OpenError::IdsExhausted)) => {
                    assert!(self.s.stats().streams >= 65_536, "IDs exhausted early")
                }
                (_, Err(OpenError::GoingAway)) => panic!("going away without a go-away"),
            },
            SessionOp::Accept => {
                let backlog = self.s.stats().accept_backlog;
                match self.s.accept() {
                    Some(id) => self.see(id.num),
                    None => assert_eq!(backlog, 0, "accept returned nothing with a backlog"),
                }
            }
            SessionOp::Read { stream, len } => self.read(self.pick(stream), len.into(), false),
            SessionOp::ReadChunk { stream, max } => self.read(self.pick(stream), max.into(), true),
            SessionOp::Write { stream, len } => self.write(self.pick(stream), 3 * len as usize),
            SessionOp::Close { stream } => {
                let _ = self.s.close(self.pick(stream));
            }
            SessionOp::Ping => {
                let _ = self.s.ping(self.now);
            }
            SessionOp::Advance { ms } => {
                self.advance(self.now + Duration::from_millis(4 * u64::from(ms)));
            }
            SessionOp::Timer => {
                if let Some(t) = self.s.poll_timeout() {
                    self.advance(t);
                }
            }
            SessionOp::Transmit { limit } => self.transmit(limit.into()),
            SessionOp::Events { n } => self.poll_events(n.into()),
            SessionOp::Eof => {
                let leftover = self.input.buf.len();
                if !self.s.is_ended() {
                    if leftover > 0 {
                        self.causes.eof_truncated = true;
                    } else {
                        self.causes.eof_clean = true;
                    }
                }
                let before = self.s.end_reason().cloned();
                self.s.handle_eof(leftover);
                assert!(self.s.is_ended(), "session survived end-of-file");
                if let Some(before) = before {
                    assert_eq!(self.s.end_reason(), Some(&before), "end reason changed");
                }
            }
            SessionOp::CloseSession => {
                let before = self.s.end_reason().cloned();
                self.causes.local = true;
                self.s.close_session();
                let expected = before.unwrap_or(EndReason::Local);
                assert_eq!(self.s.end_reason(), Some(&expected), "end reason changed");
            }
            SessionOp::TransportError => {
                let before = self.s.end_reason().cloned();
                self.causes.transport = true;
                let e = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fuzz");
                self.s.handle_transport_error(e);
                assert!(self.s.is_ended());
                if let Some(before) = before {
                    assert_eq!(self.s.end_reason(), Some(&before), "end reason changed");
                }
            }
        }
    }

    /// At the end of the scenario a live session must still work: once every stream is
    /// drained and its output sent, it takes input again and can open a stream.
    fn finish(&mut self) {
        self.poll_events(usize::MAX);
        if self.s.is_ended() {
            return;
        }
        // Every round consumes at least one frame or stops, so this ends.
        loop {
            while let Some(id) = self.s.accept() {
                self.see(id.num);
            }
            for i in 0..self.seen.len() {
                let id = self.s.sid(self.seen[i]);
                while let Ok(Some(b)) = self.s.read_chunk(id, usize::MAX) {
                    if b.is_empty() {
                        break;
                    }
                }
            }
            self.transmit(usize::MAX);
            let before = self.s.stats().frames_received;
            self.feed();
            self.poll_events(usize::MAX);
            self.check();
            if self.s.is_ended() {
                return;
            }
            if self.s.stats().frames_received == before && self.s.stats().buffered_in == 0 {
                break;
            }
        }
        self.transmit(usize::MAX);
        assert_eq!(
            self.s.stats().buffered_in,
            0,
            "data left after reading every stream"
        );
        assert!(self.s.wants_input(), "a drained session refuses input");
        let id = self.s.open().expect("a live session can open a stream");
        self.see(id.num);
        self.transmit(usize::MAX);
        self.check();
    }
}

/// Fuzzes one session against an arbitrary peer and application.
///
/// Input: [`CONFIG_LEN`] configuration bytes ([`config_from`]; bit 7 of the last one
/// makes the session the [`Role::Acceptor`]), then [`SessionOp`]s until the input ends.
///
/// Checks, after every op: no panic; `buffered_in ≤ max_buffered_in`, `buffered_out ≤
/// max_buffered_out`, the accept backlog within its bound, and every seen stream's
/// `readable_len` within the window (or the 512 KiB a peer may always send); the session has ended only with a protocol error or for a
/// reason the scenario caused (and then refuses everything and sends nothing); the
/// output is whole, valid frames, no PSH over `max_frame`, no stream's data beyond the
/// window plus the confirmations received, no CFM for bytes never received; the
/// statistics match the bytes and frames that went in and out; reads, writes and
/// their `readable_len` / `writable_len` agree; a `Blocked` write changes nothing; the
/// timer is never due again right after it ran; `poll_transmit` stops only at its limit
/// (at least one frame) or when nothing is left; `open` hands out the next free ID
/// after the last one (round-robin); no `Agreed` event (extensions are off). At the end, a live session is drained
/// and must take input again and open a stream.
pub fn session(data: &[u8]) {
    let mut inp = Input::new(data);
    let cb = inp.array::<CONFIG_LEN>();
    let config = config_from(cb);
    let role = if cb[7] & 0x80 != 0 {
        Role::Acceptor
    } else {
        Role::Dialer
    };
    let now = Instant::now();
    let mut run = SessionRun {
        s: Session::new(config.clone(), role, now).expect("valid config"),
        input: InputLog::new(config.max_frame),
        out_dec: Decoder::new(u32::MAX),
        config,
        now,
        seen: Vec::new(),
        seen_set: HashSet::new(),
        sent: HashMap::new(),
        received: HashMap::new(),
        last_input: now,
        causes: Causes::default(),
        ended_checked: false,
        last_opened: None,
    };
    assert!(!run.s.has_transmit(), "a new session has something to send");
    while !inp.is_empty() {
        let op = SessionOp::decode(&mut inp);
        run.step(op);
        run.check();
    }
    run.finish();
}

// ----- pair -------------------------------------------------------------------------

/// One step of a [`pair`] scenario. `side` 0 is the dialer `A`, 1 the acceptor `B`.
///
/// Encoding: one opcode byte: bit 0 is the side, `(b >> 1) % 10` the op in the order
/// of the variants; then the variant's fields, little-endian. A `stream` byte picks
/// one of the streams that side's application holds (`stream % count`; nothing
/// happens when it holds none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairOp {
    /// 0: [`Session::open`].
    Open {
        /// The side.
        side: u8,
    },
    /// 1: [`Session::accept`].
    Accept {
        /// The side.
        side: u8,
    },
    /// 2: [`Session::read`] into a buffer of `len` bytes (`stream: u8, len: u16`).
    Read {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// Buffer size.
        len: u16,
    },
    /// 3: [`Session::read_chunk`] (`stream: u8, max: u16`).
    ReadChunk {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// Largest chunk.
        max: u16,
    },
    /// 4: [`Session::write`] of `len * 3` bytes (`stream: u8, len: u16`).
    Write {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// A third of the write's size.
        len: u16,
    },
    /// 5: [`Session::close`] (`stream: u8`).
    Close {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
    },
    /// 6: [`Session::ping`].
    Ping {
        /// The side.
        side: u8,
    },
    /// 7: [`Session::poll_transmit`] onto the link, with a data limit (`limit: u16`; 0
    /// means no limit, as a zero limit emits nothing).
    Transmit {
        /// The sending side.
        side: u8,
        /// The limit.
        limit: u16,
    },
    /// 8: `len` bytes (0 = all) move off the link into `side`, then `handle_input`
    /// (`len: u16`).
    Deliver {
        /// The receiving side.
        side: u8,
        /// Bytes to move.
        len: u16,
    },
    /// 9: time passes by `ms * 4` milliseconds on both ends, then timers run
    /// (`ms: u16`; the side bit is ignored).
    Advance {
        /// A quarter of the step, in milliseconds.
        ms: u16,
    },
}

impl PairOp {
    /// Appends the op's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let op = |code: u8, side: u8| code << 1 | (side & 1);
        match *self {
            PairOp::Open { side } => out.push(op(0, side)),
            PairOp::Accept { side } => out.push(op(1, side)),
            PairOp::Read { side, stream, len } => {
                out.extend_from_slice(&[op(2, side), stream]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            PairOp::ReadChunk { side, stream, max } => {
                out.extend_from_slice(&[op(3, side), stream]);
                out.extend_from_slice(&max.to_le_bytes());
            }
            PairOp::Write { side, stream, len } => {
                out.extend_from_slice(&[op(4, side), stream]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            PairOp::Close { side, stream } => out.extend_from_slice(&[op(5, side), stream]),
            PairOp::Ping { side } => out.push(op(6, side)),
            PairOp::Transmit { side, limit } => {
                out.push(op(7, side));
                out.extend_from_slice(&limit.to_le_bytes());
            }
            PairOp::Deliver { side, len } => {
                out.push(op(8, side));
                out.extend_from_slice(&len.to_le_bytes());
            }
            PairOp::Advance { ms } => {
                out.push(op(9, 0));
                out.extend_from_slice(&ms.to_le_bytes());
            }
        }
    }

    fn decode(inp: &mut Input<'_>) -> PairOp {
        let b = inp.u8();
        let side = b & 1;
        match (b >> 1) % 10 {
            0 => PairOp::Open { side },
            1 => PairOp::Accept { side },
            2 => PairOp::Read {
                side,
                stream: inp.u8(),
                len: inp.u16(),
            },
            3 => PairOp::ReadChunk {
                side,
                stream: inp.u8(),
                max: inp.u16(),
            },
            4 => PairOp::Write {
                side,
                stream: inp.u8(),
                len: inp.u16(),
            },
            5 => PairOp::Close {
                side,
                stream: inp.u8(),
            },
            6 => PairOp::Ping { side },
            7 => PairOp::Transmit {
                side,
                limit: inp.u16(),
            },
            8 => PairOp::Deliver {
                side,
                len: inp.u16(),
            },
            _ => PairOp::Advance { ms: inp.u16() },
        }
    }
}

/// The transmit limit of a [`PairOp::Transmit`] or [`ExtOp::Transmit`]: 0 stands for
/// no limit (the seeds' way to say "everything").
fn op_limit(limit: u16) -> usize {
    match limit {
        0 => usize::MAX,
        n => n.into(),
    }
}

/// Encodes a whole [`pair`] scenario: configuration bytes, then ops.
pub fn encode_pair(config: [u8; CONFIG_LEN], ops: &[PairOp]) -> Vec<u8> {
    let mut out = config.to_vec();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// Where one end's application stands with one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Not announced to this end (not yet arrived, or refused).
    Unseen,
    /// Announced by `Incoming`, not yet accepted.
    Backlog,
    /// Held by the application.
    Open,
    /// Closed by the application.
    Released,
}

/// One stream's lifetime, from the `open` that created it to its removal on both ends.
/// Index 0 is about end A, 1 about end B.
#[derive(Debug)]
struct Conn {
    id: u16,
    /// The end that opened it.
    opener: usize,
    /// Identifies the pattern of each direction's data: `serial * 2 + writer`.
    serial: u64,
    /// Bytes each end's writes accepted.
    written: [u64; 2],
    /// Bytes each end read (of what the other end wrote).
    read: [u64; 2],
    held: [Held; 2],
    /// Each end saw `Finished` (the peer's FIN while the stream was open).
    finished: [bool; 2],
    /// Each end put its FIN / received the peer's FIN on the wire.
    fin_sent: [bool; 2],
    fin_received: [bool; 2],
    /// Each end's stream is gone (`Closed` seen).
    removed: [bool; 2],
    /// PSH payload each end sent, and CFM bytes each end received.
    psh_sent: [u64; 2],
    cfm_received: [u64; 2],
    /// PSH payload each end received, and CFM bytes each end sent.
    psh_received: [u64; 2],
    cfm_sent: [u64; 2],
}

/// One end of a [`pair`] scenario.
struct End {
    s: Session,
    input: InputLog,
    out_dec: Decoder,
    /// Bytes this end transmitted that the other end has not received yet.
    link: BytesMut,
    /// Streams that exist on this end, by ID, as far as the events told (opened or
    /// announced, not yet `Closed`); refused streams are not here.
    live: HashMap<u16, usize>,
    /// The latest stream this end opened with each ID.
    opened: HashMap<u16, usize>,
    /// The lifetime frames for each ID belong to on this end: set by this end's open
    /// and by each SYN it receives (so frames that follow a reopened ID's SYN in the
    /// same delivery are attributed to the new stream).
    cur: HashMap<u16, usize>,
    /// Streams this end refused (answered FIN without an `Incoming`), until `Closed`.
    refused: HashMap<u16, usize>,
    /// `Incoming` streams not yet accepted, in order.
    backlog: VecDeque<u16>,
    /// Streams the application holds, in a stable order for selectors.
    handles: Vec<u16>,
    /// A ping was sent and its answer is due.
    pinged: bool,
    /// Its pings and the answers it owes.
    vrms: Vrms,
    /// The ID its last successful `open` returned.
    last_opened: Option<u16>,
}

/// The [`pair`] scenario.
struct PairRun {
    ends: [End; 2],
    conns: Vec<Conn>,
    config: Config,
    now: Instant,
    elapsed: Duration,
}

/// Both ends use a timeout far beyond any time a scenario can let pass, so that a
/// session never dies of silence while the link is merely slow.
const PAIR_TIMEOUT: Duration = Duration::from_secs(3600);
const PAIR_MAX_ELAPSED: Duration = Duration::from_secs(3000);

impl PairRun {
    /// The stream an event about `id` on end `side` refers to.
    fn event_conn(&self, side: usize, id: u16) -> Option<usize> {
        let end = &self.ends[side];
        end.live.get(&id).or_else(|| end.refused.get(&id)).copied()
    }

    /// The stream a frame about `id` sent or received by end `side` belongs to.
    fn frame_conn(&self, side: usize, id: u16, what: &str) -> usize {
        *self.ends[side]
            .cur
            .get(&id)
            .unwrap_or_else(|| panic!("end {side}: {what} for stream {id} before any SYN"))
    }

    fn drain_events(&mut self) {
        for side in 0..2 {
            while let Some(ev) = self.ends[side].s.poll_event() {
                self.on_event(side, ev);
            }
        }
    }

    fn on_event(&mut self, side: usize, ev: Event) {
        let peer = 1 - side;
        match ev {
            Event::Incoming(StreamId { num: id, .. }) => {
                assert!(
                    !self.ends[side].live.contains_key(&id),
                    "end {side}: Incoming({id}) while its stream {id} still exists"
                );
                let c = *self.ends[peer]
                    .opened
                    .get(&id)
                    .expect("Incoming for a stream the peer never opened");
                assert_eq!(
                    self.conns[c].held[side],
                    Held::Unseen,
                    "Incoming({id}) twice"
                );
                self.conns[c].held[side] = Held::Backlog;
                self.ends[side].live.insert(id, c);
                self.ends[side].backlog.push_back(id);
            }
            Event::Readable(StreamId { num: id, .. })
            | Event::Writable(StreamId { num: id, .. }) => {
                assert!(
                    self.ends[side].live.contains_key(&id),
                    "end {side}: event for unknown stream {id}"
                );
            }
            Event::Finished(StreamId { num: id, .. }) => {
                let c = *self.ends[side]
                    .live
                    .get(&id)
                    .expect("Finished for an unknown stream");
                let conn = &mut self.conns[c];
                assert!(!conn.finished[side], "Finished({id}) twice");
                assert!(
                    conn.fin_received[side],
                    "Finished({id}) before a FIN arrived"
                );
                conn.finished[side] = true;
                assert!(
                    matches!(conn.held[peer], Held::Released | Held::Unseen),
                    "end {side}: Finished({id}) but the peer still holds the stream"
                );
            }
            Event::Closed(StreamId { num: id, .. }) => {
                let c = self
                    .event_conn(side, id)
                    .expect("Closed for a stream that never existed");
                let conn = &mut self.conns[c];
                assert!(!conn.removed[side], "Closed({id}) twice");
                assert!(
                    conn.fin_sent[side] && conn.fin_received[side],
                    "end {side}: stream {id} closed before both FINs"
                );
                assert!(
                    matches!(conn.held[side], Held::Released | Held::Unseen),
                    "end {side}: stream {id} closed while the application holds it"
                );
                conn.removed[side] = true;
                if self.ends[side].live.remove(&id).is_none() {
                    self.ends[side].refused.remove(&id);
                }
            }
            Event::Ended(reason) => panic!("end {side}: session ended: {reason:?}"),
            Event::Reset(..) => panic!("end {side}: reset without extensions"),
            Event::Agreed(a) => panic!("end {side}: Agreed({a:?}) with the extensions off"),
        }
    }

    fn transmit(&mut self, side: usize, limit: usize) {
        let end = &mut self.ends[side];
        let (frames, wire) = transmit(&mut end.s, self.now, limit, &mut end.out_dec);
        end.link.extend_from_slice(&wire);
        let window = u64::from(self.config.window);
        for f in frames {
            let Header { cmd, id, length } = f.header;
            match cmd {
                Cmd::Syn => {
                    let c = self.frame_conn(side, id, "SYN");
                    assert_eq!(self.conns[c].opener, side, "SYN from the accepting end");
                }
                Cmd::Fin => {
                    let c = self.frame_conn(side, id, "FIN");
                    if !self.ends[side].live.contains_key(&id) {
                        self.ends[side].refused.insert(id, c);
                    }
                    let conn = &mut self.conns[c];
                    assert!(!conn.fin_sent[side], "end {side}: second FIN for {id}");
                    assert!(
                        matches!(conn.held[side], Held::Released | Held::Unseen),
                        "end {side}: FIN for {id} while the application holds it"
                    );
                    conn.fin_sent[side] = true;
                }
                Cmd::Psh => {
                    let c = self.frame_conn(side, id, "PSH");
                    let conn = &mut self.conns[c];
                    assert!(
                        !conn.fin_sent[side],
                        "end {side}: PSH on {id} after its FIN"
                    );
                    conn.psh_sent[side] += u64::from(length);
                    assert!(
                        conn.psh_sent[side] <= conn.cfm_received[side] + window,
                        "end {side}: stream {id} has more than a window unconfirmed"
                    );
                }
                Cmd::Cfm => {
                    let c = self.frame_conn(side, id, "CFM");
                    let conn = &mut self.conns[c];
                    conn.cfm_sent[side] += u64::from(length);
                    assert!(
                        conn.cfm_sent[side] <= conn.read[side],
                        "end {side}: stream {id} confirmed bytes it has not read"
                    );
                }
                Cmd::Vrm => self.ends[side]
                    .vrms
                    .sent((id, length), &format!("end {side}")),
                Cmd::Pin => {}
                Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set => panic!("end {side}: sent {cmd:?}"),
            }
        }
    }

    /// Moves `len` bytes (0 = all) from the link into end `side` and lets it handle its
    /// input; returns how many frames it consumed.
    fn deliver(&mut self, side: usize, len: usize) -> usize {
        let peer = 1 - side;
        let n = if len == 0 {
            self.ends[peer].link.len()
        } else {
            len.min(self.ends[peer].link.len())
        };
        let bytes = self.ends[peer].link.split_to(n);
        let end = &mut self.ends[side];
        end.input.push(&bytes);
        let frames = end.input.feed(&mut end.s, self.now);
        let count = frames.len();
        for f in frames {
            let Header { cmd, id, length } = f.header;
            match cmd {
                Cmd::Syn => {
                    let c = *self.ends[1 - side]
                        .opened
                        .get(&id)
                        .expect("SYN for a stream the peer never opened");
                    self.ends[side].cur.insert(id, c);
                }
                Cmd::Fin => {
                    let c = self.frame_conn(side, id, "FIN");
                    self.conns[c].fin_received[side] = true;
                }
                Cmd::Psh => {
                    let c = self.frame_conn(side, id, "PSH");
                    self.conns[c].psh_received[side] += u64::from(length);
                }
                Cmd::Cfm => {
                    let c = self.frame_conn(side, id, "CFM");
                    let conn = &mut self.conns[c];
                    conn.cfm_received[side] += u64::from(length);
                    assert!(
                        conn.cfm_received[side] <= conn.psh_sent[side],
                        "end {side}: CFM for more than was sent on {id}"
                    );
                }
                Cmd::Vrm => {
                    let end = &mut self.ends[side];
                    if end.vrms.took((id, length)) == VrmIn::PingAnswer {
                        assert!(
                            end.s.stats().rtt.is_some(),
                            "end {side}: ping answer not taken"
                        );
                    }
                }
                Cmd::Pin => {}
                Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set => panic!("end {side}: took {cmd:?}"),
            }
        }
        // Handled frames emit events; the model follows them before anything else.
        self.drain_events();
        count
    }

    fn handle(&self, side: usize, sel: usize) -> Option<(u16, usize)> {
        let h = &self.ends[side].handles;
        if h.is_empty() {
            return None;
        }
        let id = h[sel % h.len()];
        Some((id, self.ends[side].live[&id]))
    }

    /// Reads from a held stream and checks the bytes; returns how many were read, or
    /// `None` at end-of-file or when nothing is buffered.
    fn read(&mut self, side: usize, sel: usize, len: usize, chunk: bool) -> Option<usize> {
        let (id, c) = self.handle(side, sel)?;
        let peer = 1 - side;
        let s = &mut self.ends[side].s;
        let readable = s.readable_len(s.sid(id));
        let got: Result<Option<Bytes>, ReadError> = if chunk {
            s.read_chunk(s.sid(id), len)
        } else {
            let mut buf = vec![0u8; len];
            s.read(s.sid(id), &mut buf).map(|n| {
                buf.truncate(n);
                (n > 0 || len == 0).then(|| Bytes::from(buf))
            })
        };
        let conn = &mut self.conns[c];
        match got {
            Ok(Some(bytes)) => {
                let n = bytes.len();
                assert!(n <= len && n <= readable, "read returned too much");
                let off = conn.read[side];
                assert!(
                    off + n as u64 <= conn.written[peer],
                    "end {side}: read more on {id} than the peer wrote"
                );
                let serial = conn.serial * 2 + peer as u64;
                for (i, b) in bytes.iter().enumerate() {
                    assert_eq!(
                        *b,
                        pattern(serial, off + i as u64),
                        "end {side}: stream {id} byte {} is wrong",
                        off + i as u64
                    );
                }
                conn.read[side] += n as u64;
                (n > 0).then_some(n)
            }
            Ok(None) => {
                assert!(conn.finished[side], "end {side}: EOF on {id} without a FIN");
                assert_eq!(
                    conn.read[side], conn.written[peer],
                    "end {side}: EOF on {id} before every written byte arrived"
                );
                None
            }
            Err(ReadError::Blocked) => {
                assert_eq!(readable, 0, "Blocked with data buffered");
                assert!(
                    !conn.finished[side],
                    "end {side}: Blocked instead of EOF on {id}"
                );
                None
            }
            Err(e) => panic!("end {side}: read on held stream {id}: {e:?}"),
        }
    }

    fn write(&mut self, side: usize, sel: usize, len: usize) {
        let Some((id, c)) = self.handle(side, sel) else {
            return;
        };
        let conn = &mut self.conns[c];
        // Only the part the write can accept gets the pattern (filling megabytes that
        // the window refuses would only slow the fuzzer down); accepting more than
        // `writable_len` fails below, and would show as wrong bytes at the reader.
        let writable = self.ends[side].s.writable_len(self.ends[side].s.sid(id));
        let mut data = vec![0u8; len];
        let k = len.min(writable);
        fill_pattern(
            conn.serial * 2 + side as u64,
            conn.written[side],
            &mut data[..k],
        );
        match self.ends[side].s.write(self.ends[side].s.sid(id), &data) {
            Ok(n) => {
                assert!(n <= writable, "write accepted more than writable_len");
                assert!(
                    n <= len && (n > 0 || len == 0),
                    "write accepted {n} of {len}"
                );
                conn.written[side] += n as u64;
            }
            Err(WriteError::Blocked) => assert!(len > 0),
            Err(WriteError::PeerClosed) => {
                assert!(conn.finished[side], "PeerClosed before the peer's FIN");
            }
            Err(e) => panic!("end {side}: write on held stream {id}: {e:?}"),
        }
    }

    fn open(&mut self, side: usize) {
        let used = self.ends[side].s.stream_ids();
        match self.ends[side].s.open() {
            Ok(StreamId { num: id, .. }) => {
                assert!(
                    !self.ends[side].live.contains_key(&id),
                    "end {side}: ID {id} reused while its stream still exists"
                );
                let end = &mut self.ends[side];
                assert_eq!(
                    Some(id),
                    next_free_id(end.s.role(), end.last_opened, &used),
                    "end {side}: open did not hand out the next free ID"
                );
                end.last_opened = Some(id);
                if let Some(&old) = self.ends[1 - side].opened.get(&id) {
                    let o = &self.conns[old];
                    assert!(
                        o.removed[side] || o.held[side] == Held::Unseen && !o.fin_sent[side],
                        "end {side}: ID {id} reused before the close handshake"
                    );
                }
                let c = self.conns.len();
                let mut held = [Held::Unseen; 2];
                held[side] = Held::Open;
                self.conns.push(Conn {
                    id,
                    opener: side,
                    serial: c as u64,
                    written: [0; 2],
                    read: [0; 2],
                    held,
                    finished: [false; 2],
                    fin_sent: [false; 2],
                    fin_received: [false; 2],
                    removed: [false; 2],
                    psh_sent: [0; 2],
                    cfm_received: [0; 2],
                    psh_received: [0; 2],
                    cfm_sent: [0; 2],
                });
                let end = &mut self.ends[side];
                end.live.insert(id, c);
                end.opened.insert(id, c);
                end.cur.insert(id, c);
                end.handles.push(id);
            }
            Err(OpenError::IdsExhausted) => {}
            Err(e) => panic!("end {side}: open failed: {e:?}"),
        }
    }

    fn accept(&mut self, side: usize) -> bool {
        let end = &mut self.ends[side];
        let got = end.s.accept().map(|i| i.num);
        assert_eq!(got, end.backlog.pop_front(), "end {side}: accept order");
        let Some(id) = got else {
            return false;
        };
        end.handles.push(id);
        let c = end.live[&id];
        self.conns[c].held[side] = Held::Open;
        true
    }

    fn close(&mut self, side: usize, sel: usize) {
        let Some((id, c)) = self.handle(side, sel) else {
            return;
        };
        let sid = self.ends[side].s.sid(id);
        self.ends[side]
            .s
            .close(sid)
            .unwrap_or_else(|e| panic!("end {side}: close of held stream {id}: {e:?}"));
        self.conns[c].held[side] = Held::Released;
        self.ends[side].handles.retain(|&h| h != id);
    }

    fn advance(&mut self, d: Duration) {
        if self.elapsed + d > PAIR_MAX_ELAPSED {
            return;
        }
        self.elapsed += d;
        self.now += d;
        for end in &mut self.ends {
            if end.s.poll_timeout().is_some_and(|t| t <= self.now) {
                end.s.handle_timeout(self.now);
            }
        }
    }

    fn step(&mut self, op: PairOp) {
        match op {
            PairOp::Open { side } => self.open(side.into()),
            PairOp::Accept { side } => {
                self.accept(side.into());
            }
            PairOp::Read { side, stream, len } => {
                self.read(side.into(), stream.into(), len.into(), false);
            }
            PairOp::ReadChunk { side, stream, max } => {
                self.read(side.into(), stream.into(), max.into(), true);
            }
            PairOp::Write { side, stream, len } => {
                self.write(side.into(), stream.into(), 3 * usize::from(len));
            }
            PairOp::Close { side, stream } => self.close(side.into(), stream.into()),
            PairOp::Ping { side } => {
                let now = self.now;
                let end = &mut self.ends[usize::from(side)];
                if end.s.ping(now) {
                    end.pinged = true;
                }
            }
            PairOp::Transmit { side, limit } => self.transmit(side.into(), op_limit(limit)),
            PairOp::Deliver { side, len } => {
                self.deliver(side.into(), len.into());
            }
            PairOp::Advance { ms } => self.advance(Duration::from_millis(4 * u64::from(ms))),
        }
        self.drain_events();
        self.check();
    }

    fn check(&self) {
        let c = &self.config;
        for (side, end) in self.ends.iter().enumerate() {
            assert!(
                !end.s.is_ended(),
                "end {side} ended: {:?}",
                end.s.end_reason()
            );
            let st = end.s.stats();
            assert!(
                st.buffered_in <= c.max_buffered_in,
                "end {side}: buffered_in"
            );
            assert!(
                st.buffered_out <= c.max_buffered_out,
                "end {side}: buffered_out"
            );
            assert_eq!(st.protocol_errors, 0);
            for &id in end.live.keys() {
                let n = end.s.readable_len(end.s.sid(id));
                assert!(
                    n <= c.window as usize,
                    "end {side}: stream {id} over the window"
                );
            }
        }
    }

    /// Once the link is drained, both ends agree on which streams exist, and each end's
    /// stream count is what its events announced.
    fn check_agreement(&self) {
        for conn in &self.conns {
            assert_eq!(
                conn.removed[0], conn.removed[1],
                "the ends disagree on whether stream {} exists",
                conn.id
            );
        }
        for (side, end) in self.ends.iter().enumerate() {
            assert_eq!(
                end.s.stats().streams,
                end.live.len() + end.refused.len(),
                "end {side}: stream count disagrees with the events"
            );
        }
    }

    /// Moves everything until nothing moves: transmits, delivers, accepts and reads on
    /// both ends. Panics if that does not settle (a livelock).
    fn settle(&mut self, read: bool) {
        for _ in 0..10_000 {
            let mut progress = false;
            for side in 0..2 {
                while self.accept(side) {
                    progress = true;
                }
                if read {
                    for i in 0..self.ends[side].handles.len() {
                        while self.read(side, i, usize::MAX, true).is_some() {
                            progress = true;
                        }
                    }
                }
                self.transmit(side, usize::MAX);
                self.check();
            }
            for side in 0..2 {
                // Input paused at a buffer bound resumes here too, once reads made room.
                if self.deliver(side, 0) > 0 {
                    progress = true;
                }
                self.check();
            }
            if !progress {
                return;
            }
        }
        panic!("the link does not settle");
    }
}

/// Fuzzes two sessions joined by an in-memory link.
///
/// Input: [`CONFIG_LEN`] configuration bytes ([`config_from`], both ends alike, with
/// an hour's keepalive timeout), then [`PairOp`]s until the input ends; then both
/// applications accept and read everything until the link settles, close every stream
/// and let the link settle again.
///
/// Checks, at every step: neither session ends or sees a protocol error; both stay
/// within their buffer bounds and every stream's `readable_len ≤ window`; every byte a
/// read returns is the next byte the peer's writes accepted on that stream (so no
/// loss, duplication, reordering or cross-talk, including across ID reuse); EOF comes
/// only after the peer's FIN and every written byte; a sender never has more than a
/// window of unconfirmed data on a stream, and never confirms bytes its application
/// has not read; events match the model (`Incoming` only for a stream the peer
/// opened, `Finished` only after the peer's FIN, `Closed` only after both FINs and
/// the application's close); an ID is never reopened before its close handshake
/// finished on that end, and `open` hands out the next free ID after the last one;
/// accepts come in `Incoming` order; every VRM request (a ping) is answered once, in
/// order, and answers are never answered. After the final settle: both ends agree on
/// which streams exist, and their stream counts match the events; every byte written
/// on a stream whose reader still holds it has been read; pings were answered and no
/// answer is owed; after closing everything no stream is left on either end and no
/// byte is buffered.
pub fn pair(data: &[u8]) {
    let mut inp = Input::new(data);
    let config = Config {
        keepalive_timeout: PAIR_TIMEOUT,
        ..config_from(inp.array::<CONFIG_LEN>())
    };
    let now = Instant::now();
    let end = |role| End {
        s: Session::new(config.clone(), role, now).expect("valid config"),
        input: InputLog::new(config.max_frame),
        out_dec: Decoder::new(u32::MAX),
        link: BytesMut::new(),
        live: HashMap::new(),
        opened: HashMap::new(),
        cur: HashMap::new(),
        refused: HashMap::new(),
        backlog: VecDeque::new(),
        handles: Vec::new(),
        pinged: false,
        vrms: Vrms::default(),
        last_opened: None,
    };
    let mut run = PairRun {
        ends: [end(Role::Dialer), end(Role::Acceptor)],
        conns: Vec::new(),
        config,
        now,
        elapsed: Duration::ZERO,
    };
    while !inp.is_empty() {
        let op = PairOp::decode(&mut inp);
        run.step(op);
    }

    run.settle(true);
    run.check_agreement();
    for conn in &run.conns {
        for side in 0..2 {
            let peer = 1 - side;
            if conn.held[side] == Held::Open {
                assert_eq!(
                    conn.read[side], conn.written[peer],
                    "stream {} lost bytes from end {peer} to end {side}",
                    conn.id
                );
            }
        }
    }
    for (side, end) in run.ends.iter().enumerate() {
        if end.pinged {
            assert!(
                end.s.stats().rtt.is_some(),
                "end {side}: ping never answered"
            );
        }
        assert!(end.vrms.ping.is_none(), "end {side}: ping never answered");
        assert!(
            end.vrms.owed.is_empty(),
            "end {side}: VRM answers never sent: {:x?}",
            end.vrms.owed
        );
    }

    for side in 0..2 {
        while !run.ends[side].handles.is_empty() {
            run.close(side, 0);
        }
    }
    run.settle(false);
    run.check_agreement();
    for (side, end) in run.ends.iter().enumerate() {
        let st = end.s.stats();
        assert_eq!(st.streams, 0, "end {side}: streams left after closing all");
        assert!(end.live.is_empty(), "end {side}: a Closed event is missing");
        assert_eq!(
            (st.buffered_in, st.buffered_out),
            (0, 0),
            "end {side}: bytes left"
        );
    }
    for conn in &run.conns {
        for side in 0..2 {
            assert!(
                conn.removed[side] || conn.held[side] == Held::Unseen,
                "stream {} not removed on end {side}",
                conn.id
            );
            assert!(
                conn.psh_received[side] >= conn.read[side],
                "end {side} read bytes that never arrived"
            );
        }
    }
}

// ----- seed corpus ------------------------------------------------------------------

/// The seed corpus: `(target, name, input)` for every target (`decode`, `session`,
/// `pair`, `ext`). `tests/fuzz_corpus.rs` writes them to `fuzz/corpus/<target>/<name>`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let frame = |cmd: Cmd, id: u16, length: u32, payload: &[u8]| {
        let mut v = Header::new(cmd, id, length).to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    };
    let mut all = Vec::new();
    for (cmd, len) in [
        (Cmd::Syn, 0),
        (Cmd::Psh, 5),
        (Cmd::Cfm, 5),
        (Cmd::Vrm, 0x1122_3344),
        (Cmd::Pin, 0),
        (Cmd::Fin, 0),
    ] {
        let payload: &[u8] = if cmd == Cmd::Psh { b"hello" } else { b"" };
        all.extend(frame(cmd, 7, len, payload));
    }

    let mut ext_all = all.clone();
    for (cmd, len) in [(Cmd::Wnd, 1 << 20), (Cmd::Rst, 3), (Cmd::Gwy, 0)] {
        ext_all.extend(frame(cmd, 7, len, b""));
    }

    // decode: mode (max_frame, extended), chunk plan, wire.
    let decode_seed = |sel: u8, plan: &[u8], wire: &[u8]| {
        let mut v = vec![sel, plan.len() as u8];
        v.extend_from_slice(plan);
        v.extend_from_slice(wire);
        v
    };
    let d = [
        ("all-commands-whole", decode_seed(5, &[], &all)),
        ("all-commands-chunks", decode_seed(5, &[3, 0, 10, 1], &all)),
        (
            "psh-too-large",
            decode_seed(2, &[4], &frame(Cmd::Psh, 1, 8, &[0; 8])),
        ),
        (
            "psh-partial",
            decode_seed(5, &[2], &frame(Cmd::Psh, 1, 100, &[1; 50])),
        ),
        (
            "unknown-command",
            decode_seed(5, &[1], &[9, 0, 0, 0, 0, 0, 0]),
        ),
        ("http", decode_seed(5, &[4, 3], b"GET / HTTP/1.1\r\n\r\n")),
        (
            "tls",
            decode_seed(5, &[1], &[0x16, 3, 1, 0, 0x40, 1, 0, 0, 0x3c]),
        ),
        ("ssh", decode_seed(5, &[2], b"SSH-2.0-OpenSSH_9.6\r\n")),
        (
            "http2-preface",
            decode_seed(5, &[7], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ),
        (
            "max-frame-zero",
            decode_seed(0, &[], &frame(Cmd::Psh, 1, 0, &[])),
        ),
        ("extended-all-commands", decode_seed(5 | 8, &[4], &ext_all)),
        (
            "extended-after-two-frames",
            decode_seed(5 | 8 | 2 << 4, &[6, 1], &ext_all),
        ),
        (
            "extension-before-the-switch",
            decode_seed(
                5 | 8 | 1 << 4,
                &[3],
                &[frame(Cmd::Rst, 1, 2, b""), frame(Cmd::Syn, 1, 0, b"")].concat(),
            ),
        ),
        (
            "extended-unknown",
            decode_seed(5 | 8, &[], &[9, 0, 0, 0, 0, 0, 0]),
        ),
    ];
    for (name, v) in d {
        out.push(("decode", name.to_string(), v));
    }

    // session: configuration, then ops.
    use SessionOp as S;
    let small = [3, 1, 2, 2, 1, 3, 0, 5];
    let default_like = [7, 1, 5, 7, 3, 5, 40, 9];
    let acceptor = [4, 1, 3, 3, 2, 4, 5, 0x83];
    let syn = |id: u16| S::Frame {
        cmd: 0,
        id,
        length: 0,
    };
    let psh = |id: u16, length: u32| S::Frame { cmd: 2, id, length };
    let s = [
        (
            "open-write-transmit",
            small,
            vec![
                S::Open,
                S::Write {
                    stream: 0,
                    len: 100,
                },
                S::Transmit { limit: 500 },
                S::Frame {
                    cmd: 0x83,
                    id: 0,
                    length: 300,
                },
                S::Transmit { limit: 60_000 },
                S::Events { n: 10 },
            ],
        ),
        (
            "peer-opens-and-pushes",
            small,
            vec![
                syn(9),
                psh(9, 100),
                S::Events { n: 5 },
                S::Accept,
                S::Read { stream: 0, len: 60 },
                S::ReadChunk {
                    stream: 0,
                    max: 1000,
                },
                S::Transmit { limit: 100 },
                S::Frame {
                    cmd: 1,
                    id: 9,
                    length: 0,
                },
                S::Read { stream: 0, len: 10 },
                S::Close { stream: 0 },
                S::Transmit { limit: 100 },
            ],
        ),
        (
            "window-overrun",
            small,
            vec![syn(1), psh(1, 1024), psh(1, 1024), S::Events { n: 9 }],
        ),
        (
            "backlog-refusal",
            small,
            vec![syn(1), syn(2), syn(3), syn(4), S::Transmit { limit: 0 }],
        ),
        (
            "keepalive",
            default_like,
            vec![
                S::Timer,
                S::Transmit { limit: 0 },
                S::Advance { ms: 60_000 },
                S::Frame {
                    cmd: 5,
                    id: 0,
                    length: 0,
                },
                S::Timer,
                S::Timer,
                S::Timer,
                S::Events { n: 3 },
            ],
        ),
        (
            "vrm-flood",
            small,
            (0..12)
                .map(|i| S::Frame {
                    cmd: 4,
                    id: i,
                    length: 77,
                })
                .chain([S::Ping, S::Transmit { limit: 0 }])
                .collect(),
        ),
        (
            "close-handshake",
            acceptor,
            vec![
                S::Open,
                S::Write {
                    stream: 0,
                    len: 2000,
                },
                S::Close { stream: 0 },
                S::Transmit { limit: 10 },
                S::Transmit { limit: 10_000 },
                S::Frame {
                    cmd: 0x81,
                    id: 0,
                    length: 0,
                },
                S::Open,
                S::Events { n: 9 },
            ],
        ),
        (
            "stall-input",
            [6, 1, 3, 7, 0, 5, 0, 5],
            vec![
                syn(5),
                syn(6),
                psh(5, 1024),
                psh(6, 1024),
                psh(5, 500),
                S::Accept,
                S::Read {
                    stream: 0,
                    len: 4000,
                },
                S::Feed(vec![]),
                S::Eof,
            ],
        ),
        (
            "http-peer",
            small,
            vec![S::Feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())],
        ),
        (
            "truncated-eof",
            small,
            vec![S::Feed(vec![2, 1, 0, 9, 0, 0, 0, 1, 2]), S::Eof],
        ),
    ];
    for (name, cfg, ops) in s {
        out.push(("session", name.to_string(), encode_session(cfg, &ops)));
    }

    // pair: configuration, then ops.
    use PairOp as P;
    let a = 0;
    let b = 1;
    let exchange = |side: u8| {
        vec![
            P::Open { side },
            P::Write {
                side,
                stream: 0,
                len: 700,
            },
            P::Transmit { side, limit: 1000 },
            P::Deliver {
                side: 1 - side,
                len: 5,
            },
            P::Deliver {
                side: 1 - side,
                len: 0,
            },
            P::Accept { side: 1 - side },
            P::Read {
                side: 1 - side,
                stream: 0,
                len: 1000,
            },
            P::Write {
                side: 1 - side,
                stream: 0,
                len: 50,
            },
            P::Transmit {
                side: 1 - side,
                limit: 0,
            },
            P::Deliver { side, len: 0 },
            P::Read {
                side,
                stream: 0,
                len: 9,
            },
        ]
    };
    let p = [
        ("exchange-a", small, exchange(a)),
        ("exchange-b", default_like, exchange(b)),
        (
            "close-and-reuse",
            small,
            vec![
                P::Open { side: a },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 0 },
                P::Accept { side: b },
                P::Close { side: a, stream: 0 },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 0 },
                P::Close { side: b, stream: 0 },
                P::Transmit { side: b, limit: 0 },
                P::Deliver { side: a, len: 0 },
                P::Open { side: a },
                P::Write {
                    side: a,
                    stream: 0,
                    len: 10,
                },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 3 },
            ],
        ),
        (
            "refused",
            [3, 1, 2, 0, 1, 3, 0, 5],
            vec![
                P::Open { side: b },
                P::Write {
                    side: b,
                    stream: 0,
                    len: 20,
                },
                P::Transmit { side: b, limit: 0 },
                P::Deliver { side: a, len: 0 },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 0 },
                P::Read {
                    side: b,
                    stream: 0,
                    len: 5,
                },
            ],
        ),
        (
            "many-streams-flow",
            [1, 1, 1, 6, 2, 2, 8, 5],
            (0..4)
                .flat_map(|i| {
                    [
                        P::Open { side: i % 2 },
                        P::Write {
                            side: i % 2,
                            stream: i,
                            len: 30,
                        },
                        P::Transmit {
                            side: i % 2,
                            limit: 7,
                        },
                        P::Deliver {
                            side: 1 - i % 2,
                            len: 13,
                        },
                    ]
                })
                .chain([
                    P::Ping { side: a },
                    P::Advance { ms: 5000 },
                    P::Transmit { side: a, limit: 0 },
                    P::Deliver { side: b, len: 0 },
                ])
                .collect(),
        ),
    ];
    for (name, cfg, ops) in p {
        out.push(("pair", name.to_string(), encode_pair(cfg, &ops)));
    }

    for (name, data) in ext::seeds() {
        out.push(("ext", name, data));
    }
    out
}
