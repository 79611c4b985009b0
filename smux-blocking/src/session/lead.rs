//! Who reads the transport. One thread at a time leads input: it holds the
//! [`ReadSide`], reads the transport and feeds the connection, which wakes whoever the
//! input was for. Over a socket (on Unix) a call that has to wait leads input itself
//! while nobody does, waiting in `poll(2)` for the socket and for its own wake-up at
//! once: the input it waits for then wakes its own thread, as with a plain socket,
//! with no hand-off from the reader thread. The reader thread leads while no call
//! does, and whenever a stream call waits for input that nobody else reads; but a call
//! that waits alone gets the lead from it, so that in request and answer the answering
//! thread reads its requests itself. Calls that wait for something other than their
//! own stream's input (an accept) are left to the stream calls while those come back
//! for more: a stream that ended hands them on (`Shared::attend`).

use std::io::Read;
use std::sync::atomic::{fence, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, MutexGuard};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use smux_proto::{Input, Plan, StreamId};

use super::{calm, Shared};
use crate::signal::{lock, Signal};

/// How long the reader thread leaves input to the calls before it looks again whether
/// one still leads it. Input that comes while nobody leads and no stream call waits
/// (a keepalive, a new stream to accept) waits at most this long.
const RELIEF: Duration = Duration::from_millis(1);
/// While one call keeps the lead (it waits long for input), the reader thread looks
/// less and less often, up to this; that call wakes it when it lets go.
const MAX_NAP: Duration = Duration::from_secs(1);

/// The transport's read half and what was read from it and not fed yet.
pub(crate) struct ReadSide {
    pub(crate) io: Box<dyn Read + Send>,
    pub(crate) input: Input,
}

impl ReadSide {
    /// One read: at most `limit` bytes (the next frame header, see [`Plan::read_limit`]),
    /// or as much as the transport has.
    fn read(&mut self, limit: Option<usize>) {
        let r = match limit {
            Some(k) => self.io.read(self.input.header_room(k)),
            None => self.io.read(self.input.spare()),
        };
        self.input.filled(calm(r));
    }
}

/// Counts a follower out when its signal fires: [`Shared::followers`] counts the
/// stream calls that wait while another thread leads, until they are woken.
pub(crate) struct Followers(pub(crate) Arc<AtomicUsize>);

impl Wake for Followers {
    fn wake(self: Arc<Self>) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// What a call needs to lead input: the socket to wait on, and a wake-up that ends
/// that wait early (a byte on a socket pair).
#[cfg(unix)]
pub(crate) struct Lead {
    socket: std::os::fd::OwnedFd,
    woken: std::os::unix::net::UnixStream,
    wake: Waker,
}

#[cfg(not(unix))]
pub(crate) enum Lead {}

#[cfg(not(unix))]
impl Lead {
    fn wait(&self, _: &Signal, _: u64, _: Option<Instant>) -> bool {
        match *self {}
    }
}

#[cfg(unix)]
struct Poke(std::os::unix::net::UnixStream);

#[cfg(unix)]
impl Wake for Poke {
    fn wake(self: Arc<Self>) {
        use std::io::Write;
        // A full socket pair already holds a wake-up.
        let _ = (&self.0).write(&[1]);
    }
}

#[cfg(unix)]
impl Lead {
    pub(crate) fn new(socket: Option<std::os::fd::OwnedFd>) -> Option<Lead> {
        let (poke, woken) = std::os::unix::net::UnixStream::pair().ok()?;
        poke.set_nonblocking(true).ok()?;
        woken.set_nonblocking(true).ok()?;
        let wake = Waker::from(Arc::new(Poke(poke)));
        socket.map(|socket| Lead {
            socket,
            woken,
            wake,
        })
    }

    /// A read of the socket that never waits (`WouldBlock` when it has nothing),
    /// whatever the socket's mode: for read-through, which must not block while the
    /// caller holds the read side.
    fn try_read(&self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvFlags};
        let mut control = RecvAncillaryBuffer::default();
        let r = recvmsg(&self.socket, bufs, &mut control, RecvFlags::DONTWAIT);
        r.map(|m| m.bytes).map_err(std::io::Error::from)
    }

    /// Waits until the socket is readable, `signal` fires or `until`; true if readable.
    fn wait(&self, signal: &Signal, seen: u64, until: Option<Instant>) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        if !signal.hook(seen, &self.wake) {
            return false;
        }
        let left = until.map(|t| t.saturating_duration_since(Instant::now()));
        let timeout = left.and_then(|d| Timespec::try_from(d).ok());
        let mut fds = [
            PollFd::new(&self.socket, PollFlags::IN),
            PollFd::new(&self.woken, PollFlags::IN),
        ];
        let ready = poll(&mut fds, timeout.as_ref()).is_ok() && !fds[0].revents().is_empty();
        signal.unhook();
        if !fds[1].revents().is_empty() {
            while (&self.woken).read(&mut [0; 64]).is_ok_and(|n| n > 0) {}
        }
        ready
    }
}

