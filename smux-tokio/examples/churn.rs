//! Sequential stream churn over loopback TCP, as `smux bench`'s churn-1 does it: one
//! loop opens a stream, writes 1 KiB, reads the 1 KiB echo, half-closes and drops the
//! stream, `count` times, on a Tokio runtime of 2 workers. Prints stream lifetimes per
//! second, where the loop's time went, and the opener's frame counts per stream (run
//! it under `strace -f -c` to count system calls per stream).
//!
//! `cargo run --release -p smux-tokio --example churn -- [count] [base]`
//! (`base`: extensions off on both ends, so dropping the stream is its close).

use std::io;
use std::time::Instant;

use smux_tokio::{Config, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: usize = 1024;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(20_000, |s| s.parse().expect("count"));
    let base = args.next().is_some_and(|s| s == "base");
    let config = Config::default().with_extensions(!base);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(count, config))
}

async fn run(count: u64, config: Config) -> io::Result<()> {
    let listener = Listener::bind("127.0.0.1:0", config.clone()).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let (session, _) = listener.accept().await?;
        while let Ok(mut s) = session.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; SIZE];
                if s.read_exact(&mut buf).await.is_err() || s.write_all(&buf).await.is_err() {
                    return;
                }
                // The opener's end-of-file, then ours.
                let _ = s.read(&mut buf).await;
                if s.is_extended() {
                    let _ = s.shutdown().await;
                }
            });
        }
        Ok::<(), io::Error>(())
    });
    let session = smux_tokio::connect(addr, config).await?;
    // The loop runs as a task of the runtime, as the bench's loops do.
    let (secs, phases) = tokio::spawn(churn(session.clone(), count))
        .await
        .map_err(io::Error::other)??;
    let us = |x: f64| x * 1e6 / count as f64;
    println!(
        "{count} streams in {secs:.3} s: {:.0} streams/s, {:.1} us each",
        count as f64 / secs,
        us(secs)
    );
    println!(
        "per stream: open + write {:.1} us, waiting for the echo {:.1} us, shutdown + \
         drop {:.1} us",
        us(phases[0]),
        us(phases[1]),
        us(phases[2])
    );
    let st = session.stats();
    println!(
        "opener, per stream: {:.2} frames sent, {:.2} received",
        st.frames_sent as f64 / count as f64,
        st.frames_received as f64 / count as f64
    );
    Ok(())
}

/// The loop; returns its seconds and those of its three phases.
async fn churn(session: Session, count: u64) -> io::Result<(f64, [f64; 3])> {
    let mut buf = [1u8; SIZE];
    let mut phases = [0f64; 3];
    let start = Instant::now();
    for _ in 0..count {
        let t0 = Instant::now();
        let mut s = session.open().await?;
        s.write_all(&buf).await?;
        let t1 = Instant::now();
        s.read_exact(&mut buf).await?;
        let t2 = Instant::now();
        if s.is_extended() {
            s.shutdown().await?;
        }
        drop(s);
        let t3 = Instant::now();
        phases[0] += (t1 - t0).as_secs_f64();
        phases[1] += (t2 - t1).as_secs_f64();
        phases[2] += (t3 - t2).as_secs_f64();
    }
    Ok((start.elapsed().as_secs_f64(), phases))
}
