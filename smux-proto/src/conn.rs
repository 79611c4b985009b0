//! A connection: a [`Session`] together with its life cycle around the transport and
//! the wakers of everyone waiting on it, written once for every adapter.
//!
//! An adapter keeps one `Connection` behind a lock. Its I/O side owns an [`Input`] and
//! an [`Output`] and calls [`Connection::drive`] (one async task driving both
//! directions), or [`Connection::drive_input`] and [`Connection::drive_output`] (a
//! reader thread and a writer thread). Each applies the transport's results, runs the
//! timers, refills the output and returns a [`Plan`]: what to read, write, flush or
//! shut down, and when to come back. Application calls (`poll_read`, `poll_write`,
//! `open`, ...) take the lock, call the matching method and park a waker when they must
//! wait. Every method collects the wakers it owes in the connection; the adapter takes
//! them with [`Connection::take_wakers`] and wakes them after releasing the lock, so no
//! waker runs under it. An adapter on a work-stealing runtime has the I/O side's
//! rounds wake one task at a time ([`Connection::pace_wakes`]).
//!
//! The life cycle, in one place:
//!
//! | stage | what happens | ends when |
//! |---|---|---|
//! | running | input is fed while the session wants it; output is refilled below [`TX_LIMIT`]; a write failure keeps reading for [`WRITE_FAIL_GRACE`] first | the session ends |
//! | ending, write side | after a clean end (closed here, drained after a go-away, the peer's end-of-file) the output left is written; after any other end, or a hard close, it is dropped; then the transport's write side is shut | written and shut, or [`FINISH_GRACE`] passed |
//! | ending, read side | after our own clean end only: input is read and dropped until the peer closes too, so that closing a socket with unread input does not reset the peer before it read our last bytes | end-of-file, or the grace passed |
//! | done | both sides ended: [`Plan::done`], the adapter drops the transport; `closed` waits wake | |
//!
//! A graceful close ([`Connection::shutdown`], or the last session handle dropped, with
//! a linger of [`LINGER`]) refuses new opens and writes at once (parked calls fail
//! now), waits until everything already written has reached the transport, then closes
//! the session; a hard close ([`Connection::close`]) ends it at once and drops what is
//! queued.

use std::io;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError};
use crate::error::{EndReason, ReadError, WriteError};
use crate::id::Role;
use crate::link::{Direct, Input, Output, Plan, ReadState, WriteState, DIRECT_AHEAD};
use crate::negotiate::Agreement;
use crate::session::{Event, Session, Stats, StreamId, StreamState};
use crate::wake::Waiters;

mod pace;
mod stall;
mod through;
pub use pace::PACE_LIMIT;
pub use stall::{Stall, STALL_NOTICE};
pub use through::{poll_read_through, read_through_into, ReadThrough, LEND_GRACE};

/// The output is refilled while it holds less than this.
pub const TX_LIMIT: usize = 256 * 1024;
/// How much an empty output is refilled with: the transport took everything it was
/// given, so it can take a larger batch (fewer writes and rounds per byte), while an
/// output the transport is slow to take stays near `TX_LIMIT`, so that the control
/// frames queued behind it wait less.
pub const TX_BATCH: usize = 1024 * 1024;
/// How long reading goes on after writing failed, to take in what the peer sent
/// before it went away.
pub const WRITE_FAIL_GRACE: Duration = Duration::from_secs(2);
/// How long writing out, shutting down and draining may take once the session ended.
pub const FINISH_GRACE: Duration = Duration::from_secs(2);
/// How long a dropped session may take to write out what was already written.
pub const LINGER: Duration = Duration::from_secs(10);
/// Rounds of I/O an async driver runs per wake-up before it yields to its runtime, so
/// one busy connection cannot starve a runtime thread.
pub const ROUNDS_PER_WAKE: usize = 32;

/// A parked call's place among the waiters. The future (or blocking call) that waits
/// owns it and hands it back with [`Connection::forget`] when it is dropped, so an
/// abandoned wait leaves no waker behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Slot(Option<u64>);

