//! `Session::closed` futures: a dropped one forgets its waker, a live one is woken
//! when the session ends.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use common::{bounded, pair_raw};
use smux_tokio::{Config, EndReason};

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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_closed_futures_forget_their_wakers() {
    let (client, _server) = pair_raw(Config::default(), Config::default()).await;
    let mut probes = Vec::new();
    for _ in 0..10_000 {
        let probe = Arc::new(Probe::default());
        let waker = Waker::from(probe.clone());
        let mut fut = pin!(client.closed());
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        probes.push(probe);
    }
    let retained = probes.iter().filter(|p| Arc::strong_count(p) > 1).count();
    assert_eq!(retained, 0, "wakers of dropped closed() futures still held");

    // A future moved between tasks keeps only its latest waker, and that one is woken
    // when the session ends.
    let (first, second) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let mut fut = Box::pin(client.closed());
    for p in [&first, &second] {
        let waker = Waker::from(p.clone());
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
    }
    assert_eq!(Arc::strong_count(&first), 1, "replaced waker still held");
    assert_eq!(Arc::strong_count(&second), 2, "current waker not held");
    client.close();
    bounded(10, "wake-up of the pending closed()", async {
        while second.0.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(first.0.load(Ordering::SeqCst), 0, "replaced waker woken");
    let reason = bounded(10, "closed()", fut).await;
    assert_eq!(reason, EndReason::Local);
    assert_eq!(Arc::strong_count(&second), 1, "waker held after the end");
}
