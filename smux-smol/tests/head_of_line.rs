//! Head-of-line freedom: a stream whose reader never reads, while its peer keeps
//! writing, holds back only its own writer. Other streams still complete.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{Session, Stream};

use common::{both_modes, config, fnv, pair, random_bytes, run};

both_modes!(unread_stream_does_not_block_the_others,);

const STREAMS: usize = 8;
const PER_STREAM: usize = 2 * 1024 * 1024;

/// The server side: the first byte of a stream says what to do.
/// `S`: write forever (counting accepted bytes). `D`: write `data`, close.
async fn serve(mut stream: Stream, data: Arc<Vec<u8>>, stalled_written: Arc<AtomicUsize>) {
    let mut cmd = [0u8; 1];
    if stream.read_exact(&mut cmd).await.is_err() {
        return;
    }
    let chunk = vec![0x5a; 64 * 1024];
    match cmd[0] {
        b'S' => {
            while let Ok(n) = stream.write(&chunk).await {
                stalled_written.fetch_add(n, Ordering::SeqCst);
            }
        }
        _ => {
            stream.write_all(&data).await.expect("server write");
            stream.close().await.expect("server close");
        }
    }
}

/// Downloads `STREAMS` streams of `PER_STREAM` bytes at once, checking each against
/// `sum`; returns MiB/s.
async fn download(session: &Session, sum: u64) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let session = session.clone();
        tasks.push(smol::spawn(async move {
            let mut s = session.open().await.expect("open");
            s.write_all(b"D").await.expect("command");
            let mut got = Vec::with_capacity(PER_STREAM);
            s.read_to_end(&mut got).await.expect("download");
            assert_eq!(got.len(), PER_STREAM);
            assert_eq!(fnv(&got), sum, "stream {}", s.id());
        }));
    }
    for t in tasks {
        t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    (STREAMS * PER_STREAM) as f64 / (1024.0 * 1024.0) / secs
}

fn unread_stream_does_not_block_the_others(ext: bool) {
    run(Duration::from_secs(120), async {
        let config = config(ext);
        let window = config.window() as usize;
        let p = pair(config.clone(), config).await;
        let stalled_written = Arc::new(AtomicUsize::new(0));
        let data = Arc::new(random_bytes(&mut fastrand::Rng::with_seed(5), PER_STREAM));
        let sum = fnv(&data);
        let server = p.server.clone();
        let counter = stalled_written.clone();
        smol::spawn(async move {
            while let Ok(s) = server.accept().await {
                smol::spawn(serve(s, data.clone(), counter.clone())).detach();
            }
        })
        .detach();

        // A first round warms up (allocations, TCP window) and is not measured.
        download(&p.client, sum).await;
        let baseline = download(&p.client, sum).await;

        // A stream we never read: its peer writes until the window is full.
        let mut stalled = p.client.open().await.unwrap();
        stalled.write_all(b"S").await.unwrap();
        while stalled_written.load(Ordering::SeqCst) < window {
            smol::Timer::after(Duration::from_millis(5)).await;
        }

        let with_stall = download(&p.client, sum).await;

        // The stalled writer is still blocked at exactly one window.
        assert_eq!(stalled_written.load(Ordering::SeqCst), window);
        println!(
            "HOL: {STREAMS} streams x {} MiB: {baseline:.0} MiB/s without a stalled stream, \
             {with_stall:.0} MiB/s with one (stalled writer blocked at {} KiB)",
            PER_STREAM >> 20,
            window >> 10
        );

        // The stalled stream's data is all there when it is finally read.
        let mut buf = vec![0u8; window];
        stalled.read_exact(&mut buf).await.unwrap();
        drop(stalled);
        p.client.close();
        p.client_driver.await;
        p.server_driver.await;
    });
}
