//! The application's calls on either end, each checked against what the model says it
//! must do: read, write, open, accept, close, shutdown, reset, go-away, ping, the
//! agreement, and time passing.

use std::time::Duration;

use bytes::Bytes;
use smux_proto::testing::Internals;
use smux_proto::{Agreement, OpenError, ReadError, WriteError};

use super::{Conn, Held, Release, Run, PAIR_MAX_ELAPSED};
use crate::scenario::{fill_pattern, pattern};
use crate::wire::next_free_id;

impl Run {
    /// Reads from a held stream and checks the outcome; returns how many bytes were
    /// read, or `None` when nothing was.
    pub(super) fn read(
        &mut self,
        side: usize,
        sel: usize,
        len: usize,
        chunk: bool,
    ) -> Option<usize> {
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

    pub(super) fn write(&mut self, side: usize, sel: usize, len: usize) {
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

    pub(super) fn open(&mut self, side: usize) {
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
            Ok(sid) => {
                let id = sid.number();
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
        self.conns.push(Conn::new(id, side, c, ext));
        let end = &mut self.ends[side];
        end.cur.insert(id, c);
        end.handles.push(id);
    }

    pub(super) fn accept(&mut self, side: usize) -> bool {
        let end = &mut self.ends[side];
        let got = end.s.accept().map(|i| i.number());
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
    pub(super) fn release(&mut self, side: usize, sel: usize, how: Release) {
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

    pub(super) fn go_away(&mut self, side: usize, code: u32) {
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

    pub(super) fn advance(&mut self, d: Duration) {
        if self.elapsed + d > PAIR_MAX_ELAPSED {
            return;
        }
        self.advance_by(d);
    }

    /// Moves the clock on to `t` (a deadline of at most a millisecond away, so past
    /// the bound of `advance` too: no keepalive timeout comes near).
    pub(super) fn advance_to(&mut self, t: std::time::Instant) {
        self.advance_by(t.saturating_duration_since(self.now));
    }

    fn advance_by(&mut self, d: Duration) {
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
                end.next_pin = self.now + end.s.config().keepalive_interval();
                end.offer_due |= end.agreement == Agreement::Pending;
            }
        }
    }

    pub(super) fn ping(&mut self, side: usize) {
        let now = self.now;
        let end = &mut self.ends[side];
        if end.s.ping(now) {
            end.pinged = true;
            end.offer_due |= end.agreement == Agreement::Pending;
        }
    }

    pub(super) fn start_agreement(&mut self, side: usize) {
        let end = &mut self.ends[side];
        end.offer_due |= end.agreement == Agreement::Pending && !end.s.is_ended();
        end.s.start_agreement();
    }
}
