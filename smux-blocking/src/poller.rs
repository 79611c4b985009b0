//! The readiness poller: the seed's "aio". One thread waits for readiness across all
//! of a session's streams, like `epoll`, and serves them with non-blocking calls.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::BitOr;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use smux_proto::{Event as CoreEvent, StreamId, StreamState};

use crate::session::{Inner, Session, Shared};
use crate::signal::Signal;
use crate::stream::Stream;

/// Which readiness a registration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Reads would not wait: data is buffered, or the stream reached end-of-file or
    /// failed (for example the peer reset it).
    pub const READABLE: Interest = Interest(1);
    /// Writes would not wait: the stream has window, or writes fail (for example
    /// after our write-side shutdown, or the peer's reset).
    pub const WRITABLE: Interest = Interest(2);

    /// True if readable readiness is asked for.
    pub fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// True if writable readiness is asked for.
    pub fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const CLOSED: u8 = 4;
const ACCEPT: u8 = 8;

/// One readiness report of [`Poller::wait`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    token: usize,
    flags: u8,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token)
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .field("closed", &self.is_closed())
            .field("accept", &self.is_accept())
            .finish()
    }
}

impl Event {
    /// The token given when registering the stream (or to [`Poller::watch_accept`]).
    pub fn token(&self) -> usize {
        self.token
    }

    /// A read on the stream would not wait.
    pub fn is_readable(&self) -> bool {
        self.flags & READABLE != 0
    }

    /// A write on the stream would not wait.
    pub fn is_writable(&self) -> bool {
        self.flags & WRITABLE != 0
    }

    /// The stream cannot carry data either way any more: the peer closed a base
    /// stream or reset the stream, or the session ended. Reads return what is
    /// buffered and then end-of-file, the reset's error or the session's error, and
    /// writes fail. (On an extended stream the peer's FIN only ends its direction:
    /// such a stream is reported readable, for end-of-file, and not closed.)
    pub fn is_closed(&self) -> bool {
        self.flags & CLOSED != 0
    }

    /// A stream waits to be accepted ([`Session::try_accept`]), or the session ended
    /// or is going away ([`Session::go_away`]; then `try_accept` reports why, and
    /// [`Poller::unwatch_accept`] stops the reports). Such an event carries the
    /// accept token.
    pub fn is_accept(&self) -> bool {
        self.flags & ACCEPT != 0
    }
}

/// The buffer [`Poller::wait`] fills; its capacity bounds the events per call.
#[derive(Debug, Clone)]
pub struct Events {
    list: Vec<Event>,
    cap: usize,
}

impl Events {
    /// A buffer for up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let cap = capacity.max(1);
        Events {
            list: Vec::with_capacity(cap),
            cap,
        }
    }

    /// The events of the last wait.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// Number of events of the last wait.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if the last wait reported nothing.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Most events one wait reports.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// A stream's registration.
#[derive(Debug)]
pub(crate) struct Reg {
    poller: u64,
    token: usize,
    interest: Interest,
    /// In its poller's ready queue.
    queued: bool,
    /// Tells this registration's queue entries from those of an earlier one.
    seq: u64,
}

/// A poller's state, kept under the session lock.
pub(crate) struct PollerState {
    /// Streams that may be ready, each with its registration's `seq`.
    ready: VecDeque<(u16, u64)>,
    accept_token: Option<usize>,
    waker: Waker,
    /// A wake-up is pending since the last wait.
    woken: bool,
    /// [`Poller::notify`] was called since the last wait returned.
    notified: bool,
    seq: u64,
}

impl PollerState {
    fn wake(&mut self, woken: &mut Vec<Waker>) {
        if !self.woken {
            self.woken = true;
            woken.push(self.waker.clone());
        }
    }
}

impl Inner {
    /// Marks the registration of `id` as possibly ready.
    fn enqueue(&mut self, id: u16, woken: &mut Vec<Waker>) {
        let Some(reg) = self.regs.get_mut(&id) else {
            return;
        };
        let Some(p) = self.pollers.get_mut(&reg.poller) else {
            return;
        };
        if !reg.queued {
            reg.queued = true;
            p.ready.push_back((id, reg.seq));
        }
        p.wake(woken);
    }

    /// Hands a core event to the pollers that care.
    pub(crate) fn route_to_pollers(&mut self, ev: &CoreEvent, woken: &mut Vec<Waker>) {
        if self.pollers.is_empty() {
            return;
        }
        match ev {
            CoreEvent::Readable(id)
            | CoreEvent::Writable(id)
            | CoreEvent::Finished(id)
            | CoreEvent::Reset(id, _) => self.enqueue(id.number(), woken),
            CoreEvent::Incoming(_) => self.wake_accept_pollers(woken),
            CoreEvent::Ended(_) => {
                let ids: Vec<u16> = self.regs.keys().copied().collect();
                for id in ids {
                    self.enqueue(id, woken);
                }
                for p in self.pollers.values_mut() {
                    p.wake(woken);
                }
            }
            _ => {}
        }
    }

