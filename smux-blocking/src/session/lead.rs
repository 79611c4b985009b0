//! Who reads the transport. One thread at a time leads input: it holds the
//! [`ReadSide`], reads the transport and feeds the connection, which wakes whoever the
//! input was for. Over a socket (on Unix) a call that has to wait leads input itself
//! while nobody does, waiting in `poll(2)` for the socket and for its own wake-up at
//! once; the input it waits for then wakes its own thread, as with a plain socket,
//! instead of the reader thread reading it and handing it over. The reader thread
//! leads whenever no call does.

use std::io::Read;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::MutexGuard;
use std::task::Waker;
use std::time::{Duration, Instant};

use smux_proto::{Input, Plan};

use super::{calm, Shared};
use crate::signal::Signal;

/// How long the reader thread leaves input to the calls before it looks again whether
/// one still leads it. Input that comes while nobody leads waits at most this long.
const RELIEF: Duration = Duration::from_millis(1);

/// The transport's read half and what was read from it and not fed yet.
pub(crate) struct ReadSide {
    pub(crate) io: Box<dyn Read + Send>,
    pub(crate) input: Input,
}

impl ReadSide {
    fn read(&mut self) {
        let r = self.io.read(self.input.spare());
        self.input.filled(calm(r));
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
pub(crate) type Lead = std::convert::Infallible;

#[cfg(unix)]
struct Poke(std::os::unix::net::UnixStream);

#[cfg(unix)]
impl std::task::Wake for Poke {
    fn wake(self: std::sync::Arc<Self>) {
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
        let wake = Waker::from(std::sync::Arc::new(Poke(poke)));
        socket.map(|socket| Lead { socket, woken, wake })
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
    /// Waits like [`Signal::wait`] for a call whose waker is `me`. If nobody leads
    /// input and the transport allows it, this thread leads it meanwhile. `stream`
    /// says it is a stream call (they come back soon for more input), which a leader
    /// keeps in mind before it steps down.
    pub(crate) fn park(
        &self,
        (signal, me): (&Signal, &Waker),
        seen: u64,
        deadline: Option<Instant>,
        stream: bool,
    ) -> bool {
        if let (Some(lead), Ok(rd)) = (&self.lead, self.rd.try_lock()) {
            if let Some(r) = self.lead(lead, rd, (signal, me), seen, deadline) {
                return r;
            }
        }
        let n = usize::from(stream);
        self.followers.fetch_add(n, SeqCst);
        let r = signal.wait(seen, deadline);
        self.followers.fetch_sub(n, SeqCst);
        r
    }

    /// Leads input until this call's signal fires (`Some(true)`), its deadline passes
    /// (`Some(false)`), or it should step down and wait as before (`None`): input is
    /// held back, the session is done, or the input woke other calls, which may lead
    /// next.
    #[cfg(unix)]
    fn lead(
        &self,
        lead: &Lead,
        mut rd: MutexGuard<'_, ReadSide>,
        (signal, me): (&Signal, &Waker),
        seen: u64,
        deadline: Option<Instant>,
    ) -> Option<bool> {
        let (r, woken) = loop {
            let (plan, woken) = self.feed(&mut rd, Some(me));
            let now = Instant::now();
            if signal.epoch() != seen {
                break (Some(true), woken);
            } else if deadline.is_some_and(|d| d <= now) {
                break (Some(false), woken);
            } else if plan.done || !plan.read || self.steps_down(woken) {
                break (None, woken);
            }
            let until = [deadline, plan.timer].into_iter().flatten().min();
            if lead.wait(signal, seen, until) {
                rd.read();
            }
        };
        drop(rd);
        // Calls still waiting that this input did not wake: the reader thread leads.
        if self.followers.load(SeqCst) > woken {
            self.reader_waker.wake_by_ref();
        }
        r
    }

    #[cfg(not(unix))]
    fn lead(
        &self,
        lead: &Lead,
        _: MutexGuard<'_, ReadSide>,
        _: (&Signal, &Waker),
        _: u64,
        _: Option<Instant>,
    ) -> Option<bool> {
        match *lead {}
    }

    /// Feeds what was read to the connection. Returns the plan and how many calls (or
    /// pollers) it woke, `me` aside.
    fn feed(&self, rd: &mut ReadSide, me: Option<&Waker>) -> (Plan, usize) {
        let (input, waker) = (&mut rd.input, &self.reader_waker);
        let drive = |i: &mut super::Inner| i.conn.drive_input(Instant::now(), input, waker);
        self.run(drive, |p| p.done, me.is_some() && self.direct, me)
    }

    /// A leader whose input woke calls steps down when no other stream call waits, so
    /// a woken call leads when it comes back for more.
    fn steps_down(&self, woken: usize) -> bool {
        woken > 0 && self.followers.load(SeqCst) <= woken
    }
}

/// The reader thread: leads input while no call does.
pub(super) fn reader(shared: &Shared, signal: &Signal) {
    loop {
        let seen = signal.epoch();
        let relief = Some(Instant::now() + RELIEF);
        let Ok(mut rd) = shared.rd.try_lock() else {
            signal.wait(seen, relief);
            continue;
        };
        let (plan, woken) = shared.feed(&mut rd, None);
        if plan.done {
            return;
        }
        if shared.lead.is_some() && shared.steps_down(woken) {
            drop(rd);
            signal.wait(seen, relief);
        } else if plan.read {
            rd.read();
        } else {
            drop(rd);
            signal.wait(seen, plan.timer);
        }
    }
}
