//! The three adapters interoperate: a Tokio session talks to a blocking session and
//! to a smol session over loopback TCP, in both roles.

mod common;

use std::io::{Read, Write};

use common::{bounded, Rng};
use smux_tokio::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAMS: u64 = 16;
const LEN: usize = 200_000;

/// Tokio side of the exchange: opens `STREAMS` streams, sends each `LEN` random
/// bytes and checks the echo.
async fn tokio_client(session: smux_tokio::Session) {
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let s = session.open().await.expect("open");
        tasks.push(tokio::spawn(async move {
            let data = Rng::new(i).bytes(LEN);
            let (mut r, mut w) = s.into_split();
            let expected = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.expect("write");
                w
            });
            let mut got = vec![0u8; LEN];
            r.read_exact(&mut got).await.expect("read echo");
            assert!(got == expected, "echo of stream {i}");
            drop(writer.await.expect("writer"));
        }));
    }
    for t in tasks {
        t.await.expect("stream");
    }
}

/// Tokio side as a server: echoes `STREAMS` streams.
async fn tokio_echo(session: smux_tokio::Session) {
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let s = session.accept().await.expect("accept");
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            tokio::io::copy(&mut r, &mut w).await.expect("echo");
        }));
    }
    for t in tasks {
        t.await.expect("echo task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_blocking_server() {
    bounded(30, "tokio -> blocking", async {
        let listener =
            smux_blocking::Listener::bind("127.0.0.1:0", smux_blocking::Config::default())
                .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (session, _) = listener.accept().expect("accept");
            let mut threads = Vec::new();
            for _ in 0..STREAMS {
                let stream = session.accept().expect("accept stream");
                threads.push(std::thread::spawn(move || {
                    std::io::copy(&mut &stream, &mut &stream).expect("echo");
                }));
            }
            for t in threads {
                t.join().expect("echo thread");
            }
        });
        let session = smux_tokio::connect(addr, Config::default())
            .await
            .expect("connect");
        tokio_client(session.clone()).await;
        tokio::task::spawn_blocking(move || server.join().expect("server"))
            .await
            .expect("join");
        // The server dropped its session: ours sees the connection end.
        assert_eq!(
            bounded(5, "client end", session.closed()).await,
            smux_tokio::EndReason::PeerClosed
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_tokio_server() {
    bounded(30, "blocking -> tokio", async {
        let listener = smux_tokio::Listener::bind("127.0.0.1:0", Config::default())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let session =
                smux_blocking::connect(addr, smux_blocking::Config::default()).expect("connect");
            let mut threads = Vec::new();
            for i in 0..STREAMS {
                let mut stream = session.open().expect("open");
                threads.push(std::thread::spawn(move || {
                    let data = Rng::new(i).bytes(LEN);
                    let writer = stream.try_clone().expect("clone");
                    let expected = data.clone();
                    let w = std::thread::spawn(move || {
                        (&writer).write_all(&data).expect("write");
                        writer
                    });
                    let mut got = vec![0u8; LEN];
                    stream.read_exact(&mut got).expect("read echo");
                    assert!(got == expected, "echo of stream {i}");
                    drop(w.join().expect("writer"));
                }));
            }
            for t in threads {
                t.join().expect("stream thread");
            }
            // Dropping a blocking session drops what is still queued (the FINs of
            // the streams just closed): write it out first.
            session
                .flush(Some(std::time::Duration::from_secs(5)))
                .expect("flush");
        });
        let (session, _) = listener.accept().await.expect("accept");
        tokio_echo(session.clone()).await;
        tokio::task::spawn_blocking(move || client.join().expect("client"))
            .await
            .expect("join");
        // (The session was kept until the client finished.)
        drop(session);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_smol_server() {
    bounded(30, "tokio -> smol", async {
        let listener =
            smux_smol::Listener::bind("127.0.0.1:0", smux_smol::Config::default()).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            smol::block_on(async move {
                let (session, driver, _) = listener.accept().await.expect("accept");
                let driver = smol::spawn(driver);
                let mut tasks = Vec::new();
                for _ in 0..STREAMS {
                    let stream = session.accept().await.expect("accept stream");
                    tasks.push(smol::spawn(async move {
                        let (r, mut w) = stream.into_split();
                        smol::io::copy(r, &mut w).await.expect("echo");
                    }));
                }
                for t in tasks {
                    t.await;
                }
                drop(session);
                driver.await;
            })
        });
        let session = smux_tokio::connect(addr, Config::default())
            .await
            .expect("connect");
        tokio_client(session.clone()).await;
        drop(session);
        tokio::task::spawn_blocking(move || server.join().expect("server"))
            .await
            .expect("join");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smol_client_tokio_server() {
    bounded(30, "smol -> tokio", async {
        let listener = smux_tokio::Listener::bind("127.0.0.1:0", Config::default())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            smol::block_on(async move {
                use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let (session, driver) = smux_smol::connect(addr, smux_smol::Config::default())
                    .await
                    .expect("connect");
                smol::spawn(driver).detach();
                let mut tasks = Vec::new();
                for i in 0..STREAMS {
                    let stream = session.open().await.expect("open");
                    tasks.push(smol::spawn(async move {
                        let data = Rng::new(i).bytes(LEN);
                        let (mut r, mut w) = stream.into_split();
                        let expected = data.clone();
                        let writer = smol::spawn(async move {
                            w.write_all(&data).await.expect("write");
                            w
                        });
                        let mut got = vec![0u8; LEN];
                        r.read_exact(&mut got).await.expect("read echo");
                        assert!(got == expected, "echo of stream {i}");
                        drop(writer.await);
                    }));
                }
                for t in tasks {
                    t.await;
                }
            })
        });
        let (session, _) = listener.accept().await.expect("accept");
        tokio_echo(session.clone()).await;
        tokio::task::spawn_blocking(move || client.join().expect("client"))
            .await
            .expect("join");
        // (The session was kept until the client finished.)
        drop(session);
    })
    .await;
}
