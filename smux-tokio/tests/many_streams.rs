//! 1,000+ concurrent streams, each moving a random amount both ways, checked by
//! checksum. With extensions on, the streams are opened at once, while the ends
//! negotiate: the first are base streams, the rest extended.

#[macro_use]
mod common;

use common::{bounded, fnv, pair_raw, Rng, FNV_START};
use smux_tokio::{Config, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_ways!(thousand_streams_both_ways);

const STREAMS: usize = 1200;
/// Largest amount one side of one stream sends; the mean is half of it.
const MAX_LEN: u64 = 3 * 1024;

fn config(ext: bool) -> Config {
    common::config(ext).with_accept_backlog(4096)
}

/// Reads exactly `len` bytes and returns their checksum.
async fn read_sum(r: &mut (impl AsyncReadExt + Unpin), mut len: usize) -> u64 {
    let mut h = FNV_START;
    let mut buf = vec![0u8; 4096];
    while len > 0 {
        let want = len.min(buf.len());
        let n = r.read(&mut buf[..want]).await.expect("read");
        assert!(n > 0, "early end-of-file with {len} bytes missing");
        h = fnv(h, &buf[..n]);
        len -= n;
    }
    h
}

/// The server side of one stream: reads the header (seed, lengths), then reads the
/// client's bytes while writing its own, checks the checksum, waits for the FIN.
async fn serve(stream: Stream) -> usize {
    let (mut r, mut w) = stream.into_split();
    let mut head = [0u8; 16];
    r.read_exact(&mut head).await.expect("header");
    let seed = u64::from_le_bytes(head[..8].try_into().unwrap());
    let up = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
    let down = u32::from_le_bytes(head[12..].try_into().unwrap()) as usize;
    let expect_up = fnv(FNV_START, &Rng::new(seed).bytes(up));
    let data = Rng::new(!seed).bytes(down);
    let writer = async move {
        w.write_all(&data).await.expect("server write");
        w
    };
    let reader = async {
        let h = read_sum(&mut r, up).await;
        assert_eq!(h, expect_up, "client->server checksum");
    };
    let (w, ()) = tokio::join!(writer, reader);
    // The client closes once it has everything: end-of-file.
    let mut one = [0u8; 1];
    assert_eq!(r.read(&mut one).await.expect("eof"), 0);
    drop(w);
    up + down
}

async fn thousand_streams_both_ways(ext: bool) {
    bounded(120, "many streams", async {
        let (client, server) = pair_raw(config(ext), config(ext)).await;
        let acceptor = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..STREAMS {
                let s = server.accept().await.expect("accept");
                tasks.push(tokio::spawn(serve(s)));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.expect("server task");
            }
            (server, total)
        });

        let mut rng = Rng::new(42);
        let mut tasks = Vec::new();
        let mut expected_total = 0;
        for i in 0..STREAMS {
            let seed = rng.next();
            let up = rng.below(MAX_LEN) as usize;
            let down = rng.below(MAX_LEN) as usize;
            expected_total += up + down;
            let stream = client.open().await.expect("open");
            tasks.push(tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let mut head = Vec::with_capacity(16 + up);
                head.extend_from_slice(&seed.to_le_bytes());
                head.extend_from_slice(&(up as u32).to_le_bytes());
                head.extend_from_slice(&(down as u32).to_le_bytes());
                head.extend_from_slice(&Rng::new(seed).bytes(up));
                let writer = async move {
                    w.write_all(&head).await.expect("client write");
                    w
                };
                let reader = async {
                    let h = read_sum(&mut r, down).await;
                    assert_eq!(
                        h,
                        fnv(FNV_START, &Rng::new(!seed).bytes(down)),
                        "server->client checksum on stream {i}"
                    );
                };
                let (w, ()) = tokio::join!(writer, reader);
                drop((r, w));
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        let (server, total) = acceptor.await.expect("acceptor");
        assert_eq!(total, expected_total);
        println!(
            "{STREAMS} streams, {:.2} MiB moved in both directions",
            total as f64 / (1 << 20) as f64
        );
        let stats = client.stats();
        assert_eq!(stats.protocol_errors, 0);
        assert_eq!(client.extensions_enabled(), ext);
        assert!(client.end_reason().is_none() && server.end_reason().is_none());
    })
    .await;
}
