//! Who waits for what: the waker table every adapter keeps next to its [`Session`].
//!
//! Adapters park a [`Waker`] when an operation returns `Blocked` (an async task's
//! waker, or one that unparks a thread) and hand every [`Event`] to
//! [`Waiters::dispatch`], which picks the wakers to wake. Wakers are collected rather
//! than woken in place so the adapter can wake them after releasing its lock.
//!
//! [`Session`]: crate::Session

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::task::Waker;

use crate::session::{Event, StreamId};
use crate::util::IdBuildHasher;

/// Wakers of blocked readers, writers and acceptors of one session.
#[derive(Debug, Default)]
pub struct Waiters {
    readers: HashMap<StreamId, Waker, IdBuildHasher>,
    writers: HashMap<StreamId, Waker, IdBuildHasher>,
    acceptors: Vec<Waker>,
    /// Waiting for the ends to settle the agreement on extensions.
    agreement: Vec<Waker>,
    /// Woken on every event (a readiness poller, for example).
    watchers: Vec<Waker>,
}

impl Waiters {
    /// An empty table.
    pub fn new() -> Waiters {
        Waiters::default()
    }

    /// Parks `w` until stream `id` becomes readable (or finishes, or the session ends).
    pub fn wait_read(&mut self, id: StreamId, w: &Waker) {
        self.readers
            .entry(id)
            .and_modify(|old| old.clone_from(w))
            .or_insert_with(|| w.clone());
    }

    /// Parks `w` until stream `id` becomes writable (or finishes, or the session ends).
    pub fn wait_write(&mut self, id: StreamId, w: &Waker) {
        self.writers
            .entry(id)
            .and_modify(|old| old.clone_from(w))
            .or_insert_with(|| w.clone());
    }

    /// Parks `w` until a stream arrives to accept (or the session ends).
    pub fn wait_accept(&mut self, w: &Waker) {
        if !self.acceptors.iter().any(|x| x.will_wake(w)) {
            self.acceptors.push(w.clone());
        }
    }

    /// Parks `w` until the ends settled the agreement on extensions (or the session
    /// ends).
    pub fn wait_agreement(&mut self, w: &Waker) {
        if !self.agreement.iter().any(|x| x.will_wake(w)) {
            self.agreement.push(w.clone());
        }
    }

    /// Parks `w` until the next event of any kind.
    pub fn watch(&mut self, w: &Waker) {
        if !self.watchers.iter().any(|x| x.will_wake(w)) {
            self.watchers.push(w.clone());
        }
    }

    /// Forgets the waiters of stream `id` (its handle was dropped).
    pub fn forget(&mut self, id: StreamId) {
        self.readers.remove(&id);
        self.writers.remove(&id);
    }

    /// Whether a read on stream `id` is parked.
    pub fn has_reader(&self, id: StreamId) -> bool {
        self.readers.contains_key(&id)
    }

    /// Whether any read is parked.
    pub fn has_readers(&self) -> bool {
        !self.readers.is_empty()
    }

    /// Moves the waker of a read parked on stream `id` (if any) into `woken`.
    pub fn take_reader(&mut self, id: StreamId, woken: &mut Vec<Waker>) {
        woken.extend(self.readers.remove(&id));
    }

    /// Moves the wakers that `ev` concerns into `woken`.
    pub fn dispatch(&mut self, ev: &Event, woken: &mut Vec<Waker>) {
        woken.append(&mut self.watchers);
        match ev {
            Event::Incoming(_) => woken.append(&mut self.acceptors),
            Event::Readable(id) => woken.extend(self.readers.remove(id)),
            Event::Writable(id) => woken.extend(self.writers.remove(id)),
            Event::Finished(id) | Event::Closed(id) | Event::Reset(id, _) => {
                woken.extend(self.readers.remove(id));
                woken.extend(self.writers.remove(id));
            }
            Event::Agreed(_) => woken.append(&mut self.agreement),
            Event::Ended(_) => self.take_all(woken),
        }
    }

