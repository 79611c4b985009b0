//! The state every handle of one session shares: the core, the parked wakers and the
//! driver's waker, behind one mutex that is never held across an await or a syscall.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use smux_proto::{Event, Session as Core, Waiters};

/// Everything behind the lock.
pub(crate) struct Inner {
    pub(crate) core: Core,
    pub(crate) waiters: Waiters,
    /// The driver task's waker, taken (and so woken at most once) by whoever gives it
    /// work; the driver parks it again each time it looks at the core.
    pub(crate) driver: Option<Waker>,
    /// Set once the driver task has finished (transport shut down).
    pub(crate) driver_done: bool,
    /// Tasks waiting in `Session::closed`, by the key of their future, which removes
    /// its entry when dropped (a `select!` drops many of them early).
    pub(crate) done_waiters: HashMap<u64, Waker>,
    pub(crate) next_done_key: u64,
    /// Set by a graceful close: opens and writes are refused, and the driver ends the
    /// session once everything queued is written (or at `linger`, if set).
    pub(crate) closing: bool,
    pub(crate) linger: Option<std::time::Instant>,
}

impl Inner {
    /// Starts a graceful close (see `closing`); returns the driver's waker to wake.
    pub(crate) fn start_closing(&mut self, linger: Option<std::time::Instant>) -> Option<Waker> {
        if self.core.is_ended() {
            return None;
        }
        if !self.closing {
            self.linger = linger;
        } else if let (Some(old), Some(new)) = (self.linger, linger) {
            self.linger = Some(old.min(new));
        }
        self.closing = true;
        self.take_driver()
    }

    /// The error for opens and writes once a graceful close started.
    pub(crate) fn closing_error() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotConnected, "smux session is closing")
    }
}

impl Inner {
    /// Dispatches one core event: collects the wakers it concerns into `woken`.
    pub(crate) fn dispatch(&mut self, ev: &Event, woken: &mut Vec<Waker>) {
        self.waiters.dispatch(ev, woken);
    }

    /// Takes the driver's waker so the caller can wake it after unlocking.
    pub(crate) fn take_driver(&mut self) -> Option<Waker> {
        self.driver.take()
    }
}

/// One session's shared state.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// A number for log lines (unique within the process).
    pub(crate) tag: u64,
}

impl Shared {
    pub(crate) fn new(core: Core, tag: u64) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                core,
                waiters: Waiters::new(),
                driver: None,
                driver_done: false,
                done_waiters: HashMap::new(),
                next_done_key: 0,
                closing: false,
                linger: None,
            }),
            tag,
        }
    }

    /// Locks the state. The core does not panic, so a poisoned lock (a panic in our
    /// own code between lock and unlock) still holds consistent state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakes `w` if present; called after the lock is released.
pub(crate) fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// The current time as the core sees it: Tokio's clock, so paused-time tests work.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
