//! The state every handle of one session shares: the [`Connection`] behind a mutex that
//! is never held across an await or a system call.

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Instant;

use smux_proto::{Connection, Slot};

thread_local! {
    static WOKEN: Cell<Vec<Waker>> = const { Cell::new(Vec::new()) };
}

/// One session's shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    conn: Mutex<Connection>,
    /// A number for log lines (unique within the process).
    pub(crate) tag: u64,
}

impl Shared {
    pub(crate) fn new(conn: Connection, tag: u64) -> Shared {
        Shared {
            conn: Mutex::new(conn),
            tag,
        }
    }

    /// Runs `f` on the connection, then wakes the tasks it owes a wake-up once the lock
    /// is released. The core does not panic, so a poisoned lock (a panic in our own
    /// code while it was held) still guards consistent state.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        // A list kept per thread, so waking allocates nothing (a nested call, from a
        // waker that calls back, just uses a list of its own).
        let mut woken = WOKEN.take();
        let r = {
            let mut c = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
            let r = f(&mut c);
            c.take_wakers(&mut woken);
            r
        };
        woken.drain(..).for_each(Waker::wake);
        WOKEN.set(woken);
        r
    }

    /// Waits on a call that parks in a [`Slot`] (accept, ready, closed); a wait dropped
    /// early (a `select!` drops many) forgets its waker at once.
    pub(crate) async fn wait<R>(
        &self,
        mut f: impl FnMut(&mut Connection, &mut Slot, &Waker) -> Poll<R>,
    ) -> R {
        struct Parked<'a>(&'a Shared, Slot);
        impl Drop for Parked<'_> {
            fn drop(&mut self) {
                if self.1 != Slot::default() {
                    self.0.with(|c| c.forget(&mut self.1));
                }
            }
        }
        let mut parked = Parked(self, Slot::default());
        poll_fn(|cx| {
            let slot = &mut parked.1;
            self.with(|c| f(c, slot, cx.waker()))
        })
        .await
    }
}

/// The current time as the core sees it: Tokio's clock, so paused-time tests work.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
