//! Scenario tests of whole sessions on simulated time, and property tests.

mod agreement;
mod churn;
mod conn;
mod extensions;
mod prop;
mod scenarios;
mod through;

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::frame::Decoder;
use crate::{Config, Event, Header, Role, Session, StreamId, Transmit};

/// Two sessions joined by an in-memory link, on a simulated clock.
pub(crate) struct Pair {
    pub(crate) now: Instant,
    pub(crate) a: Session,
    pub(crate) b: Session,
    /// Bytes in flight from a to b, and from b to a.
    pub(crate) ab: BytesMut,
    pub(crate) ba: BytesMut,
    /// Each session's input buffer, as an adapter keeps it: bytes read from the link
    /// that `handle_input` has not consumed yet (a partial frame, or a paused input).
    in_a: BytesMut,
    in_b: BytesMut,
    pub(crate) events_a: Vec<Event>,
    pub(crate) events_b: Vec<Event>,
    tx: Transmit,
}

impl Pair {
    pub(crate) fn new(config: Config) -> Pair {
        Pair::with_roles(config.clone(), config, Role::Dialer, Role::Acceptor)
    }

    pub(crate) fn with_roles(ca: Config, cb: Config, ra: Role, rb: Role) -> Pair {
        let now = Instant::now();
        Pair {
            now,
            a: Session::new(ca, ra, now).unwrap(),
            b: Session::new(cb, rb, now).unwrap(),
            ab: BytesMut::new(),
            ba: BytesMut::new(),
            in_a: BytesMut::new(),
            in_b: BytesMut::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            tx: Transmit::new(),
        }
    }

    /// Moves what `a` (or `b` when `from_b`) wants to send onto the link, at most
    /// `limit` bytes of data (control frames always go).
    pub(crate) fn transmit(&mut self, from_b: bool, limit: usize) {
        let (s, link) = if from_b {
            (&mut self.b, &mut self.ba)
        } else {
            (&mut self.a, &mut self.ab)
        };
        s.poll_transmit(self.now, &mut self.tx, limit);
        self.tx.drain_into(link);
    }

    /// Moves up to `max` bytes of the link into the receiving session's input buffer
    /// (only while it wants input, as an adapter reads) and handles them.
    pub(crate) fn deliver(&mut self, to_b: bool, max: usize) {
        let (s, link, input) = if to_b {
            (&mut self.b, &mut self.ab, &mut self.in_b)
        } else {
            (&mut self.a, &mut self.ba, &mut self.in_a)
        };
        s.handle_input(self.now, input);
        if s.wants_input() {
            input.extend_from_slice(&link.split_to(max.min(link.len())));
            s.handle_input(self.now, input);
        }
    }

    /// Bytes read by a session and not yet consumed.
    pub(crate) fn unconsumed(&self, b: bool) -> usize {
        if b {
            self.in_b.len()
        } else {
            self.in_a.len()
        }
    }

    pub(crate) fn drain_events(&mut self) {
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push(e);
        }
    }

    /// Exchanges everything until nothing moves any more (both sides idle, or input
    /// paused by a bound until the application reads). Frames held back to leave with
    /// others leave too: the clock moves on to their deadline, as an adapter's timer
    /// would.
    pub(crate) fn settle(&mut self) {
        let mut last = None;
        for _ in 0..100_000 {
            self.transmit(false, usize::MAX);
            self.transmit(true, usize::MAX);
            self.deliver(true, usize::MAX);
            self.deliver(false, usize::MAX);
            self.drain_events();
            let state = (
                self.ab.len(),
                self.ba.len(),
                self.in_a.len(),
                self.in_b.len(),
                self.a.stats().frames_received + self.b.stats().frames_received,
            );
            let idle = !self.a.has_transmit() && !self.b.has_transmit();
            if idle && last == Some(state) {
                let held = [self.a.deferred_until(), self.b.deferred_until()];
                match held.into_iter().flatten().min() {
                    Some(t) => self.advance(t.saturating_duration_since(self.now)),
                    None => return,
                }
            }
            last = Some(state);
        }
        panic!("link did not settle");
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }
}

/// Reads everything buffered on `id`; returns the bytes and whether EOF was seen.
pub(crate) fn read_all(s: &mut Session, id: StreamId) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(id, &mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Encodes raw frames, for hand-written (and misbehaving) peers.
pub(crate) fn frames(list: &[(Header, &[u8])]) -> BytesMut {
    let mut b = BytesMut::new();
    for (h, p) in list {
        h.encode(&mut b);
        b.extend_from_slice(p);
    }
    b
}

/// A config with the extensions off (an end that behaves like the reference).
pub(crate) fn off() -> Config {
    Config {
        extensions: false,
        ..Config::default()
    }
}

/// Decodes everything in `wire` with a base-protocol decoder (panics on an extension
/// command).
pub(crate) fn base_frames(wire: &[u8]) -> Vec<Header> {
    let mut dec = Decoder::new(u32::MAX);
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).expect("only base frames") {
        out.push(f.header);
    }
    out
}
