//! Paced wake-ups: a round of the I/O side that owes wake-ups to several tasks wakes
//! the first at once and hands the others to the next call on the connection, which
//! is most often that first task coming back for what it was woken for.
//!
//! Why: a work-stealing runtime (Tokio's) runs a task woken from one of its threads
//! next on that thread, and when a second wake-up displaces it from that place, it
//! wakes another thread to share the work. For a burst of short tasks (a stream's
//! end-of-file, the next stream's accept, its handler) the other thread steals one of
//! them, and from then on the session's tasks bounce between the two threads: each
//! hand-off across threads waits for the other CPU to wake up. Sequential open, echo
//! and close of streams ran at twice the rate with the wake-ups paced. Where many
//! tasks have work (many streams reading at once), the others follow within the first
//! task's call, and the runtime spreads them as before.
//!
//! Only the Tokio adapter asks for it. smol's executor wakes a sleeping thread at every
//! wake-up, in whatever order they come, and measured the same either way; a thread per
//! task (the blocking adapter) would only wait longer.

use std::task::Waker;
use std::time::{Duration, Instant};

use super::Connection;
use crate::link::Plan;

/// The longest wake-ups held back by pacing wait for a call on the connection: at
/// this distance the I/O side comes back to hand them out itself (for a task woken
/// first that does not call again, one whose wait was dropped, for example).
pub const PACE_LIMIT: Duration = Duration::from_millis(1);

/// Wake-ups held back by the last round of the I/O side.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    /// The adapter asked for pacing ([`Connection::pace_wakes`]).
    on: bool,
    /// Owed to the next call after the round that held them.
    held: Vec<Waker>,
    /// The round that held them has not handed out its own wake-ups yet.
    fresh: bool,
}

impl Connection {
    /// Paces the wake-ups of the I/O side's rounds ([`Connection::drive`] and
    /// [`Connection::drive_input`]): when a round owes several, only the first leaves
    /// with its [`Connection::take_wakers`], the others with that of the next call of
    /// any kind (see the module docs). For an adapter on a work-stealing runtime; a
    /// thread per task gains nothing from it.
    pub fn pace_wakes(&mut self) {
        self.pacing.on = true;
    }

    /// At the end of a round of the I/O side: keeps back all but the first of the
    /// wake-ups it owes, hands out those held by the round before, and has the I/O
    /// side come back by [`PACE_LIMIT`].
    pub(super) fn pace(&mut self, now: Instant, plan: &mut Plan) {
        let p = &mut self.pacing;
        if !p.on || self.woken.len() < 2 || self.ending.is_some() {
            return;
        }
        let earlier = p.held.len();
        p.held.extend(self.woken.drain(1..));
        self.woken.extend(p.held.drain(..earlier));
        p.fresh = true;
        let back = now + PACE_LIMIT;
        plan.timer = Some(plan.timer.map_or(back, |t| t.min(back)));
    }

    /// Wake-ups held back by an earlier round, for [`Connection::take_wakers`].
    pub(super) fn take_held(&mut self, out: &mut impl Extend<Waker>) {
        let p = &mut self.pacing;
        if p.held.is_empty() {
            return;
        }
        if p.fresh {
            p.fresh = false;
        } else {
            out.extend(p.held.drain(..));
        }
    }

    /// Whether wake-ups are held back (they leave with a later `take_wakers`).
    pub(super) fn holds_wakes(&self) -> bool {
        !self.pacing.held.is_empty()
    }

    /// Everything held back is owed now (the connection finished).
    pub(super) fn release_held(&mut self) {
        self.woken.append(&mut self.pacing.held);
        self.pacing.fresh = false;
    }

    /// How many wake-ups are held back (for tests).
    #[cfg(test)]
    pub(crate) fn held_wakes(&self) -> usize {
        self.pacing.held.len()
    }
}
