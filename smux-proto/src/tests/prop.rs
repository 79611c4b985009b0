//! Property tests: two sessions, an in-memory link that delivers arbitrary chunk
//! sizes, and arbitrary interleavings of application calls and time on both ends.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::{frames, Pair};
use crate::error::{EndReason, ReadError};
use crate::frame::{Cmd, Header};
use crate::probe::verify_code;
use crate::{Config, Role, StreamId};

#[derive(Debug, Clone)]
enum Op {
    Open(bool),
    Accept(bool),
    Write(bool, u8, u16),
    Read(bool, u8, u16),
    ReadChunk(bool, u8, u16),
    Close(bool, u8),
    Transmit(bool, u32),
    Deliver(bool, u32),
    Advance(u16),
    Ping(bool),
    Shutdown(bool, u8),
    Reset(bool, u8, u32),
    GoAway(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(Op::Open),
        2 => any::<bool>().prop_map(Op::Accept),
        6 => (any::<bool>(), any::<u8>(), 0..6000u16).prop_map(|(s, i, n)| Op::Write(s, i, n)),
        5 => (any::<bool>(), any::<u8>(), 0..6000u16).prop_map(|(s, i, n)| Op::Read(s, i, n)),
        2 => (any::<bool>(), any::<u8>(), 0..3000u16).prop_map(|(s, i, n)| Op::ReadChunk(s, i, n)),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(s, i)| Op::Close(s, i)),
        5 => (any::<bool>(), 1..20_000u32).prop_map(|(s, n)| Op::Transmit(s, n)),
        6 => (any::<bool>(), 1..20_000u32).prop_map(|(s, n)| Op::Deliver(s, n)),
        1 => (0..5000u16).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::Ping),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(s, i)| Op::Shutdown(s, i)),
        1 => (any::<bool>(), any::<u8>(), any::<u32>()).prop_map(|(s, i, c)| Op::Reset(s, i, c)),
        1 => (any::<bool>(), 0..40u8).prop_map(|(s, k)| if k == 0 { Op::GoAway(s) } else { Op::Ping(s) }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (256..8192u32, 1..2048u32, 1..4u32, 64..16384usize, 1..8u32).prop_flat_map(
        |(window, frame, k, out, grow)| {
            (1..=window).prop_map(move |cfm| Config {
                window,
                cfm_threshold: cfm,
                max_frame: frame,
                max_buffered_in: (window * k).max(frame) as usize,
                max_buffered_out: out,
                keepalive_timeout: Duration::from_secs(3600),
                accept_backlog: 8,
                max_window: window * grow,
                ..Config::default()
            })
        },
    )
}

/// Per side: extensions on or off; and which side, if any, probes before the session.
fn setup() -> impl Strategy<Value = (bool, bool, Option<bool>)> {
    (
        prop_oneof![3 => Just(true), 1 => Just(false)],
        prop_oneof![3 => Just(true), 1 => Just(false)],
        proptest::option::of(any::<bool>()),
    )
}

/// The byte at `offset` of direction `dir` of stream incarnation `inc`.
fn content(inc: usize, dir: usize, offset: u64) -> u8 {
    ((inc as u64 * 131 + dir as u64 * 17 + offset * 7) % 251) as u8
}

/// One life of a stream ID: bytes written and read per direction (0: a→b, 1: b→a).
#[derive(Debug, Default)]
struct Life {
    written: [u64; 2],
    read: [u64; 2],
    eof: [bool; 2],
    refused: bool,
    /// Either end reset the stream: bytes may be missing (never wrong).
    reset: bool,
}

struct Model {
    p: Pair,
    lives: Vec<Life>,
    /// The life each ID had when it was last opened, by either side.
    latest: HashMap<u16, usize>,
    /// Streams each side's application holds: (ID, life).
    held: [Vec<(StreamId, usize)>; 2],
    /// Some end called `go_away`: a session may end `Drained`.
    going_away: bool,
}

impl Model {
    fn session(&mut self, b: bool) -> &mut crate::Session {
        if b {
            &mut self.p.b
        } else {
            &mut self.p.a
        }
    }

    fn pick(&self, b: bool, i: u8) -> Option<(usize, StreamId, usize)> {
        let h = &self.held[b as usize];
        if h.is_empty() {
            return None;
        }
        let k = i as usize % h.len();
        Some((k, h[k].0, h[k].1))
    }