    /// Wakes the pollers that watch for streams to accept.
    pub(crate) fn wake_accept_pollers(&mut self, woken: &mut Vec<Waker>) {
        for p in self.pollers.values_mut() {
            if p.accept_token.is_some() {
                p.wake(woken);
            }
        }
    }

    /// Drops the registration of `id`, if any.
    pub(crate) fn deregister(&mut self, id: StreamId) {
        self.regs.remove(&id.number());
    }

    /// Readiness of registered stream `id` as event flags.
    fn readiness(&mut self, id: StreamId) -> u8 {
        let core = &mut self.core;
        if core.is_ended() {
            // Calls do not wait: reads return what is buffered, then end-of-file or
            // the session's error; writes fail.
            return READABLE | WRITABLE | CLOSED;
        }
        let data = if core.readable_len(id) > 0 {
            READABLE
        } else {
            0
        };
        let room = if core.writable_len(id) > 0 {
            WRITABLE
        } else {
            0
        };
        match core.stream_state(id) {
            Some(StreamState::Open) => data | room,
            // The peer's FIN on an extended stream ends only its direction: reads
            // drain the buffer then report end-of-file, and writes go on.
            Some(StreamState::Finished) if core.is_extended(id) => READABLE | room,
            // We shut our write side: writes fail at once, reads go on until the
            // peer's FIN (a zero-byte chunk read tells end-of-file, with no side
            // effect, from "nothing yet").
            Some(StreamState::HalfClosed) => {
                let eof = matches!(core.read_chunk(id, 0), Ok(None) | Err(_));
                WRITABLE | data | if eof { READABLE } else { 0 }
            }
            // Finished (base stream): reads drain the buffer then report
            // end-of-file, writes fail. Reset by the peer: reads and writes fail with
            // its code. Closing or unknown: calls fail.
            _ => READABLE | WRITABLE | CLOSED,
        }
    }

    /// Collects the ready events of poller `key` (level-triggered).
    fn collect(&mut self, key: u64, events: &mut Events) {
        events.list.clear();
        let backlog = self.core.stats().accept_backlog;
        let ended = self.core.is_ended();
        let going_away = self.core.is_going_away();
        let Some(p) = self.pollers.get_mut(&key) else {
            return;
        };
        p.woken = false;
        if let Some(token) = p.accept_token {
            if backlog > 0 || ended || going_away {
                let closed = if ended { CLOSED } else { 0 };
                events.list.push(Event {
                    token,
                    flags: ACCEPT | closed,
                });
            }
        }
        let n = p.ready.len();
        for _ in 0..n {
            if events.list.len() >= events.cap {
                break;
            }
            let Some(p) = self.pollers.get_mut(&key) else {
                return;
            };
            let Some((id, seq)) = p.ready.pop_front() else {
                break;
            };
            // Stale: the stream was registered again since, here or with another
            // poller (each poller numbers its registrations from 1, so both must match).
            let current = |r: &&mut Reg| r.poller == key && r.seq == seq;
            let Some(reg) = self.regs.get_mut(&id).filter(current) else {
                continue;
            };
            reg.queued = false;
            let (token, interest) = (reg.token, reg.interest);
            let Some(sid) = self.core.stream_id(id) else {
                continue;
            };
            let flags = self.readiness(sid);
            let mut want = 0;
            if interest.is_readable() {
                want |= READABLE;
            }
            if interest.is_writable() {
                want |= WRITABLE;
            }
            let fired = flags & want;
            if fired != 0 {
                events.list.push(Event {
                    token,
                    flags: fired | (flags & CLOSED),
                });
                // Level-triggered: it stays queued until a wait finds it not ready.
                let reg = self.regs.get_mut(&id).expect("looked up above");
                reg.queued = true;
                if let Some(p) = self.pollers.get_mut(&key) {
                    p.ready.push_back((id, seq));
                }
            }
            if interest.is_writable() && flags & WRITABLE == 0 {
                // No `Writable` event would come unless a write had been refused.
                self.core.want_writable(sid);
            }
        }
    }
}

/// Waits for readiness across the streams of one session, so one thread can serve
/// thousands of streams (the seed's "aio").
///
/// Register streams with an [`Interest`] and a token of your choice, switch them to
/// [non-blocking](Stream::set_nonblocking) mode, and call [`Poller::wait`]: it returns
/// the streams that can be read or written without waiting, and (after
/// [`Poller::watch_accept`]) whether a stream waits to be accepted.
///
/// Readiness is **level-triggered**, like `epoll` without `EPOLLET`: a stream is
/// reported by every wait for as long as it is ready (data buffered, end-of-file,
/// window available, or failed), so a handler need not drain a stream completely.
/// Register write interest only while you have something to write, or every wait
/// reports every writable stream. A stream is registered with at most one poller of
/// its session; registering it again replaces the registration, and registering it
/// with another poller moves it there (the first poller stops reporting it, so two
/// threads never serve one stream). Dropping or shutting down a stream deregisters
/// it.
///
/// Blocking calls and the poller can be mixed: a stream in blocking mode still
/// reports readiness.
pub struct Poller {
    shared: Arc<Shared>,
    key: u64,
    signal: Arc<Signal>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller").field("key", &self.key).finish()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let key = self.key;
        self.shared.with(|i| {
            i.pollers.remove(&key);
            i.regs.retain(|_, r| r.poller != key);
        });
    }
}

