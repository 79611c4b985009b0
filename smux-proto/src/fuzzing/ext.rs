//! The [`ext`] target: two sessions that agree on the extensions (or fall back, when
//! one end has them off), joined by an in-memory link the input controls, with
//! half-close, reset and go-away mixed into the usual stream traffic.
//!
//! The model follows every frame on the wire, attributed to the stream lifetime it was
//! sent for, and every event and call result on both ends. It derives each end's
//! agreement from the frames that end took, by the rules in `negotiate` (so it checks
//! that the order of frames tells both ends the truth), and checks where each end's
//! offer (HELLO, ASK) stands among its frames. Every stream of a session where both
//! ends have the extensions is extended, on each end once that end knows. Extended
//! streams close with `FIN(0)` (this end writes no more, or a RST standing for it) and
//! `FIN(1)` (this end's last frame on the stream, once its application released the
//! stream and the peer's first FIN arrived); base streams with one FIN each way.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{
    config_from, fill_pattern, next_free_id, op_limit, pattern, transmit, Input, InputLog, VrmIn,
    Vrms, CONFIG_LEN, PAIR_MAX_ELAPSED, PAIR_TIMEOUT,
};
use crate::error::{EndReason, OpenError, ReadError, WriteError};
use crate::frame::{Cmd, Decoder, Header};
use crate::id::Role;
use crate::negotiate::{Agreement, ASK_ID, ASSUMED_WINDOW, CAPS, HELLO_ID, SET_RECV_WINDOW};
use crate::probe::{verify_code, Probe, Verdict};
use crate::session::{Event, Session, StreamId, RESET_REFUSED};
use crate::Config;

/// Whether `SMUX_FUZZ_TRACE` is set: then [`ext`] prints every op, frame and event to
/// stderr (for reading a crash input; read once per process).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SMUX_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Number of input bytes the [`ExtSetup`] byte takes (the probe values follow it when
/// there is a probe).
pub const EXT_SETUP_LEN: usize = 1;

/// `max_window` as a multiple of `window`, by [`ExtSetup::max_window`]; the last entry
/// stands for the default (16 MiB).
const MAX_WINDOWS: [u32; 4] = [1, 4, 64, 0];

/// The acceptor's `window` relative to the dialer's, by [`ExtSetup::acceptor_window`]:
/// multiplied by the first value, divided by the second.
const ACCEPTOR_WINDOWS: [(u32, u32); 4] = [(1, 1), (4, 1), (1, 4), (16, 1)];

/// The part of an [`ext`] scenario that [`config_from`] does not cover.
///
/// Encoding: one byte; bits 0-1: `1` turns extensions off on the dialer, `2` on the
/// acceptor, anything else leaves both on; bits 2-3: [`ExtSetup::max_window`]; bit 4:
/// a probe follows (`v1: u16, v2: u32`); bit 5: the probed end (0 dialer, 1 acceptor);
/// bits 6-7: [`ExtSetup::acceptor_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtSetup {
    /// `Config::extensions` of the dialer (end 0) and the acceptor (end 1).
    pub extensions: [bool; 2],
    /// `max_window`: `window` times 1, 4 or 64, or the default 16 MiB (`% 4`).
    pub max_window: u8,
    /// A probe at the very start: the probed end and the challenge values.
    pub probe: Option<(u8, u16, u32)>,
    /// The acceptor's `window` (and `cfm_threshold`): the dialer's, times 4, a quarter
    /// of it, or times 16 (`% 4`; at most 256 frames, at least 1 byte), so that the
    /// ends' windows differ and each end's writes must follow the other's.
    pub acceptor_window: u8,
}

impl ExtSetup {
    /// Both ends with extensions on, windows that may grow 64-fold, no probe.
    pub const BOTH: ExtSetup = ExtSetup {
        extensions: [true, true],
        max_window: 2,
        probe: None,
        acceptor_window: 0,
    };

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let off = match self.extensions {
            [false, _] => 1,
            [true, false] => 2,
            [true, true] => 0,
        };
        let mut b = off | (self.max_window & 3) << 2 | (self.acceptor_window & 3) << 6;
        if let Some((side, _, _)) = self.probe {
            b |= 0x10 | (side & 1) << 5;
        }
        out.push(b);
        if let Some((_, v1, v2)) = self.probe {
            out.extend_from_slice(&v1.to_le_bytes());
            out.extend_from_slice(&v2.to_le_bytes());
        }
    }

    fn decode(inp: &mut Input<'_>) -> ExtSetup {
        let b = inp.u8();
        let extensions = match b & 3 {
            1 => [false, true],
            2 => [true, false],
            _ => [true, true],
        };
        let probe = (b & 0x10 != 0).then(|| ((b >> 5) & 1, inp.u16(), inp.u32()));
        ExtSetup {
            extensions,
            max_window: (b >> 2) & 3,
            probe,
            acceptor_window: b >> 6,
        }
    }
}

/// One step of an [`ext`] scenario. `side` 0 is the dialer, 1 the acceptor.
///
/// Encoding: one opcode byte: bit 0 is the side, `(b >> 1) % 14` the op in the order of
/// the variants; then the variant's fields, little-endian. A `stream` byte picks one of
/// the streams that side's application holds (`stream % count`; nothing happens when
/// it holds none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtOp {
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
    /// 6: [`Session::shutdown`] (`stream: u8`).
    Shutdown {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
    },
    /// 7: [`Session::reset`] (`stream: u8, code: u32`).
    Reset {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// The error code.
        code: u32,
    },
    /// 8: [`Session::go_away`] (`code: u8`).
    GoAway {
        /// The side.
        side: u8,
        /// The error code.
        code: u8,
    },
    /// 9: [`Session::poll_transmit`] onto the link, with a data limit (`limit: u16`; 0
    /// means no limit).
    Transmit {
        /// The sending side.
        side: u8,
        /// The limit.
        limit: u16,
    },
    /// 10: `len` bytes (0 = all) move off the link into `side`, then `handle_input`
    /// (`len: u16`).
    Deliver {
        /// The receiving side.
        side: u8,
        /// Bytes to move.
        len: u16,
    },
    /// 11: time passes by `ms * 4` milliseconds on both ends, then timers run
    /// (`ms: u16`; the side bit is ignored).
    Advance {
        /// A quarter of the step, in milliseconds.
        ms: u16,
    },
    /// 12: [`Session::ping`].
    Ping {
        /// The side.
        side: u8,
    },
    /// 13: [`Session::start_agreement`].
    StartAgreement {
        /// The side.
        side: u8,
    },
}

