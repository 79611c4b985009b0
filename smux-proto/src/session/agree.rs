//! Whether the two ends use the extensions: the offers (HELLO, ASK), what each end
//! learns from the order of frames, VRM handling, and the `SET` of the receive window.
//! The wire values and why a reference peer never notices are in `negotiate`.

use std::time::Instant;

use super::{Event, Ping, Session, StreamId, Tag};
use crate::frame::{Cmd, Header};
use crate::id::Role;
use crate::negotiate::{Agreement, Offer, ASK_ID, CAPS, HELLO_ID, SET_RECV_WINDOW};
use crate::probe::verify_code;
use crate::stream::{flag, LocalFin, State};

/// Largest window a peer's WND or SET may give us: beyond it a stream's counters could
/// overflow, and no link needs more.
pub(super) const MAX_GRANT: u32 = 1 << 30;

impl Session {
    /// Whether the ends use the extensions: [`Agreement::Pending`] until this end
    /// knows (at most one round trip after its first frame), then final.
    pub fn agreement(&self) -> Agreement {
        self.agreement
    }

    /// Whether both ends agreed on the extensions: every stream of the session is then
    /// extended (half-close, reset, growing windows).
    pub fn extensions_enabled(&self) -> bool {
        self.agreement == Agreement::Extended
    }

    /// Makes this end send its offer of the extensions now, if it has not yet, so
    /// that [`Session::agreement`] settles within a round trip even before any stream
    /// is opened. Otherwise the offer goes with the first stream (or keepalive).
    ///
    /// The offer is then this end's first frame: a server that probes each new
    /// connection and reads exactly one header (some built on the reference
    /// implementation do) sees it instead of the answer to its probe.
    pub fn start_agreement(&mut self) {
        if self.agreement == Agreement::Pending {
            self.queue_offer();
        }
    }

    /// Queues our offer (HELLO from the acceptor, ASK from the dialer) once.
    fn queue_offer(&mut self) {
        if self.offer != Offer::Idle || !self.config.extensions || self.end.is_some() {
            return;
        }
        let id = match self.role() {
            Role::Dialer => ASK_ID,
            Role::Acceptor => HELLO_ID,
        };
        self.ctrl
            .push_back((Header::new(Cmd::Vrm, id, CAPS), Tag::Offer));
        self.offer = Offer::Queued;
    }

    /// Called before this end queues a frame of its own (SYN, PIN, ping): an acceptor
    /// makes its offer the first thing it says.
    pub(super) fn before_own_frame(&mut self) {
        if self.role() == Role::Acceptor && self.agreement == Agreement::Pending {
            self.queue_offer();
        }
    }

    /// Called after this end queued a frame of its own: a dialer's offer follows its
    /// first one (never ahead of it, so a probing server reads its first frame).
    pub(super) fn after_own_frame(&mut self) {
        if self.role() == Role::Dialer && self.agreement == Agreement::Pending {
            self.queue_offer();
        }
    }

    /// The acceptor offers the extensions once the session's first frame arrived
    /// (after answering it, if it was a probe).
    pub(super) fn after_frame(&mut self) {
        if self.role() == Role::Acceptor && self.agreement == Agreement::Pending {
            self.queue_offer();
        }
    }

    /// Learns from a frame about to be applied whether the peer has the extensions
    /// (the VRMs that tell are judged in `on_vrm`). See `negotiate` for why the order
    /// of frames tells.
    pub(super) fn learn_from(&mut self, h: &Header) {
        if self.agreement != Agreement::Pending {
            return;
        }
        match (self.role(), h.cmd) {
            (_, Cmd::Syn) => self.resolve(h.length == 1),
            // An acceptor of ours sends HELLO ahead of everything but a probe's answer.
            (Role::Dialer, Cmd::Vrm) => {}
            (Role::Dialer, _) => self.resolve(false),
            // A dialer of ours sends ASK ahead of anything on a stream we opened (while
            // pending, every stream in the table is one we opened).
            (Role::Acceptor, Cmd::Psh | Cmd::Cfm | Cmd::Fin)
                if self.streams.contains_key(&h.id) =>
            {
                self.resolve(false)
            }
            (Role::Acceptor, _) => {}
        }
    }

    /// A VRM: the answer to our ping or offer, the peer's offer, or a request to answer.
    pub(super) fn on_vrm(&mut self, now: Instant, v1: u16, v2: u32) {
        if let Ping::Sent { at, a, b } = self.ping {
            if (v1, v2) == verify_code(a, b) {
                self.stats.rtt = Some(now.saturating_duration_since(at));
                self.ping = Ping::Idle;
                return;
            }
        }
        let (ours, theirs) = match self.role() {
            Role::Dialer => (ASK_ID, HELLO_ID),
            Role::Acceptor => (HELLO_ID, ASK_ID),
        };
        if matches!(self.offer, Offer::Sent | Offer::Done) && (v1, v2) == verify_code(ours, CAPS) {
            // The answer to our offer: a round-trip sample, and from a peer that did
            // not say it has the extensions first, a no. Never answered: answering an
            // answer could start an endless exchange.
            if self.offer == Offer::Sent {
                self.offer = Offer::Done;
                let sample = now.saturating_duration_since(self.offer_at);
                self.stats.rtt.get_or_insert(sample);
                self.resolve(false);
            }
            return;
        }
        if self.config.extensions && (v1, v2) == (theirs, CAPS) {
            // The peer's offer: our own goes ahead of the answer.
            self.resolve(true);
        }
        let (a, b) = verify_code(v1, v2);
        self.ctrl
            .push_back((Header::new(Cmd::Vrm, a, b), Tag::Answer));
        self.answers += 1;
    }

