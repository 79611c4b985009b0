//! The model's view of the wire: every frame an end sends is checked and tagged with
//! the stream lifetime it was sent for; every frame an end takes must be the next one
//! sent, and moves that end's agreement, offers and stream records on.

use smux_proto::frame::{Cmd, Header};
use smux_proto::testing::{ASK_ID, ASSUMED_WINDOW, CAPS, HELLO_ID, SET_RECV_WINDOW};
use smux_proto::{verify_code, Agreement, Role, Verdict, RESET_REFUSED};

use super::{Held, Run};
use crate::wire::{transmit, VrmIn};

impl Run {
    /// Polls end `side`'s output onto the link and checks every frame.
    pub(super) fn transmit(&mut self, side: usize, limit: usize) {
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
    pub(super) fn send_limit(&self, side: usize, c: usize) -> u64 {
        let end = &self.ends[side];
        let assumed = end.s.config().window().min(ASSUMED_WINDOW);
        let base = end.peer_set.unwrap_or(assumed);
        u64::from(base.max(self.conns[c].wnd_received[side]))
    }

    /// Checks a frame end `side` sent; returns the stream lifetime it belongs to.
    fn sent_frame(&mut self, side: usize, h: Header) -> Option<usize> {
        trace!("  end {side} sends {h:?}");
        self.offer_order(side, h);
        let Header { cmd, id, length } = h;
        let config = self.ends[side].s.config();
        let (window, max_frame) = (config.window(), config.max_frame());
        let max_window = config.max_window().max(window);
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
        let going_away = end.going_away;
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
                // A base stream confirms only what its application read; an extended
                // one also what it dropped once released.
                if conn.held[side].holds() || !conn.ext {
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
                        assert!(
                            conn.held[side] != Held::Backlog || going_away,
                            "end {side}: refused {id}, which waits for accept"
                        );
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
                        assert!(
                            conn.held[side] != Held::Backlog || going_away,
                            "end {side}: refused {id}, which waits for accept"
                        );
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
    pub(super) fn deliver(&mut self, side: usize, len: usize) -> usize {
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
            let got = f.header;
            if let Some((id, left, c)) = self.ends[side].piece {
                // A piece of the payload whose header came earlier.
                assert_eq!((got.cmd, got.id), (Cmd::Psh, id), "end {side}: payload cut");
                assert!(
                    got.length <= left,
                    "end {side}: payload past its header's length"
                );
                let left = left - got.length;
                self.ends[side].piece = (left > 0).then_some((id, left, c));
                let c = c.expect("a PSH without its stream");
                self.conns[c].psh_received[side] += u64::from(got.length);
                continue;
            }
            let (h, c) = self.ends[peer]
                .frames
                .pop_front()
                .expect("took a frame that was never sent");
            if h.cmd == Cmd::Psh && h.length > 0 {
                // Its header alone, then the payload piece by piece.
                assert_eq!(
                    got,
                    Header::new(Cmd::Psh, h.id, 0),
                    "end {side} took a frame other than was sent ({h:?})"
                );
                self.ends[side].piece = Some((h.id, h.length, c));
                self.received_frame(side, got, c);
                continue;
            }
            assert_eq!(h, got, "end {side} took a frame other than was sent");
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
    pub(super) fn received_frame(&mut self, side: usize, h: Header, c: Option<usize>) {
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
}
