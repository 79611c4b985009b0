//! The two-ended model behind the [`pair`] and [`ext`](fn@ext) targets: two sessions
//! joined by an in-memory link the input controls, with the extensions on both ends,
//! on one, or (the `pair` target) on neither.
//!
//! The model follows every frame on the wire, attributed to the stream lifetime it was
//! sent for, and every event and call result on both ends. It derives each end's
//! agreement from the frames that end took, by the rules in smux-proto's `negotiate`
//! (so it checks that the order of frames tells both ends the truth), and checks where
//! each end's offer (HELLO, ASK) stands among its frames. Every stream of a session
//! where both ends have the extensions is extended, on each end once that end knows.
//! Extended streams close with `FIN(0)` (this end writes no more, or a RST standing for
//! it) and `FIN(1)` (this end's last frame on the stream, once its application released
//! the stream and the peer's first FIN arrived); base streams with one FIN each way.
//!
//! `frames.rs` follows the wire, `calls.rs` the application's calls, `checks.rs` the
//! events and the invariants; this file holds the model's state and runs a scenario.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use smux_proto::frame::{Decoder, Header};
use smux_proto::testing::{Internals, ASK_ID, CAPS, HELLO_ID};
use smux_proto::{Agreement, Config, Probe, Role, Session};

use crate::ops::{ExtSetup, Format, Op};
use crate::scenario::{config_from, op_limit, Input, CONFIG_LEN};
use crate::wire::{InputLog, Vrms};

/// Whether `SMUX_FUZZ_TRACE` is set: then the model prints every op, frame and event to
/// stderr (for reading a crash input; read once per process).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SMUX_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::pair::tracing() {
            eprintln!($($arg)*);
        }
    };
}

mod calls;
mod checks;
mod frames;

/// Both ends use a timeout far beyond any time a scenario can let pass, so that a
/// session never dies of silence while the link is merely slow.
const PAIR_TIMEOUT: Duration = Duration::from_secs(3600);
const PAIR_MAX_ELAPSED: Duration = Duration::from_secs(3000);

/// `max_window` as a multiple of `window`, by [`ExtSetup::max_window`]; the last entry
/// stands for the default (16 MiB).
const MAX_WINDOWS: [u32; 4] = [1, 4, 64, 0];

/// The acceptor's `window` relative to the dialer's, by [`ExtSetup::acceptor_window`]:
/// multiplied by the first value, divided by the second.
const ACCEPTOR_WINDOWS: [(u32, u32); 4] = [(1, 1), (4, 1), (1, 4), (16, 1)];

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
    /// A stream end `opener` just opened, the `serial`th of the scenario.
    fn new(id: u16, opener: usize, serial: usize, ext: bool) -> Conn {
        let mut held = [Held::Unseen; 2];
        held[opener] = Held::Open;
        let mut exists = [false; 2];
        exists[opener] = true;
        Conn {
            id,
            opener,
            serial: serial as u64,
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
        }
    }

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

/// One end of a two-ended scenario.
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
    /// The PSH whose payload this end is taking piece by piece: its ID, the bytes still
    /// to come, and its stream lifetime.
    piece: Option<(u16, u32, Option<usize>)>,
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

impl End {
    /// A new session of `role` with `config` and its extensions on or off.
    fn new(config: &Config, role: Role, ext_config: bool, now: Instant) -> End {
        // An end decodes what it took and sent in the protocol it may speak.
        let decoder = |max_frame| {
            let mut d = Decoder::new(max_frame);
            if ext_config {
                d.set_extended();
            }
            d
        };
        let config = config.clone().with_extensions(ext_config);
        End {
            s: Session::new(config.clone(), role, now).expect("valid config"),
            role,
            ext_config,
            input: InputLog::with_decoder(decoder(config.max_frame())),
            out_dec: decoder(u32::MAX),
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
            piece: None,
            own_sent: false,
            vrms: Vrms::default(),
            next_pin: now + config.keepalive_interval(),
            pin_queued: false,
            peer_set: None,
            set_sent: false,
            last_opened: None,
            probe: None,
            ended: false,
            eof: false,
        }
    }
}

