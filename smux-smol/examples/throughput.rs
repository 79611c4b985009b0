//! One-way throughput over loopback TCP: `streams` streams each carry `MiB` MiB from
//! a client session to a server session in the same process, on smol's executor.
//!
//! `cargo run --release -p smux-smol --example smol_throughput -- [streams] [MiB per stream]`
//!
//! Set `SMOL_THREADS` to give smol's global executor more threads (default 1).

use std::io;
use std::time::Instant;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{connect, Config, Listener};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map_or(1, |s| s.parse().expect("streams"));
    let mib: usize = args
        .next()
        .map_or(1024, |s| s.parse().expect("MiB per stream"));
    let per_stream = mib << 20;

    smol::block_on(async {
        let listener = Listener::bind("127.0.0.1:0", Config::default())?;
        let addr = listener.local_addr()?;
        let server = smol::spawn(async move {
            let (session, _) = listener.accept().await?;
            let mut readers = Vec::new();
            for _ in 0..streams {
                let mut s = session.accept().await?;
                readers.push(smol::spawn(async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut got = 0;
                    while got < per_stream {
                        match s.read(&mut buf).await? {
                            0 => break,
                            n => got += n,
                        }
                    }
                    // Tell the writer everything arrived.
                    s.write_all(b"!").await?;
                    io::Result::Ok(got)
                }));
            }
            let mut total = 0;
            for r in readers {
                total += r.await?;
            }
            io::Result::Ok(total)
        });

        let session = connect(addr, Config::default()).await?;
        let start = Instant::now();
        let mut writers = Vec::new();
        for _ in 0..streams {
            let mut s = session.open().await?;
            writers.push(smol::spawn(async move {
                let chunk = vec![0x5Au8; 256 * 1024];
                let mut left = per_stream;
                while left > 0 {
                    let n = left.min(chunk.len());
                    s.write_all(&chunk[..n]).await?;
                    left -= n;
                }
                let mut ack = [0u8; 1];
                s.read_exact(&mut ack).await?;
                io::Result::Ok(())
            }));
        }
        for w in writers {
            w.await?;
        }
        let total = server.await?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{streams} stream(s), {} MiB in {secs:.3} s: {:.0} MiB/s",
            total >> 20,
            (total >> 20) as f64 / secs
        );
        Ok(())
    })
}
