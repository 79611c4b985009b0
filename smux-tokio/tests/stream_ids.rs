//! Stream IDs: recycled past 65,536 opens, and a clear error when all 65,536 are in
//! use at once.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, pair};
use smux_tokio::{reset_code, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_ways!(
    seventy_thousand_streams_one_after_another,
    all_ids_in_use_then_a_clear_error,
);

fn config(ext: bool) -> Config {
    common::config(ext).with_accept_backlog(70_000)
}

async fn seventy_thousand_streams_one_after_another(ext: bool) {
    const TOTAL: usize = 70_000;
    bounded(60, "70,000 sequential streams", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let acceptor = tokio::spawn(async move {
            let mut max_id = 0;
            for _ in 0..TOTAL {
                let mut s = server.accept().await.expect("accept");
                max_id = max_id.max(s.id().number());
                let mut b = [0u8; 4];
                s.read_exact(&mut b).await.expect("read");
                count.fetch_add(1, Ordering::Relaxed);
                // Dropping the stream answers the client's FIN: the ID is free again.
            }
            (server, max_id)
        });
        let mut ids = std::collections::HashSet::new();
        for i in 0..TOTAL {
            let mut s = client.open().await.expect("open");
            ids.insert(s.id().number());
            s.write_all(&(i as u32).to_le_bytes()).await.expect("write");
            drop(s);
            // Keep a bounded number of closes in flight, so IDs are reused at once.
            while i + 1 - served.load(Ordering::Relaxed) > 256 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let (server, max_id) = acceptor.await.expect("acceptor");
        // Everything handshaken away on both ends.
        while client.stats().streams > 0 || server.stats().streams > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "{TOTAL} streams opened and closed; {} distinct IDs used, highest {max_id}",
            ids.len()
        );
        assert!(ids.len() < TOTAL, "IDs were recycled");
        assert_eq!(client.stats().protocol_errors, 0);
        assert!(client.end_reason().is_none());
    })
    .await;
}

async fn all_ids_in_use_then_a_clear_error(ext: bool) {
    const ALL: usize = 65_536;
    bounded(60, "65,536 open streams", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let acceptor = tokio::spawn(async move {
            let mut held = Vec::with_capacity(ALL);
            for _ in 0..ALL {
                held.push(server.accept().await.expect("accept"));
            }
            (server, held)
        });
        let mut streams = Vec::with_capacity(ALL);
        for _ in 0..ALL {
            streams.push(client.open().await.expect("open"));
        }
        let err = client.open().await.expect_err("open past 65,536");
        println!("open #65,537: {err}");
        assert!(
            err.to_string().contains("65536 stream IDs are in use"),
            "{err}"
        );
        let (server, mut held) = acceptor.await.expect("acceptor");
        assert_eq!(held.len(), ALL);
        assert_eq!(client.stats().streams, ALL);

        // Resetting one stream (a close on a base stream) and dropping the peer's end
        // frees its number for the next open; the handle is kept.
        let mut last = streams.pop().expect("a stream");
        let id = last.id();
        last.reset(9);
        let pos = held
            .iter()
            .position(|s| s.id().number() == id.number())
            .expect("peer's end");
        let mut peer = held.swap_remove(pos);
        let mut b = [0u8; 1];
        match peer.read(&mut b).await {
            Err(e) if ext => assert_eq!(reset_code(&e), Some(9), "{e}"),
            r => assert_eq!(r.expect("eof"), 0),
        }
        drop(peer);
        let mut again = loop {
            match client.open().await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        assert_eq!(again.id().number(), id.number());
        assert_ne!(again.id(), id, "a new stream on the same number");
        // The old handle still names the old stream: its calls fail, and dropping it
        // leaves the new stream alone.
        let e = last
            .write(b"stale")
            .await
            .expect_err("write on a stale handle");
        assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
        drop(last);
        again.write_all(b"new").await.expect("write");
        let mut fresh = server.accept().await.expect("accept");
        let mut buf = [0u8; 3];
        fresh.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"new");
        assert!(client.end_reason().is_none() && server.end_reason().is_none());
    })
    .await;
}