/// A two-ended scenario.
struct Run {
    ends: [End; 2],
    conns: Vec<Conn>,
    /// Stream lifetimes by ID.
    by_id: HashMap<u16, Vec<usize>>,
    now: Instant,
    elapsed: Duration,
}

/// How [`Run::release`] lets go of a stream.
#[derive(Debug, Clone, Copy)]
enum Release {
    Close,
    Shutdown,
    Reset(u32),
}

/// Fuzzes two sessions of the base protocol joined by an in-memory link.
///
/// Input: [`CONFIG_LEN`] configuration bytes ([`config_from`], both ends alike, with
/// an hour's keepalive timeout, extensions off), then [`Op`]s in [`Format::Pair`] until
/// the input ends; then both applications accept and read everything until the link
/// settles, close every stream and let the link settle again.
///
/// The model is that of [`ext`](fn@ext), whose checks all apply; in the base protocol
/// they come to these. At every step: neither session ends or sees a protocol error;
/// both pass their own invariant checks and stay within their buffer bounds, and every
/// stream's `readable_len ≤ window`; every byte a read returns is the next byte the
/// peer's writes accepted on that stream (so no loss, duplication, reordering or
/// cross-talk, including across ID reuse), and a read returns all it can; EOF comes
/// only after the peer's FIN and every written byte; writes succeed or fail as the
/// model says (`PeerClosed` exactly after the peer's FIN); a sender never has more than
/// a window of unconfirmed data on a stream, and never confirms bytes its application
/// has not read; events match the model (`Incoming` only for a stream the peer
/// opened, `Finished` only after the peer's FIN, `Closed` only after both FINs and
/// the application's close or the session's refusal); an ID is never reopened before
/// its close handshake finished on that end, and `open` hands out the next free ID
/// after the last one; accepts come in `Incoming` order; every VRM request (a ping) is
/// answered once, in order, and answers are never answered; a PIN leaves only when the
/// keepalive was due; no extension frame, no `Agreed` or `Reset` event. After the final
/// settle: both ends agree on which streams exist, and their stream counts match the
/// events; every byte written on a stream whose reader still holds it has been read;
/// pings were answered and no answer is owed; after closing everything no stream is
/// left on either end and no byte is buffered.
pub fn pair(data: &[u8]) {
    let mut inp = Input::new(data);
    let config = config_from(inp.array::<CONFIG_LEN>());
    run(config, ExtSetup::BASE, Format::Pair, inp);
}

/// Fuzzes two sessions that agree on the extensions over an in-memory link.
///
/// Input: [`CONFIG_LEN`] configuration bytes ([`config_from`], an hour's keepalive
/// timeout, extensions on), an [`ExtSetup`] (an end with extensions off, `max_window`,
/// a probe, the acceptor's window), then [`Op`]s in [`Format::Ext`] until the input
/// ends. A probe is a raw VRM put in front of the probed end's input before anything
/// else, as a prober's adapter sends it ahead of its own session; the probed end's
/// first 7 bytes out must be the verify answer, and are taken off the link as the
/// prober does. Then a final phase: the dialer pings (its own frame, which its ASK
/// follows, and the acceptor's first frame, which its HELLO follows), both ends accept
/// and read everything until the link settles, close every stream and settle again.
///
/// Checks, at every step: no panic; the sessions' own invariant checks on both ends; a
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
/// peer's FIN arrived, RST only with the application's code or `RESET_REFUSED`, and a
/// refusal (FIN or RST) of a stream waiting for `accept` only by an end going away; a
/// write never takes a stream past the peer's window (from its SET, until then the
/// smaller of the writer's window and 512 KiB) or the WNDs received, and a receive
/// buffer (of every stream the session has) never holds more than its window or what
/// the peer may assume; WND only grows, within `max_window`; nothing is confirmed that
/// was not received, nor (while held, or ever on a base stream) read; an ID is reopened
/// only after its close handshake on that end; events agree with the frames
/// (`Finished` after the peer's FIN, `Reset` with the received code, `Closed` after
/// both last FINs and the application's release).
///
/// After the final phase: both ends settled the agreement to the truth, sent their
/// offer if it was due, and (extended) exchanged their windows; every ping and VRM
/// request was answered; both ends agree on which streams exist; every byte written on
/// a stream whose reader holds it arrived unless the stream was reset, with EOF if the
/// writer finished; then no stream record and no buffered byte on either end, every
/// end that was going away has drained, and what a release before the agreement
/// deferred (an extended stream's RST or stop) has left. The only exception is a
/// stream whose peer drained before its SYN arrived (see `Run::orphan`).
///
/// [`Session::agreement`]: smux_proto::Session::agreement
pub fn ext(data: &[u8]) {
    let mut inp = Input::new(data);
    let config = config_from(inp.array::<CONFIG_LEN>());
    let setup = ExtSetup::decode(&mut inp);
    run(config, setup, Format::Ext, inp);
}

