//! The driver: the one task of a session, carrying out the connection's plans on the
//! transport.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{Async, Timer};
use futures_io::{AsyncRead, AsyncWrite};
use smux_proto::{EndReason, Input, Output, MAX_SLICES, ROUNDS_PER_WAKE};

use crate::net::TcpTransport;
use crate::session::Shared;

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
    /// The transport; `None` once the session finished and it was dropped.
    io: Option<T>,
    input: Input,
    output: Output,
    timer: Timer,
    /// The instant `timer` is armed for, until it fires.
    timer_at: Option<Instant>,
}

impl<T> fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("session", &self.shared.tag)
            .field("done", &self.io.is_none())
            .field("pending_out", &self.output.len())
            .finish()
    }
}

/// Whether `t` writes vectors in one call (futures-io cannot say so): if not, the
/// output gathers small frames into one buffer first.
fn writes_vectors<T: 'static>(t: &T) -> bool {
    let t = t as &dyn Any;
    #[cfg(unix)]
    if t.is::<Async<std::os::unix::net::UnixStream>>() {
        return true;
    }
    t.is::<TcpTransport>() || t.is::<Async<TcpStream>>()
}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Driver<T> {
    pub(crate) fn new(shared: Arc<Shared>, io: T) -> Driver<T> {
        Driver {
            shared,
            output: Output::new(writes_vectors(&io)),
            io: Some(io),
            input: Input::new(),
            timer: Timer::never(),
            timer_at: None,
        }
    }
}

impl<T> Driver<T> {
    fn end_reason(&self) -> EndReason {
        let r = self.shared.with(|c| c.session().end_reason().cloned());
        r.unwrap_or(EndReason::Local)
    }

    /// Keeps the timer armed no later than `at`. A deadline that moved later (the
    /// keepalive pushed back by traffic) is left alone: the early wake-up re-arms it,
    /// which saves a timer update per frame. True once it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>, at: Option<Instant>) -> bool {
        let Some(at) = at else { return false };
        if self.timer_at.is_none_or(|armed| at < armed) {
            self.timer.set_at(at);
            self.timer_at = Some(at);
        }
        let fired = Pin::new(&mut self.timer).poll(cx).is_ready();
        if fired {
            self.timer_at = None;
        }
        fired
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = EndReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReason> {
        let this = self.get_mut();
        if this.io.is_none() {
            return Poll::Ready(this.end_reason());
        }
        // A direction that returned Pending is not tried again in this call: its
        // waker is registered, and a retry would only cost a system call.
        let (mut read_waits, mut write_waits) = (false, false);
        for _ in 0..ROUNDS_PER_WAKE {
            let (input, output) = (&mut this.input, &mut this.output);
            let plan = this
                .shared
                .with(|c| c.drive(Instant::now(), input, output, cx.waker()));
            let Some(io) = this.io.as_mut().filter(|_| !plan.done) else {
                this.io = None;
                let reason = this.end_reason();
                log_end(this.shared.tag, &reason);
                return Poll::Ready(reason);
            };
            let mut progress = false;
            if plan.read && !read_waits {
                let r = match Pin::new(&mut *io).poll_read(cx, this.input.spare()) {
                    Poll::Ready(r) => {
                        progress = true;
                        r
                    }
                    // Nothing read: `Interrupted` is the "read again" report.
                    Poll::Pending => {
                        read_waits = true;
                        Err(io::ErrorKind::Interrupted.into())
                    }
                };
                this.input.filled(r);
            }
            let out = &mut this.output;
            let wrote = if write_waits {
                false
            } else if plan.write {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = out.slices(&mut slices);
                let r = Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]);
                r.map(|r| out.written(r)).is_ready()
            } else if plan.flush {
                let r = Pin::new(&mut *io).poll_flush(cx);
                r.map(|r| out.flushed(r)).is_ready()
            } else if plan.shutdown {
                let r = Pin::new(&mut *io).poll_close(cx);
                r.map(|r| out.shut(r)).is_ready()
            } else {
                false
            };
            write_waits |= !wrote && (plan.write || plan.flush || plan.shutdown);
            progress |= wrote;
            progress |= this.poll_timer(cx, plan.timer);
            if !progress {
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
        if self.io.take().is_some() {
            self.shared.with(|c| c.abandon());
        }
    }
}

fn log_end(tag: u64, reason: &EndReason) {
    match reason {
        EndReason::Local | EndReason::PeerClosed | EndReason::Drained => {
            tracing::debug!(session = tag, %reason, "smux session ended");
        }
        EndReason::Protocol(e) => {
            tracing::warn!(session = tag, error = %e, "smux session ended by a protocol error");
        }
        _ => tracing::info!(session = tag, %reason, "smux session ended"),
    }
}
