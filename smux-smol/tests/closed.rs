//! `Session::closed` futures: a dropped one forgets its waker, a live one is woken
//! when the session ends.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use common::{config, pair, run};
use smux_smol::EndReason;

/// A waker that counts its wake-ups; `Arc::strong_count` tells who still holds it.
#[derive(Default)]
struct Probe(AtomicUsize);

impl Wake for Probe {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The usual per-stream task selects on `closed()` and drops it when its work ends:
/// each dropped future must release its waker at once, not at the session's end.
#[test]
fn dropped_closed_futures_forget_their_wakers() {
    run(Duration::from_secs(30), async {
        let p = pair(config(true), config(true)).await;
        let mut probes = Vec::new();
        for _ in 0..10_000 {
            let probe = Arc::new(Probe::default());
            let waker = Waker::from(probe.clone());
            let mut fut = pin!(p.client.closed());
            assert!(fut
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            probes.push(probe);
        }
        let retained = probes.iter().filter(|p| Arc::strong_count(p) > 1).count();
        assert_eq!(retained, 0, "wakers of dropped closed() futures still held");

        // A future moved between tasks keeps only its latest waker, and that one is
        // woken when the session ends.
        let (first, second) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
        let mut fut = Box::pin(p.client.closed());
        for w in [&first, &second] {
            let waker = Waker::from(w.clone());
            assert!(fut
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        }
        assert_eq!(Arc::strong_count(&first), 1, "replaced waker still held");
        assert_eq!(Arc::strong_count(&second), 2, "current waker not held");
        p.client.close();
        while second.0.load(Ordering::SeqCst) == 0 {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "replaced waker woken");
        assert_eq!(fut.await, EndReason::Local);
        assert_eq!(Arc::strong_count(&second), 1, "waker held after the end");
    });
}
