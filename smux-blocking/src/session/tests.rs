//! Starting a session when one of its threads cannot start.

use super::*;
use crate::transport::Parts;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

thread_local! {
    /// The session thread whose start fails, for `Session::new` on this thread.
    pub(super) static FAIL_SPAWN: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// A transport half that counts its drop; reading blocks until the sender of `block`
/// goes away (not while the test waits), like an idle socket with no closer.
struct Half(Arc<AtomicUsize>, Option<mpsc::Receiver<()>>);

impl Drop for Half {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Read for Half {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.1.as_ref().map(mpsc::Receiver::recv);
        Ok(0)
    }
}

impl Write for Half {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whichever thread fails to start, `Session::new` says which, and no thread is left
/// holding a transport half (a reader would block in `read` for good): both halves
/// are dropped, even with no closer to unblock them.
#[test]
fn a_failed_thread_start_leaves_no_thread_behind() {
    for name in ["reader", "writer"] {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (_tx, rx) = mpsc::channel();
        let parts = Parts::new(Half(dropped.clone(), Some(rx)), Half(dropped.clone(), None));
        FAIL_SPAWN.with(|f| f.set(Some(name)));
        let r = Session::new(parts, Config::default(), Role::Dialer);
        FAIL_SPAWN.with(|f| f.set(None));
        let e = r.expect_err("the session cannot start");
        assert!(e.to_string().contains(name), "{e}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while dropped.load(Ordering::SeqCst) < 2 {
            assert!(
                Instant::now() < deadline,
                "{name} failed: a half is still held"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}
