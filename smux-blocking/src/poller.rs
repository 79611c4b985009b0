//! The readiness poller ("aio"): one thread waits for readiness across all of a
//! session's streams, like `epoll`, and serves them with non-blocking calls.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::ops::BitOr;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use smux_proto::{Connection, Event as CoreEvent, StreamId};

use crate::session::{Session, Shared, Woken};
use crate::signal::Signal;
use crate::stream::Stream;

/// Which readiness a registration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Reads would not wait: data is buffered, or the stream reached end-of-file or
    /// failed (for example the peer reset it).
    pub const READABLE: Interest = Interest(READABLE);
    /// Writes would not wait: the stream has window, or writes fail (for example
    /// after our write-side shutdown, or the peer's reset).
    pub const WRITABLE: Interest = Interest(WRITABLE);

    /// True if readable readiness is asked for.
    pub fn is_readable(self) -> bool {
        self.0 & READABLE != 0
    }

    /// True if writable readiness is asked for.
    pub fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
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

/// One readiness report of [`Poller::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    token: usize,
    readable: bool,
    writable: bool,
    closed: bool,
    accept: bool,
}

impl Event {
    fn new(token: usize, [readable, writable, closed, accept]: [bool; 4]) -> Event {
        Event {
            token,
            readable,
            writable,
            closed,
            accept,
        }
    }

    /// The token given when registering the stream (or to [`Poller::watch_accept`]).
    pub fn token(&self) -> usize {
        self.token
    }

    /// A read on the stream would not wait.
    pub fn is_readable(&self) -> bool {
        self.readable
    }

    /// A write on the stream would not wait.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The stream cannot carry data either way any more: the peer closed a base
    /// stream or reset the stream, or the session ended. Reads return what is
    /// buffered and then end-of-file, the reset's error or the session's error, and
    /// writes fail. (On an extended stream the peer's FIN only ends its direction:
    /// such a stream is reported readable, for end-of-file, and not closed.)
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A stream waits to be accepted ([`Session::try_accept`]), or the session ended
    /// (then `try_accept` reports why, and [`Poller::unwatch_accept`] stops the
    /// reports). Such an event carries the accept token.
    pub fn is_accept(&self) -> bool {
        self.accept
    }
}

/// The buffer [`Poller::wait`] fills; its capacity bounds the events per call.
#[derive(Debug, Clone)]
pub struct Events(Vec<Event>);

impl Events {
    /// A buffer for up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        Events(Vec::with_capacity(capacity.max(1)))
    }

    /// The events of the last wait.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.0.iter()
    }

    /// Number of events of the last wait.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the last wait reported nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Most events one wait reports.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
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
#[derive(Default)]
struct PollerState {
    /// Streams that may be ready, each with its registration's `seq`.
    ready: VecDeque<(StreamId, u64)>,
    accept_token: Option<usize>,
    /// [`Poller::wait`] waits on it.
    signal: Arc<Signal>,
    /// A wake-up is pending since the last wait.
    woken: bool,
    /// [`Poller::notify`] was called since the last wait returned.
    notified: bool,
    /// Numbers this poller's registrations.
    seq: u64,
}

impl PollerState {
    fn wake(&mut self, woken: &mut Woken) {
        if !std::mem::replace(&mut self.woken, true) {
            woken.push(Waker::from(self.signal.clone()));
        }
    }
}

/// The pollers of one session and their registrations (at most one per stream).
#[derive(Default)]
pub(crate) struct Polls {
    pub(crate) regs: HashMap<StreamId, Reg>,
    pollers: HashMap<u64, PollerState>,
    next_key: u64,
    events: Vec<CoreEvent>,
}

impl Polls {
    /// Marks the registration of `id` as possibly ready.
    fn enqueue(&mut self, id: StreamId, woken: &mut Woken) {
        let Some(reg) = self.regs.get_mut(&id) else {
            return;
        };
        let Some(p) = self.pollers.get_mut(&reg.poller) else {
            return;
        };
        if !std::mem::replace(&mut reg.queued, true) {
            p.ready.push_back((id, reg.seq));
        }
        p.wake(woken);
    }

    /// Hands the connection's events to the pollers that care.
    pub(crate) fn route(&mut self, conn: &mut Connection, woken: &mut Woken) {
        conn.take_events(&mut self.events);
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                CoreEvent::Readable(id)
                | CoreEvent::Writable(id)
                | CoreEvent::Finished(id)
                | CoreEvent::Reset(id, _) => self.enqueue(id, woken),
                CoreEvent::Incoming(_) => self
                    .pollers
                    .values_mut()
                    .filter(|p| p.accept_token.is_some())
                    .for_each(|p| p.wake(woken)),
                CoreEvent::Ended(_) => {
                    let ids: Vec<StreamId> = self.regs.keys().copied().collect();
                    ids.into_iter().for_each(|id| self.enqueue(id, woken));
                    self.pollers.values_mut().for_each(|p| p.wake(woken));
                }
                _ => {}
            }
        }
        self.events = events;
    }

    fn poller(&mut self, key: u64) -> &mut PollerState {
        self.pollers.get_mut(&key).expect("a live poller has state")
    }

    /// Collects the ready events of poller `key` (level-triggered).
    fn collect(&mut self, conn: &mut Connection, key: u64, out: &mut Vec<Event>) {
        out.clear();
        let p = self.poller(key);
        p.woken = false;
        let closed = conn.session().is_ended();
        if let Some(token) = p.accept_token {
            if closed || conn.stats().accept_backlog > 0 {
                out.push(Event::new(token, [false, false, closed, true]));
            }
        }
        for _ in 0..p.ready.len() {
            if out.len() >= out.capacity() {
                break;
            }
            let Some((id, seq)) = self.poller(key).ready.pop_front() else {
                break;
            };
            // Stale: the stream was registered again since, here or with another poller.
            let current = |r: &&mut Reg| r.poller == key && r.seq == seq;
            let Some(reg) = self.regs.get_mut(&id).filter(current) else {
                continue;
            };
            let r = conn.readiness(id, reg.interest.is_writable());
            let readable = r.readable && reg.interest.is_readable();
            let writable = r.writable && reg.interest.is_writable();
            // Level-triggered: it stays queued until a wait finds it not ready.
            reg.queued = readable || writable;
            if reg.queued {
                let ev = Event::new(reg.token, [readable, writable, r.closed, false]);
                out.push(ev);
                self.poller(key).ready.push_back((id, seq));
            }
        }
    }
}

