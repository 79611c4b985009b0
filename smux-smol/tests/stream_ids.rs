//! Stream IDs: recycled past 65,536 streams, and a clear error when all are in use.

mod common;

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};

use common::{both_modes, config, pair, run};

both_modes!(
    seventy_thousand_streams_one_after_another,
    all_65536_ids_in_use_then_a_clear_error,
);

/// Waits until both sessions hold no stream (every close handshake finished).
async fn wait_idle(p: &common::Pair) {
    while p.client.stats().streams + p.server.stats().streams > 0 {
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

fn seventy_thousand_streams_one_after_another(ext: bool) {
    const TOTAL: usize = 70_000;
    const WORKERS: usize = 4;
    run(Duration::from_secs(120), async {
        let p = pair(config(ext), config(ext)).await;
        let server = p.server.clone();
        smol::spawn(async move {
            // Each stream: read its 4 bytes, then close it (the peer sees EOF).
            while let Ok(mut s) = server.accept().await {
                smol::spawn(async move {
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).await.expect("server read");
                    assert_eq!(b, *b"ping");
                })
                .detach();
            }
        })
        .detach();

        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let session = p.client.clone();
            workers.push(smol::spawn(async move {
                let mut ids = HashSet::new();
                for _ in 0..TOTAL / WORKERS {
                    let mut s = session.open().await?;
                    ids.insert(s.id());
                    s.write_all(b"ping").await?;
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).await?;
                    assert!(rest.is_empty());
                }
                io::Result::Ok(ids)
            }));
        }
        let mut ids = HashSet::new();
        for w in workers {
            ids.extend(w.await.expect("worker"));
        }
        let elapsed = start.elapsed();
        let stats = p.client.stats();
        println!(
            "{TOTAL} streams opened and closed in {elapsed:?} ({} distinct IDs, {} frames sent)",
            ids.len(),
            stats.frames_sent
        );
        assert!(stats.frames_sent >= 2 * TOTAL as u64);
        wait_idle(&p).await;
        p.client.close();
        p.client_driver.await;
    });
}

fn all_65536_ids_in_use_then_a_clear_error(ext: bool) {
    run(Duration::from_secs(120), async {
        let server_config = config(ext).with_accept_backlog(70_000);
        let p = pair(config(ext), server_config).await;
        let server = p.server.clone();
        smol::spawn(async move {
            // Keep every stream until the peer closes it.
            while let Ok(mut s) = server.accept().await {
                smol::spawn(async move {
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                })
                .detach();
            }
        })
        .detach();

        let start = Instant::now();
        let mut streams = Vec::with_capacity(65_536);
        for _ in 0..65_536 {
            streams.push(p.client.open().await.expect("open"));
        }
        let opened = start.elapsed();
        let err = p
            .client
            .open()
            .await
            .expect_err("the 65,537th open must fail");
        println!("65536 streams open in {opened:?}; next open: {err}");
        assert!(err.to_string().contains("65536"), "unclear error: {err}");
        assert_eq!(p.client.stats().streams, 65_536);

        // The peer saw them all; closing them frees every ID on both ends.
        while p.server.stats().streams < 65_536 {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        drop(streams);
        wait_idle(&p).await;
        println!("...and all closed again after {:?}", start.elapsed());
        let mut s = p.client.open().await.expect("IDs are free again");
        s.write_all(b"x").await.unwrap();
        drop(s);
        p.client.close();
        p.client_driver.await;
    });
}
