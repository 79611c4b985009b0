//! Opens many streams on one smux session at once, sends each a payload, reads the
//! echo back and checks it.
//!
//! ```text
//! cargo run -p smux-smol --example smol_echo_server -- 127.0.0.1:9000
//! cargo run -p smux-smol --example smol_many_streams_client -- 127.0.0.1:9000 1000 65536
//! ```
//!
//! Arguments: server address, number of streams, bytes per stream.

use std::io;
use std::time::Instant;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{connect, Config, Session};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let streams: usize = args
        .next()
        .map_or(1000, |s| s.parse().expect("stream count"));
    let size: usize = args
        .next()
        .map_or(16 * 1024, |s| s.parse().expect("bytes per stream"));

    smol::block_on(async {
        // The session's driver runs on smol's global executor.
        let session = connect(addr.as_str(), Config::default()).await?;

        let start = Instant::now();
        let tasks: Vec<_> = (0..streams)
            .map(|i| smol::spawn(round_trip(session.clone(), i, size)))
            .collect();
        for t in tasks {
            t.await?;
        }
        let secs = start.elapsed().as_secs_f64();
        let total = 2.0 * (streams * size) as f64;
        println!(
            "{streams} streams x {size} bytes echoed in {secs:.3} s ({:.1} MiB/s both ways)",
            total / secs / (1024.0 * 1024.0)
        );
        println!("{:?}", session.stats());

        println!("session ended: {}", session.shutdown().await);
        Ok(())
    })
}

async fn round_trip(session: Session, index: usize, size: usize) -> io::Result<()> {
    let stream = session.open().await?;
    let payload: Vec<u8> = (0..size).map(|j| (index * 31 + j) as u8).collect();
    let (mut reader, mut writer) = stream.into_split();
    // Write and read at the same time: a payload larger than the window (512 KiB)
    // would otherwise wait for an echo nobody reads.
    let send = async { writer.write_all(&payload).await };
    let recv = async {
        let mut echoed = vec![0u8; size];
        reader.read_exact(&mut echoed).await?;
        io::Result::Ok(echoed)
    };
    let (sent, echoed) = smol::future::zip(send, recv).await;
    sent?;
    if echoed? != payload {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "echo mismatch"));
    }
    Ok(())
}
