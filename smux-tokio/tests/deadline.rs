//! Honest deadlines: a write that hits its deadline reports exactly the bytes the
//! session accepted, so resending exactly the rest delivers every byte once, in order.

#[macro_use]
mod common;

use std::time::Duration;

use common::{bounded, config, pair, Rng};
use smux_tokio::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

both_ways!(
    timed_out_writes_report_the_exact_count,
    past_deadlines_and_read_deadlines,
);

async fn timed_out_writes_report_the_exact_count(ext: bool) {
    bounded(60, "deadline writes", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        // The peer has read nothing yet, so its window has not grown either.
        let window = Config::default().window() as usize;
        let mut rng = Rng::new(7);
        let data = rng.bytes(6 << 20);

        let mut stream = client.open().await.expect("open");
        stream.write_all(&data[..1]).await.expect("first byte");
        let mut peer = server.accept().await.expect("accept");

        // The peer does not read yet: a 1 MiB write gets exactly the rest of the
        // window in, then times out.
        let first = stream
            .write_all_before(&data[1..1 << 20], Instant::now() + Duration::from_millis(100))
            .await
            .expect_err("the window is smaller than the write");
        assert!(first.is_timeout(), "{first}");
        assert_eq!(first.written(), window - 1);
        let mut sent = 1 + first.written();

        let expected = data.clone();
        let reader = tokio::spawn(async move {
            let mut rng = Rng::new(99);
            let mut got = Vec::with_capacity(expected.len());
            let mut buf = vec![0u8; 48 * 1024];
            while got.len() < expected.len() {
                let n = peer.read(&mut buf).await.expect("read");
                assert!(n > 0, "early end-of-file");
                got.extend_from_slice(&buf[..n]);
                if rng.below(4) == 0 {
                    // A slow reader: the writer's window fills up now and then.
                    tokio::time::sleep(Duration::from_millis(rng.below(4))).await;
                }
            }
            assert!(got == expected, "the peer received every byte once, in order");
            let mut end = [0u8; 1];
            assert_eq!(peer.read(&mut end).await.expect("eof"), 0);
            got.len()
        });

        let (mut timeouts, mut partial) = (0, 0);
        while sent < data.len() {
            let len = (1 + rng.below(256 * 1024) as usize).min(data.len() - sent);
            let deadline = Instant::now() + Duration::from_micros(100 + rng.below(3000));
            match stream.write_all_before(&data[sent..sent + len], deadline).await {
                Ok(()) => sent += len,
                Err(e) => {
                    assert!(e.is_timeout(), "{e}");
                    assert!(e.written() < len);
                    timeouts += 1;
                    partial += usize::from(e.written() > 0);
                    // Exactly the accepted part counts as sent; the rest is resent.
                    sent += e.written();
                }
            }
        }
        drop(stream);
        let received = reader.await.expect("reader");
        assert_eq!(received, data.len());
        println!("{timeouts} writes timed out ({partial} after a partial write); every byte arrived once");
    })
    .await;
}

async fn past_deadlines_and_read_deadlines(ext: bool) {
    bounded(20, "read deadline", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let mut s = client.open().await.expect("open");
        // A deadline already passed accepts nothing.
        let e = s
            .write_all_before(b"late", Instant::now() - Duration::from_millis(1))
            .await
            .expect_err("past deadline");
        assert!(e.is_timeout() && e.written() == 0);
        s.write_all_before(b"in time", Instant::now() + Duration::from_secs(5))
            .await
            .expect("write");
        let mut peer = server.accept().await.expect("accept");
        let mut buf = [0u8; 16];
        let n = peer
            .read_before(&mut buf, Instant::now() + Duration::from_secs(5))
            .await
            .expect("read");
        assert_eq!(&buf[..n], b"in time");
        // Nothing more comes: the read times out, and the stream still works after.
        let e = peer
            .read_before(&mut buf, Instant::now() + Duration::from_millis(50))
            .await
            .expect_err("nothing to read");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        s.write_all(b"!").await.expect("write");
        assert_eq!(peer.read(&mut buf).await.expect("read"), 1);
        // Errors convert to io::Error with their kind.
        let io: std::io::Error = s
            .write_all_before(b"x", Instant::now())
            .await
            .expect_err("deadline is now")
            .into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    })
    .await;
}