    fn read(&mut self, b: bool, i: u8, max: usize, chunk: bool) {
        let Some((_, id, life)) = self.pick(b, i) else {
            return;
        };
        let dir = if b { 0 } else { 1 };
        let mut buf = vec![0u8; max];
        let got = if chunk {
            self.session(b)
                .read_chunk(id, max)
                .map(|c| c.map(|c| c.to_vec()))
        } else {
            self.session(b).read(id, &mut buf).map(|n| {
                if n == 0 && max > 0 {
                    None
                } else {
                    Some(buf[..n].to_vec())
                }
            })
        };
        let l = &mut self.lives[life];
        match got {
            Ok(Some(data)) => {
                assert!(data.is_empty() || !l.eof[dir], "data after end-of-file");
                for byte in data {
                    assert_eq!(byte, content(life, dir, l.read[dir]), "wrong byte");
                    l.read[dir] += 1;
                }
                assert!(l.read[dir] <= l.written[dir], "read more than written");
            }
            Ok(None) => {
                assert!(
                    l.refused || l.reset || l.read[dir] == l.written[dir],
                    "end-of-file before every byte arrived: {l:?}"
                );
                l.eof[dir] = true;
            }
            Err(ReadError::Reset(code)) => assert!(
                l.reset || code == crate::RESET_REFUSED,
                "reset reported, none sent"
            ),
            Err(_) => {}
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Open(b) => {
                if self.held[b as usize].len() >= 12 {
                    return;
                }
                if let Ok(id) = self.session(b).open() {
                    let life = self.lives.len();
                    self.lives.push(Life::default());
                    self.latest.insert(id.num, life);
                    self.held[b as usize].push((id, life));
                }
            }
            Op::Accept(b) => {
                if let Some(id) = self.session(b).accept() {
                    let life = self.latest[&id.num];
                    self.held[b as usize].push((id, life));
                }
            }
            Op::Write(b, i, n) => {
                let Some((_, id, life)) = self.pick(b, i) else {
                    return;
                };
                let dir = if b { 1 } else { 0 };
                let start = self.lives[life].written[dir];
                let data: Vec<u8> = (0..n as u64)
                    .map(|o| content(life, dir, start + o))
                    .collect();
                if let Ok(k) = self.session(b).write(id, &data) {
                    assert!(k <= data.len());
                    self.lives[life].written[dir] += k as u64;
                }
            }
            Op::Read(b, i, n) => self.read(b, i, n as usize, false),
            Op::ReadChunk(b, i, n) => self.read(b, i, n as usize, true),
            Op::Close(b, i) => {
                let Some((k, id, _)) = self.pick(b, i) else {
                    return;
                };
                self.session(b).close(id).unwrap();
                self.held[b as usize].swap_remove(k);
            }
            Op::Transmit(b, n) => self.p.transmit(b, n as usize),
            Op::Deliver(b, n) => self.p.deliver(b, n as usize),
            Op::Advance(ms) => self.p.advance(Duration::from_millis(ms as u64)),
            Op::Ping(b) => {
                let now = self.p.now;
                self.session(b).ping(now);
            }
            Op::Shutdown(b, i) => {
                let Some((_, id, _)) = self.pick(b, i) else {
                    return;
                };
                let ext = self.session(b).is_extended(id);
                match self.session(b).shutdown(id) {
                    // A base stream has no half-close: the stream stays as it was.
                    Err(crate::WriteError::HalfCloseUnsupported) => assert!(!ext),
                    Ok(()) => assert!(ext),
                    Err(_) => {}
                }
            }
            Op::Reset(b, i, code) => {
                let Some((k, id, life)) = self.pick(b, i) else {
                    return;
                };
                // Extended now, or maybe once a pending agreement settles.
                let s = self.session(b);
                if s.is_extended(id) || s.agreement() == crate::Agreement::Pending {
                    self.lives[life].reset = true;
                }
                if self.session(b).reset(id, code).is_ok() {
                    self.held[b as usize].swap_remove(k);
                }
            }
            Op::GoAway(b) => {
                self.going_away = true;
                self.session(b).go_away(0);
            }
        }
        self.p.drain_events();
        for e in self.p.events_a.drain(..).chain(self.p.events_b.drain(..)) {
            match e {
                crate::Event::Ended(EndReason::Drained) if self.going_away => {}
                crate::Event::Ended(r) => panic!("session ended: {r}"),
                _ => {}
            }
        }
        self.p.a.assert_invariants();
        self.p.b.assert_invariants();
    }

