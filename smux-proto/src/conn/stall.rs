//! A notice for input held back at the session's bound for long: the session stops
//! reading the transport while the bytes received and not yet read reach
//! [`Config::max_buffered_in`](crate::Config::max_buffered_in), and stays stopped until
//! the application reads. An application that waits on some streams while others
//! hold that unread data stalls every stream of the session; the notice says so once,
//! so the adapters can log the cause instead of leaving a silent hang.

use std::fmt;
use std::time::{Duration, Instant};

use super::Connection;
use crate::link::Plan;

/// How long input stays held back at the bound before [`Connection::take_stall`]
/// reports it.
pub const STALL_NOTICE: Duration = Duration::from_secs(5);

/// Input held back at the session's bound for [`STALL_NOTICE`]; from
/// [`Connection::take_stall`]. Its `Display` is the adapters' log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stall {
    /// Bytes received and not yet read by the application.
    pub buffered_in: usize,
    /// The bound, [`Config::max_buffered_in`](crate::Config::max_buffered_in).
    pub max_buffered_in: usize,
    /// How long input has been held back.
    pub held_for: Duration,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "smux session has not read its transport for {:?}: {} bytes received and not \
             yet read by the application, against max_buffered_in of {}; no stream moves \
             until the streams holding that data are read (or the bound is raised)",
            self.held_for, self.buffered_in, self.max_buffered_in
        )
    }
}

/// When input was first held back, and whether that was reported.
#[derive(Debug, Default)]
pub(super) struct StallWatch {
    since: Option<Instant>,
    told: bool,
    due: Option<Stall>,
}

impl Connection {
    /// Notes when input began to be held back at the bound, and forgets it once input
    /// flows again (or the session ended).
    pub(super) fn note_stall(&mut self, now: Instant) {
        if self.ending.is_some() || !self.session.waits_for_reader() {
            self.stall = StallWatch::default();
        } else {
            self.stall.since.get_or_insert(now);
        }
    }

    /// When the notice of the stall under way is due, unless it was given.
    pub(super) fn stall_due(&self) -> Option<Instant> {
        let w = &self.stall;
        w.since
            .filter(|_| !w.told)
            .map(|since| since + STALL_NOTICE)
    }

    /// For a round that runs the timers: reports a stall once it has lasted
    /// [`STALL_NOTICE`], else plans to come back then.
    pub(super) fn watch_stall(&mut self, now: Instant, plan: &mut Plan) {
        self.note_stall(now);
        let (Some(at), Some(since)) = (self.stall_due(), self.stall.since) else {
            return;
        };
        if now >= at {
            self.stall.told = true;
            self.stall.due = Some(Stall {
                buffered_in: self.session.stats().buffered_in,
                max_buffered_in: self.session.config().max_buffered_in(),
                held_for: now - since,
            });
        } else {
            plan.timer = Some(plan.timer.map_or(at, |t| t.min(at)));
        }
    }

    /// The notice of input held back at the bound for [`STALL_NOTICE`], once per
    /// stall: adapters log it after a round of the I/O side.
    pub fn take_stall(&mut self) -> Option<Stall> {
        self.stall.due.take()
    }
}
