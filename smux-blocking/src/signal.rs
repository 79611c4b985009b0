//! Thread wake-ups: a [`Waker`] that a blocked thread waits on.
//!
//! The connection parks `std::task::Waker`s, the same type the async adapters park.
//! Here a waker is an [`Arc<Signal>`]: waking it bumps a counter and notifies a
//! condition variable, so a thread that noted the counter before releasing the
//! session lock cannot miss a wake-up that comes after. A second waker can be hooked
//! to the next wake-up (to end a `poll(2)`, or to count a waiting call as woken).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};
use std::time::Instant;

/// Locks `m`, ignoring poisoning: no user code runs under the adapter's locks, and the
/// state they guard stays consistent between calls.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A wake-up counter with a condition variable.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    /// The count, the waker the next wake-up also fires, and how many threads wait on
    /// the condition variable (with none, a wake-up makes no system call).
    epoch: Mutex<(u64, Option<Waker>, usize)>,
    cv: Condvar,
}

impl Signal {
    /// A new signal and the waker that fires it.
    pub(crate) fn new() -> (Arc<Signal>, Waker) {
        let s = Arc::new(Signal::default());
        (s.clone(), Waker::from(s))
    }

    /// The current count; pass it to [`Signal::wait`].
    pub(crate) fn epoch(&self) -> u64 {
        lock(&self.epoch).0
    }

    /// Fires the signal.
    pub(crate) fn notify(&self) {
        let (hook, waiting) = {
            let mut g = lock(&self.epoch);
            g.0 += 1;
            (g.1.take(), g.2 > 0)
        };
        if waiting {
            self.cv.notify_all();
        }
        hook.into_iter().for_each(Waker::wake);
    }

    /// Has the next wake-up fire `hook` too, unless it is [`Signal::unhook`]ed first;
    /// false (and nothing hooked) if the signal fired after `seen` was read.
    pub(crate) fn hook(&self, seen: u64, hook: &Waker) -> bool {
        let mut g = lock(&self.epoch);
        g.1 = (g.0 == seen).then(|| hook.clone());
        g.1.is_some()
    }

    /// Takes the hook back; false if a wake-up fired it already.
    pub(crate) fn unhook(&self) -> bool {
        lock(&self.epoch).1.take().is_some()
    }

    /// Waits until the signal fired after `seen` was read, or until `deadline`.
    /// Returns false if the deadline passed first.
    pub(crate) fn wait(&self, seen: u64, deadline: Option<Instant>) -> bool {
        let mut g = lock(&self.epoch);
        while g.0 == seen {
            let left = match deadline.map(|d| d.checked_duration_since(Instant::now())) {
                Some(Some(left)) if !left.is_zero() => Some(left),
                Some(_) => return false,
                None => None,
            };
            // Counted under the lock that `notify` takes, so it cannot miss this wait.
            g.2 += 1;
            g = match left {
                None => self.cv.wait(g).unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    let r = self.cv.wait_timeout(g, left);
                    r.unwrap_or_else(PoisonError::into_inner).0
                }
            };
            g.2 -= 1;
        }
        true
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wake_after_the_epoch_was_read_is_not_lost() {
        let (s, w) = Signal::new();
        let seen = s.epoch();
        w.wake_by_ref();
        assert!(s.wait(seen, Some(Instant::now())));
        let seen = s.epoch();
        assert!(!s.wait(seen, Some(Instant::now() + Duration::from_millis(5))));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(seen, None));
        w.wake();
        assert!(t.join().unwrap());
    }
}
