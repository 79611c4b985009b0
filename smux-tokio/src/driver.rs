//! The one task per session: carries out the connection's [`Plan`]s on the transport
//! and a Tokio timer.
//!
//! Each round takes the lock once ([`Connection::drive`]: apply what the transport
//! did, run the timers, refill the output, say what to do next), then without the lock
//! polls the transport for each call the plan asks for. Reading and writing are polled
//! independently, so a blocked write never stops reading: a peer whose reader waits on
//! its own writer (the reference implementation does) cannot deadlock with us.

use std::future::Future;
use std::io::IoSlice;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use smux_proto::{EndReason, Plan, MAX_SLICES, ROUNDS_PER_WAKE};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::Sleep;

use crate::shared::{now, ReadSide, Reader, Shared, Writer};

/// The driver future, spawned once per session. The transport's two sides are shared
/// with the streams (see `Reader` and `Writer`): a reader or writer that finds its own
/// bytes next uses them directly.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    sleep: Pin<Box<Sleep>>,
    /// The instant `sleep` is set to, until it fires.
    armed: Option<Instant>,
    /// `sleep` holds this task's waker for the armed instant: polling it again before
    /// that instant is wasted (a spawned task keeps its waker).
    timer_polled: bool,
    /// The plan of the round that found nothing to do, if it reads: carried out
    /// first at the next wake-up when it still stands (see `Connection::plan_stands`).
    waiting: Option<Plan>,
    done: bool,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>) -> Driver {
        Driver {
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            timer_polled: false,
            waiting: None,
            shared,
            done: false,
        }
    }

    /// Carries out `plan` once with the read side `r`; returns whether anything
    /// progressed. The write side is locked only around its own calls, so stream
    /// writers can write through meanwhile.
    fn perform(&mut self, plan: Plan, r: &mut Reader, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = perform_read(plan, r, cx);
        let out = plan.write || plan.flush || plan.shutdown;
        if let Some(mut w) = out.then(|| self.shared.driver_writer(cx.waker())).flatten() {
            progress |= perform_write(plan, &mut w, cx);
        }
        if let Some(t) = plan.timer {
            progress |= self.poll_timer(cx, t, now);
        }
        progress
    }

    /// Keeps the timer armed no later than `at`. A deadline that moved later (the
    /// keepalive pushed back by traffic, a held-back frame that left) is left alone:
    /// the early wake-up re-arms it, which saves a timer update per frame. True once
    /// it fired. Polled again only once the armed instant is due at `now`.
    fn poll_timer(&mut self, cx: &mut Context<'_>, at: Instant, now: Instant) -> bool {
        if self.armed.is_none_or(|armed| at < armed) {
            self.sleep.as_mut().reset(at.into());
            self.armed = Some(at);
            self.timer_polled = false;
        }
        if self.timer_polled && self.armed.is_some_and(|armed| now < armed) {
            return false;
        }
        self.timer_polled = self.sleep.as_mut().poll(cx).is_pending();
        if !self.timer_polled {
            self.armed = None;
        }
        !self.timer_polled
    }
}

/// The read side's part of `plan`; returns whether anything was read.
fn perform_read(plan: Plan, r: &mut Reader, cx: &mut Context<'_>) -> bool {
    let mut progress = false;
    if let (true, Some(k)) = (plan.read, plan.read_limit) {
        let mut room = ReadBuf::new(r.input.header_room(k));
        let res = Pin::new(&mut r.io).poll_read(cx, &mut room);
        let n = room.filled().len();
        progress = res.is_ready();
        // Not ready yet reports as interrupted: nothing read.
        let res = match res {
            Poll::Ready(res) => res.map(|()| n),
            Poll::Pending => Err(std::io::ErrorKind::Interrupted.into()),
        };
        r.input.filled(res);
    } else if plan.read {
        let read = pin!(r.io.read_buf(r.input.read_buf()));
        if let Poll::Ready(res) = read.poll(cx) {
            r.input.read_done(res);
            progress = true;
        }
    }
    progress
}