impl Shared {
    /// Waits like [`Signal::wait`]. If nobody leads input and the transport allows
    /// it, this thread leads it meanwhile, until its signal fires, `at` passes, or it
    /// steps down (input is held back, the session is done, or the input woke other
    /// calls and no stream call waits for it, so a woken call leads when it comes
    /// back for more) and waits as before. A `stream` call that waits while another
    /// thread leads is counted as a follower until woken.
    pub(crate) fn park(
        &self,
        signal: &Arc<Signal>,
        seen: u64,
        at: Option<Instant>,
        stream: bool,
    ) -> bool {
        let Some(lead) = &self.lead else {
            return signal.wait(seen, at);
        };
        let mut rd = self.rd.try_lock();
        let noted = rd.is_err();
        if noted {
            self.waits(signal);
        }
        // Counted before the hook goes in: a wake-up that fires the hook at once takes
        // the count back down, never below zero (a sum of counts would overflow).
        // Counting first only makes the count high for a moment, which costs a
        // needless look.
        if rd.is_err() && stream {
            self.followers.fetch_add(1, SeqCst);
            if signal.hook(seen, &self.unfollow) {
                // A leader that let go meanwhile looks at the count after it did.
                rd = self.rd.try_lock();
                let r = rd.is_err().then(|| signal.wait(seen, at));
                if signal.unhook() {
                    self.followers.fetch_sub(1, SeqCst);
                }
                if let Some(r) = r {
                    self.waited(signal);
                    return r;
                }
            } else {
                self.followers.fetch_sub(1, SeqCst);
            }
        }
        let Ok(mut rd) = rd else {
            return self.wait_aside(signal, seen, at);
        };
        if noted {
            self.waited(signal);
        }
        self.input_owed.store(false, SeqCst);
        self.leads.fetch_add(1, SeqCst);
        let since = Instant::now();
        let r = loop {
            let (plan, woken) = self.feed(&mut rd);
            if signal.epoch() != seen {
                break Some(true);
            } else if at.is_some_and(|d| d <= Instant::now()) {
                break Some(false);
            } else if plan.done || !plan.read || self.steps_down(woken) {
                break None;
            }
            if lead.wait(signal, seen, [at, plan.timer].into_iter().flatten().min()) {
                rd.read(plan.read_limit);
            }
        };
        // A stream call still waits, or the reader thread may be napping: it takes over.
        // Calls waiting aside are left to a stream call that got what it waited for: it
        // is likely back soon to lead again (see `Shared::attend`).
        if self.let_go(rd, !stream) || since.elapsed() > RELIEF {
            self.reader_waker.wake_by_ref();
        }
        r.unwrap_or_else(|| {
            self.waits(signal);
            self.wait_aside(signal, seen, at)
        })
    }

    /// Waits aside (not leading, not as a follower), counted so that the thread that
    /// leads next does not leave input unread while this call waits.
    fn wait_aside(&self, signal: &Arc<Signal>, seen: u64, at: Option<Instant>) -> bool {
        self.others.fetch_add(1, SeqCst);
        let r = signal.wait(seen, at);
        self.others.fetch_sub(1, SeqCst);
        self.waited(signal);
        r
    }

    /// After a stream call that does not come back for more (its stream ended): calls
    /// waiting aside that nobody leads for get one of them, or the reader thread, to
    /// lead.
    pub(crate) fn attend(&self) {
        if self.lead.is_none() || self.others.load(SeqCst) == 0 || self.rd.try_lock().is_err() {
            return;
        }
        match self.lone_waiter() {
            Some(lone) => lone.notify(),
            None => self.reader_waker.wake_by_ref(),
        }
    }

