//! The negotiated extensions as the session applies them: negotiation, windows that
//! grow, half-close, reset and go-away. Wire values and the reasoning behind them are in
//! `negotiate`; the stream life cycle is in `stream`.

use std::time::{Duration, Instant};

use super::agree::MAX_GRANT;
use super::{Event, Session, StreamId, Tag};
use crate::config::Config;
use crate::error::WriteError;
use crate::frame::{Cmd, Header};
use crate::negotiate::Agreement;
use crate::stream::{flag, LocalFin, State, Stream};

/// Error code of the RST that refuses a stream the peer opened (accept backlog full, or
/// going away).
pub const RESET_REFUSED: u32 = 1;

/// How long a frame no application waits for may wait to leave with other frames
/// (`Session::defer`). Short next to anything a peer would notice (the ID and the
/// stream record are freed that much later), long next to a request's turnaround, so
/// streams opened and closed one after another take their closing FINs along with the
/// next stream's frames.
pub(crate) const DEFER_LIMIT: Duration = Duration::from_millis(1);

impl Session {
    /// Whether stream `id` is extended: both ends have the extensions (false while the
    /// agreement is pending).
    pub fn is_extended(&self, id: StreamId) -> bool {
        self.streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .is_some_and(|s| s.has(flag::EXT))
    }

    /// Whether a go-away was sent or received: no new streams in either direction.
    pub fn is_going_away(&self) -> bool {
        self.going_away
    }

    /// Our receive window on stream `id` (what the peer may have unconfirmed), 0 if
    /// unknown. Starts at `Config::window` and only grows.
    pub fn recv_window(&self, id: StreamId) -> u32 {
        self.streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .map_or(0, |s| s.recv_window)
    }

    // ----- windows -----------------------------------------------------------------

    pub(super) fn on_wnd(&mut self, id: u16, window: u32) {
        let Some(s) = self.streams.get_mut(&id).filter(|s| s.has(flag::EXT)) else {
            return;
        };
        if window == 0 {
            return self.on_stop(id);
        }
        s.send_window = s.send_window.max(window.min(MAX_GRANT));
        super::owe_writable(s, id, &mut self.events);
    }

    /// `WND(0)`: the peer released the stream and reads no more, so our writes end the
    /// way a base FIN ends them (`PeerClosed`) rather than filling a sink.
    fn on_stop(&mut self, id: u16) {
        self.end_turn(id);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.has(flag::PEER_FINAL) || s.has(flag::STOPPED) {
            return;
        }
        s.set(flag::STOPPED, true);
        self.stats.buffered_out -= s.discard_send(&mut self.pool);
        let fin = match s.state {
            State::Open | State::PeerFin => {
                s.state = State::Shut {
                    fin: LocalFin::Queued,
                    peer_fin: s.state.peer_fin(),
                };
                true
            }
            st => st.fin() == Some(LocalFin::Waiting),
        };
        if fin {
            s.set_fin(LocalFin::Queued);
        }
        if s.has(flag::WRITE_BLOCKED) {
            s.set(flag::WRITE_BLOCKED, false);
            self.events
                .push_back(Event::Writable(StreamId::new(id, s.gen)));
        }
        if fin {
            // The peer's application released the stream: only the close handshake
            // waits for this FIN.
            let gen = s.gen;
            self.defer(Header::new(Cmd::Fin, id, 0), gen);
        }
    }

    // ----- half-close and reset ------------------------------------------------------

