//! Reading never waits on writing: with our writes stuck behind a peer that does not
//! read its socket, the frames that peer sends are still read and delivered.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use async_io::Async;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::connect;

use common::{both_modes, config, fnv, random_bytes, run};

both_modes!(frames_are_read_while_our_writes_are_blocked,);

/// A frame header as the wire carries it.
fn header(cmd: u8, id: u16, len: u32) -> [u8; 7] {
    let mut h = [0u8; 7];
    h[0] = cmd;
    h[1..3].copy_from_slice(&id.to_le_bytes());
    h[3..].copy_from_slice(&len.to_le_bytes());
    h
}

fn frames_are_read_while_our_writes_are_blocked(ext: bool) {
    const SYN: u8 = 0;
    const FIN: u8 = 1;
    const PSH: u8 = 2;
    const PEER_ID: u16 = 1000;
    run(Duration::from_secs(30), async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Async::new(listener).unwrap();
        let session = connect(addr, config(ext)).await.unwrap();
        let (mut raw, _) = listener.accept().await.unwrap();

        // Fill our side: 64 streams x 512 KiB, far more than the socket buffers hold
        // while the raw peer reads nothing.
        for _ in 0..64 {
            let mut s = session.open().await.unwrap();
            smol::spawn(async move {
                let _ = s.write_all(&vec![7u8; 512 * 1024]).await;
                s
            })
            .detach();
        }
        while session.stats().buffered_out == 0 {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        smol::Timer::after(Duration::from_millis(100)).await;

        // Now the raw peer opens a stream and sends 400 KiB on it (within the
        // window), then closes it; it still reads nothing.
        let data = random_bytes(&mut fastrand::Rng::with_seed(9), 400 * 1024);
        let mut wire = header(SYN, PEER_ID, 0).to_vec();
        for chunk in data.chunks(16 * 1024) {
            wire.extend_from_slice(&header(PSH, PEER_ID, chunk.len() as u32));
            wire.extend_from_slice(chunk);
        }
        wire.extend_from_slice(&header(FIN, PEER_ID, 0));
        raw.write_all(&wire).await.unwrap();

        let mut s = session.accept().await.unwrap();
        assert_eq!(s.id().number(), PEER_ID);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(fnv(&got), fnv(&data));
        let stats = session.stats();
        println!(
            "read {} KiB while {} KiB of our writes waited for the peer to read",
            got.len() >> 10,
            stats.buffered_out >> 10
        );
        // Our output was stuck the whole time.
        assert!(stats.buffered_out > 0);
        drop(raw);
    });
}