/// The write side's part of `plan`: write out, flush, shut down. Returns whether
/// anything progressed.
fn perform_write(plan: Plan, w: &mut Writer, cx: &mut Context<'_>) -> bool {
    let mut progress = false;
    let Writer { io, output } = w;
    while plan.write && !output.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = output.slices(&mut slices);
        match io.as_mut().poll_write_vectored(cx, &slices[..n]) {
            Poll::Ready(r) => output.written(r),
            Poll::Pending => break,
        }
        progress = true;
    }
    // Flushing follows writing everything out in the same round.
    if plan.flush || (plan.write && output.is_empty()) {
        if let Poll::Ready(r) = io.as_mut().poll_flush(cx) {
            output.flushed(r);
            progress = true;
        }
    }
    if plan.shutdown {
        if let Poll::Ready(r) = io.as_mut().poll_shutdown(cx) {
            output.shut(r);
            progress = true;
        }
    }
    progress
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // The clock is read once for the first round and the check before it.
        let mut at = now();
        if let Some(plan) = this.waiting.take() {
            // Most wake-ups are the transport's: read at once, and take it in the
            // round below, rather than drive a round that finds nothing new first.
            // Not while a stream writes a large frame through (see below).
            let shared = this.shared.clone();
            let mut r = shared.reader();
            if !shared.writer_held_long() && shared.plan_stands(at) {
                perform_read(plan, &mut r, cx);
            }
        }
        for round in 0..ROUNDS_PER_WAKE {
            if round > 0 {
                at = now();
            }
            let shared = this.shared.clone();
            let mut r = shared.reader();
            let input = &mut r.input;
            let plan = match shared.driver_writer(cx.waker()) {
                Some(mut w) => {
                    let (plan, stall) = shared.with(|c| {
                        let plan = c.drive(at, input, &mut w.output, cx.waker());
                        (plan, c.take_stall())
                    });
                    if let Some(stall) = stall {
                        tracing::warn!(session = shared.tag, "{stall}");
                    }
                    if plan.done {
                        let reason = shared.with(|c| c.session().end_reason().cloned());
                        log_end(shared.tag, reason.unwrap_or(EndReason::Local));
                        close(&mut r, &mut w);
                        this.done = true;
                        return Poll::Ready(());
                    }
                    plan
                }
                // A stream writes a large frame through: reading the socket now would
                // sleep on the kernel's lock until its copy is done. It wakes us.
                None if shared.writer_held_long() => return Poll::Pending,
                // A stream writes through: read meanwhile (it wakes us when it is done).
                None => match shared.with(|c| c.drive_input(at, input, cx.waker())) {
                    plan if plan.done => continue,
                    plan => plan,
                },
            };
            if !this.perform(plan, &mut r, cx, at) {
                this.waiting = plan.read.then_some(plan);
                return Poll::Pending;
            }
        }
        // Busy: let the other tasks of this runtime thread run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before finishing (its runtime shut down): no call may wait for a
            // driver that is gone.
            self.shared.with(|c| c.abandon());
            // The transport goes too, though session handles live on: the peer sees
            // the connection close.
            close(&mut self.shared.reader(), &mut self.shared.writer());
        }
    }
}

/// Drops the transport (both sides), though session handles may live on.
fn close(r: &mut Reader, w: &mut Writer) {
    r.io = ReadSide::Other(Box::pin(tokio::io::empty()));
    w.io = Box::pin(tokio::io::sink());
}

/// Logs the session's end at a level that matches its reason.
fn log_end(tag: u64, reason: EndReason) {
    match reason {
        EndReason::Protocol(e) => {
            tracing::warn!(session = tag, error = %e, "smux session ended by a protocol error");
        }
        r if r.is_clean() => tracing::debug!(session = tag, reason = %r, "smux session ended"),
        r => tracing::info!(session = tag, reason = %r, "smux session ended"),
    }
}