    /// The peer's FIN (or RST) on an extended stream; `last` if it was its last FIN.
    pub(super) fn peer_finished(&mut self, id: u16, last: bool) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.has(flag::PEER_FINAL) {
            // Nothing may follow the peer's last FIN.
            return;
        }
        s.set(flag::PEER_FINAL, last);
        if !s.state.peer_fin() {
            s.state = match s.state {
                State::Open => State::PeerFin,
                State::Shut { fin, .. } => State::Shut {
                    fin,
                    peer_fin: true,
                },
                State::Closing { fin, .. } => State::Closing {
                    fin,
                    peer_fin: true,
                },
                other => other,
            };
            if !matches!(s.state, State::Closing { .. }) {
                self.events
                    .push_back(Event::Finished(StreamId::new(id, s.gen)));
            }
        }
        self.owe_last_fin(id);
        self.maybe_remove(id);
    }

    /// Queues our last FIN, `FIN(1)`, once it is due: the application released the
    /// stream, our first FIN left and the peer's FIN arrived. Until then we may still
    /// confirm data, and the peer must keep the ID; after it we send nothing more.
    pub(super) fn owe_last_fin(&mut self, id: u16) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let due = matches!(
            s.state,
            State::Closing {
                fin: LocalFin::Sent,
                peer_fin: true
            }
        );
        if s.has(flag::EXT) && due && !s.has(flag::FINAL_QUEUED | flag::FINAL_SENT) {
            s.set(flag::FINAL_QUEUED, true);
            // The peer has our first FIN: only its bookkeeping waits for this one.
            let gen = s.gen;
            self.defer(Header::new(Cmd::Fin, id, 1), gen);
        }
    }

    pub(super) fn on_rst(&mut self, id: u16, code: u32) {
        let Some(s) = self.streams.get_mut(&id).filter(|s| s.has(flag::EXT)) else {
            return;
        };
        if s.has(flag::PEER_FINAL) {
            return;
        }
        let held = !matches!(s.state, State::Closing { .. });
        if held && !s.has(flag::RESET) {
            self.resets.insert(id, code);
            self.events
                .push_back(Event::Reset(StreamId::new(id, s.gen), code));
        }
        self.abort(id);
        // A RST stands for the peer's (not last) FIN.
        self.peer_finished(id, false);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        // Our write side ends too: its FIN goes now (it will be our last).
        let fin = match s.state {
            State::PeerFin => {
                s.state = State::Shut {
                    fin: LocalFin::Queued,
                    peer_fin: true,
                };
                true
            }
            st => st.fin() == Some(LocalFin::Waiting),
        };
        if fin {
            s.set_fin(LocalFin::Queued);
            self.push_ctrl(Header::new(Cmd::Fin, id, 0));
        }
    }

    /// Drops everything buffered on stream `id`, both ways, and marks it reset.
    pub(super) fn abort(&mut self, id: u16) {
        self.end_turn(id);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.set(flag::RESET, true);
        s.set(flag::WRITE_BLOCKED, false);
        self.sliced -= s.sliced();
        self.stats.buffered_in -= s.discard_recv(&mut self.pool);
        self.stats.buffered_out -= s.discard_send(&mut self.pool);
    }

    /// Shuts the write side of stream `id` (half-close): a FIN follows the bytes
    /// already accepted, writes fail from now on, the peer may keep writing, and reads
    /// go on until the peer's FIN.
    ///
    /// Half-close needs the extensions on both ends. While the agreement is pending
    /// this returns `Blocked` (an [`Event::Writable`] follows it, within a round trip);
    /// on a base stream it fails with [`WriteError::HalfCloseUnsupported`] and sends
    /// nothing, since a base FIN would end both directions and the rest of the peer's
    /// data would be lost behind a clean end-of-file.
    pub fn shutdown(&mut self, id: StreamId) -> Result<(), WriteError> {
        self.check_live().map_err(WriteError::SessionEnded)?;
        let pending = self.agreement == Agreement::Pending;
        let s = self
            .streams
            .get_mut(&id.num)
            .filter(|s| s.gen == id.gen)
            .ok_or(WriteError::UnknownStream)?;
        if matches!(s.state, State::Closing { .. }) {
            return Err(WriteError::Closed);
        }
        if pending {
            s.set(flag::SHUT_WAITING, true);
            return Err(WriteError::Blocked);
        }
        if !s.has(flag::EXT) {
            return Err(WriteError::HalfCloseUnsupported);
        }
        if s.has(flag::RESET) {
            return Err(self.write_refusal(id.num));
        }
        let peer_fin = match s.state {
            State::Open => false,
            State::PeerFin => true,
            State::Shut { .. } => return Ok(()),
            State::Closing { .. } => return Err(WriteError::Closed),
        };
        self.end_turn(id.num);
        let s = self.streams.get_mut(&id.num).expect("found above");
        let fin = if s.send_len() > 0 {
            LocalFin::Waiting
        } else {
            self.ctrl
                .push_back((Header::new(Cmd::Fin, id.num, 0), Tag::Stream(s.gen)));
            LocalFin::Queued
        };
        s.state = State::Shut { fin, peer_fin };
        s.set(flag::WRITE_BLOCKED, false);
        Ok(())
    }

    /// Aborts stream `id` in both directions and releases it: buffered data is dropped
    /// here, the peer drops its own and its reads and writes report `code`. The ID is
    /// freed once the peer acknowledged. On a base stream (reference peer) there is no
    /// abort, so this is [`Session::close`]; while the agreement is pending the stream
    /// is released at once and the RST (or FIN) waits for it.
    pub fn reset(&mut self, id: StreamId, code: u32) -> Result<(), WriteError> {
        self.check_live().map_err(WriteError::SessionEnded)?;
        let s = self
            .streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .ok_or(WriteError::UnknownStream)?;
        if self.agreement == Agreement::Pending && !matches!(s.state, State::Closing { .. }) {
            self.defer_reset(id.num, code);
            return Ok(());
        }
        if !s.has(flag::EXT) {
            return self.close(id);
        }
        if matches!(s.state, State::Closing { .. }) {
            return Err(WriteError::Closed);
        }
        let peer_reset = s.has(flag::RESET);
        self.abort(id.num);
        self.resets.remove(&id.num);
        self.backlog.retain(|x| *x != id.num);
        let s = self.streams.get_mut(&id.num).expect("found above");
        let fin = match s.state.fin() {
            Some(LocalFin::Sent) => LocalFin::Sent,
            // Unsent data is gone, so a waiting FIN has nothing to wait for; the RST
            // stands for it.
            Some(LocalFin::Waiting) | None => LocalFin::Queued,
            Some(LocalFin::Queued) => LocalFin::Queued,
        };
        s.state = State::Closing {
            fin,
            peer_fin: s.state.peer_fin(),
        };
        // After a peer's RST our FIN is already queued; after our last FIN nothing may
        // follow.
        if !peer_reset && !s.has(flag::FINAL_SENT) {
            self.push_ctrl(Header::new(Cmd::Rst, id.num, code));
        } else {
            self.owe_last_fin(id.num);
        }
        self.maybe_remove(id.num);
        Ok(())
    }

    /// A reset before the agreement: released now, its RST (or, on a base stream, its
    /// FIN) queued once the mode is known (`Session::extend`, `settle_base`). What
    /// arrived is dropped (a close drops it too); unsent data waits with the reset: an
    /// extended stream's RST drops it, while on a base stream a reset is a close, whose
    /// FIN follows every accepted byte (dropping them would end the peer's stream with a
    /// clean end-of-file after a part of the data).
    fn defer_reset(&mut self, id: u16, code: u32) {
        self.end_turn(id);
        self.backlog.retain(|x| *x != id);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.set(flag::SHUT_WAITING | flag::WRITE_BLOCKED, false);
        self.sliced -= s.sliced();
        self.stats.buffered_in -= s.discard_recv(&mut self.pool);
        s.state = State::Closing {
            fin: LocalFin::Waiting,
            peer_fin: s.state.peer_fin(),
        };
        // No CFM may follow a base FIN; the discarded bytes are not confirmed.
        s.consumed = 0;
        self.deferred_resets.insert(id, code);
    }

    /// Why a write on stream `id`, which exists and takes no writes, fails.
    pub(super) fn write_refusal(&self, id: u16) -> WriteError {
        let Some(s) = self.streams.get(&id) else {
            return WriteError::UnknownStream;
        };
        match (s.state, self.resets.get(&id)) {
            (State::Closing { .. }, _) => WriteError::Closed,
            (_, Some(code)) => WriteError::Reset(*code),
            (State::PeerFin, None) => WriteError::PeerClosed,
            _ if s.has(flag::STOPPED) => WriteError::PeerClosed,
            _ => WriteError::Closed,
        }
    }

    // ----- go-away -------------------------------------------------------------------

    /// Starts a graceful shutdown: no new streams in either direction (opens fail with
    /// `OpenError::GoingAway`, the peer's are refused, and so are those not yet
    /// accepted), open streams finish, and the session then ends with
    /// [`EndReason::Drained`](crate::EndReason::Drained). With extensions on the peer is told (a GWY frame carrying
    /// `code`) and stops opening too (if the agreement is still pending, once it settles); a
    /// reference peer only sees its new streams refused.
    pub fn go_away(&mut self, code: u32) {
        if self.end.is_some() || self.going_away {
            return;
        }
        self.going_away = true;
        self.hurry = true;
        self.gwy_code = code;
        if self.agreement == Agreement::Extended {
            self.push_ctrl(Header::new(Cmd::Gwy, 0, code));
            self.gwy_sent = true;
        }
        for id in std::mem::take(&mut self.backlog) {
            if let Some(s) = self.streams.get_mut(&id) {
                self.sliced -= s.sliced();
                self.stats.buffered_in -= s.discard_recv(&mut self.pool);
            }
            self.refuse(id);
        }
    }

    pub(super) fn on_gwy(&mut self) {
        self.going_away = true;
        self.hurry = true;
        self.gwy_received = true;
        if !self.gwy_sent {
            // Our answer tells the peer we saw its GWY: whatever we opened before it
            // is ahead of the answer on the wire.
            self.push_ctrl(Header::new(Cmd::Gwy, 0, 0));
            self.gwy_sent = true;
        }
    }

    // ----- frames that wait for company ------------------------------------------------

    /// Queues a frame of stream `id` (record `gen`) that no application waits for:
    /// an extended stream's FIN that only the peer's close handshake needs, to free the
    /// ID. It leaves with the next frames that go out anyway, or at `DEFER_LIMIT`, so
    /// a stream's close adds no write (and no wake-up of the peer) of its own when
    /// traffic goes on. Frames still leave in the order they were queued.
    ///
    /// The deadline counts from the session's last known time (an application call
    /// reads no clock), so after a quiet spell it may have passed already: the frame
    /// then leaves at the next transmit, as it would without deferral.
    pub(super) fn defer(&mut self, h: Header, gen: u16) {
        if self.deferred == 0 {
            self.deferred_until = Some(self.now + DEFER_LIMIT);
        }
        self.deferred += 1;
        self.ctrl.push_back((h, Tag::Deferred(gen)));
    }

    /// Whether nothing but deferred frames is queued.
    pub(super) fn only_deferred(&self) -> bool {
        self.deferred == self.ctrl.len() && self.cfm.is_empty() && self.ready.is_empty()
    }

    /// True while everything queued is deferred and may wait at `now`.
    pub(super) fn holds_back(&self, now: Instant) -> bool {
        self.deferred_until().is_some_and(|t| now < t) && self.only_deferred()
    }

    /// When the deferred frames must leave at the latest (`None`: none waits).
    pub(crate) fn deferred_until(&self) -> Option<Instant> {
        self.deferred_until.filter(|_| !self.hurry)
    }

    /// Deferred frames leave at the next transmit, and later ones too: for a graceful
    /// close, which waits until everything queued has been written.
    pub(crate) fn hurry(&mut self) {
        self.hurry = true;
    }

    /// True once a go-away has run its course: no stream left, nothing to send, and the
    /// peer answered our GWY (if we sent one).
    pub(super) fn is_drained(&self) -> bool {
        self.nothing_to_lose() && self.queues_empty() && (!self.gwy_sent || self.gwy_received)
    }

    /// Going away with no stream left: the transport closing now loses nothing.
    pub(super) fn nothing_to_lose(&self) -> bool {
        self.going_away && self.streams.is_empty()
    }
}

