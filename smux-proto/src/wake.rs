//! Who waits for what: the waker table every adapter keeps next to its [`Session`].
//!
//! Adapters park a [`Waker`] when an operation returns `Blocked` (an async task's
//! waker, or one that unparks a thread) and hand every [`Event`] to
//! [`Waiters::dispatch`], which picks the wakers to wake. Wakers are collected rather
//! than woken in place so the adapter can wake them after releasing its lock.
//!
//! [`Session`]: crate::Session

use std::collections::HashMap;
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
}
