//! Keepalive: a silent peer is detected within the configured timeout, and a live
//! peer keeps an idle session alive.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{bounded, config, pair};
use smux_tokio::{Config, EndReason, Session};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

both_ways!(a_silent_peer_is_detected, idle_sessions_stay_alive);

fn short(ext: bool) -> Config {
    config(ext)
        .with_keepalive_interval(Duration::from_millis(50))
        .with_keepalive_timeout(Duration::from_millis(400))
}

async fn a_silent_peer_is_detected(ext: bool) {
    bounded(20, "keepalive timeout", async {
        // A raw TCP peer that accepts and then never sends a byte (it does read).
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let silent = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut sink = vec![0u8; 4096];
            let mut got = 0;
            while let Ok(n) = tcp.read(&mut sink).await {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got
        });
        let start = Instant::now();
        let session = smux_tokio::connect(addr, short(ext))
            .await
            .expect("connect");
        let mut stream = session.open().await.expect("open");
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 1];
            stream.read(&mut b).await
        });
        let reason = session.closed().await;
        println!(
            "silent peer detected after {:?} (timeout {:?})",
            start.elapsed(),
            short(ext).keepalive_timeout()
        );
        assert_eq!(reason, EndReason::KeepaliveTimeout);
        let err = reader.await.expect("reader").expect_err("read fails");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // The session sent its SYN and PINs (7-byte frames) before giving up, then
        // closed the connection.
        let got = silent.await.expect("silent peer");
        assert!(got >= 14 && got % 7 == 0, "{got}");
    })
    .await;
}

async fn idle_sessions_stay_alive(ext: bool) {
    bounded(20, "idle sessions", async {
        let config = config(ext)
            .with_keepalive_interval(Duration::from_millis(50))
            .with_keepalive_timeout(Duration::from_millis(1500));
        let (client, server): (Session, Session) = pair(config.clone(), config).await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(client.end_reason(), None);
        assert_eq!(server.end_reason(), None);
        assert!(client.stats().frames_received > 0, "PINs arrived");
    })
    .await;
}
