//! The session: the state machine that ties frames, IDs, streams and timers together.
//!
//! Input side: [`Session::handle_input`] decodes frames and applies them. Output side:
//! [`Session::poll_transmit`] emits control frames first (SYN, FIN, CFM, PIN, VRM) and
//! then data, one frame per stream in round-robin order. Application side: `open`,
//! `accept`, `read`, `write`, `close` name a stream by its [`StreamId`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ConfigError};
use crate::error::{EndReason, OpenError, ProtocolError, ReadError, WriteError};
use crate::frame::{Cmd, Decoder, Frame, Header};
use crate::id::{IdMap, Role};
use crate::probe::verify_code;
use crate::stream::{flag, LocalFin, Pool, State, Stream};
use crate::transmit::Transmit;
use crate::util::{mix64, IdBuildHasher};

/// How long a writer whose turn in the send queue came keeps its share of the room
/// without writing.
const GRANT_TTL: Duration = Duration::from_millis(500);

/// A stream's ID: its 16-bit number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u16);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Something the application may want to act on. Events are hints: they say that
/// retrying an operation may now succeed, and carry no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream; [`Session::accept`] returns it.
    Incoming(StreamId),
    /// Data arrived on a stream whose buffer was empty.
    Readable(StreamId),
    /// A stream whose write returned `Blocked` has room again.
    Writable(StreamId),
    /// The peer's FIN arrived: reads return the buffered data, then end-of-file;
    /// writes fail.
    Finished(StreamId),
    /// The stream's close handshake completed and its ID is free.
    Closed(StreamId),
    /// The session ended; every later call reports this reason.
    Ended(EndReason),
}

/// Where a stream is in its life cycle, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamState {
    /// Both directions open.
    Open,
    /// The peer's FIN arrived: reads drain the buffer, then report end-of-file; writes
    /// fail.
    Finished,
    /// The application closed it; the close handshake is still completing.
    Closing,
}

/// Figures the application can read at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Streams that exist (open, or closing and awaiting the handshake).
    pub streams: usize,
    /// Streams opened by the peer and not yet accepted.
    pub accept_backlog: usize,
    /// Bytes buffered for reading across all streams.
    pub buffered_in: usize,
    /// Bytes accepted by writes and not yet handed to the transport.
    pub buffered_out: usize,
    /// Frames handed to the transport.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes handed to the transport (headers included).
    pub bytes_sent: u64,
    /// Bytes received (headers included).
    pub bytes_received: u64,
    /// PSH payload bytes dropped because their stream was closed or unknown.
    pub bytes_discarded: u64,
    /// Incoming streams refused because the accept backlog was full.
    pub streams_refused: u64,
    /// Protocol errors seen (at most 1: the first ends the session).
    pub protocol_errors: u64,
    /// Round-trip time measured by the last answered [`Session::ping`].
    pub rtt: Option<Duration>,
}

/// The state machine of one smux session. See the crate docs for the drive loop.
pub struct Session {
    config: Config,
    streams: HashMap<u16, Stream, IdBuildHasher>,
    ids: IdMap,
    decoder: Decoder,
    /// Streams opened by the peer, not yet accepted.
    backlog: VecDeque<u16>,
    /// Streams with accepted data to frame, in round-robin order.
    ready: VecDeque<u16>,
    /// Control frames in order: SYN, FIN, PIN and VRM.
    ctrl: VecDeque<Header>,
    /// Streams owing a CFM; the amount is read from the stream when it is sent.
    cfm: VecDeque<u16>,
    /// VRM answers in `ctrl`.
    answers: usize,
    pin_queued: bool,
    /// Streams whose write was refused for lack of send-queue room.
    /// Served first come, first served, so a writer that loops cannot take every
    /// freed byte ahead of those that wait.
    out_waiters: VecDeque<u16>,
    /// Streams whose turn came and that have not written yet, oldest first, with when
    /// the turn came; each holds a frame's worth of send-queue room until it writes,
    /// closes, or lets `GRANT_TTL` pass (so an idle stream cannot hold room forever).
    grants: VecDeque<(u16, Instant)>,
    /// The latest time the session was told (calls without a `now` use it).
    now: Instant,
    events: VecDeque<Event>,
    pool: Pool,
    /// Received bytes held as slices of the adapter's read buffers.
    sliced: usize,
    /// Length of a PSH that did not fit `max_buffered_in`; input waits for room.
    stalled: Option<usize>,
    next_ping: Instant,
    last_recv: Instant,
    ping: Option<(Instant, u16, u32)>,
    ping_seq: u64,
    end: Option<EndReason>,
    stats: Stats,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role())
            .field("stats", &self.stats())
            .field("end", &self.end)
            .finish()
    }
}

