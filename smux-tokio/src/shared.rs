//! The state every handle of one session shares: the [`Connection`] behind a mutex that
//! is never held across an await or a system call.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Instant;

use smallvec::SmallVec;
use smux_proto::{lock_briefly, try_lock, Connection, Input, Output, Slot, WakeOnRelease};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

/// The transport's write side and the bytes waiting for it: the driver writes from
/// here, and so does a stream writer that finds nothing ahead of it (a write straight
/// from its own buffer). Locked before the connection when both are needed.
pub(crate) struct Writer {
    pub(crate) io: Pin<Box<dyn AsyncWrite + Send>>,
    pub(crate) output: Output,
}

/// The transport's read side and the bytes read from it: the driver reads from here,
/// and so does a stream reader that finds its own data next on the wire (a read
/// straight into its own buffer). Locked before the writer and the connection.
pub(crate) struct Reader {
    pub(crate) io: ReadSide,
    pub(crate) input: Input,
}

/// A transport's read side: a TCP stream's own half, which a stream reader can try
/// without taking over the driver's wait for readiness, or any other reader.
pub(crate) enum ReadSide {
    Tcp(OwnedReadHalf),
    Other(Pin<Box<dyn AsyncRead + Send>>),
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadSide::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            ReadSide::Other(t) => t.as_mut().poll_read(cx, buf),
        }
    }
}

/// One session's shared state.
pub(crate) struct Shared {
    conn: Mutex<Connection>,
    reader: Mutex<Reader>,
    writer: Mutex<Writer>,
    /// The driver, if it found the write side taken by a stream writing through.
    driver_skipped: WakeOnRelease,
    /// A number for log lines (unique within the process).
    pub(crate) tag: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(conn: Connection, reader: Reader, writer: Writer, tag: u64) -> Shared {
        Shared {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            driver_skipped: WakeOnRelease::default(),
            tag,
        }
    }

    /// The write side, for the driver (which waits for it).
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The write side for the driver, or `None` while a stream writes through: that
    /// stream wakes `driver` when it lets go ([`Shared::release_writer`]), so the
    /// driver reads meanwhile instead of waiting on the lock.
    pub(crate) fn driver_writer(&self, driver: &Waker) -> Option<MutexGuard<'_, Writer>> {
        (self.driver_skipped).try_or_owe(driver, || try_lock(&self.writer))
    }

    /// Says that the stream holding the write side is about to write a large frame
    /// through (see [`WakeOnRelease::hold_long`]).
    pub(crate) fn hold_writer_long(&self) {
        self.driver_skipped.hold_long();
    }

    /// Whether the stream holding the write side writes a large frame: the driver
    /// waits for it rather than read the transport meanwhile.
    pub(crate) fn writer_held_long(&self) -> bool {
        self.driver_skipped.held_long()
    }

    /// Lets go of the write side a stream took to write through.
    pub(crate) fn release_writer(&self, w: MutexGuard<'_, Writer>) {
        drop(w);
        self.driver_skipped.pay();
    }

    /// The write side if nobody holds it (a writer that finds it busy queues instead).
    pub(crate) fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        try_lock(&self.writer)
    }

    /// The read side, for the driver (which waits for it).
    pub(crate) fn reader(&self) -> MutexGuard<'_, Reader> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The read side if nobody holds it (a stream reader that finds it busy waits for
    /// the driver instead).
    pub(crate) fn try_reader(&self) -> Option<MutexGuard<'_, Reader>> {
        try_lock(&self.reader)
    }

    /// Runs `f` on the connection, then wakes the tasks it owes a wake-up once the lock
    /// is released. Every call holds the lock briefly, so a taken lock is tried again
    /// before waiting; a poisoned one is taken anyway (see `lock_briefly`).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let mut c = lock_briefly(&self.conn);
        let r = f(&mut c);
        if !c.owes_wakers() {
            return r;
        }
        // A call owes few wake-ups: they are collected on the stack, not allocated.
        let mut woken = SmallVec::<[Waker; 4]>::new();
        c.take_wakers(&mut woken);
        drop(c);
        woken.into_iter().for_each(Waker::wake);
        r
    }

    /// Whether the driver's last plan still stands (see `Connection::plan_stands`).
    pub(crate) fn plan_stands(&self, now: Instant) -> bool {
        lock_briefly(&self.conn).plan_stands(now)
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