/// How a stream stands for an event loop; from [`Connection::readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Readiness {
    /// A read returns at once: with data, end-of-file or an error.
    pub readable: bool,
    /// A write returns at once: with room, or an error.
    pub writable: bool,
    /// Nothing more passes either way: the peer closed a base stream or reset the
    /// stream, this end released it, or the session ended.
    pub closed: bool,
}

/// How the transport ends once the session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ending {
    until: Instant,
    /// Read (and drop) input until the peer closes too.
    drain: bool,
    /// The write side is finished: written out and shut, failed, or out of time.
    out_done: bool,
    /// The read side is finished: drained, closed, or not to be drained.
    in_done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Accept,
    Agreement,
    Closed,
}

/// A direct write at least this large keeps the transport busy for longer than a
/// wake-up of the driver costs (see [`Direct::takes_long`]).
const LONG_DIRECT: usize = 16 * 1024;

/// A session, its transport life cycle and its waiters; see the module docs.
#[derive(Debug)]
pub struct Connection {
    session: Session,
    waiters: Waiters,
    /// Parked calls by slot: few (accepts, agreement and close waits), so a list.
    slots: Vec<(Kind, u64, Waker)>,
    next_slot: u64,
    woken: Vec<Waker>,
    /// Wake-ups of the I/O side held back for the next call (see [`Connection::pace_wakes`]).
    pacing: pace::Pacing,
    /// Input held back at the bound: since when, and whether it was reported.
    stall: stall::StallWatch,
    driver: Option<Waker>,
    /// A graceful close started, with its deadline if it has one.
    closing: Option<Option<Instant>>,
    /// Closed hard: what is queued is dropped.
    hard: bool,
    /// Set once the session ended: how the transport ends.
    ending: Option<Ending>,
    /// The I/O side finished: the transport is dropped.
    done: bool,
    /// The read side's waker, when it is driven apart from the write side.
    reader: Option<Waker>,
    /// What the write side last showed, for decisions made from the read side.
    output_open: bool,
    /// The timer of the write side's last plan: a deadline the session gains before it
    /// (frames held back to leave with others) needs that side to plan again.
    planned: Option<Instant>,
    input_closed: bool,
    /// Events kept for an adapter that routes them further (a readiness poller).
    log: Option<Vec<Event>>,
    /// The adapter reads through (see [`Connection::lend_reads`]).
    lends: bool,
    /// The read side is lent to this stream's reader until the instant.
    lent: Option<(StreamId, Instant)>,
    /// The last stream whose parked reader data woke.
    woke_reader: Option<StreamId>,
    /// A reader that parked while it held the read side: not lent it again until the
    /// I/O side has read, or it would be woken and park over and over.
    declined: Option<StreamId>,
}

impl Connection {
    /// A connection for `role` at time `now`, with `config` validated.
    pub fn new(config: Config, role: Role, now: Instant) -> Result<Connection, ConfigError> {
        Ok(Connection {
            session: Session::new(config, role, now)?,
            waiters: Waiters::new(),
            slots: Vec::new(),
            next_slot: 0,
            woken: Vec::new(),
            pacing: Default::default(),
            stall: Default::default(),
            driver: None,
            closing: None,
            hard: false,
            ending: None,
            done: false,
            reader: None,
            output_open: true,
            planned: None,
            input_closed: false,
            log: None,
            lends: false,
            lent: None,
            woke_reader: None,
            declined: None,
        })
    }

    /// The session inside, for what this type does not wrap.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Moves the wakers owed so far into `out` (a `Vec`, or a small vector on the
    /// stack); wake them after releasing the lock. Call it after every call, as
    /// wake-ups paced by [`Connection::pace_wakes`] leave with the call after the I/O
    /// round that held them.
    pub fn take_wakers(&mut self, out: &mut impl Extend<Waker>) {
        // Most calls owe none: skip the drain.
        if !self.woken.is_empty() {
            out.extend(self.woken.drain(..));
        }
        self.take_held(out);
    }

