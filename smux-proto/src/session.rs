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

use bytes::{Buf, Bytes, BytesMut};

use crate::config::{Config, ConfigError};
use crate::error::{EndReason, OpenError, ProtocolError, ReadError, TransportError, WriteError};
use crate::frame::{Cmd, Decoder, Frame, Header};
use crate::id::{IdMap, Role};
use crate::negotiate::{Agreement, Offer, ASSUMED_WINDOW};
use crate::stream::{flag, LocalFin, Pool, State, Stream, SLICE_FROM};
use crate::transmit::Transmit;
use crate::util::{IdBuildHasher, Rng};

mod agree;
mod ext;

#[cfg(test)]
pub(crate) use ext::DEFER_LIMIT;
pub use ext::RESET_REFUSED;

/// How long a writer whose turn in the send queue came keeps its share of the room
/// without writing.
const GRANT_TTL: Duration = Duration::from_millis(500);

/// A handle on one stream of a session: its 16-bit number on the wire and which
/// stream with that number it is. Numbers are reused once a stream's close handshake
/// completed; a handle to the earlier stream then names nothing (calls report an
/// unknown stream) rather than the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub(crate) num: u16,
    pub(crate) gen: u16,
}

impl StreamId {
    pub(crate) const fn new(num: u16, gen: u16) -> StreamId {
        StreamId { num, gen }
    }

    /// The stream's number on the wire (0 to 65535).
    pub fn number(self) -> u16 {
        self.num
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.num.fmt(f)
    }
}

/// What a queued control frame is, for the bookkeeping done as it leaves. Decided when
/// the frame is queued, never guessed from its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// A frame of the stream record with this generation (SYN, FIN, RST, WND): dropped
    /// if that record is gone (its ID may belong to a new stream by then).
    Stream(u16),
    /// The verify answer to a peer's VRM.
    Answer,
    /// Our round-trip ping.
    Ping,
    /// Our offer of the extensions (HELLO or ASK).
    Offer,
    /// A session frame: PIN, GWY, SET.
    Session,
    /// A frame of the stream record with this generation that no application waits
    /// for (`Session::defer`): it goes out with the next other frames, or once
    /// `DEFER_LIMIT` passed.
    Deferred(u16),
}

/// A PSH whose header was taken and whose payload is still arriving: pieces are
/// handed to the stream as they come, so no read buffer ever has to hold (and copy)
/// a whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Payload {
    id: u16,
    /// The stream record it was sent to (a piece for a record that has gone is
    /// dropped).
    gen: u16,
    /// Payload bytes still to come, and the frame's payload length.
    left: u32,
    len: u32,
    /// What the pieces are for, decided at the header.
    to: PayloadTo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadTo {
    /// The stream's reader.
    Reader,
    /// A released extended stream: confirmed and dropped.
    Sink,
    /// Nobody (an unknown or closed stream): dropped.
    Nobody,
}

/// Our round-trip ping: its answer counts only once the ping has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    Idle,
    Queued { a: u16, b: u32 },
    Sent { at: Instant, a: u16, b: u32 },
}

/// Something the application may want to act on. Events are hints: they say that
/// retrying an operation may now succeed, and carry no data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer opened a stream; [`Session::accept`] returns it.
    Incoming(StreamId),
    /// Data arrived on a stream whose buffer was empty.
    Readable(StreamId),
    /// A stream whose write returned `Blocked` has room again.
    Writable(StreamId),
    /// The peer's FIN arrived: reads return the buffered data, then end-of-file.
    /// Writes fail, except on an extended stream (the peer only half-closed it).
    Finished(StreamId),
    /// The peer aborted the stream with this error code (extension): buffered data
    /// is gone, and reads and writes report the code.
    Reset(StreamId, u32),
    /// The stream's close handshake completed and its ID is free.
    Closed(StreamId),
    /// The ends settled whether they use the extensions ([`Session::agreement`]);
    /// shutdowns that waited for it may now go ahead.
    Agreed(Agreement),
    /// The session ended; every later call reports this reason.
    Ended(EndReason),
}

/// Where a stream is in its life cycle, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamState {
    /// Both directions open.
    Open,
    /// The peer's FIN arrived: reads drain the buffer, then report end-of-file; writes
    /// fail, except on an extended stream.
    Finished,
    /// The application shut its write side (extension): reads go on until the peer's
    /// FIN.
    HalfClosed,
    /// The application closed it; the close handshake is still completing.
    Closing,
    /// The stream was aborted by a RST (extension); reads and writes report its code.
    Reset,
}

/// Figures the application can read at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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

/// Whether `s` is a released extended stream whose peer still writes: what arrives is
/// confirmed and dropped.
fn is_sink(s: &Stream) -> bool {
    s.has(flag::EXT)
        && !s.has(flag::RESET)
        && matches!(
            s.state,
            State::Closing {
                peer_fin: false,
                ..
            }
        )
}

