//! Opens many streams on one connection to an echo server, sends each a random
//! amount, checks the echo, and reports the throughput.
//!
//! `cargo run --release -p smux-tokio --example many_streams_client -- [address]
//! [streams] [KiB per stream]` (defaults: `127.0.0.1:7000`, 1000 streams, 64 KiB).
//! Start the `echo_server` example first. The connection is probed with `is_smux`
//! before the session starts on it.

use std::time::{Duration, Instant};

use smux_tokio::{is_smux, Config, Role, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let streams: usize = args.next().map_or(1000, |s| s.parse().expect("streams"));
    let kib: usize = args.next().map_or(64, |s| s.parse().expect("KiB"));

    let mut tcp = TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    // The server's session answers a probe; our own session is not started yet, so
    // the probe's answer is the first thing on the connection.
    if !is_smux(&mut tcp, Duration::from_secs(2)).await? {
        eprintln!("{addr} does not speak smux");
        std::process::exit(1);
    }
    let session = Session::new(tcp, Config::default(), Role::Dialer)?;

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ start.elapsed().as_nanos() as u64;
    for _ in 0..streams {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (seed >> 33) as usize % (2 * kib * 1024);
        let stream = session.open().await?;
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            let (mut r, mut w) = stream.into_split();
            let expected = data.clone();
            let writer = tokio::spawn(async move { w.write_all(&data).await.map(|()| w) });
            let mut echo = vec![0u8; len];
            r.read_exact(&mut echo).await?;
            let _w = writer.await.expect("writer task")?;
            if echo != expected {
                return Err(std::io::Error::other("echo differs"));
            }
            Ok::<usize, std::io::Error>(len)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("stream task")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "{streams} streams echoed {mib:.1} MiB each way in {secs:.2} s ({:.1} MiB/s each way)",
        mib / secs
    );
    if session.ping() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!("round-trip time: {:?}", session.rtt());
    }
    session.close();
    Ok(())
}