    /// Whether [`Connection::take_wakers`] has anything to hand out (most calls owe
    /// no wake-up, and an adapter can then skip collecting them).
    pub fn owes_wakers(&self) -> bool {
        !self.woken.is_empty() || self.holds_wakes()
    }

    /// Keeps every event from now on for [`Connection::take_events`] (for an adapter
    /// that routes events to readiness pollers).
    pub fn keep_events(&mut self) {
        self.log.get_or_insert_with(Vec::new);
    }

    /// The events kept since the last call (see [`Connection::keep_events`]).
    pub fn take_events(&mut self, out: &mut Vec<Event>) {
        if let Some(log) = self.log.as_mut() {
            out.append(log);
        }
    }

    // ----- the I/O side -------------------------------------------------------------

    /// Applies what the transport did, runs the timers due at `now`, refills `output`
    /// and says what to do next, for an I/O side that drives both directions (an
    /// async task). `driver` is woken whenever an application call gives it work.
    pub fn drive(
        &mut self,
        now: Instant,
        input: &mut Input,
        output: &mut Output,
        driver: &Waker,
    ) -> Plan {
        set_waker(&mut self.driver, driver);
        set_waker(&mut self.reader, driver);
        self.take_input(now, input);
        self.take_output(now, output);
        self.after_io(now, input.is_closed(), output.is_open());
        let read = self.plan_input(now, input);
        let mut plan = self.plan_output(now, output);
        plan.read = read.read;
        plan.read_limit = read.read_limit;
        plan.timer = [plan.timer, read.timer].into_iter().flatten().min();
        self.watch_stall(now, &mut plan);
        self.pace(now, &mut plan);
        self.planned = plan.timer;
        self.conclude(plan)
    }

    /// Whether the plan the last [`Connection::drive`] returned still stands: nothing
    /// called for the I/O side since (its wakers are unused) and its timer is not due.
    /// An adapter woken by the transport alone may then carry out that plan's read
    /// before it drives again, and take what it read in the same round. Never after
    /// large frames where readers read through ([`Connection::lend_reads`]): there the
    /// next plan may read a header alone, or lend the read side, for a reader that
    /// parked meanwhile (and a round per 16 KiB or more costs little).
    pub fn plan_stands(&self, now: Instant) -> bool {
        let woken = self.driver.is_none() || self.reader.is_none();
        let large = self.lends && self.session.large_frames();
        !woken && !large && !self.done && self.planned.is_none_or(|t| now < t)
    }

    /// The read side alone, for an adapter that reads on one thread and writes on
    /// another: feeds `input` and says whether to read on (only [`Plan::read`],
    /// [`Plan::timer`] and [`Plan::done`] are set). `reader` is woken when input that
    /// was held back is wanted again.
    pub fn drive_input(&mut self, now: Instant, input: &mut Input, reader: &Waker) -> Plan {
        set_waker(&mut self.reader, reader);
        self.take_input(now, input);
        self.note_stall(now);
        if self.session.has_transmit() || self.replan_due() {
            // Input can call for output (answers, confirmations, handshake frames).
            self.kick();
        }
        self.after_io(now, input.is_closed(), self.output_open);
        let mut plan = self.plan_input(now, input);
        self.pace(now, &mut plan);
        self.conclude(plan)
    }

    /// The write side alone (see [`Connection::drive_input`]): runs the timers, refills
    /// `output` and says what to write, flush or shut, and when to come back.
    pub fn drive_output(&mut self, now: Instant, output: &mut Output, writer: &Waker) -> Plan {
        set_waker(&mut self.driver, writer);
        let stalled = !self.session.wants_input();
        self.take_output(now, output);
        if stalled && self.session.wants_input() {
            // Sending answers made room for the input held back: the reader goes on.
            self.woken.extend(self.reader.take());
        }
        self.after_io(now, self.input_closed, output.is_open());
        let mut plan = self.plan_output(now, output);
        plan.timer = [plan.timer, self.end_reading(now)]
            .into_iter()
            .flatten()
            .min();
        self.watch_stall(now, &mut plan);
        self.planned = plan.timer;
        self.conclude(plan)
    }