    /// Settles the agreement (once): every stream takes the session's mode, and what
    /// waited for it goes ahead.
    fn resolve(&mut self, extended: bool) {
        if self.agreement != Agreement::Pending || self.end.is_some() {
            return;
        }
        let ids: Vec<u16> = self.streams.keys().copied().collect();
        if extended {
            self.agreement = Agreement::Extended;
            self.decoder.set_extended();
            // The peer learns from our offer that we have them; settings follow it.
            self.queue_offer();
            let set = Header::new(Cmd::Set, SET_RECV_WINDOW, self.config.window);
            self.ctrl.push_back((set, Tag::Session));
            if self.going_away && !self.gwy_sent {
                self.push_ctrl(Header::new(Cmd::Gwy, 0, self.gwy_code));
                self.gwy_sent = true;
            }
            for id in ids {
                self.extend(id);
            }
            if self.stats.rtt.is_none() {
                // Window tuning needs a round-trip time.
                self.ping(self.now);
            }
        } else {
            self.agreement = Agreement::Base;
            for id in ids {
                self.settle_base(id);
            }
        }
        self.events.push_back(Event::Agreed(self.agreement));
    }

    /// A stream we opened before the agreement becomes extended.
    fn extend(&mut self, id: u16) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.set(flag::EXT, true);
        self.wake_shutdown(id);
        if let Some(code) = self.deferred_resets.remove(&id) {
            // The reset goes ahead: data not sent yet is dropped with it.
            self.abort(id);
            let Some(s) = self.streams.get_mut(&id) else {
                return;
            };
            s.set_fin(LocalFin::Queued);
            self.ctrl
                .push_back((Header::new(Cmd::Rst, id, code), Tag::Stream(s.gen)));
            return;
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if matches!(
            s.state,
            State::Closing {
                peer_fin: false,
                ..
            }
        ) {
            // Released while pending: its FIN(0) went as a base FIN would; now the peer
            // is also told to stop writing, as `close` does on an extended stream.
            self.ctrl
                .push_back((Header::new(Cmd::Wnd, id, 0), Tag::Stream(s.gen)));
        }
    }

    /// A stream we opened before the agreement keeps the base protocol.
    fn settle_base(&mut self, id: u16) {
        self.wake_shutdown(id);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if self.deferred_resets.remove(&id).is_some() && s.send_len() == 0 {
            // No reset in the base protocol: a close, whose FIN follows the data (with
            // data left, the last payload queues it, as after `close`).
            s.set_fin(LocalFin::Queued);
            self.ctrl
                .push_back((Header::new(Cmd::Fin, id, 0), Tag::Stream(s.gen)));
        }
    }

    /// A shutdown that waited for the agreement may retry now.
    fn wake_shutdown(&mut self, id: u16) {
        if let Some(s) = self.streams.get_mut(&id) {
            if s.has(flag::SHUT_WAITING) {
                s.set(flag::SHUT_WAITING, false);
                self.events
                    .push_back(Event::Writable(StreamId::new(id, s.gen)));
            }
        }
    }

    /// `SET(key, value)`: a setting of the peer. Unknown keys are ignored (a later
    /// version may send more).
    pub(super) fn on_set(&mut self, key: u16, value: u32) {
        if key != SET_RECV_WINDOW || value == 0 {
            return;
        }
        let old = self.peer_window;
        let new = value.min(MAX_GRANT);
        self.peer_window = new;
        for (id, s) in self.streams.iter_mut() {
            // A window a WND already raised only grows.
            s.send_window = if s.send_window == old {
                new
            } else {
                s.send_window.max(new)
            };
            super::owe_writable(s, *id, &mut self.events);
        }
    }
}

#[cfg(test)]
impl Session {
    /// The values of our ping while it is queued or outstanding.
    pub(crate) fn ping_values(&self) -> Option<(u16, u32)> {
        match self.ping {
            Ping::Idle => None,
            Ping::Queued { a, b } | Ping::Sent { a, b, .. } => Some((a, b)),
        }
    }

    /// VRM answers queued and not yet sent.
    pub(crate) fn answers_owed(&self) -> usize {
        self.answers
    }

    /// Makes the next `open` try `id` first.
    pub(crate) fn set_next_id(&mut self, id: u16) {
        self.ids.set_next(id);
    }
}