/// The two ends' configurations: `base` with an hour's keepalive timeout and the
/// setup's `max_window`, the acceptor's window scaled as the setup says.
fn configs(base: Config, setup: ExtSetup) -> [Config; 2] {
    let factor = MAX_WINDOWS[usize::from(setup.max_window & 3)];
    let max_window = |window: u32| {
        if factor == 0 {
            Config::default().max_window()
        } else {
            window * factor
        }
    };
    let window = base.window();
    let dialer = base
        .with_keepalive_timeout(PAIR_TIMEOUT)
        .with_max_window(max_window(window));
    let (mul, div) = ACCEPTOR_WINDOWS[usize::from(setup.acceptor_window & 3)];
    let scale = |x: u32| (x * mul / div).clamp(1, 256 * dialer.max_frame());
    let acceptor_window = scale(window);
    let acceptor = dialer
        .clone()
        .with_window(acceptor_window)
        .with_cfm_threshold(scale(dialer.cfm_threshold()).min(acceptor_window))
        .with_max_window(max_window(acceptor_window));
    [dialer, acceptor]
}

/// Runs the scenario: the probe, the ops, the final phase and its checks.
fn run(config: Config, setup: ExtSetup, format: Format, mut inp: Input<'_>) {
    let now = Instant::now();
    let [dialer, acceptor] = configs(config, setup);
    let mut run = Run {
        ends: [
            End::new(&dialer, Role::Dialer, setup.extensions[0], now),
            End::new(&acceptor, Role::Acceptor, setup.extensions[1], now),
        ],
        conns: Vec::new(),
        by_id: HashMap::new(),
        now,
        elapsed: Duration::ZERO,
    };
    if let Some((side, v1, v2)) = setup.probe {
        run.probe(usize::from(side), v1, v2);
    }
    trace!(
        "{:?}\n{:?}\n{setup:?}",
        run.ends[0].s.config(),
        run.ends[1].s.config()
    );
    while !inp.is_empty() {
        let op = Op::decode(format, &mut inp);
        run.step(op);
    }

    trace!("final phase");
    if run.ends.iter().any(|e| e.ext_config) {
        // The dialer's ping is its own frame (its ASK follows) and the acceptor's first
        // frame (HELLO follows), so the agreement settles.
        run.ping(0);
        run.drain_events();
    }
    run.settle(true);
    run.check_agreement();
    run.check_settled();

    for side in 0..2 {
        while !run.ends[side].handles.is_empty() && !run.ends[side].ended {
            run.release(side, 0, Release::Close);
        }
    }
    run.drain_events();
    run.settle(false);
    run.check_agreement();
    run.check_closed();
}

