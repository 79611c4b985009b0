//! The model's checks: the events each end reports, the invariants after every step,
//! and what must hold once the link has settled.

use smux_proto::testing::{Internals, ASSUMED_WINDOW};
use smux_proto::{Agreement, EndReason, Event};

use super::{Held, Run};

impl Run {
    pub(super) fn on_event(&mut self, side: usize, ev: Event) {
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
            Event::Incoming(sid) => {
                let id = sid.number();
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
            Event::Readable(sid) => {
                let id = sid.number();
                let c = self.event_conn(side, id, "Readable");
                let conn = &mut self.conns[c];
                assert!(
                    conn.held[side].holds(),
                    "end {side}: Readable({id}) released"
                );
                conn.read_blocked[side] = false;
            }
            Event::Writable(sid) => {
                let id = sid.number();
                let c = self.event_conn(side, id, "Writable");
                let conn = &mut self.conns[c];
                assert_eq!(conn.held[side], Held::Open, "end {side}: Writable({id})");
                conn.write_blocked[side] = false;
                conn.shut_wait[side] = false;
            }
            Event::Finished(sid) => {
                let id = sid.number();
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
            Event::Reset(sid, code) => {
                let id = sid.number();
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
            Event::Closed(sid) => {
                let id = sid.number();
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
            other => panic!("end {side}: an event the model does not know: {other:?}"),
        }
    }

    /// The invariants that hold after every step.
    pub(super) fn check(&self) {
        for (side, end) in self.ends.iter().enumerate() {
            let s = &end.s;
            let c = s.config();
            let peer_window = self.ends[1 - side].s.config().window();
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
            // Every stream the session has, and every one the application holds.
            for (&id, &k) in &end.cur {
                if !self.conns[k].exists[side] && self.conns[k].held[side] != Held::Open {
                    continue;
                }
                let sid = s.sid(id);
                // Every stream takes the session's mode, on each end once it knows.
                assert_eq!(
                    s.is_extended(sid),
                    self.conns[k].ext && end.agreement == Agreement::Extended,
                    "end {side}: stream {id} in the wrong mode ({:?})",
                    end.agreement
                );
                let window = s.recv_window(sid);
                assert!(
                    window >= c.window() && window <= c.max_window().max(c.window()),
                    "end {side}: stream {id} window {window}"
                );
                assert!(
                    s.is_extended(sid) || window == c.window(),
                    "base stream {id} grew"
                );
                // A peer may send what it assumes until it knows our window.
                let limit = window.max(peer_window.min(ASSUMED_WINDOW));
                assert!(
                    s.readable_len(sid) <= limit as usize,
                    "end {side}: stream {id} over its window"
                );
            }
            for &id in &end.handles {
                let conn = &self.conns[end.cur[&id]];
                let sid = s.sid(id);
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

    /// Once the link is settled, both ends agree on which streams exist.
    pub(super) fn check_agreement(&self) {
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

    /// After the link settled with every stream accepted and read: the agreement
    /// settled to the truth and its frames left, every ping and VRM request was
    /// answered, and every byte written on a stream its reader holds arrived.
    pub(super) fn check_settled(&self) {
        let [d, a] = &self.ends;
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
            for (side, end) in self.ends.iter().enumerate() {
                assert!(
                    !end.offer_due || end.offer_sent,
                    "end {side}: its offer was due and never left"
                );
                if want == Agreement::Extended {
                    let peer = &self.ends[1 - side];
                    assert!(end.set_sent, "end {side}: extended, and no SET");
                    assert_eq!(
                        end.peer_set,
                        Some(peer.s.config().window()),
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
        for (c, conn) in self.conns.iter().enumerate() {
            if conn.aborted() || self.orphan(c) {
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
        for (side, end) in self.ends.iter().enumerate() {
            if end.pinged && !end.ended && !self.ends[1 - side].ended {
                assert!(
                    end.s.stats().rtt.is_some(),
                    "end {side}: ping never answered"
                );
            }
        }
    }

    /// After every stream was closed and the link settled again: nothing is left.
    pub(super) fn check_closed(&self) {
        for (side, end) in self.ends.iter().enumerate() {
            if end.ended {
                continue;
            }
            let orphans = self
                .conns
                .iter()
                .enumerate()
                .any(|(c, conn)| conn.opener == side && conn.exists[side] && self.orphan(c));
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
        let live = !self.ends[0].ended && !self.ends[1].ended;
        for (c, conn) in self.conns.iter().enumerate() {
            for side in 0..2 {
                assert!(
                    !conn.exists[side] || self.orphan(c),
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
}