/// Waits for readiness across the streams of one session, so one thread can serve
/// thousands of streams.
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
/// threads never serve one stream). Closing, resetting or dropping a stream
/// deregisters it.
///
/// Blocking calls and the poller can be mixed: a stream in blocking mode still
/// reports readiness.
#[derive(Debug)]
pub struct Poller {
    shared: Arc<Shared>,
    key: u64,
    signal: Arc<Signal>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        let key = self.key;
        self.shared.with(|i| {
            i.polls.pollers.remove(&key);
            i.polls.regs.retain(|_, r| r.poller != key);
        });
    }
}

impl Poller {
    /// A new readiness poller for the streams of `session`.
    pub fn new(session: &Session) -> Poller {
        let shared = session.shared().clone();
        let state = PollerState::default();
        let signal = state.signal.clone();
        let key = shared.with(|i| {
            // Events are kept for the pollers from now on.
            i.conn.keep_events();
            i.polls.next_key += 1;
            i.polls.pollers.insert(i.polls.next_key, state);
            i.polls.next_key
        });
        Poller {
            shared,
            key,
            signal,
        }
    }

    /// Runs `f` on the registrations under the session lock, then wakes this poller.
    fn with<R>(&self, stream: Option<&Stream>, f: impl FnOnce(&mut Polls) -> R) -> io::Result<R> {
        if stream.is_some_and(|s| !Arc::ptr_eq(s.shared(), &self.shared)) {
            let msg = "stream belongs to another session";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let r = self.shared.with(|i| f(&mut i.polls));
        self.signal.notify();
        Ok(r)
    }

    /// Registers `stream` (or changes its registration): events for it carry `token`.
    /// It is checked for readiness at the next wait. A stream registered with another
    /// poller of the session moves here: that poller no longer reports it.
    pub fn register(&self, stream: &Stream, token: usize, interest: Interest) -> io::Result<()> {
        let (id, poller) = (stream.id(), self.key);
        self.with(Some(stream), |polls| {
            let p = polls.poller(poller);
            p.seq += 1;
            let seq = p.seq;
            p.ready.push_back((id, seq));
            let queued = true;
            let reg = Reg {
                poller,
                token,
                interest,
                queued,
                seq,
            };
            polls.regs.insert(id, reg);
        })
    }

    /// Changes the token or interest of a registered stream (same as
    /// [`Poller::register`]).
    pub fn reregister(&self, stream: &Stream, token: usize, interest: Interest) -> io::Result<()> {
        self.register(stream, token, interest)
    }

    /// Stops reporting `stream`. Does nothing if it is registered with another poller.
    pub fn deregister(&self, stream: &Stream) -> io::Result<()> {
        let (id, key) = (stream.id(), self.key);
        self.with(Some(stream), |polls| {
            if polls.regs.get(&id).is_some_and(|r| r.poller == key) {
                polls.regs.remove(&id);
            }
        })
    }

    /// Reports, with `token`, whether streams wait to be accepted (an event with
    /// [`Event::is_accept`]); accept them with [`Session::try_accept`].
    pub fn watch_accept(&self, token: usize) {
        let _ = self.with(None, |polls| {
            polls.poller(self.key).accept_token = Some(token)
        });
    }

    /// Stops reporting streams waiting to be accepted.
    pub fn unwatch_accept(&self) {
        let _ = self.with(None, |polls| polls.poller(self.key).accept_token = None);
    }

    /// Wakes a thread blocked in [`Poller::wait`] on this poller (it returns with the
    /// events ready by then, possibly none).
    pub fn notify(&self) {
        let _ = self.with(None, |polls| polls.poller(self.key).notified = true);
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
                i.polls.collect(&mut i.conn, key, &mut events.0);
                let p = i.polls.poller(key);
                if !events.is_empty() || std::mem::take(&mut p.notified) {
                    return Some(Ok(events.len()));
                }
                let idle =
                    p.accept_token.is_none() && !i.polls.regs.values().any(|r| r.poller == key);
                let end = i.conn.session().end_reason().filter(|_| idle);
                end.map(|r| Err(r.to_io_error()))
            });
            if let Some(r) = r {
                return r;
            }
            if !self.shared.park(&self.signal, seen, deadline, false) {
                return Ok(0);
            }
        }
    }
}