impl Run {
    /// A probe ahead of everything, as a prober's adapter sends it: a raw VRM in front
    /// of end `side`'s input, whose answer must be the first frame out of that end.
    fn probe(&mut self, side: usize, mut v1: u16, v2: u32) {
        let offer = if side == 0 { HELLO_ID } else { ASK_ID };
        if (v1, v2) == (offer, CAPS) {
            // A challenge equal to the peer's offer would make the probed end believe
            // the peer has the extensions. Real challenges are random, so this happens
            // with probability 2^-48 (docs/PROTOCOL.md); the scenario avoids it.
            v1 ^= 0x100;
        }
        let probe = Probe::new(v1, v2);
        let end = &mut self.ends[side];
        end.input.push(&probe.challenge());
        let frames = end.input.feed(&mut end.s, self.now);
        assert_eq!(frames.len(), 1, "the probe was not taken");
        end.probe = Some(probe);
        self.received_frame(side, frames[0].header, None);
        self.drain_events();
        self.check();
    }

    /// The stream lifetime `id` stands for on end `side`.
    fn cur(&self, side: usize, id: u16, what: &str) -> usize {
        *self.ends[side]
            .cur
            .get(&id)
            .unwrap_or_else(|| panic!("end {side}: {what} for stream {id}, never opened"))
    }

    /// Like [`Run::cur`], for an event: the stream must exist on that end.
    fn event_conn(&self, side: usize, id: u16, what: &str) -> usize {
        let c = self.cur(side, id, what);
        assert!(
            self.conns[c].exists[side],
            "end {side}: {what} for stream {id}, which is gone"
        );
        c
    }

    /// The stream end `side`'s application holds at selector `sel`, and its lifetime.
    fn handle(&self, side: usize, sel: usize) -> Option<(u16, usize)> {
        let h = &self.ends[side].handles;
        if h.is_empty() {
            return None;
        }
        let id = h[sel % h.len()];
        Some((id, self.ends[side].cur[&id]))
    }

    fn drain_events(&mut self) {
        for side in 0..2 {
            while let Some(ev) = self.ends[side].s.poll_event() {
                self.on_event(side, ev);
            }
        }
    }

    fn step(&mut self, op: Op) {
        trace!("{op:?}");
        match op {
            Op::Open { side } => self.open(side.into()),
            Op::Accept { side } => {
                self.accept(side.into());
            }
            Op::Read { side, stream, len } => {
                self.read(side.into(), stream.into(), len.into(), false);
            }
            Op::ReadChunk { side, stream, max } => {
                self.read(side.into(), stream.into(), max.into(), true);
            }
            Op::Write { side, stream, len } => {
                self.write(side.into(), stream.into(), 3 * usize::from(len));
            }
            Op::Close { side, stream } => {
                self.release(side.into(), stream.into(), Release::Close);
            }
            Op::Shutdown { side, stream } => {
                self.release(side.into(), stream.into(), Release::Shutdown);
            }
            Op::Reset { side, stream, code } => {
                self.release(side.into(), stream.into(), Release::Reset(code));
            }
            Op::GoAway { side, code } => self.go_away(side.into(), code.into()),
            Op::Transmit { side, limit } => self.transmit(side.into(), op_limit(limit)),
            Op::Deliver { side, len } => {
                self.deliver(side.into(), len.into());
            }
            Op::Advance { ms } => self.advance(Duration::from_millis(4 * u64::from(ms))),
            Op::Ping { side } => self.ping(side.into()),
            Op::StartAgreement { side } => self.start_agreement(side.into()),
        }
        self.drain_events();
        self.check();
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
                // Closing FINs no application waits for leave with other frames, or
                // at a deadline: the clock moves on to it, as an adapter's timer would.
                let held = self
                    .ends
                    .iter()
                    .filter_map(|e| Internals::deferred_until(&e.s));
                let held = held.min();
                match held {
                    Some(t) => self.advance_to(t),
                    None => return,
                }
            }
        }
        panic!("the link does not settle");
    }
}
