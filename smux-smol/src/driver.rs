//! The driver: the one task of a session, carrying out the connection's plans on the
//! transport.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{EndReason, Plan, MAX_SLICES, ROUNDS_PER_WAKE};

use crate::session::{Reader, Shared, Writer};

/// The future that runs a session: it reads the transport and feeds the protocol
/// core, writes what the core emits, fires its timers (keepalive) and wakes the tasks
/// waiting on streams.
///
/// [`Session::new`](crate::Session::new) spawns it on smol's global executor;
/// [`Session::with_driver`](crate::Session::with_driver) hands it to you to spawn on
/// any executor (without it nothing is sent or received). It is the only task a
/// session needs and completes with the session's [`EndReason`] once the session has
/// ended and the transport is closed. Dropping it before then ends the session with
/// a transport error.
///
/// Reading the transport never waits for writing: while the peer is not taking our
/// bytes, its frames (and its confirmations) are still read. After our own clean end
/// (closed here, or a go-away that drained) the driver shuts the transport's write
/// side and reads on until the peer closes too (for at most 2 seconds), so closing a
/// socket with unread input does not reset the connection under a peer still reading
/// our last bytes.
pub struct Driver<T> {
    shared: Arc<Shared>,
    done: bool,
    timer: Timer,
    /// The instant `timer` is armed for, until it fires.
    timer_at: Option<Instant>,
    /// The plan of the round that found nothing to do, if it reads: carried out
    /// first at the next wake-up when it still stands (see `Connection::plan_stands`).
    waiting: Option<Plan>,
    transport: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("session", &self.shared.tag)
            .field("done", &self.done)
            .finish()
    }
}

impl<T> Driver<T> {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver<T> {
        Driver {
            shared,
            done: false,
            timer: Timer::never(),
            timer_at: None,
            waiting: None,
            transport: PhantomData,
        }
    }

    fn end_reason(&self) -> EndReason {
        let r = self.shared.with(|c| c.session().end_reason().cloned());
        r.unwrap_or(EndReason::Local)
    }

    /// Keeps the timer armed no later than `at`. A deadline that moved later (the
    /// keepalive pushed back by traffic, a held-back frame that left) is left alone:
    /// the early wake-up re-arms it, which saves a timer update per frame. True once
    /// it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>, at: Option<Instant>) -> bool {
        let Some(at) = at else { return false };
        if self.timer_at.is_none_or(|armed| at < armed) {
            self.timer.set_at(at);
            self.timer_at = Some(at);
        }
        let fired = Pin::new(&mut self.timer).poll(cx).is_ready();
        self.timer_at = self.timer_at.filter(|_| !fired);
        fired
    }

    /// Reads the transport into the input (at most `limit` bytes); true if the read
    /// finished. A TCP socket is read through its own handle; any other transport
    /// through the write side's lock (held only for the call).
    fn poll_read(&self, r: &mut Reader, limit: Option<usize>, cx: &mut Context<'_>) -> bool {
        let room = match limit {
            Some(k) => r.input.header_room(k),
            None => r.input.spare(),
        };
        let res = match &r.tcp {
            Some(tcp) => Pin::new(&mut &**tcp).poll_read(cx, room),
            None => Pin::new(&mut self.shared.writer().io).poll_read(cx, room),
        };
        let Poll::Ready(res) = res else {
            // Nothing read: `Interrupted` is the "read again" report.
            r.input.filled(Err(io::ErrorKind::Interrupted.into()));
            return false;
        };
        r.input.filled(res);
        true
    }
}

/// The write side's part of `plan`: one write, else a flush, else the shutdown.
/// Returns whether it finished.
fn perform_write(plan: Plan, w: &mut Writer, cx: &mut Context<'_>) -> bool {
    let Writer { io, output: out } = w;
    let io = Pin::new(io);
    if plan.write {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = out.slices(&mut slices);
        let r = io.poll_write_vectored(cx, &slices[..n]);
        r.map(|r| out.written(r)).is_ready()
    } else if plan.flush {
        io.poll_flush(cx).map(|r| out.flushed(r)).is_ready()
    } else {
        io.poll_close(cx).map(|r| out.shut(r)).is_ready()
    }
}