    /// For the write side driven alone: decides when the read side is finished once
    /// the session ended, by the rule [`Connection::drive_input`] follows, since the
    /// reader may sit in a blocking read that only closing the transport ends (so
    /// `done` must come from here). Returns when to decide again.
    fn end_reading(&mut self, now: Instant) -> Option<Instant> {
        let e = self.ending.as_mut().filter(|e| !e.in_done)?;
        if e.drain && !self.input_closed && now < e.until {
            return Some(e.until);
        }
        e.in_done = true;
        None
    }

    /// The I/O side is gone without finishing (its task was dropped with its runtime):
    /// ends the session and wakes everyone.
    pub fn abandon(&mut self) {
        if !self.session.is_ended() {
            self.session.handle_transport_error(io::Error::other(
                "smux driver stopped before the session ended (its runtime shut down)",
            ));
        }
        self.dispatch();
        self.finish();
    }

    /// True once the I/O side has finished and dropped the transport.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The read side's results: a failure ends the session; input is fed while wanted.
    fn take_input(&mut self, now: Instant, input: &mut Input) {
        self.input_closed = input.is_closed();
        if self.ending.is_some() {
            return;
        }
        let s = &mut self.session;
        if let ReadState::Failed(_) = input.state {
            let ReadState::Failed(e) = std::mem::replace(&mut input.state, ReadState::Reported)
            else {
                unreachable!("matched above")
            };
            s.handle_transport_error(e);
        }
        if !input.buf.is_empty() && s.wants_input() {
            s.handle_input(now, &mut input.buf);
            self.declined = None;
        }
        if matches!(input.state, ReadState::Eof) && s.wants_input() {
            // Everything decodable was taken; what is left is a partial frame.
            s.handle_eof(input.buf.len());
        }
    }

    /// The write side's results and duties: a failure ends the session after the
    /// grace; timers; the graceful close; the refill.
    fn take_output(&mut self, now: Instant, output: &mut Output) {
        self.output_open = output.is_open();
        if self.ending.is_some() {
            return;
        }
        let s = &mut self.session;
        if let WriteState::Failed(err, until) = &mut output.state {
            let until = *until.get_or_insert(now + WRITE_FAIL_GRACE);
            if self.input_closed || now >= until {
                if let Some(e) = err.take() {
                    s.handle_transport_error(e);
                }
            }
        }
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        if let Some(linger) = self.closing {
            let flushed = output.is_empty() && !s.has_transmit() && !output.needs_flush;
            if flushed || linger.is_some_and(|t| now >= t) {
                s.close_session();
            }
        }
        if output.is_open() && output.len() < TX_LIMIT {
            let limit = if output.is_empty() {
                TX_BATCH
            } else {
                TX_LIMIT
            };
            s.poll_transmit(now, &mut output.tx, limit);
        }
    }

    /// Events to waiters; once the session ended, decides how the transport ends.
    fn after_io(&mut self, now: Instant, input_closed: bool, output_open: bool) {
        self.dispatch();
        if self.ending.is_none() && self.session.is_ended() {
            let reason = self.session.end_reason();
            let ours = matches!(reason, Some(EndReason::Local | EndReason::Drained));
            self.ending = Some(Ending {
                until: now + FINISH_GRACE,
                drain: ours && !input_closed,
                out_done: !output_open,
                in_done: false,
            });
            // Both sides have work now.
            self.kick();
            self.woken.extend(self.reader.take());
        }
    }

    fn plan_input(&mut self, now: Instant, input: &mut Input) -> Plan {
        let mut plan = Plan::default();
        let limit = self.read_limit(input);
        self.lend(now, input);
        match self.ending.as_mut() {
            None => {
                plan.read = self.session.wants_input() && !input.is_closed();
                plan.read_limit = limit;
                if let Some((_, until)) = self.lent {
                    plan.read = false;
                    plan.timer = Some(until);
                }
            }
            Some(e) if !e.in_done => {
                input.discard();
                if e.drain && !input.is_closed() && now < e.until {
                    plan.read = true;
                    plan.timer = Some(e.until);
                } else {
                    e.in_done = true;
                }
            }
            Some(_) => {}
        }
        plan
    }

