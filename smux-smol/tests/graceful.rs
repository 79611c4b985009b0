//! Ending a session gracefully: what was written still arrives, and streams the
//! peer finished read end-of-file even after the session ended.

mod common;

use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{Config, EndReason};

use common::{fnv, pair, random_bytes, run};

#[test]
fn shutdown_writes_out_everything_already_written() {
    run(Duration::from_secs(30), async {
        let p = pair(Config::default(), Config::default()).await;
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
            s.close().await.unwrap();
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

#[test]
fn dropped_session_still_delivers_and_finished_streams_read_eof() {
    run(Duration::from_secs(30), async {
        let p = pair(Config::default(), Config::default()).await;
        let mut s = p.client.open().await.unwrap();
        s.write_all(b"last words").await.unwrap();
        s.close().await.unwrap();
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

#[test]
fn closing_the_write_half_wakes_a_parked_read_half() {
    run(Duration::from_secs(30), async {
        let p = pair(Config::default(), Config::default()).await;
        let s = p.client.open().await.unwrap();
        let (mut r, mut w) = s.into_split();
        w.write_all(b"hi").await.unwrap();
        // The peer takes the stream but never closes it (no FIN comes back).
        let _peer = p.server.accept().await.unwrap();
        let reader = smol::spawn(async move {
            let mut buf = [0u8; 8];
            r.read(&mut buf).await
        });
        smol::Timer::after(Duration::from_millis(50)).await;
        w.close().await.unwrap();
        let err = reader.await.expect_err("reading a closed stream fails");
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    });
}