/// Window tuning for `n` bytes the application just consumed on `s`: grows the receive
/// window when a whole window was consumed within two round trips (then the window,
/// not the reader, limits the stream). Doubles up to `max_window`, with all growth in
/// the session (`extra`) within half of `max_buffered_in`, so slow readers elsewhere
/// keep their share of the input bound. Returns true if the window grew (a WND is owed).
pub(super) fn grow_window(
    s: &mut Stream,
    n: usize,
    clock: (Instant, Instant),
    rtt: Option<Duration>,
    config: &Config,
    extra: &mut usize,
) -> bool {
    let Some(rtt) = rtt else {
        return false;
    };
    if !s.has(flag::EXT) || !s.state.takes_data() || s.recv_window >= config.max_window || n == 0 {
        return false;
    }
    // Session microseconds, wrapping after 71 minutes: tuning compares nearby instants.
    // Read only at the ends of a measurement, not at every read.
    let (now, epoch) = clock;
    let micros = || now.saturating_duration_since(epoch).as_micros() as u32;
    if s.tune_bytes == 0 {
        s.tune_at = micros();
    }
    s.tune_bytes = s.tune_bytes.saturating_add(n as u32);
    if s.tune_bytes < s.recv_window {
        return false;
    }
    s.tune_bytes = 0;
    let rtt = rtt.as_micros().min(u128::from(u32::MAX / 4)) as u32;
    if micros().wrapping_sub(s.tune_at) > 2 * rtt {
        return false;
    }
    let want = s.recv_window.saturating_mul(2).min(config.max_window) - s.recv_window;
    let add = (want as usize).min((config.max_buffered_in / 2).saturating_sub(*extra));
    if add == 0 {
        return false;
    }
    s.recv_window += add as u32;
    *extra += add;
    s.set(flag::WND_OWED, true);
    true
}
