//! Where a run's tasks run: Tokio's runtime for every system but smux-smol and
//! tcp-smol, whose runs (harness tasks, session drivers and smol's sockets alike) run
//! on a smol executor, as a smol application's would, with as many threads as the
//! Tokio runtime has workers (the bench's main thread among them). Tokio's timers
//! still serve both: the run enters the Tokio runtime's context, whose idle workers
//! drive them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::{AbortHandle, Abortable};

/// The executor of a run.
#[derive(Clone)]
pub enum Spawner {
    /// The bench's Tokio runtime (the current one).
    Tokio,
    /// A smol executor (see `systems::smol_executor`).
    Smol(Arc<smol::Executor<'static>>),
}

/// A spawned task: awaiting it gives its output, or an error if it was aborted or
/// panicked. Dropping it leaves the task running (the run's [`Scope`] ends it).
pub enum Task<T> {
    /// On Tokio.
    Tokio(tokio::task::JoinHandle<T>),
    /// On smol (taken out only when dropped, to detach it).
    Smol(Option<smol::Task<Result<T, futures::future::Aborted>>>),
}

impl<T> Task<T> {
    /// True once the task has ended.
    pub fn is_finished(&self) -> bool {
        match self {
            Task::Tokio(h) => h.is_finished(),
            Task::Smol(t) => t.as_ref().is_none_or(|t| t.is_finished()),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Task::Tokio(h) => Pin::new(h).poll(cx).map(|r| r.map_err(|e| e.to_string())),
            Task::Smol(Some(t)) => Pin::new(t)
                .poll(cx)
                .map(|r| r.map_err(|_| "task aborted".to_string())),
            Task::Smol(None) => Poll::Ready(Err("task detached".into())),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // A dropped smol task is cancelled; these must run until the scope ends.
        if let Task::Smol(t) = self {
            if let Some(t) = t.take() {
                t.detach();
            }
        }
    }
}

/// What ends a task of a scope.
enum Stopper {
    Tokio(tokio::task::AbortHandle),
    Smol(AbortHandle, Arc<std::sync::atomic::AtomicBool>),
}

impl Stopper {
    fn is_finished(&self) -> bool {
        match self {
            Stopper::Tokio(a) => a.is_finished(),
            Stopper::Smol(_, done) => done.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn stop(&self) {
        match self {
            Stopper::Tokio(a) => a.abort(),
            Stopper::Smol(a, _) => a.abort(),
        }
    }
}

/// Tasks of one run, aborted when it ends (finished ones are pruned as it goes).
#[derive(Clone)]
pub struct Scope {
    spawner: Spawner,
    tasks: Arc<Mutex<Vec<Stopper>>>,
}

impl Scope {
    /// A scope whose tasks run on `spawner`.
    pub fn new(spawner: Spawner) -> Scope {
        Scope {
            spawner,
            tasks: Arc::default(),
        }
    }

    /// Spawns `f` as a task of this scope.
    pub fn spawn<F>(&self, f: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, stopper) = match &self.spawner {
            Spawner::Tokio => {
                let h = tokio::spawn(f);
                let a = h.abort_handle();
                (Task::Tokio(h), Stopper::Tokio(a))
            }
            Spawner::Smol(ex) => {
                let (handle, registration) = AbortHandle::new_pair();
                let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = done.clone();
                let f = async move {
                    let out = f.await;
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    out
                };
                let t = ex.spawn(Abortable::new(f, registration));
                (Task::Smol(Some(t)), Stopper::Smol(handle, done))
            }
        };
        let mut v = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= 256 {
            v.retain(|s| !s.is_finished());
        }
        v.push(stopper);
        task
    }

    /// Ends every task of the scope.
    pub fn abort_all(&self) {
        for s in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            s.stop();
        }
    }
}