impl Session {
    /// A new readiness poller for this session's streams.
    pub fn poller(&self) -> Poller {
        Poller::new(self)
    }
}

impl Poller {
    /// A new readiness poller for the streams of `session`.
    pub fn new(session: &Session) -> Poller {
        let shared = session.shared().clone();
        let (signal, waker) = Signal::new();
        let key = shared.with(|i| {
            let key = i.next_key;
            i.next_key += 1;
            i.pollers.insert(
                key,
                PollerState {
                    ready: VecDeque::new(),
                    accept_token: None,
                    waker,
                    woken: false,
                    notified: false,
                    seq: 0,
                },
            );
            key
        });
        Poller {
            shared,
            key,
            signal,
        }
    }

    fn check_session(&self, stream: &Stream) -> io::Result<()> {
        if Arc::ptr_eq(stream.shared(), &self.shared) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stream belongs to another session",
            ))
        }
    }

    /// Registers `stream` (or changes its registration): events for it carry `token`.
    /// It is checked for readiness at the next wait. A stream registered with another
    /// poller of the session moves here: that poller no longer reports it.
    pub fn register(&self, stream: &Stream, token: usize, interest: Interest) -> io::Result<()> {
        self.check_session(stream)?;
        let key = self.key;
        let id = stream.id().number();
        self.shared.with(|i| {
            if !stream.is_live() {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "stream was shut down locally",
                ));
            }
            let p = i.pollers.get_mut(&key).expect("a live poller has state");
            p.seq += 1;
            let seq = p.seq;
            p.ready.push_back((id, seq));
            i.regs.insert(
                id,
                Reg {
                    poller: key,
                    token,
                    interest,
                    queued: true,
                    seq,
                },
            );
            Ok(())
        })?;
        self.signal.notify();
        Ok(())
    }

    /// Changes the token or interest of a registered stream (same as
    /// [`Poller::register`]).
    pub fn reregister(&self, stream: &Stream, token: usize, interest: Interest) -> io::Result<()> {
        self.register(stream, token, interest)
    }

    /// Stops reporting `stream`. Does nothing if it is registered with another poller.
    pub fn deregister(&self, stream: &Stream) -> io::Result<()> {
        self.check_session(stream)?;
        let key = self.key;
        let id = stream.id().number();
        self.shared.with(|i| {
            if i.regs.get(&id).is_some_and(|r| r.poller == key) && stream.is_live() {
                i.regs.remove(&id);
            }
        });
        Ok(())
    }

    /// Reports, with `token`, whether streams wait to be accepted (an event with
    /// [`Event::is_accept`]); accept them with [`Session::try_accept`].
    pub fn watch_accept(&self, token: usize) {
        let key = self.key;
        self.shared.with(|i| {
            if let Some(p) = i.pollers.get_mut(&key) {
                p.accept_token = Some(token);
            }
        });
        self.signal.notify();
    }

    /// Stops reporting streams waiting to be accepted.
    pub fn unwatch_accept(&self) {
        let key = self.key;
        self.shared.with(|i| {
            if let Some(p) = i.pollers.get_mut(&key) {
                p.accept_token = None;
            }
        });
    }

    /// Wakes a thread blocked in [`Poller::wait`] on this poller (it returns with the
    /// events ready by then, possibly none).
    pub fn notify(&self) {
        let key = self.key;
        self.shared.with(|i| {
            if let Some(p) = i.pollers.get_mut(&key) {
                p.notified = true;
            }
        });
        self.signal.notify();
    }

    /// Fills `events` with the ready streams, waiting up to `timeout` (`None`: no limit)
    /// for at least one. Returns the number of events; 0 means the timeout passed or
    /// [`Poller::notify`] was called.
    ///
    /// Once the session has ended, registered streams are reported closed (their calls
    /// fail), and a wait with nothing registered and no accept token fails with the
    /// session's end reason.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let key = self.key;
        loop {
            let seen = self.signal.epoch();
            let r = self.shared.with(|i| {
                i.collect(key, events);
                if !events.is_empty() {
                    return Some(Ok(events.len()));
                }
                let p = i.pollers.get_mut(&key).expect("a live poller has state");
                if std::mem::take(&mut p.notified) {
                    return Some(Ok(0));
                }
                let accept = p.accept_token.is_some();
                if let Some(e) = Shared::ended_error(i) {
                    if !accept && !i.regs.values().any(|r| r.poller == key) {
                        return Some(Err(e));
                    }
                }
                None
            });
            if let Some(r) = r {
                return r;
            }
            if !self.signal.wait(seen, deadline) {
                return Ok(0);
            }
        }
    }
}
