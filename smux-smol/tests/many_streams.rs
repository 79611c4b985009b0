//! 1,000 concurrent streams, each sending a random amount both ways at once,
//! verified by checksum.

mod common;

use std::io;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::Stream;

use common::{both_modes, config, fnv, pair, random_bytes, run};

both_modes!(thousand_concurrent_streams_both_ways,);

const STREAMS: usize = 1000;
const MAX_LEN: usize = 4096;

/// Sends `payload` (length and checksum first) while reading the peer's payload, and
/// checks what arrived. Returns the number of payload bytes received.
async fn exchange(stream: Stream, payload: Vec<u8>) -> io::Result<usize> {
    let (mut r, mut w) = stream.into_split();
    let writer = async {
        let mut hdr = [0u8; 12];
        hdr[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        hdr[4..].copy_from_slice(&fnv(&payload).to_le_bytes());
        w.write_all(&hdr).await?;
        w.write_all(&payload).await
    };
    let reader = async {
        let mut hdr = [0u8; 12];
        r.read_exact(&mut hdr).await?;
        let len = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
        let sum = u64::from_le_bytes(hdr[4..].try_into().unwrap());
        let mut data = vec![0u8; len];
        r.read_exact(&mut data).await?;
        if fnv(&data) != sum {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checksum mismatch",
            ));
        }
        Ok(len)
    };
    let (wr, rd) = smol::future::zip(writer, reader).await;
    wr?;
    rd
}

fn thousand_concurrent_streams_both_ways(ext: bool) {
    run(Duration::from_secs(60), async {
        let p = pair(config(ext), config(ext)).await;
        let start = Instant::now();

        let server = p.server.clone();
        let served = smol::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(2);
            let mut tasks = Vec::new();
            for _ in 0..STREAMS {
                let stream = server.accept().await.expect("accept");
                let len = rng.usize(0..=MAX_LEN);
                let payload = random_bytes(&mut rng, len);
                tasks.push(smol::spawn(exchange(stream, payload)));
            }
            let mut received = 0;
            for t in tasks {
                received += t.await.expect("server side of a stream");
            }
            received
        });

        let mut rng = fastrand::Rng::with_seed(1);
        let mut tasks = Vec::new();
        let mut sent = 0;
        for _ in 0..STREAMS {
            let len = rng.usize(0..=MAX_LEN);
            let payload = random_bytes(&mut rng, len);
            sent += payload.len();
            let session = p.client.clone();
            tasks.push(smol::spawn(async move {
                let stream = session.open().await?;
                exchange(stream, payload).await
            }));
        }
        let mut received = 0;
        for t in tasks {
            received += t.await.expect("client side of a stream");
        }
        let server_received = served.await;
        assert_eq!(server_received, sent);
        println!(
            "{STREAMS} streams: {sent} bytes up, {received} bytes down in {:?}",
            start.elapsed()
        );

        // Every stream was dropped on both ends: all IDs come back.
        while p.client.stats().streams + p.server.stats().streams > 0 {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        p.client.close();
        p.client_driver.await;
        p.server_driver.await;
    });
}

/// Handles can move between tasks and threads.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<smux_smol::Session>();
    send_sync::<Stream>();
    send_sync::<smux_smol::ReadHalf>();
    send_sync::<smux_smol::WriteHalf>();
    send_sync::<smux_smol::PartialWrite>();
    send::<smux_smol::Driver<smux_smol::TcpTransport>>();
    send_sync::<smux_smol::Listener>();
}