impl Session {
    /// A new session at time `now`. It sends nothing until a stream is opened, a frame
    /// must be answered or the first keepalive is due.
    pub fn new(config: Config, role: Role, now: Instant) -> Result<Session, ConfigError> {
        config.validate()?;
        Ok(Session {
            decoder: Decoder::new(config.max_frame),
            ids: IdMap::new(role),
            next_ping: now + config.keepalive_interval,
            last_recv: now,
            config,
            streams: HashMap::default(),
            backlog: VecDeque::new(),
            ready: VecDeque::new(),
            ctrl: VecDeque::new(),
            cfm: VecDeque::new(),
            answers: 0,
            pin_queued: false,
            out_waiters: VecDeque::new(),
            grants: VecDeque::new(),
            now,
            events: VecDeque::new(),
            pool: Pool::default(),
            sliced: 0,
            stalled: None,
            ping: None,
            ping_seq: 0,
            end: None,
            stats: Stats::default(),
        })
    }

    /// The session's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which end this session is.
    pub fn role(&self) -> Role {
        self.ids.role()
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.end.as_ref()
    }

    /// True once the session has ended.
    pub fn is_ended(&self) -> bool {
        self.end.is_some()
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        Stats {
            streams: self.streams.len(),
            accept_backlog: self.backlog.len(),
            ..self.stats.clone()
        }
    }

    // ----- input -----------------------------------------------------------------

    /// Whether the session takes input now. False while buffered input is at
    /// `max_buffered_in`, while `max_pending_answers` answers wait to be sent, and after
    /// the session ended. The adapter stops reading the transport while it is false
    /// and calls `handle_input` again once it turns true (after reads or transmits).
    pub fn wants_input(&self) -> bool {
        self.end.is_none()
            && self.answers < self.config.max_pending_answers
            && self
                .stalled
                .is_none_or(|need| self.stats.buffered_in + need <= self.config.max_buffered_in)
    }