impl ExtOp {
    /// Appends the op's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let op = |code: u8, side: u8| code << 1 | (side & 1);
        match *self {
            ExtOp::Open { side } => out.push(op(0, side)),
            ExtOp::Accept { side } => out.push(op(1, side)),
            ExtOp::Read { side, stream, len } => {
                out.extend_from_slice(&[op(2, side), stream]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            ExtOp::ReadChunk { side, stream, max } => {
                out.extend_from_slice(&[op(3, side), stream]);
                out.extend_from_slice(&max.to_le_bytes());
            }
            ExtOp::Write { side, stream, len } => {
                out.extend_from_slice(&[op(4, side), stream]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            ExtOp::Close { side, stream } => out.extend_from_slice(&[op(5, side), stream]),
            ExtOp::Shutdown { side, stream } => out.extend_from_slice(&[op(6, side), stream]),
            ExtOp::Reset { side, stream, code } => {
                out.extend_from_slice(&[op(7, side), stream]);
                out.extend_from_slice(&code.to_le_bytes());
            }
            ExtOp::GoAway { side, code } => out.extend_from_slice(&[op(8, side), code]),
            ExtOp::Transmit { side, limit } => {
                out.push(op(9, side));
                out.extend_from_slice(&limit.to_le_bytes());
            }
            ExtOp::Deliver { side, len } => {
                out.push(op(10, side));
                out.extend_from_slice(&len.to_le_bytes());
            }
            ExtOp::Advance { ms } => {
                out.push(op(11, 0));
                out.extend_from_slice(&ms.to_le_bytes());
            }
            ExtOp::Ping { side } => out.push(op(12, side)),
            ExtOp::StartAgreement { side } => out.push(op(13, side)),
        }
    }

    fn decode(inp: &mut Input<'_>) -> ExtOp {
        let b = inp.u8();
        let side = b & 1;
        match (b >> 1) % 14 {
            0 => ExtOp::Open { side },
            1 => ExtOp::Accept { side },
            2 => ExtOp::Read {
                side,
                stream: inp.u8(),
                len: inp.u16(),
            },
            3 => ExtOp::ReadChunk {
                side,
                stream: inp.u8(),
                max: inp.u16(),
            },
            4 => ExtOp::Write {
                side,
                stream: inp.u8(),
                len: inp.u16(),
            },
            5 => ExtOp::Close {
                side,
                stream: inp.u8(),
            },
            6 => ExtOp::Shutdown {
                side,
                stream: inp.u8(),
            },
            7 => ExtOp::Reset {
                side,
                stream: inp.u8(),
                code: inp.u32(),
            },
            8 => ExtOp::GoAway {
                side,
                code: inp.u8(),
            },
            9 => ExtOp::Transmit {
                side,
                limit: inp.u16(),
            },
            10 => ExtOp::Deliver {
                side,
                len: inp.u16(),
            },
            11 => ExtOp::Advance { ms: inp.u16() },
            12 => ExtOp::Ping { side },
            _ => ExtOp::StartAgreement { side },
        }
    }
}

/// Encodes a whole [`ext`] scenario: configuration bytes, setup, then ops.
pub fn encode_ext(config: [u8; CONFIG_LEN], setup: ExtSetup, ops: &[ExtOp]) -> Vec<u8> {
    let mut out = config.to_vec();
    setup.encode(&mut out);
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// Where one end's application stands with one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Not announced to this end (not yet arrived, or refused before `Incoming`).
    Unseen,
    /// Announced by `Incoming`, not yet accepted.
    Backlog,
    /// Held by the application.
    Open,
    /// Closed or reset by the application.
    Released,
    /// Refused by this end's session (accept backlog full, or going away).
    Refused,
}

impl Held {
    /// The application still has the stream (or will get it from `accept`).
    fn holds(self) -> bool {
        matches!(self, Held::Backlog | Held::Open)
    }

    /// The session gave the stream up on this end.
    fn gone(self) -> bool {
        matches!(self, Held::Released | Held::Refused)
    }
}

/// One stream's lifetime, from the `open` that created it to its removal on both ends.
/// Index 0 is about the dialer, 1 about the acceptor.
#[derive(Debug)]
struct Conn {
    id: u16,
    /// The end that opened it.
    opener: usize,
    /// Identifies the pattern of each direction's data: `serial * 2 + writer`.
    serial: u64,
    /// Extended: both ends have the extensions on (each end's record of it is extended
    /// once that end knows).
    ext: bool,
    /// Bytes each end's writes accepted, and bytes each end read of the other's.
    written: [u64; 2],
    read: [u64; 2],
    held: [Held; 2],
    /// Each end has a record of the stream (from its open or the SYN it took, until
    /// its `Closed` event), and ever had one.
    exists: [bool; 2],
    known: [bool; 2],
    /// Each end's application shut its write side (extended streams).
    shut: [bool; 2],
    /// The code each end's application reset the stream with (extended streams).
    reset_code: [Option<u32>; 2],
    /// The code of the `Reset` event each end saw.
    reset_seen: [Option<u32>; 2],
    /// Each end saw `Finished`.
    finished: [bool; 2],
    /// Each end sent, and took, `WND(0)`: the sender released the stream while its peer
    /// still wrote, and the peer's writes end (as after a base FIN).
    stop_sent: [bool; 2],
    stopped: [bool; 2],
    /// Each end's last write returned `Blocked` (read: `Blocked`) and no event since.
    write_blocked: [bool; 2],
    read_blocked: [bool; 2],
    /// Each end's shutdown returned `Blocked` (agreement pending) and no `Writable` since.
    shut_wait: [bool; 2],
    /// Each end's application released the stream before its end knew the agreement:
    /// the frames that differ between the modes waited for it.
    released_pending: [bool; 2],
    syn_sent: bool,
    /// Frames each end sent on the stream: the first FIN (`FIN(0)`; the only FIN of a
    /// base stream), the last FIN (`FIN(1)`), a RST with its code.
    fin0_sent: [bool; 2],
    fin1_sent: [bool; 2],
    rst_sent: [Option<u32>; 2],
    /// The same frames, as each end received them.
    fin0_recv: [bool; 2],
    fin1_recv: [bool; 2],
    rst_recv: [Option<u32>; 2],
    /// PSH payload each end sent, and CFM bytes each end received.
    psh_sent: [u64; 2],
    cfm_received: [u64; 2],
    /// PSH payload each end received, and CFM bytes each end sent.
    psh_received: [u64; 2],
    cfm_sent: [u64; 2],
    /// The largest WND each end sent and received.
    wnd_sent: [u32; 2],
    wnd_received: [u32; 2],
}

impl Conn {
    /// The peer's first FIN (or a RST standing for it) reached end `side`.
    fn peer_fin_recv(&self, side: usize) -> bool {
        self.fin0_recv[side] || self.fin1_recv[side] || self.rst_recv[side].is_some()
    }

    /// End `side` has sent and received the last FIN, by the frames: its record must go.
    fn handshake_done(&self, side: usize) -> bool {
        if self.ext {
            self.fin1_sent[side] && self.fin1_recv[side]
        } else {
            self.fin0_sent[side] && self.fin0_recv[side]
        }
    }

    /// End `side` will write no more: an EOF at its peer is due once the bytes arrived.
    fn done_writing(&self, side: usize) -> bool {
        self.held[side].gone() || self.shut[side]
    }

    /// Data may have been dropped: the stream was reset (or refused) on an end.
    fn aborted(&self) -> bool {
        self.ext
            && (self.reset_code.iter().any(Option::is_some)
                || self.rst_sent.iter().any(Option::is_some))
    }
}

/// One end of an [`ext`] scenario.
struct End {
    s: Session,
    role: Role,
    /// Its `Config::extensions`.
    ext_config: bool,
    input: InputLog,
    out_dec: Decoder,
    /// Bytes this end transmitted that the other end has not taken yet, and their
    /// frames, each with the stream lifetime it was sent for.
    link: BytesMut,
    frames: VecDeque<(Header, Option<usize>)>,
    /// The stream lifetime each ID stands for on this end: set by its opens and by the
    /// SYNs it takes.
    cur: HashMap<u16, usize>,
    /// `Incoming` streams not yet accepted, in order.
    backlog: VecDeque<u16>,
    /// Streams the application holds, in a stable order for selectors.
    handles: Vec<u16>,
    pinged: bool,
    /// This end called `go_away` or took a GWY.
    going_away: bool,
    gwy_sent: bool,
    /// The agreement as the rules in `negotiate` derive it from the frames this end took.
    agreement: Agreement,
    /// Its `Agreed` event came.
    agreed: bool,
    /// Its offer (HELLO from the acceptor, ASK from the dialer) is due (the rules have
    /// it queued), and left.
    offer_due: bool,
    offer_sent: bool,
    /// HELLO was due before the acceptor took its first frame: nothing goes ahead of it.
    offer_due_early: bool,
    /// The dialer's first own frame just left: ASK must be its next frame.
    ask_next: bool,
    /// Frames it sent (a probe's answer included), frames it took, and whether it sent
    /// a frame of its own (not an offer or an answer).
    sent: u64,
    took: u64,
    own_sent: bool,
    /// Its pings and the answers it owes.
    vrms: Vrms,
    /// Its keepalive: when the next PIN is due, and whether one waits to leave.
    next_pin: Instant,
    pin_queued: bool,
    /// The peer's receive window from its SET, once taken; its own SET left.
    peer_set: Option<u32>,
    set_sent: bool,
    /// The ID its last successful `open` returned.
    last_opened: Option<u16>,
    /// The probe whose answer is still to come out of this end (and be stripped).
    probe: Option<Probe>,
    /// The session ended (`Drained`, or `PeerClosed` after `eof`).
    ended: bool,
    /// The peer drained and its adapter closed the transport: once everything it sent
    /// was taken, this end got `handle_eof`.
    eof: bool,
}

/// The [`ext`] scenario.
struct ExtRun {
    ends: [End; 2],
    conns: Vec<Conn>,
    /// Stream lifetimes by ID.
    by_id: HashMap<u16, Vec<usize>>,
    now: Instant,
    elapsed: Duration,
}

impl ExtRun {
    /// The stream lifetime `id` stands for on end `side`.
    fn cur(&self, side: usize, id: u16, what: &str) -> usize {
        *self.ends[side]
            .cur
            .get(&id)
            .unwrap_or_else(|| panic!("end {side}: {what} for stream {id}, never opened"))
    }

    /// Like [`ExtRun::cur`], for an event: the stream must exist on that end.
    fn event_conn(&self, side: usize, id: u16, what: &str) -> usize {
        let c = self.cur(side, id, what);
        assert!(
            self.conns[c].exists[side],
            "end {side}: {what} for stream {id}, which is gone"
        );
        c
    }

    fn drain_events(&mut self) {
        for side in 0..2 {
            while let Some(ev) = self.ends[side].s.poll_event() {
                self.on_event(side, ev);
            }
        }
    }

    fn on_event(&mut self, side: usize, ev: Event) {
        trace!("  end {side} event {ev:?}");
        let peer = 1 - side;
        match ev {
            Event::Agreed(a) => {
                let end = &mut self.ends[side];
                assert!(
                    end.ext_config,
                    "end {side}: Agreed({a:?}) with extensions off"
                );
                assert!(!end.agreed, "end {side}: Agreed twice");
                assert_eq!(
                    a, end.agreement,
                    "end {side}: Agreed({a:?}), but the frames it took say {:?}",
                    end.agreement
                );
                end.agreed = true;
            }
            Event::Incoming(StreamId { num: id, .. }) => {
                let c = self.event_conn(side, id, "Incoming");
                let ext = self.ends[side].s.is_extended(self.ends[side].s.sid(id));
                let conn = &mut self.conns[c];
                assert_eq!(conn.opener, peer, "end {side}: Incoming({id}) for its own");
                assert_eq!(conn.held[side], Held::Unseen, "Incoming({id}) twice");
                assert_eq!(
                    ext, conn.ext,
                    "the ends disagree on whether {id} is extended"
                );
                conn.held[side] = Held::Backlog;
                self.ends[side].backlog.push_back(id);
            }
            Event::Readable(StreamId { num: id, .. }) => {
                let c = self.event_conn(side, id, "Readable");
                let conn = &mut self.conns[c];
                assert!(
                    conn.held[side].holds(),
                    "end {side}: Readable({id}) released"
                );
                conn.read_blocked[side] = false;
            }
            Event::Writable(StreamId { num: id, .. }) => {
                let c = self.event_conn(side, id, "Writable");
                let conn = &mut self.conns[c];
                assert_eq!(conn.held[side], Held::Open, "end {side}: Writable({id})");
                conn.write_blocked[side] = false;
                conn.shut_wait[side] = false;
            }
            Event::Finished(StreamId { num: id, .. }) => {
                let c = self.event_conn(side, id, "Finished");
                let conn = &mut self.conns[c];
                assert!(!conn.finished[side], "end {side}: Finished({id}) twice");
                assert!(
                    conn.peer_fin_recv(side),
                    "end {side}: Finished({id}) before the peer's FIN"
                );
                assert!(
                    conn.held[side].holds(),
                    "end {side}: Finished({id}) released"
                );
                conn.finished[side] = true;
                conn.read_blocked[side] = false;
            }
            Event::Reset(StreamId { num: id, .. }, code) => {
                let c = self.event_conn(side, id, "Reset");
                let conn = &mut self.conns[c];
                assert!(conn.ext, "end {side}: Reset({id}) on a base stream");
                assert!(conn.held[side].holds(), "end {side}: Reset({id}) released");
                assert_eq!(conn.reset_seen[side], None, "end {side}: Reset({id}) twice");
                assert_eq!(
                    conn.rst_recv[side],
                    Some(code),
                    "end {side}: Reset({id}, {code}) is not the RST that arrived"
                );
                conn.reset_seen[side] = Some(code);
                conn.read_blocked[side] = false;
                conn.write_blocked[side] = false;
            }
            Event::Closed(StreamId { num: id, .. }) => {
                // Within one input batch the peer may free an ID and reopen it: the
                // `Closed` is about the oldest stream on the ID, which has been
                // released (the new one is at most in the backlog, with events of
                // its own).
                let c = *self.by_id[&id]
                    .iter()
                    .find(|&&o| self.conns[o].exists[side])
                    .unwrap_or_else(|| panic!("end {side}: Closed({id}), which is gone"));
                let conn = &mut self.conns[c];
                assert!(
                    conn.handshake_done(side),
                    "end {side}: stream {id} closed before its last FINs"
                );
                assert!(
                    conn.held[side].gone(),
                    "end {side}: stream {id} closed while the application holds it"
                );
                conn.exists[side] = false;
            }
            Event::Ended(reason) => {
                let end = &mut self.ends[side];
                let streams = end.s.stats().streams;
                match reason {
                    EndReason::Drained => {
                        assert!(end.going_away, "end {side}: drained without a go-away");
                        assert_eq!(streams, 0, "end {side}: drained with streams");
                    }
                    EndReason::PeerClosed => {
                        assert!(end.eof, "end {side}: PeerClosed without end-of-file");
                        assert!(
                            !end.going_away || streams > 0,
                            "end {side}: its go-away had run its course, yet PeerClosed"
                        );
                    }
                    r => panic!("end {side}: session ended: {r:?}"),
                }
                assert!(!end.ended, "end {side}: Ended twice");
                end.ended = true;
            }
        }
    }

    /// Polls end `side`'s output onto the link and checks every frame.
    fn transmit(&mut self, side: usize, limit: usize) {
        let end = &mut self.ends[side];
        let was_ended = end.s.is_ended();
        let (mut frames, mut wire) = transmit(&mut end.s, self.now, limit, &mut end.out_dec);
        assert!(
            !was_ended || frames.is_empty(),
            "an ended session sent frames"
        );
        if let Some(probe) = end.probe.filter(|_| !frames.is_empty()) {
            // A prober reads exactly one header and expects the verify answer.
            let answer = wire[..7].try_into().expect("7 bytes");
            assert_eq!(
                probe.judge(&answer),
                Verdict::Smux,
                "end {side}: the first frame after a probe is {:?}",
                frames[0].header
            );
            let h = frames[0].header;
            end.vrms.sent((h.id, h.length), &format!("end {side}"));
            end.sent += 1;
            wire.drain(..7);
            frames.remove(0);
            end.probe = None;
        }
        end.link.extend_from_slice(&wire);
        for f in frames {
            let c = self.sent_frame(side, f.header);
            self.ends[side].frames.push_back((f.header, c));
        }
    }

    /// Checks where a frame end `side` sends stands relative to its offer (`negotiate`,
    /// rules 2 and 3): the acceptor's HELLO goes ahead of everything but the answer to
    /// the first frame it took (when that frame made it due); the dialer's ASK follows
    /// its first own frame at once, with only answers ahead of them; a pending end sends
    /// a frame of its own only with its offer due.
    fn offer_order(&mut self, side: usize, h: Header) {
        let end = &mut self.ends[side];
        let is_offer = h.cmd == Cmd::Vrm && (h.id == HELLO_ID || h.id == ASK_ID);
        let is_answer = h.cmd == Cmd::Vrm && end.vrms.owed.front() == Some(&(h.id, h.length));
        let own = !is_offer && !is_answer;
        if end.ask_next {
            assert!(
                is_offer,
                "end {side}: {h:?} between its first own frame and ASK"
            );
            end.ask_next = false;
        }
        if own && end.agreement == Agreement::Pending {
            assert!(
                end.offer_due,
                "end {side}: {h:?} while the agreement is pending, and no offer due"
            );
        }
        if end.offer_due && !end.offer_sent && !is_offer {
            match end.role {
                Role::Acceptor => assert!(
                    is_answer && end.sent == 0 && !end.offer_due_early,
                    "end {side}: {h:?} ahead of HELLO"
                ),
                Role::Dialer if own => {
                    assert!(
                        !end.own_sent,
                        "end {side}: a second frame of its own ({h:?}) ahead of ASK"
                    );
                    end.ask_next = true;
                }
                Role::Dialer => {}
            }
        }
        end.own_sent |= own;
        end.sent += 1;
    }

    /// The most end `side` may have unconfirmed on stream `c` now: the peer's window
    /// (from its SET; until then the smaller of its own window and the protocol's
    /// 512 KiB), or more if the peer granted more (WND).
    fn send_limit(&self, side: usize, c: usize) -> u64 {
        let end = &self.ends[side];
        let assumed = end.s.config().window.min(ASSUMED_WINDOW);
        let base = end.peer_set.unwrap_or(assumed);
        u64::from(base.max(self.conns[c].wnd_received[side]))
    }

    /// Checks a frame end `side` sent; returns the stream lifetime it belongs to.
    fn sent_frame(&mut self, side: usize, h: Header) -> Option<usize> {
        trace!("  end {side} sends {h:?}");
        self.offer_order(side, h);
        let Header { cmd, id, length } = h;
        let config = self.ends[side].s.config();
        let (window, max_frame) = (config.window, config.max_frame);
        let max_window = config.max_window.max(window);
        let assumed = window.min(ASSUMED_WINDOW);
        let end = &mut self.ends[side];
        if matches!(cmd, Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set) {
            // The peer decodes it only once it knows: our offer (or SYN(1)) went first.
            assert!(
                end.agreement == Agreement::Extended && end.offer_sent,
                "end {side}: {h:?} before it knew, or before its offer left"
            );
        }
        match cmd {
            Cmd::Vrm if id == HELLO_ID || id == ASK_ID => {
                let (role, name) = if id == HELLO_ID {
                    (Role::Acceptor, "HELLO")
                } else {
                    (Role::Dialer, "ASK")
                };
                assert_eq!(length, CAPS, "end {side}: {name} caps");
                assert!(
                    end.role == role && end.ext_config,
                    "end {side}: {name} from the wrong end"
                );
                assert!(!end.offer_sent, "end {side}: second {name}");
                assert!(end.offer_due, "end {side}: {name} that nothing called for");
                end.offer_sent = true;
                end.vrms.offer_answer = Some(verify_code(id, CAPS));
                return None;
            }
            Cmd::Vrm => {
                end.vrms.sent((id, length), &format!("end {side}"));
                return None;
            }
            Cmd::Pin => {
                assert_eq!((id, length), (0, 0), "malformed PIN");
                assert!(
                    end.pin_queued,
                    "end {side}: PIN before its keepalive was due"
                );
                end.pin_queued = false;
                return None;
            }
            Cmd::Gwy => {
                assert!(end.going_away, "end {side}: GWY without a go-away");
                assert!(!end.gwy_sent, "end {side}: second GWY");
                assert_eq!(id, 0, "GWY on a stream");
                end.gwy_sent = true;
                return None;
            }
            Cmd::Set => {
                assert!(!end.set_sent, "end {side}: second SET");
                assert_eq!(
                    (id, length),
                    (SET_RECV_WINDOW, window),
                    "end {side}: SET is not its receive window"
                );
                end.set_sent = true;
                return None;
            }
            _ => {}
        }
        let ext_config = end.ext_config;
        let set = end.peer_set.unwrap_or(0);
        let c = self.cur(side, id, &format!("{cmd:?}"));
        let conn = &mut self.conns[c];
        assert!(
            !conn.handshake_done(side),
            "end {side}: {cmd:?} on stream {id} after its last FINs"
        );
        assert!(
            !conn.fin1_sent[side],
            "end {side}: {cmd:?} on stream {id} after FIN(1)"
        );
        match cmd {
            Cmd::Syn => {
                assert_eq!(conn.opener, side, "end {side}: SYN for the peer's stream");
                assert!(!conn.syn_sent, "end {side}: second SYN for {id}");
                // SYN(1): "I have the extensions"; a reference ignores the flag.
                assert_eq!(
                    length,
                    u32::from(ext_config),
                    "end {side}: SYN({length}) for {id}"
                );
                conn.syn_sent = true;
            }
            Cmd::Psh => {
                assert!(length > 0 && length <= max_frame, "PSH size");
                assert!(
                    !conn.fin0_sent[side] && conn.rst_sent[side].is_none(),
                    "end {side}: PSH on {id} after its FIN or RST"
                );
                conn.psh_sent[side] += u64::from(length);
                // Data accepted under the assumed window may leave after a SET lowered
                // it (writes then check the current limit, see `write`).
                let credit = u64::from(assumed.max(set).max(conn.wnd_received[side]));
                assert!(
                    conn.psh_sent[side] <= conn.cfm_received[side] + credit,
                    "end {side}: stream {id} has more than its window unconfirmed"
                );
            }
            Cmd::Cfm => {
                assert!(length > 0, "empty CFM");
                assert!(
                    conn.ext || !conn.fin0_sent[side],
                    "end {side}: CFM on base stream {id} after its FIN"
                );
                conn.cfm_sent[side] += u64::from(length);
                assert!(
                    conn.cfm_sent[side] <= conn.psh_received[side],
                    "end {side}: stream {id} confirmed bytes that never arrived"
                );
                if conn.held[side].holds() {
                    assert!(
                        conn.cfm_sent[side] <= conn.read[side],
                        "end {side}: stream {id} confirmed bytes it has not read"
                    );
                }
            }
            Cmd::Wnd if length == 0 => {
                assert!(conn.ext, "end {side}: WND on base stream {id}");
                assert!(!conn.stop_sent[side], "end {side}: second WND(0) on {id}");
                // Sent by a close, or by a go-away releasing a stream from the backlog
                // (one whose write side already ended, so there is nothing to refuse).
                assert!(
                    conn.held[side] == Held::Released && conn.reset_code[side].is_none()
                        || conn.held[side] == Held::Refused,
                    "end {side}: WND(0) on {id}, which its application did not close"
                );
                assert!(
                    !conn.peer_fin_recv(side),
                    "end {side}: WND(0) on {id} after the peer finished writing"
                );
                conn.stop_sent[side] = true;
            }
            Cmd::Wnd => {
                assert!(conn.ext, "end {side}: WND on base stream {id}");
                assert!(
                    !conn.stop_sent[side],
                    "end {side}: WND after WND(0) on {id}"
                );
                assert!(
                    length > window.max(conn.wnd_sent[side]) && length <= max_window,
                    "end {side}: WND({length}) on {id} after {}",
                    conn.wnd_sent[side]
                );
                conn.wnd_sent[side] = length;
            }
            Cmd::Fin if conn.ext => match length {
                0 => {
                    assert!(
                        !conn.fin0_sent[side] && conn.rst_sent[side].is_none(),
                        "end {side}: second first FIN on {id}"
                    );
                    // Our write side ends when the application lets go or shuts it, or
                    // when the peer aborted the stream (RST) or stopped our writes.
                    assert!(
                        conn.done_writing(side)
                            || conn.rst_recv[side].is_some()
                            || conn.stopped[side],
                        "end {side}: FIN(0) on {id} while its application writes"
                    );
                    conn.fin0_sent[side] = true;
                }
                1 => {
                    assert!(
                        conn.held[side].gone(),
                        "end {side}: FIN(1) on {id} before the application let go"
                    );
                    assert!(
                        conn.peer_fin_recv(side),
                        "end {side}: FIN(1) on {id} before the peer's FIN"
                    );
                    conn.fin1_sent[side] = true;
                }
                _ => panic!("end {side}: FIN({length}) on {id}"),
            },
            Cmd::Fin => {
                assert_eq!(length, 0, "end {side}: FIN({length}) on base stream {id}");
                assert!(!conn.fin0_sent[side], "end {side}: second FIN on {id}");
                match conn.held[side] {
                    Held::Released => {}
                    Held::Open => panic!("end {side}: FIN on held stream {id}"),
                    // No application has it: the session refused it.
                    Held::Unseen | Held::Backlog | Held::Refused => {
                        assert_ne!(conn.opener, side, "end {side}: refused its own {id}");
                        conn.held[side] = Held::Refused;
                    }
                }
                conn.fin0_sent[side] = true;
            }
            Cmd::Rst => {
                assert!(conn.ext, "end {side}: RST on base stream {id}");
                assert!(
                    conn.rst_sent[side].is_none(),
                    "end {side}: second RST on {id}"
                );
                match conn.held[side] {
                    Held::Unseen | Held::Backlog | Held::Refused => {
                        assert_ne!(conn.opener, side, "end {side}: refused its own {id}");
                        assert_eq!(length, RESET_REFUSED, "end {side}: refusal code");
                        conn.held[side] = Held::Refused;
                    }
                    Held::Released => assert_eq!(
                        conn.reset_code[side],
                        Some(length),
                        "end {side}: RST({length}) on {id} the application did not ask for"
                    ),
                    Held::Open => panic!("end {side}: RST on held stream {id}"),
                }
                conn.rst_sent[side] = Some(length);
            }
            Cmd::Vrm | Cmd::Pin | Cmd::Gwy | Cmd::Set => unreachable!(),
        }
        Some(c)
    }

    /// Moves `len` bytes (0 = all) from the link into end `side` and lets it handle its
    /// input; returns how many frames it consumed.
    fn deliver(&mut self, side: usize, len: usize) -> usize {
        let peer = 1 - side;
        if self.ends[side].probe.is_some() {
            // The prober's adapter sends nothing more until the answer is back.
            return 0;
        }
        let avail = self.ends[peer].link.len();
        let n = if len == 0 { avail } else { len.min(avail) };
        let bytes = self.ends[peer].link.split_to(n);
        let end = &mut self.ends[side];
        end.input.push(&bytes);
        let frames = end.input.feed(&mut end.s, self.now);
        let count = frames.len();
        for f in frames {
            let (h, c) = self.ends[peer]
                .frames
                .pop_front()
                .expect("took a frame that was never sent");
            assert_eq!(h, f.header, "end {side} took a frame other than was sent");
            self.received_frame(side, h, c);
        }
        let end = &self.ends[side];
        assert_eq!(
            end.s.agreement(),
            end.agreement,
            "end {side}: its agreement is not what the frames it took say"
        );
        // Handled frames emit events; the model follows them before anything else.
        self.drain_events();
        let end = &self.ends[side];
        let eof_due = self.ends[peer].ended
            && self.ends[peer].link.is_empty()
            && !end.eof
            && !end.ended
            && end.input.buf.is_empty();
        if eof_due {
            // The peer drained, its adapter closed the transport, and everything it
            // sent has been taken: end-of-file.
            trace!("  end {side} gets end-of-file");
            let end = &mut self.ends[side];
            end.eof = true;
            end.s.handle_eof(0);
            assert!(end.s.is_ended(), "end {side}: survived end-of-file");
            self.drain_events();
        }
        count
    }

    /// What end `side`, while pending, learns from taking `h` (before the frame is
    /// applied): whether the peer has the extensions, or nothing yet. The rules of
    /// `negotiate`: a SYN says it by its flag; HELLO (to the dialer) or ASK (to the
    /// acceptor) says yes, the verify answer to this end's own offer no; to the dialer any
    /// frame but a VRM says no (an acceptor of ours sends HELLO ahead of it); to the
    /// acceptor data, a confirmation or a FIN on a stream it opened says no (a dialer of
    /// ours sends ASK ahead of them). Follows the VRM bookkeeping as it goes.
    fn learn(&mut self, side: usize, h: Header) -> Option<bool> {
        let end = &mut self.ends[side];
        match (h.cmd, end.role) {
            (Cmd::Vrm, role) => {
                let theirs = match role {
                    Role::Dialer => HELLO_ID,
                    Role::Acceptor => ASK_ID,
                };
                match end.vrms.took((h.id, h.length)) {
                    VrmIn::PingAnswer => {
                        assert!(end.s.stats().rtt.is_some(), "end {side}: ping answer lost");
                        None
                    }
                    VrmIn::OfferAnswer => Some(false),
                    VrmIn::Request => {
                        (end.ext_config && (h.id, h.length) == (theirs, CAPS)).then_some(true)
                    }
                }
            }
            (Cmd::Syn, _) => Some(h.length == 1),
            (_, Role::Dialer) => Some(false),
            (Cmd::Psh | Cmd::Cfm | Cmd::Fin, Role::Acceptor) => {
                let own = end
                    .cur
                    .get(&h.id)
                    .is_some_and(|&c| self.conns[c].exists[side]);
                own.then_some(false)
            }
            (_, Role::Acceptor) => None,
        }
    }

    /// Follows a frame end `side` took; `c` is the stream lifetime it was sent for.
    fn received_frame(&mut self, side: usize, h: Header, c: Option<usize>) {
        trace!("  end {side} takes {h:?}");
        let Header { cmd, id, length } = h;
        let end = &mut self.ends[side];
        if matches!(cmd, Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set) {
            assert_eq!(
                end.agreement,
                Agreement::Extended,
                "end {side} took {h:?} before it knew the peer has the extensions"
            );
        }
        if end.took == 0 {
            end.offer_due_early = end.offer_due;
        }
        end.took += 1;
        let pending = end.agreement == Agreement::Pending;
        let learned = self.learn(side, h);
        if let Some(yes) = learned.filter(|_| pending) {
            let truth = self.ends.iter().all(|e| e.ext_config);
            assert_eq!(
                yes, truth,
                "end {side} learned {yes} from {h:?}, but extensions are {truth} on both ends"
            );
            let end = &mut self.ends[side];
            end.agreement = if yes {
                // It offers too (if it has not), and sends its settings.
                end.offer_due = true;
                Agreement::Extended
            } else {
                Agreement::Base
            };
        }
        let end = &mut self.ends[side];
        if end.role == Role::Acceptor && end.agreement == Agreement::Pending {
            // A frame arrived: HELLO follows (behind the answer, if it was a probe).
            end.offer_due = true;
        }
        match cmd {
            Cmd::Vrm | Cmd::Pin => return,
            Cmd::Set => {
                assert_eq!(id, SET_RECV_WINDOW, "end {side}: SET of an unknown key");
                end.peer_set = Some(length);
                return;
            }
            Cmd::Gwy => {
                end.going_away = true;
                return;
            }
            _ => {}
        }
        let c = c.expect("a stream frame without its stream");
        if cmd == Cmd::Syn {
            for &o in &self.by_id[&id] {
                let old = &self.conns[o];
                assert!(
                    o == c || !old.known[side] || old.handshake_done(side),
                    "end {side}: SYN for {id} while its previous stream is not closed here"
                );
            }
            self.ends[side].cur.insert(id, c);
            let conn = &mut self.conns[c];
            conn.exists[side] = true;
            conn.known[side] = true;
            return;
        }
        assert_eq!(
            self.ends[side].cur.get(&id),
            Some(&c),
            "end {side}: a {cmd:?} of one stream {id} reached another"
        );
        let conn = &mut self.conns[c];
        match cmd {
            Cmd::Psh => conn.psh_received[side] += u64::from(length),
            Cmd::Cfm => {
                conn.cfm_received[side] += u64::from(length);
                assert!(conn.cfm_received[side] <= conn.psh_sent[side]);
            }
            Cmd::Wnd if length == 0 => {
                // Ignored once the peer's last FIN came (nothing may follow it).
                conn.stopped[side] |= !conn.fin1_recv[side];
            }
            Cmd::Wnd => conn.wnd_received[side] = conn.wnd_received[side].max(length),
            Cmd::Fin if length == 0 => conn.fin0_recv[side] = true,
            Cmd::Fin => conn.fin1_recv[side] = true,
            Cmd::Rst => conn.rst_recv[side] = Some(length),
            _ => unreachable!(),
        }
    }

    fn handle(&self, side: usize, sel: usize) -> Option<(u16, usize)> {
        let h = &self.ends[side].handles;
        if h.is_empty() {
            return None;
        }
        let id = h[sel % h.len()];
        Some((id, self.ends[side].cur[&id]))
    }

    /// Reads from a held stream and checks the outcome; returns how many bytes were
    /// read, or `None` when nothing was.
    fn read(&mut self, side: usize, sel: usize, len: usize, chunk: bool) -> Option<usize> {
        let (id, c) = self.handle(side, sel)?;
        let peer = 1 - side;
        let s = &mut self.ends[side].s;
        let readable = s.readable_len(s.sid(id));
        let ended = s.end_reason().cloned();
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
        if let Some(code) = conn.reset_seen[side] {
            assert_eq!(
                got,
                Err(ReadError::Reset(code)),
                "end {side}: read on reset {id}"
            );
            return None;
        }
        match got {
            Ok(Some(bytes)) => {
                let n = bytes.len();
                assert!(n <= len && n <= readable, "read returned too much");
                // A chunk may stop where a buffered payload ends; a read fills its buffer.
                assert!(
                    n == len.min(readable) || chunk && n > 0,
                    "read returned too little"
                );
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
                assert_eq!(readable, 0, "end {side}: EOF on {id} with data buffered");
                assert!(conn.finished[side], "end {side}: EOF on {id} without a FIN");
                assert!(
                    conn.done_writing(peer),
                    "end {side}: EOF on {id} while the peer may write"
                );
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
                assert!(ended.is_none(), "end {side}: Blocked on an ended session");
                conn.read_blocked[side] = true;
                None
            }
            Err(ReadError::SessionEnded(r)) => {
                assert_eq!(Some(r), ended, "end {side}: read reports another end");
                assert!(readable == 0 && !conn.finished[side]);
                None
            }
            Err(e) => panic!("end {side}: read on held stream {id}: {e:?}"),
        }
    }

    /// How a write on held stream `c` of end `side` must fail, if it must.
    fn write_refusal(&self, side: usize, c: usize) -> Option<WriteError> {
        let conn = &self.conns[c];
        if let Some(r) = self.ends[side].s.end_reason() {
            return Some(WriteError::SessionEnded(r.clone()));
        }
        if let Some(code) = conn.reset_seen[side] {
            return Some(WriteError::Reset(code));
        }
        if conn.stopped[side] {
            return Some(WriteError::PeerClosed);
        }
        if conn.shut[side] {
            return Some(WriteError::Closed);
        }
        if !conn.ext && conn.finished[side] {
            return Some(WriteError::PeerClosed);
        }
        None
    }

    fn write(&mut self, side: usize, sel: usize, len: usize) {
        let Some((id, c)) = self.handle(side, sel) else {
            return;
        };
        let refusal = self.write_refusal(side, c);
        let limit = self.send_limit(side, c);
        let conn = &mut self.conns[c];
        // Only the part the write can accept gets the pattern; accepting more than
        // `writable_len` fails below, and would show as wrong bytes at the reader.
        let writable = self.ends[side].s.writable_len(self.ends[side].s.sid(id));
        let mut data = vec![0u8; len];
        let k = len.min(writable);
        fill_pattern(
            conn.serial * 2 + side as u64,
            conn.written[side],
            &mut data[..k],
        );
        let got = self.ends[side].s.write(self.ends[side].s.sid(id), &data);
        if let Some(e) = refusal {
            assert_eq!(got, Err(e), "end {side}: write on {id}");
            assert_eq!(writable, 0, "end {side}: writable_len on refusing {id}");
            return;
        }
        match got {
            Ok(n) => {
                assert_eq!(
                    n, k,
                    "end {side}: write of {len} on {id} with {writable} room"
                );
                conn.written[side] += n as u64;
                if n > 0 {
                    conn.write_blocked[side] = false;
                }
                // The receiver's window governs (its SET; until then an assumed one).
                // Bytes taken under the assumed window may exceed a smaller SET that
                // came later: only a write that takes more is bound by it.
                assert!(
                    n == 0 || conn.written[side] - conn.cfm_received[side] <= limit,
                    "end {side}: stream {id} took {} unconfirmed bytes, more than its window \
                     {limit}",
                    conn.written[side] - conn.cfm_received[side]
                );
            }
            Err(WriteError::Blocked) => {
                assert!(len > 0 && writable == 0, "end {side}: Blocked with room");
                conn.write_blocked[side] = true;
            }
            Err(e) => panic!("end {side}: write on held stream {id}: {e:?}"),
        }
    }

    fn open(&mut self, side: usize) {
        let end = &mut self.ends[side];
        let used = end.s.stream_ids();
        let pending = end.agreement == Agreement::Pending;
        let got = end.s.open();
        if let Some(r) = end.s.end_reason() {
            assert_eq!(got, Err(OpenError::SessionEnded(r.clone())));
            return;
        }
        if end.going_away {
            assert_eq!(
                got,
                Err(OpenError::GoingAway),
                "end {side}: open while going away"
            );
            return;
        }
        let id = match got {
            Ok(StreamId { num: id, .. }) => {
                trace!("  end {side} opens {id}");
                id
            }
            Err(OpenError::IdsExhausted) => return,
            Err(e) => panic!("end {side}: open failed: {e:?}"),
        };
        assert_eq!(
            Some(id),
            next_free_id(end.role, end.last_opened, &used),
            "end {side}: open did not hand out the next free ID"
        );
        end.last_opened = Some(id);
        // Its SYN is an own frame: the offer goes with it.
        end.offer_due |= pending;
        assert_eq!(
            end.s.is_extended(end.s.sid(id)),
            end.agreement == Agreement::Extended,
            "end {side}: a new stream is extended iff the agreement is"
        );
        let ext = self.ends.iter().all(|e| e.ext_config);
        let c = self.conns.len();
        let ids = self.by_id.entry(id).or_default();
        for &o in ids.iter() {
            let old = &self.conns[o];
            assert!(
                !old.exists[side] && (!old.known[side] || old.handshake_done(side)),
                "end {side}: ID {id} reused before its close handshake"
            );
        }
        ids.push(c);
        let mut held = [Held::Unseen; 2];
        held[side] = Held::Open;
        let mut exists = [false; 2];
        exists[side] = true;
        self.conns.push(Conn {
            id,
            opener: side,
            serial: c as u64,
            ext,
            written: [0; 2],
            read: [0; 2],
            held,
            exists,
            known: exists,
            shut: [false; 2],
            reset_code: [None; 2],
            reset_seen: [None; 2],
            finished: [false; 2],
            stop_sent: [false; 2],
            stopped: [false; 2],
            write_blocked: [false; 2],
            read_blocked: [false; 2],
            shut_wait: [false; 2],
            released_pending: [false; 2],
            syn_sent: false,
            fin0_sent: [false; 2],
            fin1_sent: [false; 2],
            rst_sent: [None; 2],
            fin0_recv: [false; 2],
            fin1_recv: [false; 2],
            rst_recv: [None; 2],
            psh_sent: [0; 2],
            cfm_received: [0; 2],
            psh_received: [0; 2],
            cfm_sent: [0; 2],
            wnd_sent: [0; 2],
            wnd_received: [0; 2],
        });
        let end = &mut self.ends[side];
        end.cur.insert(id, c);
        end.handles.push(id);
    }

    fn accept(&mut self, side: usize) -> bool {
        let end = &mut self.ends[side];
        let got = end.s.accept().map(|i| i.num);
        assert_eq!(got, end.backlog.pop_front(), "end {side}: accept order");
        let Some(id) = got else {
            return false;
        };
        end.handles.push(id);
        let c = end.cur[&id];
        self.conns[c].held[side] = Held::Open;
        true
    }

    /// Lets go of a held stream by `close` or `reset`, or shuts its write side
    /// (`shutdown`: only on an extended stream; it waits while the agreement is pending
    /// and fails on a base stream, changing nothing), and checks the outcome.
    fn release(&mut self, side: usize, sel: usize, how: Release) {
        let Some((id, c)) = self.handle(side, sel) else {
            return;
        };
        let end = &mut self.ends[side];
        let agreement = end.agreement;
        let before = end.s.stats();
        let got = match how {
            Release::Close => end.s.close(end.s.sid(id)),
            Release::Shutdown => end.s.shutdown(end.s.sid(id)),
            Release::Reset(code) => end.s.reset(end.s.sid(id), code),
        };
        if let Some(r) = end.s.end_reason() {
            assert_eq!(got, Err(WriteError::SessionEnded(r.clone())));
            return;
        }
        let conn = &mut self.conns[c];
        match (how, agreement) {
            (Release::Shutdown, Agreement::Pending) => {
                assert_eq!(
                    got,
                    Err(WriteError::Blocked),
                    "end {side}: shutdown of {id} before the agreement"
                );
                // A `Writable` follows once the agreement settles.
                conn.shut_wait[side] = true;
                return;
            }
            (Release::Shutdown, Agreement::Base) => {
                assert_eq!(
                    got,
                    Err(WriteError::HalfCloseUnsupported),
                    "end {side}: shutdown of base stream {id}"
                );
                let s = &self.ends[side].s;
                assert_eq!(
                    s.stats(),
                    before,
                    "end {side}: a refused shutdown did something"
                );
                return;
            }
            (Release::Shutdown, Agreement::Extended) => {
                assert!(conn.ext, "end {side}: extended, yet stream {id} is not");
                match conn.reset_seen[side] {
                    Some(code) => assert_eq!(got, Err(WriteError::Reset(code))),
                    None => {
                        assert_eq!(got, Ok(()), "end {side}: shutdown of {id}");
                        conn.shut[side] = true;
                    }
                }
                return;
            }
            (Release::Reset(code), _) if conn.ext => conn.reset_code[side] = Some(code),
            _ => {}
        }
        assert_eq!(got, Ok(()), "end {side}: {how:?} of held stream {id}");
        conn.released_pending[side] = agreement == Agreement::Pending;
        conn.held[side] = Held::Released;
        conn.read_blocked[side] = false;
        conn.write_blocked[side] = false;
        conn.shut_wait[side] = false;
        self.ends[side].handles.retain(|&h| h != id);
    }

    fn go_away(&mut self, side: usize, code: u32) {
        let end = &mut self.ends[side];
        end.s.go_away(code);
        if end.ended || end.going_away {
            // Nothing changes: the session ended, or it already knew.
            return;
        }
        end.going_away = true;
        assert!(end.s.is_going_away());
        assert_eq!(end.s.stats().accept_backlog, 0, "end {side}: backlog kept");
        for id in std::mem::take(&mut end.backlog) {
            let c = end.cur[&id];
            self.conns[c].held[side] = Held::Refused;
        }
    }

    fn advance(&mut self, d: Duration) {
        if self.elapsed + d > PAIR_MAX_ELAPSED {
            return;
        }
        self.elapsed += d;
        self.now += d;
        for (side, end) in self.ends.iter_mut().enumerate() {
            // The keepalive: a PIN, an own frame (the offer goes with it while pending).
            let pin = !end.s.is_ended() && !end.pin_queued && self.now >= end.next_pin;
            let due = end.s.poll_timeout().is_some_and(|t| t <= self.now);
            assert!(due || !pin, "end {side}: keepalive due and no timer");
            if due {
                end.s.handle_timeout(self.now);
            }
            if pin {
                end.pin_queued = true;
                end.next_pin = self.now + end.s.config().keepalive_interval;
                end.offer_due |= end.agreement == Agreement::Pending;
            }
        }
    }

    fn ping(&mut self, side: usize) {
        let now = self.now;
        let end = &mut self.ends[side];
        if end.s.ping(now) {
            end.pinged = true;
            end.offer_due |= end.agreement == Agreement::Pending;
        }
    }

    fn start_agreement(&mut self, side: usize) {
        let end = &mut self.ends[side];
        end.offer_due |= end.agreement == Agreement::Pending && !end.s.is_ended();
        end.s.start_agreement();
    }

    fn step(&mut self, op: ExtOp) {
        trace!("{op:?}");
        match op {
            ExtOp::Open { side } => self.open(side.into()),
            ExtOp::Accept { side } => {
                self.accept(side.into());
            }
            ExtOp::Read { side, stream, len } => {
                self.read(side.into(), stream.into(), len.into(), false);
            }
            ExtOp::ReadChunk { side, stream, max } => {
                self.read(side.into(), stream.into(), max.into(), true);
            }
            ExtOp::Write { side, stream, len } => {
                self.write(side.into(), stream.into(), 3 * usize::from(len));
            }
            ExtOp::Close { side, stream } => {
                self.release(side.into(), stream.into(), Release::Close);
            }
            ExtOp::Shutdown { side, stream } => {
                self.release(side.into(), stream.into(), Release::Shutdown);
            }
            ExtOp::Reset { side, stream, code } => {
                self.release(side.into(), stream.into(), Release::Reset(code));
            }
            ExtOp::GoAway { side, code } => self.go_away(side.into(), code.into()),
            ExtOp::Transmit { side, limit } => self.transmit(side.into(), op_limit(limit)),
            ExtOp::Deliver { side, len } => {
                self.deliver(side.into(), len.into());
            }
            ExtOp::Advance { ms } => self.advance(Duration::from_millis(4 * u64::from(ms))),
            ExtOp::Ping { side } => self.ping(side.into()),
            ExtOp::StartAgreement { side } => self.start_agreement(side.into()),
        }
        self.drain_events();
        self.check();
    }

    /// The invariants that hold after every step.
    fn check(&self) {
        for (side, end) in self.ends.iter().enumerate() {
            let s = &end.s;
            let c = s.config();
            let peer_window = self.ends[1 - side].s.config().window;
            s.assert_invariants();
            match s.end_reason() {
                Some(r) => {
                    assert!(
                        r == &EndReason::Drained || end.eof && r == &EndReason::PeerClosed,
                        "end {side} ended: {r:?}"
                    );
                    assert!(end.ended, "end {side}: ended without an Ended event");
                }
                None => assert_eq!(
                    s.is_going_away(),
                    end.going_away,
                    "end {side}: going away or not?"
                ),
            }
            assert_eq!(s.stats().protocol_errors, 0);
            assert_eq!(
                s.agreement(),
                end.agreement,
                "end {side}: its agreement is not what the frames it took say"
            );
            assert_eq!(s.extensions_enabled(), end.agreement == Agreement::Extended);
            if end.ext_config {
                assert_eq!(
                    end.agreed,
                    end.agreement != Agreement::Pending,
                    "end {side}: an Agreed event for each settled agreement"
                );
            } else {
                assert_eq!(end.agreement, Agreement::Base, "end {side}: extensions off");
            }
            // Every stream takes the session's mode, on each end once it knows.
            for (&id, &k) in &end.cur {
                if self.conns[k].exists[side] {
                    assert_eq!(
                        s.is_extended(s.sid(id)),
                        self.conns[k].ext && end.agreement == Agreement::Extended,
                        "end {side}: stream {id} in the wrong mode ({:?})",
                        end.agreement
                    );
                }
            }
            for &id in &end.handles {
                let conn = &self.conns[end.cur[&id]];
                let sid = s.sid(id);
                let window = s.recv_window(sid);
                assert!(
                    window >= c.window && window <= c.max_window.max(c.window),
                    "end {side}: stream {id} window {window}"
                );
                assert!(
                    s.is_extended(sid) || window == c.window,
                    "base stream {id} grew"
                );
                // A peer may send what it assumes until it knows our window.
                let limit = window.max(peer_window.min(ASSUMED_WINDOW));
                assert!(
                    s.readable_len(sid) <= limit as usize,
                    "end {side}: stream {id} over its window"
                );
                if end.ended {
                    continue;
                }
                assert!(
                    !(conn.write_blocked[side] && s.writable_len(sid) > 0),
                    "end {side}: stream {id} has room again but got no Writable event"
                );
                assert!(
                    !(conn.read_blocked[side] && s.readable_len(sid) > 0),
                    "end {side}: stream {id} has data but got no Readable event"
                );
                assert!(
                    !(conn.shut_wait[side] && end.agreement != Agreement::Pending),
                    "end {side}: stream {id}'s shutdown waited for the agreement, which \
                     settled without a Writable event"
                );
            }
        }
    }

    /// Stream lifetime `c` was opened by an end whose peer ended (drained) before it
    /// took the SYN: nobody will ever answer it, and the opener's session ends at the
    /// end-of-file that follows. Only a go-away the peer could not announce (no GWY:
    /// extensions were not on) leaves such streams: after a GWY the draining end waits
    /// for the answering GWY, which follows every SYN sent before it.
    fn orphan(&self, c: usize) -> bool {
        let conn = &self.conns[c];
        let peer = &self.ends[1 - conn.opener];
        peer.ended && !peer.gwy_sent && !conn.known[1 - conn.opener]
    }

    /// Moves everything until nothing moves: transmits, delivers, accepts and (if
    /// `read`) reads on both ends. Panics if that does not settle (a livelock).
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
                self.drain_events();
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

    /// Once the link is settled, both ends agree on which streams exist.
    fn check_agreement(&self) {
        for (c, conn) in self.conns.iter().enumerate() {
            if self.orphan(c) {
                continue;
            }
            if conn.known[0] && conn.known[1] {
                assert_eq!(
                    conn.exists[0], conn.exists[1],
                    "the ends disagree on whether stream {} exists",
                    conn.id
                );
            }
        }
        for (side, end) in self.ends.iter().enumerate() {
            let live: Vec<u16> = end
                .cur
                .iter()
                .filter(|(_, &c)| self.conns[c].exists[side])
                .map(|(&id, _)| id)
                .collect();
            assert_eq!(
                end.s.stats().streams,
                live.len(),
                "end {side}: stream count disagrees with the events"
            );
        }
    }
}

/// How [`ExtRun::release`] lets go of a stream.
#[derive(Debug, Clone, Copy)]
enum Release {
    Close,
    Shutdown,
    Reset(u32),
}

/// Fuzzes two sessions that agree on the extensions over an in-memory link.
///
/// Input: [`CONFIG_LEN`] configuration bytes ([`config_from`], an hour's keepalive
/// timeout, extensions on), an [`ExtSetup`] (an end with extensions off, `max_window`,
/// a probe, the acceptor's window), then [`ExtOp`]s until the input ends. A probe is a
/// raw VRM put in front of the probed end's input before anything else, as a prober's
/// adapter sends it ahead of its own session; the probed end's first 7 bytes out must
/// be the verify answer, and are taken off the link as the prober does. Then a final
/// phase: the dialer pings (its own frame, which its ASK follows, and the acceptor's
/// first frame, which its HELLO follows), both ends accept and read everything until
/// the link settles, close every stream and settle again.
///
/// Checks, at every step: no panic; [`Session::assert_invariants`] on both ends; a
/// session ends only `Drained`, after a go-away (its own or the peer's GWY), with no
/// stream left; every byte a read returns is the next byte the peer's writes accepted
/// on that stream (across ID reuse), reads return all that is buffered, and after a
/// reset data may be missing but is never wrong; EOF only once the peer shut or
/// released its side and every written byte was read; a reset stream reports the
/// peer's code in its `Reset` event, reads and writes; reads, writes, shutdowns and
/// resets succeed or fail exactly as the model says (a shutdown is `Blocked` while the
/// agreement is pending, `HalfCloseUnsupported` on a base stream, changing nothing,
/// and succeeds only on an extended stream; a reset or close before the agreement
/// releases the stream at once); a stream with room (or data) after `Blocked` got its
/// `Writable` (`Readable`) event, and so did a shutdown that waited once the agreement
/// settled; `open` hands out the next free ID after the last one (round-robin).
///
/// The agreement: each end's [`Session::agreement`] is, after every frame it takes,
/// what the rules in `negotiate` derive from the frames it took (a SYN's flag; HELLO or
/// ASK; the answer to its own offer; to the dialer any frame but a VRM, to the acceptor
/// data, a CFM or a FIN on its own stream), and what it learns is the truth (both ends
/// have the extensions on, or not); one `Agreed` event says so, none on an end with
/// them off; every stream an end has is extended exactly when its agreement is
/// extended (so both ends agree on every stream's mode). Offers: HELLO only from an
/// acceptor with extensions on, ASK only from such a dialer, once each and only when
/// the rules call for them (an own frame, `start_agreement`, a frame taken while
/// pending, or learning yes); HELLO goes ahead of everything but the answer to the
/// frame that made it due, ASK right behind the dialer's first own frame with only
/// answers ahead; a pending end sends a frame of its own only with its offer due; every
/// VRM request is answered once, in order, and no answer is answered (pings and the
/// answers to offers); a PIN only when the keepalive was due.
///
/// On the wire: an end with extensions off never sends an extension frame (its output
/// is decoded by a base decoder); an extension frame (WND, RST, GWY, SET) only from an
/// end that knows and whose offer left ahead of it, and taken only by an end that
/// knows; every SYN carries its sender's `Config::extensions`; `SET` once, after the
/// agreement, with the sender's window; every stream frame reaches the receiver while
/// that ID still means the same stream there; no frame follows an end's `FIN(1)`, no
/// data its first FIN or RST, `FIN(1)` only after the application let go and the
/// peer's FIN arrived, RST only with the application's code or `RESET_REFUSED`; a
/// write never takes a stream past the peer's window (from its SET, until then the
/// smaller of the writer's window and 512 KiB) or the WNDs received, and a receive
/// buffer never holds more than its window or what the peer may assume; WND only
/// grows, within `max_window`; nothing is confirmed that was not received (or, while
/// held, read); an ID is reopened only after its close handshake on that end; events
/// agree with the frames (`Finished` after the peer's FIN, `Reset` with the received
/// code, `Closed` after both last FINs and the application's release).
///
/// After the final phase: both ends settled the agreement to the truth, sent their
/// offer if it was due, and (extended) exchanged their windows; every ping and VRM
/// request was answered; both ends agree on which streams exist; every byte written on
/// a stream whose reader holds it arrived unless the stream was reset, with EOF if the
/// writer finished; then no stream record and no buffered byte on either end, every
/// end that was going away has drained, and what a release before the agreement
/// deferred (an extended stream's RST or stop) has left. The only exception is a
/// stream whose peer drained before its SYN arrived (see `ExtRun::orphan`).
pub fn ext(data: &[u8]) {
    let mut inp = Input::new(data);
    let base = config_from(inp.array::<CONFIG_LEN>());
    let setup = ExtSetup::decode(&mut inp);
    let factor = MAX_WINDOWS[usize::from(setup.max_window & 3)];
    let max_window = |window: u32| {
        if factor == 0 {
            Config::default().max_window
        } else {
            window * factor
        }
    };
    let config = Config {
        keepalive_timeout: PAIR_TIMEOUT,
        max_window: max_window(base.window),
        ..base
    };
    let (mul, div) = ACCEPTOR_WINDOWS[usize::from(setup.acceptor_window & 3)];
    let scale = |x: u32| (x * mul / div).clamp(1, 256 * config.max_frame);
    let window = scale(config.window);
    let acceptor_config = Config {
        window,
        cfm_threshold: scale(config.cfm_threshold).min(window),
        max_window: max_window(window),
        ..config.clone()
    };
    let now = Instant::now();
    let end = |role: Role, ext_config: bool| {
        let config = match role {
            Role::Dialer => &config,
            Role::Acceptor => &acceptor_config,
        };
        let mut extended = Decoder::new(config.max_frame);
        extended.set_extended();
        let mut out_dec = Decoder::new(u32::MAX);
        if ext_config {
            out_dec.set_extended();
        }
        End {
            s: Session::new(
                Config {
                    extensions: ext_config,
                    ..config.clone()
                },
                role,
                now,
            )
            .expect("valid config"),
            role,
            ext_config,
            input: InputLog::with_decoder(extended),
            out_dec,
            link: BytesMut::new(),
            frames: VecDeque::new(),
            cur: HashMap::new(),
            backlog: VecDeque::new(),
            handles: Vec::new(),
            pinged: false,
            going_away: false,
            gwy_sent: false,
            agreement: if ext_config {
                Agreement::Pending
            } else {
                Agreement::Base
            },
            agreed: false,
            offer_due: false,
            offer_sent: false,
            offer_due_early: false,
            ask_next: false,
            sent: 0,
            took: 0,
            own_sent: false,
            vrms: Vrms::default(),
            next_pin: now + config.keepalive_interval,
            pin_queued: false,
            peer_set: None,
            set_sent: false,
            last_opened: None,
            probe: None,
            ended: false,
            eof: false,
        }
    };
    let mut run = ExtRun {
        ends: [
            end(Role::Dialer, setup.extensions[0]),
            end(Role::Acceptor, setup.extensions[1]),
        ],
        conns: Vec::new(),
        by_id: HashMap::new(),
        now,
        elapsed: Duration::ZERO,
    };
    if let Some((side, mut v1, v2)) = setup.probe {
        let side = usize::from(side);
        let offer = if side == 0 { HELLO_ID } else { ASK_ID };
        if (v1, v2) == (offer, CAPS) {
            // A challenge equal to the peer's offer would make the probed end believe
            // the peer has the extensions. Real challenges are random, so this happens
            // with probability 2^-48 (docs/PROTOCOL.md); the scenario avoids it.
            v1 ^= 0x100;
        }
        let probe = Probe::new(v1, v2);
        let end = &mut run.ends[side];
        end.input.push(&probe.challenge());
        let frames = end.input.feed(&mut end.s, now);
        assert_eq!(frames.len(), 1, "the probe was not taken");
        end.probe = Some(probe);
        run.received_frame(side, frames[0].header, None);
        run.drain_events();
        run.check();
    }
    trace!(
        "{:?}\n{:?}\n{setup:?}",
        run.ends[0].s.config(),
        run.ends[1].s.config()
    );
    while !inp.is_empty() {
        let op = ExtOp::decode(&mut inp);
        run.step(op);
    }

    // The final phase. The dialer's ping is its own frame (its ASK follows) and the
    // acceptor's first frame (HELLO follows), so the agreement settles.
    trace!("final phase");
    run.ping(0);
    run.drain_events();
    run.settle(true);
    run.check_agreement();
    let [d, a] = &run.ends;
    if !d.ended && !a.ended {
        let want = if d.ext_config && a.ext_config {
            Agreement::Extended
        } else {
            Agreement::Base
        };
        assert_eq!(
            (d.agreement, a.agreement),
            (want, want),
            "the agreement settled otherwise, or not at all"
        );
        for (side, end) in run.ends.iter().enumerate() {
            assert!(
                !end.offer_due || end.offer_sent,
                "end {side}: its offer was due and never left"
            );
            if want == Agreement::Extended {
                let peer = &run.ends[1 - side];
                assert!(end.set_sent, "end {side}: extended, and no SET");
                assert_eq!(
                    end.peer_set,
                    Some(peer.s.config().window),
                    "end {side}: the peer's window never arrived"
                );
            }
            assert!(end.vrms.ping.is_none(), "end {side}: ping never answered");
            assert!(
                end.vrms.owed.is_empty(),
                "end {side}: VRM answers never sent: {:x?}",
                end.vrms.owed
            );
        }
    }
    for (c, conn) in run.conns.iter().enumerate() {
        if conn.aborted() || run.orphan(c) {
            continue;
        }
        for side in 0..2 {
            let peer = 1 - side;
            if conn.held[side] == Held::Open && conn.reset_seen[side].is_none() {
                assert_eq!(
                    conn.read[side], conn.written[peer],
                    "stream {} lost bytes from end {peer} to end {side}",
                    conn.id
                );
                if conn.done_writing(peer) {
                    assert!(
                        conn.finished[side],
                        "end {side}: stream {} has no EOF although end {peer} finished",
                        conn.id
                    );
                }
            }
        }
    }
    for (side, end) in run.ends.iter().enumerate() {
        if end.pinged && !end.ended && !run.ends[1 - side].ended {
            assert!(
                end.s.stats().rtt.is_some(),
                "end {side}: ping never answered"
            );
        }
    }

    for side in 0..2 {
        while !run.ends[side].handles.is_empty() && !run.ends[side].ended {
            run.release(side, 0, Release::Close);
        }
    }
    run.drain_events();
    run.settle(false);
    run.check_agreement();
    for (side, end) in run.ends.iter().enumerate() {
        if end.ended {
            continue;
        }
        let orphans = run
            .conns
            .iter()
            .enumerate()
            .any(|(c, conn)| conn.opener == side && conn.exists[side] && run.orphan(c));
        let st = end.s.stats();
        if !orphans {
            assert_eq!(st.streams, 0, "end {side}: streams left after closing all");
            assert_eq!(
                (st.buffered_in, st.buffered_out),
                (0, 0),
                "end {side}: bytes left"
            );
            assert!(
                !end.going_away,
                "end {side}: going away, no stream left, and still not drained"
            );
        }
    }
    let live = !run.ends[0].ended && !run.ends[1].ended;
    for (c, conn) in run.conns.iter().enumerate() {
        for side in 0..2 {
            assert!(
                !conn.exists[side] || run.orphan(c),
                "stream {} not removed on end {side}",
                conn.id
            );
            assert!(
                conn.psh_received[side] >= conn.read[side],
                "end {side} read bytes that never arrived"
            );
            if live && conn.ext && conn.released_pending[side] {
                // What a release before the agreement deferred went once it settled.
                match conn.reset_code[side] {
                    Some(code) => assert_eq!(
                        conn.rst_sent[side],
                        Some(code),
                        "end {side}: stream {}'s deferred reset never left",
                        conn.id
                    ),
                    None => assert!(
                        conn.stop_sent[side] || conn.peer_fin_recv(side),
                        "end {side}: stream {}'s deferred stop (WND(0)) never left",
                        conn.id
                    ),
                }
            }
        }
    }
}

/// The seed corpus of [`ext`]: `(name, input)`.
pub(super) fn seeds() -> Vec<(String, Vec<u8>)> {
    use ExtOp as X;
    let (d, a) = (0, 1);
    let small = [3, 1, 2, 2, 1, 3, 0, 5];
    let roomy = [4, 1, 3, 6, 3, 4, 8, 5];
    let refusing = [3, 1, 2, 0, 1, 3, 0, 5];
    // Both ways until nothing moves (enough rounds for a handshake).
    let pump = |rounds: usize| {
        (0..rounds).flat_map(|_| {
            [
                X::Transmit { side: d, limit: 0 },
                X::Deliver { side: a, len: 0 },
                X::Transmit { side: a, limit: 0 },
                X::Deliver { side: d, len: 0 },
            ]
        })
    };
    // The dialer's SYN(1) is the first frame and ASK follows it; the acceptor answers
    // with HELLO ahead of the answer to ASK: both know after one round trip.
    let negotiate = || -> Vec<ExtOp> {
        [
            X::Open { side: d },
            X::Write {
                side: d,
                stream: 0,
                len: 1,
            },
        ]
        .into_iter()
        .chain(pump(2))
        .chain([X::Accept { side: a }])
        .collect()
    };
    let half_close = |side: u8| -> Vec<ExtOp> {
        let other = 1 - side;
        negotiate()
            .into_iter()
            .chain([
                X::Open { side },
                X::Write {
                    side,
                    stream: 1,
                    len: 300,
                },
                X::Shutdown { side, stream: 1 },
            ])
            .chain(pump(1))
            .chain([
                X::Accept { side: other },
                X::Read {
                    side: other,
                    stream: 1,
                    len: 2000,
                },
                X::Read {
                    side: other,
                    stream: 1,
                    len: 10,
                },
                X::Write {
                    side: other,
                    stream: 1,
                    len: 200,
                },
                X::Close {
                    side: other,
                    stream: 1,
                },
            ])
            .chain(pump(2))
            .chain([
                X::ReadChunk {
                    side,
                    stream: 1,
                    max: 5000,
                },
                X::Read {
                    side,
                    stream: 1,
                    len: 9,
                },
                X::Close { side, stream: 1 },
            ])
            .chain(pump(2))
            .collect()
    };
    // After the negotiation, `opener` opens an extended stream (held second on both ends).
    let extended = |opener: u8| -> Vec<ExtOp> {
        negotiate()
            .into_iter()
            .chain([
                X::Open { side: opener },
                X::Write {
                    side: opener,
                    stream: 1,
                    len: 1,
                },
            ])
            .chain(pump(1))
            .chain([X::Accept { side: 1 - opener }])
            .collect()
    };
    let reset = |side: u8, code: u32| -> Vec<ExtOp> {
        let other = 1 - side;
        extended(other)
            .into_iter()
            .chain([
                X::Write {
                    side: other,
                    stream: 1,
                    len: 100,
                },
                X::Write {
                    side,
                    stream: 1,
                    len: 100,
                },
                X::Transmit {
                    side: other,
                    limit: 0,
                },
                X::Reset {
                    side,
                    stream: 1,
                    code,
                },
            ])
            .chain(pump(1))
            .chain([
                X::Read {
                    side: other,
                    stream: 1,
                    len: 100,
                },
                X::Write {
                    side: other,
                    stream: 1,
                    len: 1,
                },
                X::Close {
                    side: other,
                    stream: 1,
                },
            ])
            .chain(pump(2))
            .chain([X::Open { side }])
            .chain(pump(1))
            .collect()
    };
    let go_away = |side: u8| -> Vec<ExtOp> {
        let other = 1 - side;
        negotiate()
            .into_iter()
            .chain([
                X::Open { side: other },
                X::GoAway { side, code: 7 },
                X::Write {
                    side,
                    stream: 0,
                    len: 50,
                },
            ])
            .chain(pump(1))
            .chain([
                X::Open { side: other },
                X::Open { side },
                X::Read {
                    side: other,
                    stream: 0,
                    len: 200,
                },
                X::Close {
                    side: other,
                    stream: 0,
                },
                X::Close { side, stream: 0 },
            ])
            .chain(pump(3))
            .collect()
    };
    let growth = extended(d)
        .into_iter()
        .chain((0..12).flat_map(|_| {
            [
                X::Write {
                    side: d,
                    stream: 1,
                    len: 2000,
                },
                X::Transmit { side: d, limit: 0 },
                X::Deliver { side: a, len: 0 },
                X::ReadChunk {
                    side: a,
                    stream: 1,
                    max: 60_000,
                },
                X::Transmit { side: a, limit: 0 },
                X::Deliver { side: d, len: 0 },
            ]
        }))
        .collect();
    let mut many_ids: Vec<ExtOp> = negotiate();
    for _ in 0..3 {
        many_ids.extend([
            X::Open { side: a },
            X::Write {
                side: a,
                stream: 1,
                len: 3,
            },
            X::Close { side: a, stream: 1 },
        ]);
        many_ids.extend(pump(1));
        many_ids.extend([
            X::Accept { side: d },
            X::Read {
                side: d,
                stream: 1,
                len: 100,
            },
            X::Close { side: d, stream: 1 },
        ]);
        many_ids.extend(pump(2));
    }
    let probed = |side: u8| ExtSetup {
        probe: Some((side, 0x1234, 0x5678_9ABC)),
        ..ExtSetup::BOTH
    };
    let off = |side: usize| {
        let mut extensions = [true, true];
        extensions[side] = false;
        ExtSetup {
            extensions,
            ..ExtSetup::BOTH
        }
    };
    let fixed = ExtSetup {
        max_window: 0,
        ..ExtSetup::BOTH
    };
    let big = ExtSetup {
        max_window: 3,
        ..ExtSetup::BOTH
    };
    // Before the agreement: `side` opens and writes, shuts down (it waits: `Blocked`),
    // opens a second stream and resets it, opens a third and closes it; then one round
    // trip settles the agreement, the waiting shutdown goes ahead (or fails on a base
    // stream), and the deferred reset and stop leave.
    let before_agreement = |side: u8| -> Vec<ExtOp> {
        let other = 1 - side;
        [
            X::Open { side },
            X::Write {
                side,
                stream: 0,
                len: 100,
            },
            X::Shutdown { side, stream: 0 },
            X::Open { side },
            X::Write {
                side,
                stream: 1,
                len: 50,
            },
            X::Reset {
                side,
                stream: 1,
                code: 42,
            },
            X::Open { side },
            X::Close { side, stream: 1 },
            X::Transmit { side, limit: 0 },
            X::Deliver {
                side: other,
                len: 0,
            },
            X::Transmit {
                side: other,
                limit: 0,
            },
            X::Deliver { side, len: 0 },
            X::Shutdown { side, stream: 0 },
        ]
        .into_iter()
        .chain(pump(1))
        .chain([
            X::Accept { side: other },
            X::Accept { side: other },
            X::Accept { side: other },
            X::Read {
                side: other,
                stream: 0,
                len: 400,
            },
        ])
        .chain(pump(2))
        .collect()
    };
    // The application asks `side` for the agreement before any stream; then the other
    // end opens one.
    let started = |side: u8| -> Vec<ExtOp> {
        let other = 1 - side;
        [X::StartAgreement { side }]
            .into_iter()
            .chain(pump(2))
            .chain([
                X::Open { side: other },
                X::Write {
                    side: other,
                    stream: 0,
                    len: 10,
                },
                X::Shutdown {
                    side: other,
                    stream: 0,
                },
            ])
            .chain(pump(1))
            .chain([X::Accept { side }])
            .collect()
    };
    // Much data both ways on one stream, for ends whose windows differ: each end's
    // writes follow the peer's window (assumed, then from its SET).
    let windows: Vec<ExtOp> = [X::Open { side: a }]
        .into_iter()
        .chain((0..6).flat_map(|_| {
            [
                X::Write {
                    side: a,
                    stream: 0,
                    len: 30_000,
                },
                X::Transmit { side: a, limit: 0 },
                X::Deliver { side: d, len: 0 },
                X::Accept { side: d },
                X::Write {
                    side: d,
                    stream: 0,
                    len: 30_000,
                },
                X::ReadChunk {
                    side: d,
                    stream: 0,
                    max: 60_000,
                },
                X::Transmit { side: d, limit: 0 },
                X::Deliver { side: a, len: 0 },
                X::ReadChunk {
                    side: a,
                    stream: 0,
                    max: 60_000,
                },
            ]
        }))
        .collect();
    let acceptor_window = |acceptor_window: u8| ExtSetup {
        acceptor_window,
        ..ExtSetup::BOTH
    };
    let s: Vec<(&str, [u8; CONFIG_LEN], ExtSetup, Vec<ExtOp>)> = vec![
        ("negotiate", small, ExtSetup::BOTH, negotiate()),
        ("half-close-dialer", roomy, ExtSetup::BOTH, half_close(d)),
        ("half-close-acceptor", small, fixed, half_close(a)),
        (
            "reset-by-dialer",
            small,
            ExtSetup::BOTH,
            reset(d, 0xDEAD_BEEF),
        ),
        ("reset-by-acceptor", roomy, ExtSetup::BOTH, reset(a, 0)),
        ("go-away-dialer", small, ExtSetup::BOTH, go_away(d)),
        ("go-away-acceptor", roomy, ExtSetup::BOTH, go_away(a)),
        ("window-growth", [4, 1, 3, 6, 3, 5, 8, 5], big, growth),
        ("id-reuse", small, ExtSetup::BOTH, many_ids),
        ("refused", refusing, ExtSetup::BOTH, reset(d, 5)),
        ("probe-dialer", roomy, probed(d), half_close(d)),
        ("probe-acceptor", small, probed(a), half_close(a)),
        ("dialer-off", small, off(0), half_close(d)),
        ("acceptor-off", roomy, off(1), reset(a, 9)),
        ("acceptor-off-go-away", small, off(1), go_away(a)),
        (
            "before-agreement-dialer",
            roomy,
            ExtSetup::BOTH,
            before_agreement(d),
        ),
        (
            "before-agreement-acceptor",
            small,
            ExtSetup::BOTH,
            before_agreement(a),
        ),
        (
            "before-agreement-acceptor-off",
            roomy,
            off(1),
            before_agreement(d),
        ),
        (
            "before-agreement-dialer-off",
            small,
            off(0),
            before_agreement(a),
        ),
        ("start-agreement-dialer", small, ExtSetup::BOTH, started(d)),
        (
            "start-agreement-acceptor",
            roomy,
            ExtSetup::BOTH,
            started(a),
        ),
        ("start-agreement-acceptor-off", small, off(1), started(d)),
        (
            "windows-acceptor-larger",
            [7, 2, 5, 6, 3, 5, 8, 5],
            acceptor_window(3),
            windows.clone(),
        ),
        (
            "windows-acceptor-smaller",
            [5, 2, 5, 6, 3, 5, 8, 5],
            acceptor_window(2),
            windows.clone(),
        ),
        (
            "windows-acceptor-off",
            [6, 2, 5, 6, 3, 5, 8, 5],
            ExtSetup {
                extensions: [true, false],
                ..acceptor_window(1)
            },
            windows,
        ),
    ];
    s.into_iter()
        .map(|(name, cfg, setup, ops)| (name.to_string(), encode_ext(cfg, setup, &ops)))
        .collect()
}