/// Owes a blocked writer of stream `id` its `Writable` event once its window has room
/// (a turn in the send queue wakes it otherwise).
fn owe_writable(s: &mut Stream, id: u16, events: &mut VecDeque<Event>) {
    if s.has(flag::WRITE_BLOCKED) && s.send_room() > 0 && !s.has(flag::OUT_WAITER) {
        s.set(flag::WRITE_BLOCKED, false);
        events.push_back(Event::Writable(StreamId::new(id, s.gen)));
    }
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
    /// Control frames in order, each with what it is (see `Tag`).
    ctrl: VecDeque<(Header, Tag)>,
    /// Frames in `ctrl` tagged `Deferred`, and when the first of them must leave.
    deferred: usize,
    deferred_until: Option<Instant>,
    /// Deferred frames leave at once: a graceful close or a go-away is under way.
    hurry: bool,
    /// Stream records made so far; a record's generation is a hash of it.
    records: u64,
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
    /// Payload length of the last PSH read.
    last_psh: u32,
    /// The PSH whose payload is arriving.
    payload: Option<Payload>,
    next_ping: Instant,
    last_recv: Instant,
    ping: Ping,
    /// Makes our ping challenges unpredictable to the peer.
    rng: Rng,
    end: Option<EndReason>,
    stats: Stats,
    /// Whether the ends use the extensions (`negotiate`, `session/agree.rs`).
    agreement: Agreement,
    /// Our offer of the extensions (HELLO or ASK), and when it left.
    offer: Offer,
    offer_at: Instant,
    /// The peer's receive window for new streams: assumed until its SET arrives.
    peer_window: u32,
    /// Time zero of the microsecond clock streams keep for window tuning.
    epoch: Instant,
    /// Receive window granted beyond `Config::window`, summed over streams.
    extra_window: usize,
    /// Error codes of streams a peer's RST aborted while the application holds them.
    resets: HashMap<u16, u32, IdBuildHasher>,
    /// Error codes of our resets that wait for the agreement (`defer_reset`).
    deferred_resets: HashMap<u16, u32, IdBuildHasher>,
    /// A go-away was sent or received: no new streams in either direction.
    going_away: bool,
    /// Our GWY is queued or sent; the peer's GWY arrived. Once ours is out, draining
    /// waits for the peer's, so every SYN it sent before it learnt of ours arrives (and
    /// is refused) before the session ends.
    gwy_sent: bool,
    gwy_received: bool,
    /// The code of our go-away, for a GWY that waits for the agreement.
    gwy_code: u32,
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
        let config_ext = config.extensions;
        let peer_window = config.window.min(ASSUMED_WINDOW);
        let pool = Pool::new(config.max_buffered_out);
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
            deferred: 0,
            deferred_until: None,
            hurry: false,
            records: 0,
            cfm: VecDeque::new(),
            answers: 0,
            pin_queued: false,
            out_waiters: VecDeque::new(),
            grants: VecDeque::new(),
            now,
            events: VecDeque::new(),
            pool,
            sliced: 0,
            stalled: None,
            last_psh: 0,
            payload: None,
            ping: Ping::Idle,
            rng: Rng::new(),
            end: None,
            stats: Stats::default(),
            agreement: if config_ext {
                Agreement::Pending
            } else {
                Agreement::Base
            },
            offer: Offer::Idle,
            offer_at: now,
            peer_window,
            epoch: now,
            extra_window: 0,
            resets: HashMap::default(),
            deferred_resets: HashMap::default(),
            going_away: false,
            gwy_sent: false,
            gwy_received: false,
            gwy_code: 0,
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

    /// Decodes and applies the frames at the front of `input`: every complete frame,
    /// and of a PSH whatever part of its payload has arrived (handed to its stream
    /// without a copy when large). Leaves a partial header (or the rest, when
    /// [`Session::wants_input`] turns false) in place.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        self.now = self.now.max(now);
        while self.wants_input() {
            if let Some(p) = self.payload {
                if input.is_empty() {
                    break;
                }
                let n = input.len().min(p.left as usize);
                self.stats.bytes_received += n as u64;
                self.last_recv = now;
                self.payload = (p.left as usize > n).then_some(Payload {
                    left: p.left - n as u32,
                    ..p
                });
                self.on_psh_piece(p, input, n);
                continue;
            }
            let header = match self.decoder.peek_header(input) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return self.protocol_error(e),
            };
            let psh = header.cmd == Cmd::Psh;
            if psh && self.must_stall(header) {
                self.stalled = Some(header.length as usize);
                break;
            }
            self.stalled = None;
            let frame = self.decoder.take_header(input, header);
            self.last_recv = now;
            self.stats.frames_received += 1;
            self.stats.bytes_received += crate::frame::HEADER_LEN as u64;
            self.learn_from(&frame.header);
            if psh {
                self.last_psh = header.length;
                self.on_psh(header.id, header.length);
            } else {
                self.apply(now, frame);
            }
            self.after_frame();
        }
    }

    /// True if a PSH would be buffered and does not fit the session-wide bound.
    fn must_stall(&self, h: Header) -> bool {
        h.length > 0
            && self.stats.buffered_in + h.length as usize > self.config.max_buffered_in
            && self.streams.get(&h.id).is_some_and(Stream::takes_data)
    }

    fn apply(&mut self, now: Instant, frame: Frame) {
        let Header { cmd, id, length } = frame.header;
        match cmd {
            Cmd::Syn => self.on_syn(id),
            Cmd::Fin => self.on_fin(id, length),
            Cmd::Psh => unreachable!("PSH frames are taken piece by piece"),
            Cmd::Cfm => self.on_cfm(id, length),
            Cmd::Vrm => self.on_vrm(now, id, length),
            Cmd::Pin => {}
            Cmd::Wnd => self.on_wnd(id, length),
            Cmd::Rst => self.on_rst(id, length),
            Cmd::Gwy => self.on_gwy(),
            Cmd::Set => self.on_set(id, length),
        }
    }

    fn on_syn(&mut self, id: u16) {
        if self.streams.contains_key(&id) {
            // Simultaneous open (or a confused peer): both SYNs bind to one stream. Its
            // mode is the session's, which both ends agree on.
            return;
        }
        self.ids.insert(id);
        let s = self.new_stream();
        self.streams.insert(id, s);
        if self.backlog.len() >= self.config.accept_backlog || self.going_away {
            self.refuse(id);
        } else {
            self.backlog.push_back(id);
            self.events.push_back(Event::Incoming(self.sid(id)));
        }
    }

    /// Refuses a stream the peer just opened: FIN on a base stream, RST on an extended
    /// one (so the peer's application learns why).
    fn refuse(&mut self, id: u16) {
        self.stats.streams_refused += 1;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.state.fin().is_some() || s.has(flag::RESET) {
            // Our write side already ended (the peer reset or stopped it, so our FIN is
            // queued): a refusal behind that FIN could outlive the stream. Release it.
            let _ = self.close(self.sid(id));
            return;
        }
        s.state = State::Closing {
            fin: LocalFin::Queued,
            peer_fin: s.state.peer_fin(),
        };
        if s.has(flag::EXT) {
            s.set(flag::RESET, true);
            self.push_ctrl(Header::new(Cmd::Rst, id, RESET_REFUSED));
        } else {
            self.push_ctrl(Header::new(Cmd::Fin, id, 0));
        }
    }

    fn on_fin(&mut self, id: u16, last: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.has(flag::EXT) {
            return self.peer_finished(id, last != 0);
        }
        match s.state {
            State::Open => {
                s.state = State::PeerFin;
                self.events
                    .push_back(Event::Finished(StreamId::new(id, s.gen)));
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
            // A repeated FIN changes nothing; `Shut` exists only on extended streams.
            State::PeerFin | State::Closing { peer_fin: true, .. } | State::Shut { .. } => {}
        }
    }

    /// A PSH header: checks the window for the whole payload and decides where its
    /// pieces go (`on_psh_piece`).
    fn on_psh(&mut self, id: u16, len: u32) {
        let mut payload = Payload {
            id,
            gen: 0,
            left: len,
            len,
            to: PayloadTo::Nobody,
        };
        if let Some(s) = self.streams.get_mut(&id) {
            payload.gen = s.gen;
            // A peer that cannot know a smaller window of ours (a reference, or one of
            // ours before the agreement) may always send the protocol's 512 KiB.
            let window = s.recv_window.max(ASSUMED_WINDOW);
            // A released extended stream still takes (and confirms) what the peer sends
            // until its FIN, so a half-closed peer never blocks on a window we stopped
            // reading; the bytes are dropped.
            let sink = is_sink(s);
            if s.takes_data() || sink {
                let unconfirmed = u64::from(s.unacked) + u64::from(len);
                if unconfirmed > u64::from(window) {
                    return self.protocol_error(ProtocolError::WindowExceeded {
                        id,
                        unconfirmed,
                        window,
                    });
                }
                s.unacked += len;
                payload.to = if sink {
                    PayloadTo::Sink
                } else {
                    PayloadTo::Reader
                };
                if !sink && s.unacked >= s.recv_window && s.consumed > 0 {
                    // The peer just spent its last credit while we hold consumed bytes
                    // unconfirmed (the reader read them earlier and may read no more):
                    // owe them.
                    if !s.has(flag::CFM_QUEUED) {
                        s.set(flag::CFM_QUEUED, true);
                        self.cfm.push_back(id);
                    }
                }
            }
        }
        if len > 0 {
            self.payload = Some(payload);
        }
    }

    /// Takes the next `n` bytes of `input`, a piece of the payload of the PSH `p` (the
    /// stream may have been released or reset since its header): copied into its
    /// stream, or split off without a copy when large.
    fn on_psh_piece(&mut self, p: Payload, input: &mut BytesMut, n: usize) {
        let live = self.streams.get_mut(&p.id).filter(|s| s.gen == p.gen);
        let to = match (p.to, live) {
            (PayloadTo::Nobody, _) | (_, None) => PayloadTo::Nobody,
            (_, Some(s)) if s.takes_data() => PayloadTo::Reader,
            (_, Some(s)) if is_sink(s) => PayloadTo::Sink,
            // Reset, or a base stream released since the header.
            _ => PayloadTo::Nobody,
        };
        if to != PayloadTo::Reader {
            input.advance(n);
        }
        match to {
            PayloadTo::Nobody => self.stats.bytes_discarded += n as u64,
            PayloadTo::Sink => {
                self.stats.bytes_discarded += n as u64;
                self.stats.buffered_in += n;
                self.consumed(p.id, n);
            }
            PayloadTo::Reader => {
                let s = self.streams.get_mut(&p.id).expect("checked above");
                let was_empty = s.recv_len == 0;
                // Slices pin read buffers several times their size: keep their total to
                // an eighth of the input bound, so what is held stays within about
                // twice it.
                let may_slice = self.sliced + n <= self.config.max_buffered_in / 8;
                if may_slice && n >= SLICE_FROM {
                    s.push_recv(input.split_to(n).freeze(), true, &mut self.pool);
                    self.sliced += n;
                } else {
                    // Small pieces are copied straight from the read buffer.
                    s.push_copy(&input[..n], &mut self.pool);
                    input.advance(n);
                }
                self.stats.buffered_in += n;
                if was_empty && !s.has(flag::READABLE_QUEUED) {
                    s.set(flag::READABLE_QUEUED, true);
                    self.events
                        .push_back(Event::Readable(StreamId::new(p.id, s.gen)));
                }
            }
        }
    }

    fn on_cfm(&mut self, id: u16, n: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        // A CFM for more than was sent is clamped: it cannot create credit.
        s.in_flight = s.in_flight.saturating_sub(n);
        owe_writable(s, id, &mut self.events);
    }

    /// Reports that the transport reached end-of-file. `leftover` is the number of
    /// received bytes `handle_input` left unconsumed.
    ///
    /// While [`Session::wants_input`] is false the leftover may hold whole frames the
    /// application has not made room for yet: keep feeding them to `handle_input` as
    /// it reads, and call this only once input is wanted again, so no byte is lost.
    pub fn handle_eof(&mut self, leftover: usize) {
        // Inside a PSH, the frame's header and the payload that came are in hand.
        let have = self.payload.map_or(leftover, |p| {
            leftover + crate::frame::HEADER_LEN + (p.len - p.left) as usize
        });
        if have > 0 && self.end.is_none() {
            self.protocol_error(ProtocolError::TruncatedFrame { have });
        } else if self.nothing_to_lose() {
            // The peer drained first and closed: the go-away ended as agreed.
            self.finish(EndReason::Drained);
        } else {
            self.finish(EndReason::PeerClosed);
        }
    }

    /// Reports that reading or writing the transport failed.
    pub fn handle_transport_error(&mut self, err: io::Error) {
        if self.nothing_to_lose() {
            // No stream was left; a peer that drained may close hard.
            return self.finish(EndReason::Drained);
        }
        self.finish(EndReason::Transport(TransportError::from(err)));
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
        let mut t = self.last_recv + self.config.keepalive_timeout;
        if !self.pin_queued {
            t = t.min(self.next_ping);
        }
        // A writer whose send-queue turn came and who never wrote gives its room back.
        if let Some(&(_, at)) = self.grants.front() {
            t = t.min(at + GRANT_TTL);
        }
        // Called at every round of the I/O side: kept to plain comparisons.
        Some(self.deferred_until().map_or(t, |d| t.min(d)))
    }

    /// Runs the timers due at `now`: queues a PIN, or ends a silent session.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.end.is_some() {
            return;
        }
        if self.waits_for_reader() {
            // Input waits for the application to read: the peer's frames wait unread,
            // so silence proves nothing. (Input held back for unsent answers still
            // counts: a peer that never reads them ends the session on time.)
            self.last_recv = now;
        }
        if now >= self.last_recv + self.config.keepalive_timeout {
            return self.finish(EndReason::KeepaliveTimeout);
        }
        if now >= self.next_ping && !self.pin_queued {
            self.before_own_frame();
            self.push_ctrl(Header::new(Cmd::Pin, 0, 0));
            self.after_own_frame();
            self.pin_queued = true;
            self.next_ping = now + self.config.keepalive_interval;
            self.pool.let_go_idle();
            if self.agreement == Agreement::Extended {
                // Window tuning follows the round-trip time as it changes.
                self.ping(now);
            }
        }
        // Expired send-queue turns go to the writers waiting behind them.
        self.wake_out_waiters();
    }

    /// True while input is held back until the application reads (`max_buffered_in`).
    pub(crate) fn waits_for_reader(&self) -> bool {
        self.stalled
            .is_some_and(|need| self.stats.buffered_in + need > self.config.max_buffered_in)
    }

    /// Sends a VRM challenge to measure the round-trip time; the answer sets
    /// [`Stats::rtt`]. Returns false if one is already outstanding.
    pub fn ping(&mut self, now: Instant) -> bool {
        self.now = self.now.max(now);
        if self.ping != Ping::Idle || self.end.is_some() {
            return false;
        }
        let x = self.rng.next_u64();
        // Random values the peer cannot answer ahead of time; never an offer's.
        let (a, b) = (((x >> 48) as u16) & 0xFFF0 | 0x8, x as u32);
        self.ping = Ping::Queued { a, b };
        self.before_own_frame();
        self.ctrl
            .push_back((Header::new(Cmd::Vrm, a, b), Tag::Ping));
        self.after_own_frame();
        true
    }

    // ----- output ----------------------------------------------------------------

    /// Appends frames to `out` until it holds at least `limit` bytes or nothing is left:
    /// control frames first (our offer of the extensions, CFM, then SYN, FIN, PIN, VRM
    /// and the rest in order), then data frames round-robin across streams, one frame
    /// per stream per turn. When `out` starts empty at least one frame is appended, even
    /// with `limit` 0.
    ///
    /// Call it when `out` has (mostly) been written: everything in `out` counts as
    /// sent, and what does not fit stays queued in the session under its bounds.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Transmit, limit: usize) {
        self.now = self.now.max(now);
        if self.end.is_some() {
            return;
        }
        let limit = if out.is_empty() { limit.max(1) } else { limit };
        if out.is_empty() && self.is_drained() {
            // Everything before was written out: the go-away is complete.
            return self.finish(EndReason::Drained);
        }
        // Frames nobody waits for wait for company (or their time limit).
        while !self.holds_back(now) {
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

    /// Queues a control frame; a stream frame is tied to its stream's generation.
    fn push_ctrl(&mut self, h: Header) {
        let tag = match h.cmd {
            Cmd::Syn | Cmd::Fin | Cmd::Rst | Cmd::Wnd => {
                Tag::Stream(self.streams.get(&h.id).map_or(u16::MAX, |s| s.gen))
            }
            _ => Tag::Session,
        };
        self.ctrl.push_back((h, tag));
    }

    /// A new stream record, with the next generation, in the session's mode.
    fn new_stream(&mut self) -> Stream {
        // A hash, not a counter: with round-robin IDs a number comes back every 65,536
        // records, which a 16-bit counter would also match, and a stale handle kept
        // that long would then name the new stream.
        self.records += 1;
        let gen = (crate::util::mix64(self.records) >> 48) as u16;
        let mut s = Stream::new(self.config.window, self.peer_window, gen);
        s.set(flag::EXT, self.agreement == Agreement::Extended);
        s
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
        // Our offer of the extensions goes ahead of confirmations: the peer learns
        // whether we have them from the order of frames.
        while self.offer == Offer::Queued && out.len() < limit {
            if !self.emit_ctrl_front(out) {
                break;
            }
        }
        while out.len() < limit {
            let Some(id) = self.cfm.pop_front() else {
                break;
            };
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.set(flag::CFM_QUEUED, false);
            if s.has(flag::FINAL_SENT) {
                // Nothing follows our last FIN: the ID may be reused.
                continue;
            }
            let n = std::mem::take(&mut s.consumed);
            s.unacked -= n;
            let wnd = s.has(flag::WND_OWED).then_some(s.recv_window);
            s.set(flag::WND_OWED, false);
            if n > 0 {
                self.emit(out, Header::new(Cmd::Cfm, id, n));
            }
            if let Some(w) = wnd {
                self.emit(out, Header::new(Cmd::Wnd, id, w));
            }
        }
        while out.len() < limit {
            if !self.emit_ctrl_front(out) {
                break;
            }
        }
    }

    /// Emits the first queued control frame (or drops it, if its stream has gone); false
    /// if the queue is empty.
    fn emit_ctrl_front(&mut self, out: &mut Transmit) -> bool {
        let Some(h) = self.take_ctrl_front() else {
            return false;
        };
        if let Some(h) = h {
            out.push_header(h);
        }
        true
    }

    /// Takes the first queued control frame (a header alone) with the bookkeeping its
    /// tag calls for, and counts it as sent: `Some(None)` if it was dropped because its
    /// stream has gone, `None` if the queue is empty.
    fn take_ctrl_front(&mut self) -> Option<Option<Header>> {
        let (mut h, tag) = self.ctrl.pop_front()?;
        if let Tag::Deferred(_) = tag {
            self.deferred -= 1;
            if self.deferred == 0 {
                self.deferred_until = None;
            }
        }
        match tag {
            Tag::Stream(gen) | Tag::Deferred(gen) => match self.stream_frame_leaving(h, gen) {
                Some(len) => h.length = len,
                None => return Some(None),
            },
            Tag::Answer => self.answers -= 1,
            Tag::Ping => {
                if let Ping::Queued { a, b } = self.ping {
                    self.ping = Ping::Sent { at: self.now, a, b };
                }
            }
            Tag::Offer => {
                self.offer = Offer::Sent;
                self.offer_at = self.now;
            }
            Tag::Session => {
                if h.cmd == Cmd::Pin {
                    self.pin_queued = false;
                }
            }
        }
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += crate::frame::HEADER_LEN as u64;
        match h.cmd {
            Cmd::Fin => self.fin_sent(h.id, h.length != 0),
            Cmd::Rst => self.fin_sent(h.id, false),
            _ => {}
        }
        Some(Some(h))
    }

    /// The length a queued stream frame leaves with, `None` to drop it: its stream
    /// has gone, or (extended) our last FIN left. On an extended stream a FIN is the
    /// last one, `FIN(1)`, once the application released the stream and the peer's FIN
    /// arrived.
    fn stream_frame_leaving(&self, h: Header, gen: u16) -> Option<u32> {
        let s = self.streams.get(&h.id).filter(|s| s.gen == gen)?;
        if h.cmd == Cmd::Syn || !s.has(flag::EXT) {
            return Some(h.length);
        }
        if s.has(flag::FINAL_SENT) {
            return None;
        }
        let last = matches!(s.state, State::Closing { peer_fin: true, .. });
        match (h.cmd, s.state.fin()) {
            // A stop is pointless once the peer finished writing.
            (Cmd::Wnd, _) if s.state.peer_fin() => None,
            // Our first FIN already left and this one would not be the last.
            (Cmd::Fin, Some(LocalFin::Sent)) if !last => None,
            (Cmd::Fin, _) => Some(u32::from(last)),
            _ => Some(h.length),
        }
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
        let payload = b.send.take(max, &mut self.pool);
        let n = payload.len();
        let more = !b.send.is_empty();
        s.in_flight += n as u32;
        if more {
            self.ready.push_back(id);
        } else {
            s.set(flag::IN_READY, false);
            s.release_bufs(&mut self.pool);
            // A reset waiting for the agreement sends its RST or FIN then.
            if s.state.fin() == Some(LocalFin::Waiting) && !self.deferred_resets.contains_key(&id) {
                s.set_fin(LocalFin::Queued);
                self.push_ctrl(Header::new(Cmd::Fin, id, 0));
            }
        }
        self.stats.buffered_out -= n;
        self.emit(out, Header::new(Cmd::Psh, id, n as u32));
        out.push_payload(payload);
        self.stats.bytes_sent += n as u64;
    }

    /// Our FIN (or RST) left; `last` if it was an extended stream's last FIN.
    fn fin_sent(&mut self, id: u16, last: bool) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.state.fin().is_none() {
            return;
        }
        s.set_fin(LocalFin::Sent);
        if last {
            s.set(flag::FINAL_SENT, true);
        }
        self.owe_last_fin(id);
        self.maybe_remove(id);
    }

    /// Removes a released stream whose close handshake is complete.
    fn maybe_remove(&mut self, id: u16) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        let State::Closing { fin, peer_fin } = s.state else {
            return;
        };
        let done = if s.has(flag::EXT) {
            s.has(flag::FINAL_SENT) && s.has(flag::PEER_FINAL)
        } else {
            fin == LocalFin::Sent && peer_fin
        };
        if done {
            self.remove(id);
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
            if !s.writes_open() {
                continue;
            }
            s.set(flag::GRANTED, true);
            self.grants.push_back((id, self.now));
            if s.send_room() > 0 && s.has(flag::WRITE_BLOCKED) {
                s.set(flag::WRITE_BLOCKED, false);
                self.events
                    .push_back(Event::Writable(StreamId::new(id, s.gen)));
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
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.set(flag::WRITE_BLOCKED, true);
        if s.send_room() == 0 || s.has(flag::OUT_WAITER) {
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
        if let Event::Readable(sid) = ev {
            if let Some(s) = self.streams.get_mut(&sid.num) {
                s.set(flag::READABLE_QUEUED, false);
            }
        }
        Some(ev)
    }

    /// True if `poll_transmit` has something to do now: frames to emit, or a go-away
    /// that has run its course and ends the session once the output was written.
    /// Closing FINs that no application waits for do not count until their deadline
    /// ([`Session::poll_timeout`]): they leave with the next other frames, or then.
    pub fn has_transmit(&self) -> bool {
        self.end.is_none()
            && ((!self.queues_empty() && !self.holds_back(self.now)) || self.is_drained())
    }

    fn queues_empty(&self) -> bool {
        self.ctrl.is_empty() && self.cfm.is_empty() && self.ready.is_empty()
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
        if self.going_away {
            return Err(OpenError::GoingAway);
        }
        let id = self.ids.allocate().ok_or(OpenError::IdsExhausted)?;
        let s = self.new_stream();
        self.streams.insert(id, s);
        // SYN(1) says this end has the extensions; a reference peer ignores it.
        self.before_own_frame();
        self.push_ctrl(Header::new(Cmd::Syn, id, u32::from(self.config.extensions)));
        self.after_own_frame();
        Ok(self.sid(id))
    }

    /// The handle of stream number `id`, which exists.
    pub(crate) fn sid(&self, id: u16) -> StreamId {
        StreamId::new(id, self.streams.get(&id).map_or(0, |s| s.gen))
    }

    /// The handle of the stream that now has number `num`, if one has.
    pub fn stream_id(&self, num: u16) -> Option<StreamId> {
        self.streams.get(&num).map(|s| StreamId::new(num, s.gen))
    }

    /// The next stream the peer opened, if any.
    pub fn accept(&mut self) -> Option<StreamId> {
        self.backlog.pop_front().map(|id| self.sid(id))
    }

    fn stream_for_read(&mut self, id: StreamId) -> Result<&mut Stream, ReadError> {
        let ended = self.end.clone();
        let code = self.resets.get(&id.num).copied();
        match self.streams.get_mut(&id.num).filter(|s| s.gen == id.gen) {
            Some(s) if matches!(s.state, State::Closing { .. }) => Err(ReadError::Closed),
            Some(s) if s.has(flag::RESET) => Err(ReadError::Reset(code.unwrap_or(0))),
            // Buffered data, and the end-of-file after a peer's FIN, outlive the session.
            Some(s) if s.recv_len > 0 || s.state.peer_fin() => Ok(s),
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
                st if st.peer_fin() => Ok(0),
                _ if buf.is_empty() => Ok(0),
                _ => Err(ReadError::Blocked),
            };
        }
        let s = self.streams.get_mut(&id.num).expect("found above");
        let sliced = s.sliced();
        let n = s.read_into(buf, &mut self.pool);
        self.sliced -= sliced - s.sliced();
        self.consumed(id.num, n);
        Ok(n)
    }

    /// Takes up to `max` buffered bytes of stream `id` as one chunk (a large payload
    /// that arrived while a read waited comes without a copy). `Ok(None)` is end-of-file; `Err(Blocked)` means no data yet.
    pub fn read_chunk(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, ReadError> {
        let s = self.stream_for_read(id)?;
        if s.recv_len == 0 || max == 0 {
            return match s.state {
                st if st.peer_fin() && s.recv_len == 0 => Ok(None),
                _ if max == 0 => Ok(Some(Bytes::new())),
                _ => Err(ReadError::Blocked),
            };
        }
        let s = self.streams.get_mut(&id.num).expect("found above");
        let sliced = s.sliced();
        let chunk = s.read_chunk(max, &mut self.pool);
        self.sliced -= sliced - s.sliced();
        self.consumed(id.num, chunk.len());
        Ok(Some(chunk))
    }

    /// How many of the next bytes on the wire the reader of stream `id` may read
    /// straight into its own buffer (read-through): the rest of a PSH payload for this
    /// stream, when `unparsed` (input read but not yet handed to
    /// [`Session::handle_input`]) is zero and nothing is buffered ahead of it. 0 when
    /// not possible. Report what was read with [`Session::read_direct`].
    pub fn direct_len(&self, id: StreamId, unparsed: usize) -> usize {
        let ready = self
            .streams
            .get(&id.num)
            .is_some_and(|s| s.gen == id.gen && s.takes_data() && s.recv_len == 0);
        if unparsed > 0 || !ready || !self.wants_input() {
            return 0;
        }
        self.payload_left(id)
    }

    /// Payload bytes of stream `id`'s data still to come in the frame being read (0 if
    /// the frame being read is not its data).
    pub fn payload_left(&self, id: StreamId) -> usize {
        self.payload
            .filter(|p| p.id == id.num && p.gen == id.gen && p.to == PayloadTo::Reader)
            .map_or(0, |p| p.left as usize)
    }

    /// The stream whose data the frame being read carries, while its payload is still
    /// to come.
    pub fn payload_stream(&self) -> Option<StreamId> {
        self.payload
            .filter(|p| p.to == PayloadTo::Reader && p.left > 0)
            .map(|p| StreamId::new(p.id, p.gen))
    }

    /// True when the last data frame read was large (16 KiB or more): a bulk transfer,
    /// where reading a header alone, to hand its payload to its reader whole, pays.
    pub fn large_frames(&self) -> bool {
        self.last_psh >= 16 * 1024
    }

    /// True between frames: the next input byte starts a frame header.
    pub fn at_frame_start(&self) -> bool {
        self.payload.is_none() && self.stalled.is_none()
    }

    /// Accounts `n` payload bytes the reader of stream `id` read straight from the
    /// transport (at most [`Session::direct_len`]): they count as received and
    /// consumed at once, so windows and confirmations move as for a buffered read.
    pub fn read_direct(&mut self, now: Instant, id: StreamId, n: usize) {
        let n = n.min(self.direct_len(id, 0));
        let Some(p) = self.payload.filter(|_| n > 0) else {
            return;
        };
        self.now = self.now.max(now);
        self.last_recv = now;
        self.stats.bytes_received += n as u64;
        self.stats.buffered_in += n;
        let left = p.left - n as u32;
        self.payload = (left > 0).then_some(Payload { left, ..p });
        self.consumed(id.num, n);
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
        let clock = (self.now, self.epoch);
        let grew = ext::grow_window(
            s,
            n,
            clock,
            self.stats.rtt,
            &self.config,
            &mut self.extra_window,
        );
        // Also when the peer may be waiting for us. It has no credit left: if the
        // reader stops here (say it waits for its own writes to the peer, which waits
        // for credit), nothing else would confirm what it consumed. Or the reader
        // caught up: the peer's window may be smaller than ours, unknown to us (a
        // reference, or one of ours before the agreement, assumes at most 512 KiB;
        // with the extensions off it uses its own setting), so a remainder below the
        // threshold could be all the credit the peer has. (It also keeps a
        // window-limited stream from waiting a round trip per window for the
        // remainder.) Confirming when the buffer empties costs at most one CFM per
        // PSH received. On an extended stream the peer's window is ours, known
        // exactly, so only a peer out of credit waits for us: a CFM per drained
        // buffer would add a frame (and a wake-up at each end) to every exchange.
        let starved = s.unacked >= s.recv_window;
        let drained = s.recv_len == 0 && !s.has(flag::EXT);
        if (s.consumed >= threshold || ((starved || drained) && s.consumed > 0) || grew)
            && !s.has(flag::CFM_QUEUED)
            && self.end.is_none()
        {
            s.set(flag::CFM_QUEUED, true);
            self.cfm.push_back(id);
        }
    }

    /// Where stream `id` is in its life cycle, `None` if no such stream exists. Has no
    /// side effects (unlike a probing read or write).
    pub fn stream_state(&self, id: StreamId) -> Option<StreamState> {
        self.streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .map(|s| match s.state {
                State::Closing { .. } => StreamState::Closing,
                _ if s.has(flag::RESET) => StreamState::Reset,
                State::Open => StreamState::Open,
                State::PeerFin => StreamState::Finished,
                State::Shut { .. } => StreamState::HalfClosed,
            })
    }

    /// Asks for an [`Event::Writable`] for stream `id` once a write can accept bytes:
    /// at once if it can now, else when room appears. For event loops that learn "no
    /// room" from [`Session::writable_len`] instead of a refused write.
    pub fn want_writable(&mut self, id: StreamId) {
        if self.end.is_some() {
            return;
        }
        if !self
            .streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .is_some_and(Stream::writes_open)
        {
            return;
        }
        if self.writable_len(id) > 0 {
            self.events.push_back(Event::Writable(id));
        } else {
            self.block_writer(id.num);
        }
    }

    /// Bytes buffered for reading on stream `id` (0 if unknown).
    pub fn readable_len(&self, id: StreamId) -> usize {
        self.streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .map_or(0, |s| s.recv_len as usize)
    }

    /// Bytes a write on stream `id` would accept now.
    pub fn writable_len(&self, id: StreamId) -> usize {
        match self.streams.get(&id.num).filter(|s| s.gen == id.gen) {
            Some(s) if s.writes_open() && self.end.is_none() => {
                s.send_room().min(self.queue_room(s))
            }
            _ => 0,
        }
    }

    /// Starts a PSH frame of stream `id` whose payload the caller hands to the transport
    /// itself, straight from its own buffer (no copy into the session): possible when
    /// the frame can go out now with nothing ahead of it, that is when the session has
    /// nothing queued (the caller must hold an empty output too), the stream has no
    /// unsent data and its window has room. Returns the frame's header; its payload is
    /// the first `header.length` bytes of the caller's data (at most `len`, the room in
    /// the window, and `max_frame`). `None`: write with [`Session::write`] instead.
    ///
    /// From here the frame counts as sent: the caller writes the header, then the
    /// payload, to the transport ahead of anything else, and what the transport does
    /// not take at once goes to the front of its output (`Output::push_unsent`).
    pub fn write_direct(&mut self, id: StreamId, len: usize) -> Option<Header> {
        // Deferred frames belong to streams whose writes ended: they may follow.
        if self.end.is_some() || len == 0 || !(self.queues_empty() || self.only_deferred()) {
            return None;
        }
        let n = self.direct_room(id, len)?;
        Some(self.take_direct(id.num, n))
    }

    /// The payload a direct frame of stream `id` can carry of a `len`-byte write: the
    /// stream takes writes and has no unsent data, and its window has room.
    fn direct_room(&self, id: StreamId, len: usize) -> Option<usize> {
        if self.end.is_some() || len == 0 {
            return None;
        }
        let s = self
            .streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen && s.writes_open() && s.send_len() == 0)?;
        let n = len.min(s.send_room()).min(self.config.max_frame as usize);
        (n > 0).then_some(n)
    }

    /// Counts a direct frame of `n` bytes on stream `id` as sent; its header.
    fn take_direct(&mut self, id: u16, n: usize) -> Header {
        if let Some(s) = self.streams.get_mut(&id) {
            s.in_flight += n as u32;
        }
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += (crate::frame::HEADER_LEN + n) as u64;
        self.end_turn(id);
        Header::new(Cmd::Psh, id, n as u32)
    }

    /// [`Session::write_direct`] for a caller that writes the control frames queued
    /// ahead too, in the same write: when no data and no CFM is queued and at most
    /// `DIRECT_AHEAD` control frames are, their headers are encoded into `ahead` and
    /// counted as sent. Returns the PSH's header and the count of bytes put in `ahead`;
    /// `None`: nothing was taken.
    pub(crate) fn write_direct_after(
        &mut self,
        id: StreamId,
        len: usize,
        ahead: &mut [u8; crate::link::DIRECT_AHEAD * crate::frame::HEADER_LEN],
    ) -> Option<(Header, usize)> {
        let queued = self.ctrl.len();
        let quiet = self.ready.is_empty() && self.cfm.is_empty();
        if queued == 0 || !quiet || queued > crate::link::DIRECT_AHEAD {
            return self.write_direct(id, len).map(|h| (h, 0));
        }
        let n = self.direct_room(id, len)?;
        // These frames concern this stream (its SYN) or others, never its window or
        // send buffer, so `n` stands. What they queue as they leave (a last FIN that
        // falls due) follows the PSH: it belongs to another stream.
        let mut at = 0;
        for _ in 0..queued {
            if let Some(Some(h)) = self.take_ctrl_front() {
                ahead[at..at + crate::frame::HEADER_LEN].copy_from_slice(&h.to_bytes());
                at += crate::frame::HEADER_LEN;
            }
        }
        Some((self.take_direct(id.num, n), at))
    }

    /// Accepts as much of `data` as the stream's window and the session's send queue
    /// allow and returns that count. Every accepted byte will be sent unless the
    /// session ends; `Err(Blocked)` means nothing was accepted and nothing changed.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        self.check_live().map_err(WriteError::SessionEnded)?;
        let s = self
            .streams
            .get(&id.num)
            .filter(|s| s.gen == id.gen)
            .ok_or(WriteError::UnknownStream)?;
        let out_room = self.queue_room(s);
        let s = self.streams.get_mut(&id.num).expect("found above");
        if !s.writes_open() {
            return Err(self.write_refusal(id.num));
        }
        let s = self.streams.get_mut(&id.num).expect("found above");
        if data.is_empty() {
            return Ok(0);
        }
        let room = s.send_room();
        let n = data.len().min(room).min(out_room);
        if n == 0 {
            self.block_writer(id.num);
            return Err(WriteError::Blocked);
        }
        s.bufs_mut(&mut self.pool)
            .send
            .push(&data[..n], &mut self.pool);
        if !s.has(flag::IN_READY) {
            s.set(flag::IN_READY, true);
            self.ready.push_back(id.num);
        }
        self.stats.buffered_out += n;
        self.end_turn(id.num);
        Ok(n)
    }

    /// Releases stream `id`: unread data is dropped, and a FIN is sent after every
    /// byte already accepted. The ID is freed when the peer's FIN has also arrived
    /// (an [`Event::Closed`] says so).
    ///
    /// On an extended stream whose peer has not finished writing, the peer is told to
    /// stop (its writes then fail as after a base FIN), and what it sent meanwhile is
    /// confirmed and dropped. Use [`Session::shutdown`] to keep reading.
    pub fn close(&mut self, id: StreamId) -> Result<(), WriteError> {
        self.check_live().map_err(WriteError::SessionEnded)?;
        if self.streams.get(&id.num).is_none_or(|s| s.gen != id.gen) {
            return Err(WriteError::UnknownStream);
        }
        self.end_turn(id.num);
        let s = self.streams.get_mut(&id.num).expect("checked above");
        let (fin, peer_fin) = match s.state {
            State::Open => (None, false),
            State::PeerFin => (None, true),
            State::Shut { fin, peer_fin } => (Some(fin), peer_fin),
            State::Closing { .. } => return Err(WriteError::Closed),
        };
        self.sliced -= s.sliced();
        let dropped = s.discard_recv(&mut self.pool);
        let ext = s.has(flag::EXT);
        if !ext {
            // Nothing more will be read, so no CFM may follow our FIN: a late CFM could
            // reach a new stream that reuses the ID.
            s.consumed = 0;
        }
        if ext && !peer_fin {
            // Tell the peer to stop writing (WND 0). It goes ahead of our FIN, which may
            // leave as our last frame on the stream.
            self.ctrl
                .push_back((Header::new(Cmd::Wnd, id.num, 0), Tag::Stream(s.gen)));
        }
        let fin = fin.unwrap_or_else(|| {
            let f = if s.send_len() > 0 {
                LocalFin::Waiting
            } else {
                LocalFin::Queued
            };
            if f == LocalFin::Queued {
                self.ctrl
                    .push_back((Header::new(Cmd::Fin, id.num, 0), Tag::Stream(s.gen)));
            }
            f
        });
        s.state = State::Closing { fin, peer_fin };
        // Nothing waits on a released stream: no `Writable` for a blocked write, nor
        // for a shutdown that waited for the agreement.
        s.set(flag::WRITE_BLOCKED | flag::SHUT_WAITING, false);
        self.owe_last_fin(id.num);
        self.resets.remove(&id.num);
        self.backlog.retain(|x| *x != id.num);
        if ext && !peer_fin {
            // What the peer sent meanwhile counts as read, confirmed so it never blocks
            // on a window nobody reads.
            self.consumed(id.num, dropped);
        } else {
            self.stats.buffered_in -= dropped;
        }
        self.maybe_remove(id.num);
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
        self.deferred = 0;
        self.deferred_until = None;
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
            // The turn lists are gone; so are the turns.
            s.set(flag::GRANTED | flag::OUT_WAITER, false);
        }
        if self.end == Some(EndReason::Local) {
            self.streams.clear();
            self.backlog.clear();
            self.stats.buffered_in = 0;
            self.sliced = 0;
        }
    }

    /// Checks the session's internal invariants and panics if one is broken. For tests
    /// and the fuzzing harness (the `testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn assert_invariants(&self) {
        let (mut inn, mut out, mut extra) = (0usize, 0usize, 0usize);
        for (id, s) in &self.streams {
            let sent = s.in_flight as usize + s.send_len();
            // A peer's SET may lower the window below what was sent under the assumed one.
            let assumed = self.config.window.min(ASSUMED_WINDOW);
            assert!(
                sent <= s.send_window.max(assumed) as usize,
                "stream {id}: {sent} unconfirmed bytes > window"
            );
            assert!(
                s.recv_len <= s.unacked,
                "stream {id}: buffered more than received"
            );
            assert!(
                s.unacked <= s.recv_window.max(ASSUMED_WINDOW),
                "stream {id}: unacked > window"
            );
            assert!(
                s.recv_window <= self.config.max_window.max(self.config.window),
                "stream {id}: window beyond max_window"
            );
            assert!(
                s.has(flag::EXT) || !matches!(s.state, State::Shut { .. }),
                "stream {id}: half-closed without extensions"
            );
            extra += (s.recv_window - self.config.window) as usize;
            assert!(s.consumed <= s.unacked, "stream {id}: consumed > unacked");
            inn += s.recv_len as usize;
            out += s.send_len();
            assert!(
                self.end.is_some() || self.ids.contains(*id),
                "stream {id} without ID"
            );
        }
        assert_eq!(inn, self.stats.buffered_in, "buffered_in drifted");
        assert_eq!(extra, self.extra_window, "granted window drifted");
        assert!(
            extra <= self.config.max_buffered_in / 2,
            "window grants beyond their budget"
        );
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

    /// IDs of every stream record (open or closing), sorted. For tests and the fuzzing
    /// harness (the `testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn stream_ids(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.streams.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn remove(&mut self, id: u16) {
        if let Some(mut s) = self.streams.remove(&id) {
            self.extra_window -= (s.recv_window - self.config.window) as usize;
            self.resets.remove(&id);
            self.deferred_resets.remove(&id);
            self.sliced -= s.sliced();
            let dropped = s.discard_recv(&mut self.pool);
            self.stats.buffered_in -= dropped;
            self.ids.remove(id);
            self.events
                .push_back(Event::Closed(StreamId::new(id, s.gen)));
        }
    }
}