    /// A prober on one side sends a VRM before that side's session starts; the other
    /// session's first header must be the verify answer, which the prober consumes.
    fn probe(&mut self, by_b: bool) {
        let now = self.p.now;
        let mut challenge = frames(&[(Header::new(Cmd::Vrm, 0xA5C3, 0x0102_0304), &[])]);
        self.session(!by_b).handle_input(now, &mut challenge);
        self.p.transmit(!by_b, usize::MAX);
        let out = if by_b { &mut self.p.ab } else { &mut self.p.ba };
        let (v1, v2) = verify_code(0xA5C3, 0x0102_0304);
        assert_eq!(&out[..7], &Header::new(Cmd::Vrm, v1, v2).to_bytes()[..]);
        let _ = out.split_to(7);
    }

    /// Accepts and reads everything until the link is quiet, then checks delivery.
    fn finish(&mut self) {
        for _ in 0..1000 {
            self.p.settle();
            let mut progress = false;
            for b in [false, true] {
                while let Some(id) = self.session(b).accept() {
                    let life = self.latest[&id.num];
                    self.held[b as usize].push((id, life));
                    progress = true;
                }
                for i in 0..self.held[b as usize].len() {
                    let before: u64 = self.lives.iter().map(|l| l.read[0] + l.read[1]).sum();
                    self.read(b, i as u8, 1 << 20, false);
                    let after: u64 = self.lives.iter().map(|l| l.read[0] + l.read[1]).sum();
                    progress |= after > before;
                }
            }
            if !progress {
                break;
            }
        }
        let ended = self.p.a.is_ended() || self.p.b.is_ended();
        for b in [false, true] {
            let dir = if b { 0 } else { 1 };
            for (_, life) in &self.held[b as usize] {
                let l = &self.lives[*life];
                assert!(
                    l.reset || ended || l.read[dir] == l.written[dir],
                    "bytes lost on a live stream: {l:?}"
                );
            }
        }
        if !ended {
            assert_eq!(
                self.p.a.stream_ids(),
                self.p.b.stream_ids(),
                "the ends disagree on which streams exist"
            );
        }
        self.p.a.assert_invariants();
        self.p.b.assert_invariants();
    }

    /// After traffic from the dialler both ends made the same decision, the one their
    /// configurations call for; then every held stream is released and nothing is
    /// left on either end.
    fn agree_and_release(&mut self) {
        if self.p.a.is_ended() || self.p.b.is_ended() {
            return;
        }
        let now = self.p.now;
        self.p.a.ping(now);
        self.p.advance(Duration::from_secs(11));
        self.p.settle();
        let want = self.p.a.config().extensions && self.p.b.config().extensions;
        assert_eq!(self.p.a.extensions_enabled(), want, "dialler's decision");
        assert_eq!(self.p.b.extensions_enabled(), want, "acceptor's decision");
        for b in [false, true] {
            while let Some(id) = self.session(b).accept() {
                let life = self.latest[&id.num];
                self.held[b as usize].push((id, life));
            }
            for (id, _) in std::mem::take(&mut self.held[b as usize]) {
                let _ = self.session(b).close(id);
            }
        }
        self.p.settle();
        self.p.settle();
        if !self.going_away {
            assert!(
                self.p.a.stream_ids().is_empty(),
                "{:?}",
                self.p.a.stream_ids()
            );
            assert!(
                self.p.b.stream_ids().is_empty(),
                "{:?}",
                self.p.b.stream_ids()
            );
        }
        self.p.a.assert_invariants();
        self.p.b.assert_invariants();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn two_sessions_deliver_every_byte_once_in_order(
        cfg in config(),
        (ext_a, ext_b, probe) in setup(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let ca = Config { extensions: ext_a, ..cfg.clone() };
        let cb = Config { extensions: ext_b, ..cfg };
        let mut m = Model {
            p: Pair::with_roles(ca, cb, Role::Dialer, Role::Acceptor),
            lives: Vec::new(),
            latest: HashMap::new(),
            held: [Vec::new(), Vec::new()],
            going_away: false,
        };
        if let Some(by_b) = probe {
            m.probe(by_b);
        }
        for o in ops {
            m.apply(o);
        }
        m.finish();
        m.agree_and_release();
    }
}
