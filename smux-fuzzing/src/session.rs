//! The `session` target: one session against an arbitrary peer and application.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use smux_proto::frame::{Cmd, Decoder, Header, HEADER_LEN};
use smux_proto::testing::{Internals, ASSUMED_WINDOW};
use smux_proto::{
    Config, EndReason, Event, OpenError, ProtocolError, ReadError, Role, Session, StreamId,
    WriteError,
};

use crate::scenario::{config_from, fill_pattern, Input, CONFIG_LEN};
use crate::wire::{next_free_id, transmit, InputLog};

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

    pub(crate) fn decode(inp: &mut Input<'_>) -> SessionOp {
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
        self.config.window().max(ASSUMED_WINDOW)
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
        let window = u64::from(self.config.window());
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
                assert!(len > max && max == self.config.max_frame());
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
            other => panic!("a protocol error the model does not know: {other:?}"),
        }
    }

    fn transmit(&mut self, limit: usize) {
        let ended = self.s.is_ended();
        let (frames, _) = transmit(&mut self.s, self.now, limit, &mut self.out_dec);
        assert!(!ended || frames.is_empty(), "an ended session sent frames");
        let window = u64::from(self.config.window());
        for f in frames {
            let h = f.header;
            match h.cmd {
                Cmd::Syn => self.sent.entry(h.id).or_default().1 += window,
                Cmd::Psh => {
                    assert!(h.length > 0, "empty PSH sent");
                    assert!(
                        h.length <= self.config.max_frame(),
                        "PSH over max_frame sent"
                    );
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
                | Event::Closed(id) => self.see(id.number()),
                Event::Reset(..) => panic!("reset without extensions"),
                Event::Agreed(a) => panic!("Agreed({a:?}) with the extensions off"),
                Event::Ended(reason) => {
                    assert_eq!(Some(&reason), self.s.end_reason(), "Ended event disagrees");
                }
                other => panic!("an event the model does not know: {other:?}"),
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
            other => panic!("a read error the model does not know: {other:?}"),
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
            Err(other) => panic!("a write error the model does not know: {other:?}"),
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
            st.buffered_in <= c.max_buffered_in(),
            "buffered_in over its bound"
        );
        assert!(
            st.buffered_out <= c.max_buffered_out(),
            "buffered_out over its bound"
        );
        assert!(
            st.accept_backlog <= c.accept_backlog(),
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
                self.now >= self.last_input + self.config.keepalive_timeout(),
                "keepalive timeout although input arrived recently"
            ),
            other => panic!("an end the model does not know: {other:?}"),
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
                    self.pick(id as u8).number()
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
                    assert_eq!(
                        Some(id.number()),
                        want,
                        "open did not hand out the next free ID"
                    );
                    self.last_opened = Some(id.number());
                    self.see(id.number());
                }
                (_, Err(OpenError::SessionEnded(r))) => {
                    assert_eq!(Some(&r), self.s.end_reason())
                }
                (_, Err(OpenError::IdsExhausted)) => {
                    assert!(self.s.stats().streams >= 65_536, "IDs exhausted early")
                }
                (_, Err(OpenError::GoingAway)) => panic!("going away without a go-away"),
                (_, Err(other)) => panic!("an open error the model does not know: {other:?}"),
            },
            SessionOp::Accept => {
                let backlog = self.s.stats().accept_backlog;
                match self.s.accept() {
                    Some(id) => self.see(id.number()),
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
                    // A PSH whose payload was cut off counts too: its header was taken.
                    if leftover > 0 || self.input.in_payload() {
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
                self.see(id.number());
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
        self.see(id.number());
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
/// `readable_len` within the window (or the 512 KiB a peer may always send); the
/// session has ended only with a protocol error or for a reason the scenario caused
/// (and then refuses everything and sends nothing); the output is whole, valid frames,
/// no PSH over `max_frame`, no stream's data beyond the window plus the confirmations
/// received, no CFM for bytes never received; the statistics match the bytes and
/// frames that went in and out; reads, writes and their `readable_len` /
/// `writable_len` agree; a `Blocked` write changes nothing; the timer is never due
/// again right after it ran; `poll_transmit` stops only at its limit (at least one
/// frame) or when nothing is left; `open` hands out the next free ID after the last
/// one (round-robin); no `Agreed` event (extensions are off). At the end, a live
/// session is drained and must take input again and open a stream.
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
        input: InputLog::new(config.max_frame()),
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