    fn plan_output(&mut self, now: Instant, output: &mut Output) -> Plan {
        let mut plan = Plan::default();
        let Some(e) = self.ending.as_mut() else {
            let s = &self.session;
            plan.write = output.is_open() && !output.is_empty();
            plan.flush = output.is_open() && output.is_empty() && output.needs_flush;
            let grace = match output.state {
                WriteState::Failed(Some(_), until) => until,
                _ => None,
            };
            let linger = self.closing.flatten();
            plan.timer = [s.poll_timeout(), grace, linger]
                .into_iter()
                .flatten()
                .min();
            return plan;
        };
        if !e.out_done {
            if !self.session_clean_for_output(output) {
                output.tx = Default::default();
                output.needs_flush = false;
            }
            let e = self.ending.as_mut().expect("checked above");
            if output.is_open() && now < e.until {
                plan.write = !output.is_empty();
                plan.flush = output.is_empty() && output.needs_flush;
                plan.shutdown = output.is_empty() && !output.needs_flush;
                plan.timer = Some(e.until);
            } else {
                e.out_done = true;
            }
        }
        plan
    }

    /// Whether what is left in the output is written after the session ended: after a
    /// clean end (closed here, drained, the peer's end-of-file), not after a hard close
    /// or a failure.
    fn session_clean_for_output(&self, output: &Output) -> bool {
        let clean = matches!(
            self.session.end_reason(),
            Some(EndReason::Local | EndReason::Drained | EndReason::PeerClosed)
        );
        clean && !self.hard && output.is_open()
    }

    /// Finishes once both sides are done; a finished plan says `done` and nothing else.
    fn conclude(&mut self, mut plan: Plan) -> Plan {
        if self.done || self.ending.is_some_and(|e| e.out_done && e.in_done) {
            self.finish();
            plan = Plan {
                done: true,
                ..Plan::default()
            };
        }
        plan
    }

    fn finish(&mut self) {
        self.done = true;
        // Driven apart, the other side may be waiting for its waker.
        self.woken.extend(self.driver.take());
        self.woken.extend(self.reader.take());
        self.waiters.take_all(&mut self.woken);
        self.woken.extend(self.slots.drain(..).map(|(_, _, w)| w));
        self.release_held();
    }

