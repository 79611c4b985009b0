//! Head-of-line freedom: a stream whose reader never reads, while its peer keeps
//! writing, stalls only itself; the other streams transfer their data to completion.
//!
//! The test prints the other streams' throughput with and without the stalled stream;
//! it asserts only that they complete (timings on a shared machine prove nothing).

#[macro_use]
mod common;

use std::time::Instant;

use common::{bounded, config, pair};
use smux_tokio::{Config, Session};

both_ways!(a_stalled_stream_does_not_block_the_others);
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAMS: usize = 8;
const PER_STREAM: usize = 4 << 20;

/// Moves `PER_STREAM` bytes from `client` to `server` on each of `STREAMS` new
/// streams at once; returns the elapsed time in seconds.
async fn transfer(client: &Session, server: &Session) -> f64 {
    let start = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..STREAMS {
        let mut s = client.open().await.expect("open");
        senders.push(tokio::spawn(async move {
            let chunk = vec![0xA5u8; 64 * 1024];
            let mut left = PER_STREAM;
            while left > 0 {
                let n = left.min(chunk.len());
                s.write_all(&chunk[..n]).await.expect("write");
                left -= n;
            }
            // Wait for the receiver's one-byte acknowledgement.
            let mut ack = [0u8; 1];
            s.read_exact(&mut ack).await.expect("ack");
        }));
    }
    let mut receivers = Vec::new();
    for _ in 0..STREAMS {
        let mut s = server.accept().await.expect("accept");
        receivers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < PER_STREAM {
                let n = s.read(&mut buf).await.expect("read");
                assert!(n > 0, "early end-of-file");
                got += n;
            }
            s.write_all(b"!").await.expect("ack");
            // Keep the stream until the sender has read the ack and dropped its end.
            let _ = s.read(&mut buf).await;
        }));
    }
    for t in senders {
        t.await.expect("sender");
    }
    for t in receivers {
        t.await.expect("receiver");
    }
    start.elapsed().as_secs_f64()
}

async fn a_stalled_stream_does_not_block_the_others(ext: bool) {
    bounded(120, "head-of-line test", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        // The stalled stream's window never grows: its reader consumes nothing.
        let window = Config::default().window() as usize;
        let mib = (STREAMS * PER_STREAM) as f64 / (1 << 20) as f64;

        // A first round warms up (allocations, TCP windows); the second is measured.
        transfer(&client, &server).await;
        let alone = transfer(&client, &server).await;

        // The stalled stream: the server accepts it and never reads it; the client
        // keeps writing to it for the whole second transfer.
        let mut stalled = client.open().await.expect("open stalled");
        stalled.write_all(b"x").await.expect("first byte");
        let stalled_peer = server.accept().await.expect("accept stalled");
        let writer = tokio::spawn(async move {
            let chunk = vec![1u8; 16 * 1024];
            let mut written = 0usize;
            loop {
                match stalled.write(&chunk).await {
                    Ok(n) => written += n,
                    Err(e) => return (written, e),
                }
            }
        });
        // Let it fill its window first.
        while client.stats().buffered_out > 0 || server.stats().buffered_in < window {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        let stalled_time = transfer(&client, &server).await;

        println!(
            "HOL: {STREAMS} streams x {} MiB: {:.1} MiB/s without a stalled stream, \
             {:.1} MiB/s with one stalled stream holding {} KiB unread",
            PER_STREAM >> 20,
            mib / alone,
            mib / stalled_time,
            server.stats().buffered_in >> 10,
        );
        // The stalled stream is still stalled at its window and the session is alive.
        assert_eq!(server.stats().buffered_in, window);
        assert!(!writer.is_finished());
        assert!(client.end_reason().is_none());
        // Dropping the peer's end would not stop the writer of an extended stream (the
        // peer would discard what still comes); a reset stops it either way (on a base
        // stream it is a close).
        stalled_peer.reset(9);
        let (written, e) = bounded(10, "stalled writer", writer).await.expect("writer");
        if ext {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            assert_eq!(smux_tokio::reset_code(&e), Some(9));
        } else {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        // It got exactly its window in (the first byte, then `written`), no more.
        assert_eq!(written + 1, window);
    })
    .await;
}
