//! On Tokio's paused clock: the session's timers (keepalive, the linger of a dropped
//! session) follow Tokio's time, so tens of seconds of protocol time pass at once.
//! Each test runs its runtime on a thread of its own, bounded in real time, so a
//! driver that spun instead of sleeping would fail the test rather than hang it.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use smux_tokio::{Config, EndReason, Role, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

/// Runs `test` on a current-thread runtime with the clock paused; fails if it takes
/// more than 20 s of real time.
fn paused<F: Future<Output = ()> + Send + 'static>(test: F) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(test);
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => thread.join().expect("test thread"),
        // The thread panicked: report its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().expect_err("panicked"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no result within 20 s of real time"),
    }
}

/// Reads and drops everything until end-of-file; returns the byte count.
async fn sink(mut peer: DuplexStream) -> usize {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    while let Ok(n) = peer.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

#[test]
fn a_silent_peer_is_detected_on_tokio_time() {
    paused(async {
        let (ours, peer) = tokio::io::duplex(64 * 1024);
        // The peer reads our PINs but never answers.
        let peer = tokio::spawn(sink(peer));
        let config = Config::default();
        let start = Instant::now();
        let session = Session::new(ours, config.clone(), Role::Dialer).expect("session");
        assert_eq!(session.closed().await, EndReason::KeepaliveTimeout);
        let elapsed = start.elapsed();
        assert!(elapsed >= config.keepalive_timeout(), "{elapsed:?}");
        assert!(
            elapsed <= config.keepalive_timeout() + config.keepalive_interval(),
            "{elapsed:?}"
        );
        // The PINs went out (7-byte frames), then the transport was closed.
        let got = peer.await.expect("peer");
        assert!(got >= 14 && got % 7 == 0, "{got}");
    });
}

#[test]
fn a_dropped_session_lingers_then_ends_when_the_peer_reads_nothing() {
    paused(async {
        // The peer never reads: the transport takes 64 KiB, the rest stays queued.
        let (ours, _peer) = tokio::io::duplex(64 * 1024);
        let session = Session::new(ours, Config::default(), Role::Dialer).expect("session");
        let mut s = session.open().await.expect("open");
        s.write_all(&[7u8; 300_000])
            .await
            .expect("within the window");
        let start = Instant::now();
        drop(session);
        // The stream's read waits for the session's end: the linger (10 s) passes
        // first, as the queued bytes never go out.
        let mut b = [0u8; 1];
        let e = s.read(&mut b).await.expect_err("read after the end");
        let elapsed = start.elapsed();
        assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
        assert!(elapsed >= smux_proto::LINGER, "{elapsed:?}");
        assert!(
            elapsed < smux_proto::LINGER + Duration::from_secs(1),
            "{elapsed:?}"
        );
    });
}