    /// Hands the session's events to the waiters, and the driver its work.
    fn dispatch(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            if let Event::Readable(id) = ev {
                if self.waiters.has_reader(id) {
                    self.woke_reader = Some(id);
                }
            }
            self.waiters.dispatch(&ev, &mut self.woken);
            let kind = match ev {
                Event::Incoming(_) => Some(Kind::Accept),
                Event::Agreed(_) => Some(Kind::Agreement),
                _ => None,
            };
            if matches!(ev, Event::Ended(_)) {
                self.wake_kind(Kind::Accept);
                self.wake_kind(Kind::Agreement);
                self.kick();
            }
            if let Some(k) = kind {
                self.wake_kind(k);
            }
            if let Some(log) = self.log.as_mut() {
                log.push(ev);
            }
        }
    }

    fn wake_kind(&mut self, kind: Kind) {
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].0 == kind {
                self.woken.push(self.slots.swap_remove(i).2);
            } else {
                i += 1;
            }
        }
    }

    /// After an application call: events to waiters, and the driver woken if the call
    /// gave it something to send or made room for input it held back.
    fn settle(&mut self, was_stalled: bool) {
        self.dispatch();
        if self.session.has_transmit() || self.replan_due() {
            self.kick();
        }
        if was_stalled && self.session.wants_input() {
            // Held-back input is wanted again: the reader (or the single driver) goes on.
            self.woken.extend(self.reader.take());
            self.kick();
        }
    }

    fn kick(&mut self) {
        self.woken.extend(self.driver.take());
    }

    /// Whether frames held back to leave with others must leave, or a stall be
    /// reported, before the write side's timer fires: it must plan again.
    fn replan_due(&self) -> bool {
        let due = [self.session.deferred_until(), self.stall_due()];
        let due = due.into_iter().flatten().min();
        due.is_some_and(|t| self.planned.is_none_or(|p| t < p))
    }

    fn park(&mut self, kind: Kind, slot: &mut Slot, w: &Waker) {
        let key = *slot.0.get_or_insert_with(|| {
            self.next_slot += 1;
            self.next_slot
        });
        match self.slots.iter_mut().find(|s| s.0 == kind && s.1 == key) {
            Some((_, _, old)) => old.clone_from(w),
            None => self.slots.push((kind, key, w.clone())),
        }
    }

    /// Forgets the waker of a dropped wait.
    pub fn forget(&mut self, slot: &mut Slot) {
        if let Some(key) = slot.0.take() {
            self.slots.retain(|s| s.1 != key);
        }
    }

    // ----- the session --------------------------------------------------------------

    /// Opens a stream. Fails after a go-away (`ConnectionRefused`), during a graceful
    /// close (`NotConnected`), once the session ended, or when every stream ID is in use.
    pub fn open(&mut self) -> io::Result<StreamId> {
        if self.refuses_work() {
            return Err(closing_error());
        }
        let r = self.session.open();
        self.settle(false);
        // The error keeps the `OpenError` as its source, for callers that downcast.
        r.map_err(io::Error::from)
    }

    /// The next stream the peer opened. Waits during a go-away too (no stream comes
    /// any more, and the session ends once drained); fails once the session ended.
    pub fn poll_accept(&mut self, slot: &mut Slot, w: &Waker) -> Poll<io::Result<StreamId>> {
        if let Some(id) = self.session.accept() {
            self.forget(slot);
            return Poll::Ready(Ok(id));
        }
        if let Some(e) = self.session.end_reason().map(EndReason::to_io_error) {
            self.forget(slot);
            return Poll::Ready(Err(e));
        }
        if self.closing.is_some() {
            self.forget(slot);
            return Poll::Ready(Err(closing_error()));
        }
        self.park(Kind::Accept, slot, w);
        Poll::Pending
    }

    /// Waits until the ends settled the agreement on extensions; true if they use them.
    /// Makes this end send its offer now if it has not yet.
    pub fn poll_ready(&mut self, slot: &mut Slot, w: &Waker) -> Poll<io::Result<bool>> {
        match self.session.agreement() {
            Agreement::Extended => return Poll::Ready(Ok(true)),
            Agreement::Base => return Poll::Ready(Ok(false)),
            Agreement::Pending => {}
        }
        if let Some(e) = self.session.end_reason().map(EndReason::to_io_error) {
            self.forget(slot);
            return Poll::Ready(Err(e));
        }
        self.session.start_agreement();
        self.settle(false);
        self.park(Kind::Agreement, slot, w);
        Poll::Pending
    }

    /// Waits until the session ended and the I/O side finished; returns why it ended.
    pub fn poll_closed(&mut self, slot: &mut Slot, w: &Waker) -> Poll<EndReason> {
        if self.done {
            self.forget(slot);
            let r = self.session.end_reason().cloned();
            return Poll::Ready(r.unwrap_or(EndReason::Local));
        }
        self.park(Kind::Closed, slot, w);
        Poll::Pending
    }

    /// Starts a graceful go-away (see `Session::go_away`).
    pub fn go_away(&mut self, code: u32) {
        self.session.go_away(code);
        self.settle(false);
    }

    /// Ends the session now: every stream fails, and what is queued is dropped.
    pub fn close(&mut self) {
        self.hard = true;
        self.session.close_session();
        self.settle(false);
    }

    /// Starts a graceful close: new opens and writes are refused (parked ones fail now),
    /// everything already written goes out, then the session closes, at `linger` at the
    /// latest if given. A later call can only bring the deadline closer.
    pub fn shutdown(&mut self, linger: Option<Instant>) {
        if self.session.is_ended() {
            return;
        }
        self.closing = Some(match (self.closing, linger) {
            (Some(Some(old)), Some(new)) => Some(old.min(new)),
            (Some(old), None) => old,
            (_, new) => new,
        });
        // Nothing waits for company any more: all of it is to be written.
        self.session.hurry();
        // Calls parked for room or a stream learn of the close at once.
        self.waiters.take_writers_and_acceptors(&mut self.woken);
        self.wake_kind(Kind::Accept);
        self.kick();
    }

    /// True while a graceful close refuses new work.
    pub fn refuses_work(&self) -> bool {
        self.closing.is_some() && !self.session.is_ended()
    }

    /// Sends a ping (see `Session::ping`).
    pub fn ping(&mut self, now: Instant) -> bool {
        let sent = self.session.ping(now);
        self.settle(false);
        sent
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        self.session.stats()
    }

    // ----- streams ------------------------------------------------------------------

    /// Reads buffered bytes of stream `id` into `buf`; `Ok(0)` with a non-empty `buf`
    /// is end-of-file.
    pub fn poll_read(
        &mut self,
        id: StreamId,
        buf: &mut [u8],
        w: &Waker,
    ) -> Poll<io::Result<usize>> {
        let stalled = !self.session.wants_input();
        let r = self.session.read(id, buf);
        let r = match r {
            Err(ReadError::Blocked) => {
                self.waiters.wait_read(id, w);
                if self.lent.is_some_and(|(l, _)| l == id) {
                    self.declined = Some(id);
                    self.take_back(id);
                }
                Poll::Pending
            }
            Err(ReadError::Closed | ReadError::UnknownStream) => Poll::Ready(Err(released())),
            r => Poll::Ready(r.map_err(io::Error::from)),
        };
        self.settle(stalled);
        r
    }

    /// Accepts bytes for stream `id`: returns how many, or waits for room.
    pub fn poll_write(&mut self, id: StreamId, data: &[u8], w: &Waker) -> Poll<io::Result<usize>> {
        if self.refuses_work() {
            return Poll::Ready(Err(closing_error()));
        }
        let r = match self.session.write(id, data) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(WriteError::Blocked) => {
                self.waiters.wait_write(id, w);
                // The refusal may have handed out a send-queue turn (an event the
                // dispatch below delivers, perhaps to this very writer).
                Poll::Pending
            }
            Err(WriteError::UnknownStream) => Poll::Ready(Err(released())),
            Err(e) => Poll::Ready(Err(e.into())),
        };
        self.settle(false);
        r
    }

    /// Write-through, for an application call that holds the write side of the
    /// transport (and `output`): a frame of stream `id` carrying the first bytes of its
    /// `len`-byte write, for the caller to write to the transport itself, now, from its
    /// own buffer (see `Session::write_direct`), after the few control frames queued
    /// ahead of it (a new stream's SYN, FINs of closed streams), in the same write.
    /// `None` when that is not possible (data or confirmations queued, more control
    /// frames than a direct frame carries, something in `output`, no room, a close
    /// under way, or a transport that does not write vectors, so it would take only the
    /// headers): take
    /// [`Connection::poll_write`] then. If [`Direct::written`] says so, call
    /// [`Connection::wake_driver`].
    pub fn begin_direct(&mut self, id: StreamId, len: usize, output: &Output) -> Option<Direct> {
        if self.refuses_work() || self.ending.is_some() || !output.is_open() || !output.is_empty() {
            return None;
        }
        if !output.vectored {
            return None;
        }
        // Control frames queued ahead (a new stream's SYN, the previous one's FIN) go
        // in the same write.
        let mut head = [0u8; DIRECT_AHEAD * crate::frame::HEADER_LEN];
        let (h, n) = self.session.write_direct_after(id, len, &mut head)?;
        // A large write's copy into the kernel holds the socket's lock for a while; a
        // read of the socket from another thread meanwhile would sleep on it. The
        // driver waits for such a write instead of reading, unless the window left is
        // low: then the peer's window update must be read without delay, or the writer
        // runs out of window waiting for the driver.
        let long = h.length as usize >= LONG_DIRECT
            && self.session.writable_len(id) >= self.session.config().window() as usize / 4;
        Some(Direct::new(&head[..n], h, long))
    }

    /// Wakes the I/O side: a direct write left bytes in the output (or could not flush)
    /// for it to finish.
    pub fn wake_driver(&mut self) {
        self.kick();
    }

    /// Shuts stream `id`'s write side (half-close); waits while the agreement on
    /// extensions is pending, fails with `Unsupported` on a base stream. A second call,
    /// or one on a released stream, does nothing.
    pub fn poll_shutdown(&mut self, id: StreamId, w: &Waker) -> Poll<io::Result<()>> {
        let r = match self.session.shutdown(id) {
            Ok(()) | Err(WriteError::Closed | WriteError::UnknownStream) => Poll::Ready(Ok(())),
            Err(WriteError::SessionEnded(_)) => Poll::Ready(Ok(())),
            Err(WriteError::Blocked) => {
                self.waiters.wait_write(id, w);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        };
        self.settle(false);
        r
    }

    /// Releases stream `id` (its handle was dropped): our FIN follows what was written;
    /// calls parked on it wake and fail. Doing it twice does nothing.
    pub fn release(&mut self, id: StreamId) {
        let _ = self.session.close(id);
        self.wake_stream(id);
        self.settle(false);
    }

    /// Aborts stream `id` both ways with `code` and releases it (on a base stream, a
    /// release). Does nothing if it was released already.
    pub fn reset(&mut self, id: StreamId, code: u32) {
        let _ = self.session.reset(id, code);
        self.wake_stream(id);
        self.settle(false);
    }

    /// Whether a read and a write on stream `id` would return at once, for a
    /// level-triggered readiness poller. With `want_write`, a write that would wait
    /// owes a `Writable` event once it would not (no refused write asked for it).
    pub fn readiness(&mut self, id: StreamId, want_write: bool) -> Readiness {
        let s = &mut self.session;
        let (data, room) = (s.readable_len(id) > 0, s.writable_len(id) > 0);
        let ready = |readable, writable| Readiness {
            readable,
            writable,
            closed: false,
        };
        let closed = Readiness {
            readable: true,
            writable: true,
            closed: true,
        };
        let r = match s.stream_state(id) {
            _ if s.is_ended() => closed,
            Some(StreamState::Open) => ready(data, room),
            // The peer's FIN on an extended stream ends only its direction: reads drain
            // the buffer, then report end-of-file; writes go on.
            Some(StreamState::Finished) if s.is_extended(id) => ready(true, room),
            // Our write side is shut: writes fail at once; reads go on until the peer's
            // FIN (a zero-byte chunk tells end-of-file from "nothing yet", and changes
            // nothing).
            Some(StreamState::HalfClosed) => {
                ready(data || !matches!(s.read_chunk(id, 0), Ok(Some(_))), true)
            }
            // Finished (base stream): buffered data, then end-of-file; writes fail.
            // Reset, released or unknown: calls fail at once.
            _ => closed,
        };
        if want_write && !r.writable {
            s.want_writable(id);
            self.settle(false);
        }
        r
    }

    fn wake_stream(&mut self, id: StreamId) {
        self.waiters.dispatch(&Event::Closed(id), &mut self.woken);
        self.waiters.forget(id);
    }
}

/// Keeps `w` in `slot` (cloning only when it would not wake the same task).
fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
        *slot = Some(w.clone());
    }
}

/// The error opens and writes get during a graceful close.
fn closing_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "smux session is closing")
}

/// The error calls on a stream this end released get.
fn released() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "smux stream was closed or reset on this end",
    )
}
