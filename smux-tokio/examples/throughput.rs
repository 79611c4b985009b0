//! One-way throughput over loopback TCP: `streams` streams each send `MiB` MiB
//! from a client session to a server session in the same process.
//!
//! `cargo run --release -p smux-tokio --example throughput -- [streams] [MiB per stream]`

use std::time::Instant;

use smux_tokio::{Config, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map_or(1, |s| s.parse().expect("streams"));
    let mib: usize = args.next().map_or(1024, |s| s.parse().expect("MiB"));
    let per_stream = mib << 20;

    let listener = Listener::bind("127.0.0.1:0", Config::default()).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (session, _) = listener.accept().await?;
        let mut readers = Vec::new();
        for _ in 0..streams {
            let mut s = session.accept().await?;
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0;
                while got < per_stream {
                    let n = s.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                s.write_all(b"!").await?;
                Ok::<usize, std::io::Error>(got)
            }));
        }
        let mut total = 0;
        for r in readers {
            total += r.await.expect("reader")?;
        }
        Ok::<usize, std::io::Error>(total)
    });

    let session = smux_tokio::connect(addr, Config::default()).await?;
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut s = session.open().await?;
        writers.push(tokio::spawn(async move {
            let chunk = vec![0x5Au8; 256 * 1024];
            let mut left = per_stream;
            while left > 0 {
                let n = left.min(chunk.len());
                s.write_all(&chunk[..n]).await?;
                left -= n;
            }
            let mut ack = [0u8; 1];
            s.read_exact(&mut ack).await?;
            Ok::<(), std::io::Error>(())
        }));
    }
    for w in writers {
        w.await.expect("writer")?;
    }
    let total = server.await.expect("server")?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{streams} stream(s), {} MiB in {secs:.3} s: {:.0} MiB/s",
        total >> 20,
        (total >> 20) as f64 / secs
    );
    Ok(())
}