    /// Decodes and applies every complete frame at the front of `input`, leaving a
    /// partial frame (or the rest, when [`Session::wants_input`] turns false) in place.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        self.now = self.now.max(now);
        while self.wants_input() {
            let header = match self.decoder.peek_header(input) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return self.protocol_error(e),
            };
            let len = Decoder::frame_len(&header);
            if input.len() < len {
                break;
            }
            if header.cmd == Cmd::Psh && self.must_stall(header) {
                self.stalled = Some(header.length as usize);
                break;
            }
            self.stalled = None;
            let frame = self.decoder.take(input, header);
            self.last_recv = now;
            self.stats.frames_received += 1;
            self.stats.bytes_received += len as u64;
            self.apply(now, frame);
        }
    }

    /// True if a PSH would be buffered and does not fit the session-wide bound.
    fn must_stall(&self, h: Header) -> bool {
        h.length > 0
            && self.stats.buffered_in + h.length as usize > self.config.max_buffered_in
            && self
                .streams
                .get(&h.id)
                .is_some_and(|s| s.state == State::Open)
    }

    fn apply(&mut self, now: Instant, frame: Frame) {
        let Header { cmd, id, length } = frame.header;
        match cmd {
            Cmd::Syn => self.on_syn(id),
            Cmd::Fin => self.on_fin(id),
            Cmd::Psh => self.on_psh(id, frame.payload),
            Cmd::Cfm => self.on_cfm(id, length),
            Cmd::Vrm => self.on_vrm(now, id, length),
            Cmd::Pin => {}
        }
    }

    fn on_syn(&mut self, id: u16) {
        if self.streams.contains_key(&id) {
            // Simultaneous open (or a confused peer): both SYNs bind to one stream.
            return;
        }
        self.ids.insert(id);
        let mut s = Stream::new();
        if self.backlog.len() >= self.config.accept_backlog {
            s.state = State::Closing {
                fin: LocalFin::Queued,
                peer_fin: false,
            };
            self.ctrl.push_back(Header::new(Cmd::Fin, id, 0));
            self.stats.streams_refused += 1;
        } else {
            self.backlog.push_back(id);
            self.events.push_back(Event::Incoming(StreamId(id)));
        }
        self.streams.insert(id, s);
    }

    fn on_fin(&mut self, id: u16) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        match s.state {
            State::Open => {
                s.state = State::PeerFin;
                self.events.push_back(Event::Finished(StreamId(id)));
            }
            State::Closing {
                fin,
                peer_fin: false,
            } => {
                s.state = State::Closing {
                    fin,
                    peer_fin: true,
                };
                if fin == LocalFin::Sent {
                    self.remove(id);
                }
            }
            // A repeated FIN changes nothing.
            State::PeerFin | State::Closing { peer_fin: true, .. } => {}
        }
    }

    fn on_psh(&mut self, id: u16, payload: Bytes) {
        let len = payload.len();
        let window = self.config.window;
        let Some(s) = self.streams.get_mut(&id).filter(|s| s.state == State::Open) else {
            self.stats.bytes_discarded += len as u64;
            return;
        };
        let unconfirmed = u64::from(s.unacked) + len as u64;
        if unconfirmed > u64::from(window) {
            return self.protocol_error(ProtocolError::WindowExceeded {
                id,
                unconfirmed,
                window,
            });
        }
        if len == 0 {
            return;
        }
        s.unacked += len as u32;
        let was_empty = s.recv_len == 0;
        // Slices pin read buffers several times their size: keep their total to an
        // eighth of the input bound, so what is held stays within about twice it.
        let may_slice = self.sliced + len <= self.config.max_buffered_in / 8;
        if s.push_recv(payload, may_slice, &mut self.pool) {
            self.sliced += len;
        }
        self.stats.buffered_in += len;
        if was_empty && !s.has(flag::READABLE_QUEUED) {
            s.set(flag::READABLE_QUEUED, true);
            self.events.push_back(Event::Readable(StreamId(id)));
        }
    }

    fn on_cfm(&mut self, id: u16, n: u32) {
        let window = self.config.window;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        // A CFM for more than was sent is clamped: it cannot create credit.
        s.in_flight = s.in_flight.saturating_sub(n);
        if s.has(flag::WRITE_BLOCKED) && s.send_room(window) > 0 && !s.has(flag::OUT_WAITER) {
            s.set(flag::WRITE_BLOCKED, false);
            self.events.push_back(Event::Writable(StreamId(id)));
        }
    }

    fn on_vrm(&mut self, now: Instant, v1: u16, v2: u32) {
        if let Some((sent, a, b)) = self.ping {
            if (v1, v2) == verify_code(a, b) {
                self.stats.rtt = Some(now.saturating_duration_since(sent));
                self.ping = None;
                return;
            }
        }
        let (a, b) = verify_code(v1, v2);
        self.ctrl.push_back(Header::new(Cmd::Vrm, a, b));
        self.answers += 1;
    }

    /// Reports that the transport reached end-of-file. `leftover` is the number of
    /// received bytes `handle_input` left unconsumed.
    ///
    /// While [`Session::wants_input`] is false the leftover may hold whole frames the
    /// application has not made room for yet: keep feeding them to `handle_input` as
    /// it reads, and call this only once input is wanted again, so no byte is lost.
    pub fn handle_eof(&mut self, leftover: usize) {
        if leftover > 0 && self.end.is_none() {
            self.protocol_error(ProtocolError::TruncatedFrame { have: leftover });
        } else {
            self.finish(EndReason::PeerClosed);
        }
    }

    /// Reports that reading or writing the transport failed.
    pub fn handle_transport_error(&mut self, err: &io::Error) {
        self.finish(EndReason::Transport(err.kind(), err.to_string()));
    }

    fn protocol_error(&mut self, e: ProtocolError) {
        if self.end.is_none() {
            self.stats.protocol_errors += 1;
        }
        self.finish(EndReason::Protocol(e));
    }

    // ----- time ------------------------------------------------------------------

    /// The next instant at which [`Session::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.end.is_some() {
            return None;
        }
        let ping = if self.pin_queued {
            None
        } else {
            Some(self.next_ping)
        };
        let dead = self.last_recv + self.config.keepalive_timeout;
        Some(ping.map_or(dead, |p| p.min(dead)))
    }

    /// Runs the timers due at `now`: queues a PIN, or ends a silent session.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.end.is_some() {
            return;
        }
        if !self.wants_input() {
            // We are not reading, so silence proves nothing.
            self.last_recv = now;
        }
        if now >= self.last_recv + self.config.keepalive_timeout {
            return self.finish(EndReason::KeepaliveTimeout);
        }
        if now >= self.next_ping && !self.pin_queued {
            self.ctrl.push_back(Header::new(Cmd::Pin, 0, 0));
            self.pin_queued = true;
            self.next_ping = now + self.config.keepalive_interval;
        }
    }

    /// Sends a VRM challenge to measure the round-trip time; the answer sets
    /// [`Stats::rtt`]. Returns false if one is already outstanding.
    pub fn ping(&mut self, now: Instant) -> bool {
        if self.ping.is_some() || self.end.is_some() {
            return false;
        }
        self.ping_seq += 1;
        let x = mix64(self.ping_seq ^ (self.stats.bytes_received << 16));
        let (a, b) = ((x >> 48) as u16, x as u32);
        self.ping = Some((now, a, b));
        self.ctrl.push_back(Header::new(Cmd::Vrm, a, b));
        true
    }

    // ----- output ----------------------------------------------------------------

    /// Appends frames to `out` until it holds at least `limit` bytes or nothing is left:
    /// control frames first (CFM, then SYN, FIN, PIN, VRM in order), then data frames
    /// round-robin across streams, one frame per stream per turn.
    ///
    /// Call it when `out` has (mostly) been written: everything in `out` counts as
    /// sent, and what does not fit stays queued in the session under its bounds.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Transmit, limit: usize) {
        self.now = self.now.max(now);
        if self.end.is_some() {
            return;
        }
        loop {
            self.emit_control(out, limit);
            if out.len() >= limit {
                break;
            }
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            self.emit_data(id, out);
        }
        out.seal();
        self.wake_out_waiters();
    }

    fn emit(&mut self, out: &mut Transmit, h: Header) {
        out.push_header(h);
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += crate::frame::HEADER_LEN as u64;
    }

    /// Emits pending CFMs, then queued control frames, while `out` is below `limit`
    /// (at least one frame when it starts empty). Frames left over stay queued, so a
    /// flood of VRM requests stays within `max_pending_answers` instead of growing the
    /// adapter's buffer.
    fn emit_control(&mut self, out: &mut Transmit, limit: usize) {
        while out.len() < limit {
            let Some(id) = self.cfm.pop_front() else {
                break;
            };
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.set(flag::CFM_QUEUED, false);
            let n = std::mem::take(&mut s.consumed);
            if n == 0 {
                continue;
            }
            s.unacked -= n;
            self.emit(out, Header::new(Cmd::Cfm, id, n));
        }
        while out.len() < limit {
            let Some(h) = self.ctrl.pop_front() else {
                break;
            };
            match h.cmd {
                Cmd::Vrm if !self.is_ping(h) => self.answers -= 1,
                Cmd::Pin => self.pin_queued = false,
                _ => {}
            }
            self.emit(out, h);
            if h.cmd == Cmd::Fin {
                self.fin_sent(h.id);
            }
        }
    }

    fn is_ping(&self, h: Header) -> bool {
        self.ping
            .is_some_and(|(_, a, b)| (h.id, h.length) == (a, b))
    }

    fn emit_data(&mut self, id: u16, out: &mut Transmit) {
        let max = self.config.max_frame as usize;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(b) = s.bufs.as_mut().filter(|b| !b.send.is_empty()) else {
            s.set(flag::IN_READY, false);
            return;
        };
        let n = b.send.len().min(max);
        let payload = b.send.split_to(n).freeze();
        let more = !b.send.is_empty();
        s.in_flight += n as u32;
        if more {
            self.ready.push_back(id);
        } else {
            s.set(flag::IN_READY, false);
            s.release_bufs(&mut self.pool);
            if let State::Closing {
                fin: LocalFin::Waiting,
                peer_fin,
            } = s.state
            {
                s.state = State::Closing {
                    fin: LocalFin::Queued,
                    peer_fin,
                };
                self.ctrl.push_back(Header::new(Cmd::Fin, id, 0));
            }
        }
        self.stats.buffered_out -= n;
        self.emit(out, Header::new(Cmd::Psh, id, n as u32));
        out.push_payload(payload);
        self.stats.bytes_sent += n as u64;
    }

    fn fin_sent(&mut self, id: u16) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if let State::Closing { peer_fin, .. } = s.state {
            s.state = State::Closing {
                fin: LocalFin::Sent,
                peer_fin,
            };
            if peer_fin {
                self.remove(id);
            }
        }
    }

    /// Send-queue room not held for writers whose turn came.
    fn free_queue_room(&self) -> usize {
        self.config
            .max_buffered_out
            .saturating_sub(self.stats.buffered_out)
            .saturating_sub(self.grants.len() * self.config.max_frame as usize)
    }

    /// Gives waiting writers their turn, one per frame's worth of free send-queue room.
    fn wake_out_waiters(&mut self) {
        let window = self.config.window;
        while let Some(&(id, at)) = self.grants.front() {
            if self.now.saturating_duration_since(at) < GRANT_TTL {
                break;
            }
            self.grants.pop_front();
            if let Some(s) = self.streams.get_mut(&id) {
                s.set(flag::GRANTED, false);
            }
        }
        while self.free_queue_room() > 0 {
            let Some(id) = self.out_waiters.pop_front() else {
                break;
            };
            // An entry left by a stream that has since gone (its ID perhaps reused by
            // a stream that waits too) no longer stands for anyone.
            let Some(s) = self
                .streams
                .get_mut(&id)
                .filter(|s| s.has(flag::OUT_WAITER))
            else {
                continue;
            };
            s.set(flag::OUT_WAITER, false);
            if s.state != State::Open {
                continue;
            }
            s.set(flag::GRANTED, true);
            self.grants.push_back((id, self.now));
            if s.send_room(window) > 0 && s.has(flag::WRITE_BLOCKED) {
                s.set(flag::WRITE_BLOCKED, false);
                self.events.push_back(Event::Writable(StreamId(id)));
            }
        }
    }

    /// Send-queue room open to `s`: a stream whose turn came may use all of it; others
    /// get none while writers wait, and never the room held for those whose turn came.
    fn queue_room(&self, s: &Stream) -> usize {
        if s.has(flag::GRANTED) {
            return self
                .config
                .max_buffered_out
                .saturating_sub(self.stats.buffered_out);
        }
        if !self.out_waiters.is_empty() {
            return 0;
        }
        self.free_queue_room()
    }

    /// Ends the turn of a stream whose turn came (it wrote, or it closed).
    fn end_turn(&mut self, id: u16) {
        if let Some(s) = self.streams.get_mut(&id).filter(|s| s.has(flag::GRANTED)) {
            s.set(flag::GRANTED, false);
            self.grants.retain(|(g, _)| *g != id);
        }
    }

    /// Marks a write refused: the window's CFM or the send queue's turn will wake it.
    fn block_writer(&mut self, id: u16) {
        let window = self.config.window;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.set(flag::WRITE_BLOCKED, true);
        if s.send_room(window) == 0 || s.has(flag::OUT_WAITER) {
            return;
        }
        s.set(flag::OUT_WAITER, true);
        if s.has(flag::GRANTED) {
            // Its turn came but the room went to queued data first: it stays next.
            self.end_turn(id);
            self.out_waiters.push_front(id);
        } else {
            self.out_waiters.push_back(id);
        }
        // Room may be free already: serve the queue now rather than at the next
        // transmit.
        self.wake_out_waiters();
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let Some(ev) = self.events.pop_front() else {
            // A burst (thousands of incoming streams) must not pin its queue forever.
            if self.events.capacity() > 1024 {
                self.events = VecDeque::new();
            }
            return None;
        };
        if let Event::Readable(StreamId(id)) = ev {
            if let Some(s) = self.streams.get_mut(&id) {
                s.set(flag::READABLE_QUEUED, false);
            }
        }
        Some(ev)
    }

    /// True if `poll_transmit` has something to emit now.
    pub fn has_transmit(&self) -> bool {
        self.end.is_none()
            && !(self.ctrl.is_empty() && self.cfm.is_empty() && self.ready.is_empty())
    }

    // ----- application -----------------------------------------------------------

    fn check_live(&self) -> Result<(), EndReason> {
        match &self.end {
            Some(r) => Err(r.clone()),
            None => Ok(()),
        }
    }

    /// Opens a stream: takes a free ID and queues its SYN.
    pub fn open(&mut self) -> Result<StreamId, OpenError> {
        self.check_live().map_err(OpenError::SessionEnded)?;
        let id = self.ids.allocate().ok_or(OpenError::IdsExhausted)?;
        self.streams.insert(id, Stream::new());
        self.ctrl.push_back(Header::new(Cmd::Syn, id, 0));
        Ok(StreamId(id))
    }

    /// The next stream the peer opened, if any.
    pub fn accept(&mut self) -> Option<StreamId> {
        self.backlog.pop_front().map(StreamId)
    }

    fn stream_for_read(&mut self, id: StreamId) -> Result<&mut Stream, ReadError> {
        let ended = self.end.clone();
        match self.streams.get_mut(&id.0) {
            Some(s) if matches!(s.state, State::Closing { .. }) => Err(ReadError::Closed),
            // Buffered data, and the end-of-file after a peer's FIN, outlive the session.
            Some(s) if s.recv_len > 0 || s.state == State::PeerFin => Ok(s),
            _ if ended.is_some() => Err(ReadError::SessionEnded(ended.expect("checked"))),
            Some(s) => Ok(s),
            None => Err(ReadError::UnknownStream),
        }
    }

    /// Copies buffered bytes of stream `id` into `buf`. `Ok(0)` with a non-empty `buf`
    /// is end-of-file; `Err(Blocked)` means no data yet.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, ReadError> {
        let s = self.stream_for_read(id)?;
        if s.recv_len == 0 {
            return match s.state {
                State::PeerFin => Ok(0),
                _ if buf.is_empty() => Ok(0),
                _ => {
                    s.set(flag::READ_WAITING, true);
                    Err(ReadError::Blocked)
                }
            };
        }
        let mut pool = std::mem::take(&mut self.pool);
        let s = self.streams.get_mut(&id.0).expect("found above");
        let sliced = s.sliced();
        let n = s.read_into(buf, &mut pool);
        self.sliced -= sliced - s.sliced();
        self.pool = pool;
        self.consumed(id.0, n);
        Ok(n)
    }

    /// Takes up to `max` buffered bytes of stream `id` as one chunk (a large payload
    /// that arrived while a read waited comes without a copy). `Ok(None)` is end-of-file; `Err(Blocked)` means no data yet.
    pub fn read_chunk(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, ReadError> {
        let s = self.stream_for_read(id)?;
        if s.recv_len == 0 || max == 0 {
            return match s.state {
                State::PeerFin if s.recv_len == 0 => Ok(None),
                _ if max == 0 => Ok(Some(Bytes::new())),
                _ => {
                    s.set(flag::READ_WAITING, true);
                    Err(ReadError::Blocked)
                }
            };
        }
        let mut pool = std::mem::take(&mut self.pool);
        let s = self.streams.get_mut(&id.0).expect("found above");
        let sliced = s.sliced();
        let chunk = s.read_chunk(max, &mut pool);
        self.sliced -= sliced - s.sliced();
        self.pool = pool;
        self.consumed(id.0, chunk.len());
        Ok(Some(chunk))
    }

    /// Accounts `n` bytes consumed by the application: frees session buffer room and
    /// queues a CFM once the threshold is reached.
    fn consumed(&mut self, id: u16, n: usize) {
        self.stats.buffered_in -= n;
        let threshold = self.config.cfm_threshold;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.consumed += n as u32;
        if s.consumed >= threshold && !s.has(flag::CFM_QUEUED) && self.end.is_none() {
            s.set(flag::CFM_QUEUED, true);
            self.cfm.push_back(id);
        }
    }

    /// Where stream `id` is in its life cycle, `None` if no such stream exists. Has no
    /// side effects (unlike a probing read or write).
    pub fn stream_state(&self, id: StreamId) -> Option<StreamState> {
        self.streams.get(&id.0).map(|s| match s.state {
            State::Open => StreamState::Open,
            State::PeerFin => StreamState::Finished,
            State::Closing { .. } => StreamState::Closing,
        })
    }

    /// Asks for an [`Event::Writable`] for stream `id` once a write can accept bytes:
    /// at once if it can now, else when room appears. For event loops that learn "no
    /// room" from [`Session::writable_len`] instead of a refused write.
    pub fn want_writable(&mut self, id: StreamId) {
        if self.end.is_some() {
            return;
        }
        if self.stream_state(id) != Some(StreamState::Open) {
            return;
        }
        if self.writable_len(id) > 0 {
            self.events.push_back(Event::Writable(id));
        } else {
            self.block_writer(id.0);
        }
    }

    /// Bytes buffered for reading on stream `id` (0 if unknown).
    pub fn readable_len(&self, id: StreamId) -> usize {
        self.streams.get(&id.0).map_or(0, |s| s.recv_len as usize)
    }

    /// Bytes a write on stream `id` would accept now.
    pub fn writable_len(&self, id: StreamId) -> usize {
        match self.streams.get(&id.0) {
            Some(s) if s.state == State::Open && self.end.is_none() => {
                s.send_room(self.config.window).min(self.queue_room(s))
            }
            _ => 0,
        }
    }

    /// Accepts as much of `data` as the stream's window and the session's send queue
    /// allow and returns that count. Every accepted byte will be sent unless the
    /// session ends; `Err(Blocked)` means nothing was accepted and nothing changed.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        self.check_live().map_err(WriteError::SessionEnded)?;
        let window = self.config.window;
        let s = self.streams.get(&id.0).ok_or(WriteError::UnknownStream)?;
        let out_room = self.queue_room(s);
        let s = self.streams.get_mut(&id.0).expect("found above");
        match s.state {
            State::Open => {}
            State::PeerFin => return Err(WriteError::PeerClosed),
            State::Closing { .. } => return Err(WriteError::Closed),
        }
        if data.is_empty() {
            return Ok(0);
        }
        let room = s.send_room(window);
        let n = data.len().min(room).min(out_room);
        if n == 0 {
            self.block_writer(id.0);
            return Err(WriteError::Blocked);
        }
        s.bufs_mut(&mut self.pool)
            .send
            .extend_from_slice(&data[..n]);
        if !s.has(flag::IN_READY) {
            s.set(flag::IN_READY, true);
            self.ready.push_back(id.0);
        }
        self.stats.buffered_out += n;
        self.end_turn(id.0);
        Ok(n)
    }

    /// Releases stream `id`: unread data is dropped, and a FIN is sent after every
    /// byte already accepted. The ID is freed when the peer's FIN has also arrived
    /// (an [`Event::Closed`] says so).
    pub fn close(&mut self, id: StreamId) -> Result<(), WriteError> {
        self.check_live().map_err(WriteError::SessionEnded)?;
        self.end_turn(id.0);
        let s = self
            .streams
            .get_mut(&id.0)
            .ok_or(WriteError::UnknownStream)?;
        let peer_fin = match s.state {
            State::Open => false,
            State::PeerFin => true,
            State::Closing { .. } => return Err(WriteError::Closed),
        };
        self.sliced -= s.sliced();
        let dropped = s.discard_recv(&mut self.pool);
        // Nothing more will be read, so no CFM may follow our FIN: a late CFM could
        // reach a new stream that reuses the ID.
        s.consumed = 0;
        let fin = if s.send_len() > 0 {
            LocalFin::Waiting
        } else {
            LocalFin::Queued
        };
        s.state = State::Closing { fin, peer_fin };
        s.set(flag::WRITE_BLOCKED, false);
        self.stats.buffered_in -= dropped;
        if fin == LocalFin::Queued {
            self.ctrl.push_back(Header::new(Cmd::Fin, id.0, 0));
        }
        self.backlog.retain(|x| *x != id.0);
        Ok(())
    }

    /// Ends the session: every stream fails with [`EndReason::Local`] and nothing more
    /// is sent or accepted. The adapter then closes the transport.
    pub fn close_session(&mut self) {
        self.finish(EndReason::Local);
    }

    fn finish(&mut self, reason: EndReason) {
        if self.end.is_some() {
            return;
        }
        self.events.push_back(Event::Ended(reason.clone()));
        self.end = Some(reason);
        self.ctrl.clear();
        self.cfm.clear();
        self.ready.clear();
        self.out_waiters.clear();
        self.grants.clear();
        self.answers = 0;
        self.stats.buffered_out = 0;
        for s in self.streams.values_mut() {
            if let Some(b) = s.bufs.as_mut() {
                b.send.clear();
            }
        }
        if self.end == Some(EndReason::Local) {
            self.streams.clear();
            self.backlog.clear();
            self.stats.buffered_in = 0;
            self.sliced = 0;
        }
    }

    /// Checks the session's internal invariants and panics if one is broken. For tests
    /// and fuzzing; not part of the stable API.
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        let window = self.config.window as usize;
        let (mut inn, mut out) = (0usize, 0usize);
        for (id, s) in &self.streams {
            let sent = s.in_flight as usize + s.send_len();
            assert!(
                sent <= window,
                "stream {id}: {sent} unconfirmed bytes > window"
            );
            assert!(
                s.recv_len <= s.unacked,
                "stream {id}: buffered more than received"
            );
            assert!(
                s.unacked as usize <= window,
                "stream {id}: unacked > window"
            );
            assert!(s.consumed <= s.unacked, "stream {id}: consumed > unacked");
            inn += s.recv_len as usize;
            out += s.send_len();
            assert!(
                self.end.is_some() || self.ids.contains(*id),
                "stream {id} without ID"
            );
        }
        assert_eq!(inn, self.stats.buffered_in, "buffered_in drifted");
        assert!(
            self.stats.buffered_in <= self.config.max_buffered_in,
            "input bound broken"
        );
        if self.end.is_none() {
            assert_eq!(out, self.stats.buffered_out, "buffered_out drifted");
            assert!(
                self.stats.buffered_out <= self.config.max_buffered_out,
                "output bound broken"
            );
            assert_eq!(
                self.ids.used() as usize,
                self.streams.len(),
                "ID map and table differ"
            );
        }
        assert!(
            self.backlog.len() <= self.config.accept_backlog,
            "backlog bound broken"
        );
        assert!(
            self.answers <= self.config.max_pending_answers,
            "answer bound broken"
        );
        let granted = self
            .streams
            .values()
            .filter(|s| s.has(flag::GRANTED))
            .count();
        assert_eq!(
            granted,
            self.grants.len(),
            "send-queue turns drifted: {:?} vs {:?}",
            self.grants.iter().map(|g| g.0).collect::<Vec<_>>(),
            self.streams
                .iter()
                .filter(|(_, s)| s.has(flag::GRANTED))
                .map(|(id, s)| (*id, s.state))
                .collect::<Vec<_>>()
        );
    }

    /// IDs of every stream record (open or closing), sorted. For tests and fuzzing.
    #[doc(hidden)]
    pub fn stream_ids(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.streams.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn remove(&mut self, id: u16) {
        if let Some(mut s) = self.streams.remove(&id) {
            self.sliced -= s.sliced();
            let dropped = s.discard_recv(&mut self.pool);
            self.stats.buffered_in -= dropped;
            self.ids.remove(id);
            self.events.push_back(Event::Closed(StreamId(id)));
        }
    }
}