    /// Read-through for a reader of stream `id` that finds nothing buffered: when the
    /// connection allows it (its payload is next on the wire), reads it from the
    /// socket straight into `buf`, without waiting and only if nobody else leads
    /// input. Returns the bytes read; 0: wait as usual.
    pub(crate) fn read_through(&self, id: StreamId, buf: &mut [u8]) -> usize {
        #[cfg(unix)]
        if let (Some(lead), Ok(mut rd)) = (&self.lead, self.rd.try_lock()) {
            // Counted as a lead, so the reader thread, finding the read side taken,
            // looks again soon.
            self.leads.fetch_add(1, SeqCst);
            // A read that finds the socket empty gives the read side back; the wake-up
            // that calls the reader thread to read on waits: this thread, coming to
            // wait, most likely leads itself (see `Shared::pay_input`).
            let owed = std::cell::Cell::new(false);
            let with = |f: &mut dyn FnMut(&mut smux_proto::Connection)| {
                let ((), _, o) = self.run_owed(|i| f(&mut i.conn), |_| false, true);
                owed.set(owed.get() || o);
            };
            let read = |v: &mut [std::io::IoSliceMut<'_>]| lead.try_read(v);
            let n = smux_proto::read_through_into(id, &mut rd.input, buf, with, Instant::now, read);
            if self.let_go(rd, false) {
                // Another stream call waits for input that nobody reads now.
                self.reader_waker.wake_by_ref();
            }
            // What the read calls for (a window update) goes out from this thread, as
            // for any stream call, now that it does not hold the read side: a write
            // may wait on the socket.
            self.pay(owed.get());
            return n;
        }
        let _ = (id, buf);
        0
    }

    /// Wakes the reader thread if a read-through held its wake-up back and nobody
    /// led input since: for a call that returns without waiting.
    pub(crate) fn pay_input(&self) {
        if self.input_owed.swap(false, SeqCst) {
            self.reader_waker.wake_by_ref();
        }
    }

    /// Feeds what was read to the connection. Returns the plan and how many it woke.
    /// Output that this calls for is the writer thread's: a write here could block
    /// while holding the read side.
    fn feed(&self, rd: &mut ReadSide) -> (Plan, usize) {
        let (input, waker) = (&mut rd.input, &self.reader_waker);
        let drive = |i: &mut super::Inner| i.conn.drive_input(Instant::now(), input, waker);
        self.run(drive, |p| p.done, false)
    }

    /// A leader whose input woke calls steps down when no stream call waits for it.
    fn steps_down(&self, woken: usize) -> bool {
        let waiting = self.followers.load(SeqCst) + self.others.load(SeqCst);
        self.lead.is_some() && woken > 0 && waiting == 0
    }

    /// Notes `signal` as the last call to wait while another thread leads.
    fn waits(&self, signal: &Arc<Signal>) {
        *lock(&self.waiter) = Some(signal.clone());
    }

    /// Forgets `signal` as the last call to wait, unless another call came since.
    fn waited(&self, signal: &Arc<Signal>) {
        let mut last = lock(&self.waiter);
        if last.as_ref().is_some_and(|s| Arc::ptr_eq(s, signal)) {
            *last = None;
        }
    }

    /// The one call that waits while this thread leads, if no other call does: it
    /// had better lead itself. (The reader thread, reading on for it, would stand
    /// between it and the peer at every request and answer: a thread wake-up more
    /// each way.)
    fn lone_waiter(&self) -> Option<Arc<Signal>> {
        let waiting = self.followers.load(SeqCst) + self.others.load(SeqCst);
        (waiting == 1).then(|| lock(&self.waiter).take()).flatten()
    }

    /// Lets go of the lead; true if a stream call (or, with `aside`, any call) waits
    /// for input all the same.
    fn let_go(&self, rd: MutexGuard<'_, ReadSide>, aside: bool) -> bool {
        drop(rd);
        fence(SeqCst);
        let others = if aside { self.others.load(SeqCst) } else { 0 };
        self.followers.load(SeqCst) + others > 0
    }
}

/// The reader thread: leads input while no call does.
pub(super) fn reader(shared: &Shared, signal: &Signal) {
    let (mut nap, mut last) = (RELIEF, 0);
    loop {
        let seen = signal.epoch();
        let relief = Some(Instant::now() + RELIEF);
        let Ok(mut rd) = shared.rd.try_lock() else {
            // The same call has kept the lead since the last look: look less often.
            let leads = shared.leads.load(SeqCst);
            nap = if leads == last {
                (nap * 2).min(MAX_NAP)
            } else {
                RELIEF
            };
            last = leads;
            signal.wait(seen, Some(Instant::now() + nap));
            continue;
        };
        shared.input_owed.store(false, SeqCst);
        let (plan, woken) = shared.feed(&mut rd);
        if plan.done {
            return;
        }
        if shared.steps_down(woken) {
            // Unless a stream call came to wait meanwhile: then it leads on.
            if !shared.let_go(rd, true) {
                signal.wait(seen, relief);
            }
        } else if let Some(lone) = plan.read.then(|| shared.lone_waiter()).flatten() {
            // It comes back, finds the read side free and leads.
            drop(rd);
            lone.notify();
            signal.wait(seen, relief);
        } else if plan.read {
            // In bulk, even after large frames: handing each payload to a reader
            // thread (a header read, a wake-up, its read) costs more than the copy.
            rd.read(None);
        } else {
            drop(rd);
            signal.wait(seen, plan.timer);
        }
    }
}

#[cfg(test)]
mod tests;