impl<T> Future for Driver<T> {
    type Output = EndReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReason> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(this.end_reason());
        }
        // A direction that returned Pending is not tried again in this call: its
        // waker is registered, and a retry would only cost a system call.
        let (mut read_waits, mut write_waits) = (false, false);
        // The clock is read once for the first round and the check before it.
        let mut at = Instant::now();
        if let Some(plan) = this.waiting.take() {
            // Most wake-ups are the transport's: read at once, and take it in the
            // round below, rather than drive a round that finds nothing new first.
            // Not while a stream writes a large frame through (see below).
            let shared = this.shared.clone();
            let mut r = shared.reader();
            if !shared.writer_held_long() && shared.plan_stands(at) {
                read_waits = !this.poll_read(&mut r, plan.read_limit, cx);
            }
        }
        for round in 0..ROUNDS_PER_WAKE {
            if round > 0 {
                at = Instant::now();
            }
            let shared = this.shared.clone();
            let mut r = shared.reader();
            let input = &mut r.input;
            let Some(mut w) = shared.driver_writer(cx.waker()) else {
                if shared.writer_held_long() {
                    // A stream writes a large frame through: reading the socket now
                    // would sleep on the kernel's lock until its copy is done. It
                    // wakes us.
                    return Poll::Pending;
                }
                // A stream writes through: read meanwhile (it wakes us when it is done).
                let plan = shared.with(|c| c.drive_input(at, input, cx.waker()));
                let mut read = false;
                if !plan.done && plan.read && !read_waits {
                    read = this.poll_read(&mut r, plan.read_limit, cx);
                    read_waits = !read;
                }
                if !(plan.done || read) {
                    return Poll::Pending;
                }
                continue;
            };
            let (plan, stall) = (this.shared).with(|c| {
                let plan = c.drive(at, input, &mut w.output, cx.waker());
                (plan, c.take_stall())
            });
            if let Some(stall) = stall {
                tracing::warn!(session = this.shared.tag, "{stall}");
            }
            if plan.done {
                // The transport goes now: the write side (the whole transport unless
                // TCP) and the read handle.
                w.io = Box::new(smol::io::Cursor::new(Vec::new()));
                (r.tcp, this.done) = (None, true);
                let reason = this.end_reason();
                log_end(this.shared.tag, &reason);
                return Poll::Ready(reason);
            }
            drop(w);
            let mut progress = false;
            if plan.read && !read_waits {
                let read = this.poll_read(&mut r, plan.read_limit, cx);
                (progress, read_waits) = (read, !read);
            }
            drop(r);
            let out = !write_waits && (plan.write || plan.flush || plan.shutdown);
            if let Some(mut w) = out.then(|| shared.driver_writer(cx.waker())).flatten() {
                let wrote = perform_write(plan, &mut w, cx);
                (progress, write_waits) = (progress || wrote, !wrote);
            }
            progress |= this.poll_timer(cx, plan.timer);
            if !progress {
                this.waiting = (plan.read && read_waits).then_some(plan);
                return Poll::Pending;
            }
        }
        // Busy: let the executor run other tasks, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.with(|c| c.abandon());
            // The transport goes with the driver, as when it finishes.
            self.shared.reader().tcp = None;
            self.shared.writer().io = Box::new(smol::io::Cursor::new(Vec::new()));
        }
    }
}

fn log_end(tag: u64, reason: &EndReason) {
    match reason {
        EndReason::Protocol(e) => {
            tracing::warn!(session = tag, error = %e, "smux session ended by a protocol error");
        }
        r if r.is_clean() => tracing::debug!(session = tag, reason = %r, "smux session ended"),
        r => tracing::info!(session = tag, reason = %r, "smux session ended"),
    }
}