    /// Moves the wakers of blocked writers and acceptors into `woken` (a graceful close
    /// refuses what they wait for).
    pub fn take_writers_and_acceptors(&mut self, woken: &mut Vec<Waker>) {
        woken.extend(self.writers.drain().map(|(_, w)| w));
        woken.append(&mut self.acceptors);
    }

    /// Moves every parked waker into `woken`.
    pub fn take_all(&mut self, woken: &mut Vec<Waker>) {
        woken.extend(self.readers.drain().map(|(_, w)| w));
        woken.extend(self.writers.drain().map(|(_, w)| w));
        woken.append(&mut self.acceptors);
        woken.append(&mut self.agreement);
        woken.append(&mut self.watchers);
    }
}

/// How many times [`lock_briefly`] tries a taken lock before it waits on it: some tens
/// of microseconds, a pause between tries (the core reads no clock).
pub const SPINS: u32 = 2000;

/// Locks `m` for a critical section that never blocks (the async adapters' session
/// lock: no await, no system call, at most a copy of one write): while another thread
/// holds it, tries again up to [`SPINS`] times before it waits like [`Mutex::lock`].
/// Many writers on two runtime threads take turns copying into the session; waiting
/// on the lock put a thread to sleep at almost every turn (a futex wait and wake and
/// a context switch, which cost more than the copy being waited for). On a machine
/// with one CPU it waits at once: the holder cannot run while this thread spins. A
/// poisoned lock is taken anyway (the core does not panic on input, so the state
/// behind it is consistent).
pub fn lock_briefly<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    if let Some(g) = try_lock(m) {
        return g;
    }
    if many_cpus() {
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if let Some(g) = try_lock(m) {
                return g;
            }
        }
    }
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tries `m` once: `None` while another thread holds it. A poisoned lock is taken
/// anyway, as in [`lock_briefly`].
pub fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Whether this process may run on more than one CPU (looked up once).
fn many_cpus() -> bool {
    static MANY: OnceLock<bool> = OnceLock::new();
    *MANY.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// A wake-up owed to a task that found a lock taken and went on without it: whoever
/// holds the lock pays it when it lets go. An async adapter's driver uses it for the
/// transport's write side, which a stream holds while it writes through: the driver
/// reads meanwhile instead of waiting on the lock, and comes back for the write side
/// when the stream is done.
///
/// The task calls [`WakeOnRelease::owe`], then tries the lock once more (the holder
/// may have let go before it could see the note), and [`WakeOnRelease::cancel`]s if
/// it got it ([`WakeOnRelease::try_or_owe`] does all three); the holder calls
/// [`WakeOnRelease::pay`] after unlocking.
///
/// A holder about to write a large frame through says so ([`WakeOnRelease::hold_long`]):
/// the driver then waits for its wake-up instead of reading meanwhile. The kernel
/// holds a TCP socket's own lock while it copies a write in, so a read of the same
/// socket from another thread sleeps until the copy is done: in a bulk transfer that
/// was most of the context switches (a read for each window update that arrived
/// during a 64 KiB write).
#[derive(Debug, Default)]
pub struct WakeOnRelease {
    owed: AtomicBool,
    waker: Mutex<Option<Waker>>,
    long: AtomicBool,
}

impl WakeOnRelease {
    /// Says that the holder's next call on the transport takes long (a large write);
    /// [`pay`](Self::pay) takes it back.
    pub fn hold_long(&self) {
        self.long.store(true, SeqCst);
    }

    /// Whether the holder said its call takes long: a task that found the lock taken
    /// should then wait for the wake-up it is owed rather than use the transport.
    pub fn held_long(&self) -> bool {
        self.long.load(SeqCst)
    }

    /// Notes that `waker` waits for the lock.
    pub fn owe(&self, waker: &Waker) {
        let mut w = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *w = Some(waker.clone());
        }
        drop(w);
        self.owed.store(true, SeqCst);
        // Ordered before the caller's second try of the lock, as `pay` orders the
        // unlock before its look at `owed`: one of the two sees the other.
        fence(SeqCst);
    }

    /// Takes the note back: the second try got the lock.
    pub fn cancel(&self) {
        self.owed.store(false, SeqCst);
    }

    /// The whole dance: `try_lock`, and if that fails, [`owe`](Self::owe) to `waker`
    /// and try once more ([`cancel`](Self::cancel)ling if that one got it).
    pub fn try_or_owe<G>(&self, waker: &Waker, try_lock: impl Fn() -> Option<G>) -> Option<G> {
        try_lock().or_else(|| {
            self.owe(waker);
            let g = try_lock();
            if g.is_some() {
                self.cancel();
            }
            g
        })
    }

    /// Wakes the task that found the lock taken, if one did; call after unlocking.
    pub fn pay(&self) {
        // Before the wake-up: the woken task must not see a long call still running.
        self.long.store(false, SeqCst);
        fence(SeqCst);
        if self.owed.swap(false, SeqCst) {
            let w = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            w.into_iter().for_each(Waker::wake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn events_wake_the_right_waiters() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        let mut t = Waiters::new();
        let mut woken = Vec::new();
        t.wait_read(StreamId::new(1, 1), &w);
        t.wait_write(StreamId::new(2, 1), &w);
        t.wait_accept(&w);
        t.dispatch(&Event::Readable(StreamId::new(2, 1)), &mut woken);
        assert!(woken.is_empty());
        t.dispatch(&Event::Readable(StreamId::new(1, 1)), &mut woken);
        assert_eq!(woken.len(), 1);
        t.dispatch(&Event::Finished(StreamId::new(2, 1)), &mut woken);
        assert_eq!(woken.len(), 2);
        t.dispatch(&Event::Ended(crate::EndReason::Local), &mut woken);
        assert_eq!(woken.len(), 3);
        woken.drain(..).for_each(Waker::wake);
        assert_eq!(c.0.load(Ordering::SeqCst), 3);
    }

    /// A lock held longer than the tries last is waited for, and the holder's change
    /// is seen; a poisoned lock is taken anyway.
    #[test]
    fn a_briefly_held_lock_is_taken_after_its_holder_and_even_poisoned() {
        let m = Arc::new(Mutex::new(0u32));
        *lock_briefly(&m) += 1;
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut g = m.lock().unwrap();
                held_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
                *g += 1;
            })
        };
        held_rx.recv().unwrap();
        assert_eq!(*lock_briefly(&m), 2, "waited for the holder");
        holder.join().unwrap();
        let poisoner = {
            let m = m.clone();
            std::thread::spawn(move || {
                let _g = m.lock().unwrap();
                panic!("poison the lock");
            })
        };
        assert!(poisoner.join().is_err());
        assert!(m.is_poisoned());
        assert_eq!(*lock_briefly(&m), 2);
    }

    #[test]
    fn a_wake_owed_for_a_taken_lock_comes_once_when_it_is_paid() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let w = WakeOnRelease::default();
        // Nothing owed: paying wakes nobody.
        w.pay();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        w.owe(&waker);
        w.owe(&waker);
        w.pay();
        w.pay();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Taken back after the second try got the lock.
        w.owe(&waker);
        w.cancel();
        w.pay();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // The dance: a lock free at once owes nothing; one taken twice owes a wake-up.
        assert_eq!(w.try_or_owe(&waker, || Some(())), Some(()));
        w.pay();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(w.try_or_owe(&waker, || None::<()>), None);
        w.pay();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        // A long call is seen by the task that found the lock taken until it is paid.
        assert!(!w.held_long());
        w.hold_long();
        assert_eq!(w.try_or_owe(&waker, || None::<()>), None);
        assert!(w.held_long());
        w.pay();
        assert!(!w.held_long());
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
    }
}
