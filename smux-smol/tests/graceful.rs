//! Ending a session gracefully: what was written still arrives, and streams the
//! peer finished read end-of-file even after the session ended.

mod common;

use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::EndReason;

use common::{both_modes, config, fnv, pair, random_bytes, run};

both_modes!(
    shutdown_writes_out_everything_already_written,
    dropped_session_still_delivers_and_finished_streams_read_eof,
    closing_the_write_half_wakes_a_parked_read_half,
);

fn shutdown_writes_out_everything_already_written(ext: bool) {
    run(Duration::from_secs(30), async {
        let p = pair(config(ext), config(ext)).await;
        let mut rng = fastrand::Rng::with_seed(3);
        let data = random_bytes(&mut rng, 3 * 1024 * 1024);

        let server = p.server.clone();
        let reader = smol::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..3 {
                let mut s = server.accept().await.unwrap();
                s.read_to_end(&mut got).await.unwrap();
            }
            got
        });

        for part in data.chunks(1024 * 1024) {
            let mut s = p.client.open().await.unwrap();
            s.write_all(part).await.unwrap();
            if ext {
                s.close().await.unwrap();
            }
            // Dropping it (or its end, extended) sends the FIN after the data.
        }
        // The first poll starts the graceful close; from then on, new work is refused.
        let mut shutdown = Box::pin(p.client.shutdown());
        let reason = match smol::future::poll_once(&mut shutdown).await {
            Some(reason) => reason,
            None => {
                assert!(p.client.open().await.is_err());
                shutdown.await
            }
        };
        assert_eq!(reason, EndReason::Local);
        let got = reader.await;
        assert_eq!(got.len(), data.len());
        assert_eq!(fnv(&got), fnv(&data));
        assert_eq!(p.server.closed().await, EndReason::PeerClosed);
    });
}

fn dropped_session_still_delivers_and_finished_streams_read_eof(ext: bool) {
    run(Duration::from_secs(30), async {
        let p = pair(config(ext), config(ext)).await;
        let mut s = p.client.open().await.unwrap();
        s.write_all(b"last words").await.unwrap();
        if ext {
            s.close().await.unwrap();
        }
        drop(s);
        drop(p.client);
        assert_eq!(p.client_driver.await, EndReason::Local);

        // The peer's session has ended by now, yet the stream it finished reads its
        // data and then a clean end-of-file.
        assert_eq!(p.server.closed().await, EndReason::PeerClosed);
        let mut r = p.server.accept().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
        assert!(p.server.accept().await.is_err());
    });
}

/// On an extended stream closing the write half is a half-close: a read half parked
/// on it reads on until the peer's own FIN. On a base stream it fails (no half-close)
/// and the stream works on.
fn closing_the_write_half_wakes_a_parked_read_half(ext: bool) {
    run(Duration::from_secs(30), async {
        let p = pair(config(ext), config(ext)).await;
        let s = p.client.open().await.unwrap();
        let (mut r, mut w) = s.into_split();
        w.write_all(b"hi").await.unwrap();
        // The peer takes the stream but does not close it yet (no FIN comes back).
        let mut peer = p.server.accept().await.unwrap();
        let reader = smol::spawn(async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.map(|_| got)
        });
        smol::Timer::after(Duration::from_millis(50)).await;
        assert_eq!(w.is_extended(), ext);
        if ext {
            w.close().await.unwrap();
            let err = w.write_all(b"more").await.expect_err("written after close");
            assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
            // The peer reads our FIN, then answers on the same stream.
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hi");
            peer.write_all(b"answer").await.unwrap();
            peer.close().await.unwrap();
            assert_eq!(reader.await.unwrap(), b"answer");
        } else {
            let err = w.close().await.expect_err("no half-close on a base stream");
            assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
            w.write_all(b" more").await.unwrap();
            let mut got = [0u8; 7];
            peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hi more");
            peer.write_all(b"answer").await.unwrap();
            drop(peer);
            assert_eq!(reader.await.unwrap(), b"answer");
        }
    });
}
