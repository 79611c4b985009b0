//! Honest write deadlines: a write that times out reports exactly what was accepted;
//! resending exactly the rest delivers every byte once and in order.

mod common;

use std::io;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::Config;

use common::{both_modes, fnv, pair, random_bytes, run, with_ext};

both_modes!(
    random_short_deadlines_deliver_every_byte_once,
    timed_out_write_reports_exactly_one_window,
);

fn small_window(ext: bool) -> Config {
    with_ext(
        Config::default()
            .with_window(64 * 1024)
            .with_cfm_threshold(32 * 1024)
            .with_max_frame(16 * 1024),
        ext,
    )
}

fn random_short_deadlines_deliver_every_byte_once(ext: bool) {
    run(Duration::from_secs(60), async {
        let p = pair(small_window(ext), small_window(ext)).await;
        let mut rng = fastrand::Rng::with_seed(7);
        let data = random_bytes(&mut rng, 2 * 1024 * 1024);

        // A slow reader: small reads with pauses, so the window fills and writes
        // hit their deadlines.
        let server = p.server.clone();
        let reader = smol::spawn(async move {
            let mut s = server.accept().await?;
            let mut rng = fastrand::Rng::with_seed(8);
            let mut got = Vec::new();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let want = rng.usize(1..=buf.len());
                let n = s.read(&mut buf[..want]).await?;
                if n == 0 {
                    return io::Result::Ok(got);
                }
                got.extend_from_slice(&buf[..n]);
                if rng.u8(..) < 80 {
                    smol::Timer::after(Duration::from_micros(rng.u64(100..2000))).await;
                }
            }
        });

        let mut s = p.client.open().await.unwrap();
        let (mut sent, mut timeouts, mut partial) = (0, 0, 0);
        while sent < data.len() {
            let end = (sent + rng.usize(1..=256 * 1024)).min(data.len());
            let mut chunk = &data[sent..end];
            while !chunk.is_empty() {
                let deadline = Instant::now() + Duration::from_micros(rng.u64(0..1500));
                match s.write_all_before(chunk, deadline).await {
                    Ok(()) => {
                        sent += chunk.len();
                        chunk = &[];
                    }
                    Err(e) => {
                        assert!(e.is_timeout(), "unexpected failure: {e}");
                        assert!(e.written() <= chunk.len());
                        timeouts += 1;
                        if e.written() > 0 {
                            partial += 1;
                        }
                        sent += e.written();
                        chunk = &chunk[e.written()..];
                    }
                }
            }
        }
        if ext {
            s.close().await.unwrap();
        } else {
            // No half-close on a base stream: dropping it sends the FIN.
            let e = s.close().await.expect_err("close of a base stream");
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
            drop(s);
        }
        let got = reader.await.unwrap();
        println!(
            "{} bytes with random deadlines: {timeouts} timeouts, {partial} of them after a partial write",
            data.len()
        );
        assert_eq!(got.len(), data.len());
        assert_eq!(fnv(&got), fnv(&data));
        assert!(got == data);
    });
}

fn timed_out_write_reports_exactly_one_window(ext: bool) {
    run(Duration::from_secs(20), async {
        let config = small_window(ext);
        let window = config.window() as usize;
        let p = pair(config.clone(), config).await;
        let mut s = p.client.open().await.unwrap();
        s.write_all(b"!").await.unwrap();
        let _peer = p.server.accept().await.unwrap();
        // The window is free again only after a CFM; the peer reads nothing (its
        // reading the first byte would confirm it), so exactly `window - 1` more bytes
        // can be accepted.
        let data = vec![3u8; 3 * window];
        let deadline = Instant::now() + Duration::from_millis(200);
        let e = s
            .write_all_before(&data, deadline)
            .await
            .expect_err("the window is full");
        assert!(e.is_timeout());
        assert_eq!(e.written(), window - 1);
        let io_err: io::Error = e.into();
        assert_eq!(io_err.kind(), io::ErrorKind::TimedOut);

        // A read deadline on a stream with no data times out with nothing read.
        let mut buf = [0u8; 8];
        let mut idle = p.client.open().await.unwrap();
        let err = idle
            .read_before(&mut buf, Instant::now() + Duration::from_millis(50))
            .await
            .expect_err("no data");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    });
}
