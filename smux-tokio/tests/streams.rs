//! Stream behaviour: end-of-file, shutdown, split halves, echo under load, ping. Each
//! session test runs with extensions on (extended streams) and off (base protocol).

#[macro_use]
mod common;

use std::time::Duration;

use common::{bounded, config, pair, Rng};
use smux_tokio::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_ways!(
    shutdown_sends_fin_after_the_data,
    split_halves_work_from_two_tasks,
    echo_many_streams_writing_before_reading,
    dropping_a_stream_closes_it_and_ping_measures_rtt,
    graceful_session_shutdown_delivers_everything,
    dropping_the_session_delivers_everything,
    any_transport_works_even_without_vectored_writes,
);

async fn shutdown_sends_fin_after_the_data(ext: bool) {
    bounded(20, "shutdown", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let mut s = client.open().await.expect("open");
        assert_eq!(s.is_extended(), ext);
        let data = Rng::new(1).bytes(1 << 20);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                s.write_all(&data).await.expect("write");
                if ext {
                    s.shutdown().await.expect("shutdown");
                    assert!(s.write(b"x").await.is_err(), "writes fail after our FIN");
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).await.expect("read");
                    // Half-close: the peer could still write, up to its own FIN.
                    assert_eq!(rest, b"late");
                } else {
                    // No half-close in the base protocol: an error, nothing sent, and
                    // closing the stream is how it ends.
                    let e = s.shutdown().await.expect_err("shutdown of a base stream");
                    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
                    drop(s);
                }
            })
        };
        let mut peer = server.accept().await.expect("accept");
        assert_eq!(peer.is_extended(), ext);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read to end");
        assert!(got == data, "all data, then end-of-file");
        let late = peer.write_all(b"late").await;
        assert_eq!(late.is_ok(), ext, "the base protocol's FIN ends writes");
        drop(peer);
        writer.await.expect("writer");
        // The handshake completes in the background and frees the ID on both ends.
        while client.stats().streams + server.stats().streams > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

async fn split_halves_work_from_two_tasks(ext: bool) {
    bounded(20, "split", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let s = client.open().await.expect("open");
        let id = s.id();
        let (mut r, mut w) = s.into_split();
        assert_eq!((r.id(), w.id()), (id, id));
        tokio::spawn(async move {
            let peer = server.accept().await.expect("accept");
            let (mut pr, mut pw) = peer.into_split();
            tokio::io::copy(&mut pr, &mut pw).await.expect("echo");
            server
        });
        let data = Rng::new(2).bytes(3 << 20);
        let expected = data.clone();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            r.read_exact(&mut got).await.expect("read");
            assert!(got == expected);
        });
        // Writing 3 MiB before reading any echo: needs the two halves (and a driver
        // that reads while its writes are blocked).
        w.write_all(&data).await.expect("write");
        reader.await.expect("reader");
    })
    .await;
}

async fn echo_many_streams_writing_before_reading(ext: bool) {
    // The deadlock the Go reference shows with a peer that stops reading whenever its
    // writes are blocked: 64 streams each write 300 KB before reading their echo.
    bounded(60, "echo", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        tokio::spawn(async move {
            while let Ok(s) = server.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let mut tasks = Vec::new();
        for i in 0..64 {
            let mut s = client.open().await.expect("open");
            tasks.push(tokio::spawn(async move {
                let data = Rng::new(i).bytes(300_000);
                s.write_all(&data).await.expect("write");
                let mut got = vec![0u8; data.len()];
                s.read_exact(&mut got).await.expect("read");
                assert!(got == data);
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
    })
    .await;
}

async fn dropping_a_stream_closes_it_and_ping_measures_rtt(ext: bool) {
    bounded(20, "drop and ping", async {
        // Not `pair`: it pings to settle the negotiation.
        let (client, server) = common::pair_raw(config(ext), config(ext)).await;
        let mut s = client.open().await.expect("open");
        s.write_all(b"bye").await.expect("write");
        drop(s);
        let mut peer = server.accept().await.expect("accept");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"bye");

        if !ext {
            assert!(client.rtt().is_none());
            assert!(client.ping());
        } else {
            // Turning extensions on pings on its own (window tuning needs the RTT):
            // a ping may be outstanding or answered already.
            client.ping();
        }
        while client.rtt().is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let stats = client.stats();
        assert!(stats.frames_sent > 0 && stats.bytes_received > 0);
        assert_eq!(client.role(), smux_tokio::Role::Dialer);
        assert_eq!(server.role(), smux_tokio::Role::Acceptor);
    })
    .await;
}

#[tokio::test]
async fn invalid_config_is_an_error() {
    let bad = Config::default().with_window(0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = smux_tokio::connect(listener.local_addr().unwrap(), bad.clone())
        .await
        .expect_err("invalid config");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(smux_tokio::Listener::bind("127.0.0.1:0", bad.clone())
        .await
        .is_err());
    // Any transport: the error carries the ConfigError.
    let (a, _b) = tokio::io::duplex(1024);
    let err = smux_tokio::Session::new(a, bad, smux_tokio::Role::Dialer).expect_err("invalid");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<smux_tokio::ConfigError>());
    assert!(inner.is_some(), "{err:?}");
}

#[test]
fn a_session_outside_a_runtime_is_an_error() {
    let (a, _b) = tokio::io::duplex(1024);
    let err = smux_tokio::Session::new(a, Config::default(), smux_tokio::Role::Dialer)
        .expect_err("no runtime");
    assert!(err.to_string().contains("runtime"), "{err}");
}

/// Writes on four streams, closes them, then ends the session with `shutdown().await`
/// (or by dropping it): the peer still receives every byte, then end-of-file.
async fn queued_data_survives_the_session_end(wait: bool, ext: bool) {
    let (client, server) = pair(config(ext), config(ext)).await;
    let data = Rng::new(3).bytes(400_000);
    for _ in 0..4 {
        let mut s = client.open().await.expect("open");
        // Within the window (512 KiB), so the writes complete before any read.
        s.write_all(&data).await.expect("write");
        if ext {
            s.shutdown().await.expect("shutdown");
        }
        // Dropping it (base) or its end (extended) sends the FIN after the data.
    }
    if wait {
        assert_eq!(client.shutdown().await, smux_tokio::EndReason::Local);
        assert!(client.open().await.is_err());
    }
    drop(client);
    for _ in 0..4 {
        let mut peer = server.accept().await.expect("accept");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read to end");
        assert!(got == data);
    }
    assert_eq!(
        bounded(15, "server", server.closed()).await,
        smux_tokio::EndReason::PeerClosed
    );
}

async fn graceful_session_shutdown_delivers_everything(ext: bool) {
    bounded(
        20,
        "graceful shutdown",
        queued_data_survives_the_session_end(true, ext),
    )
    .await;
}

async fn dropping_the_session_delivers_everything(ext: bool) {
    bounded(20, "drop", queued_data_survives_the_session_end(false, ext)).await;
}

async fn any_transport_works_even_without_vectored_writes(ext: bool) {
    // An in-memory pipe: not TCP, and without vectored writes (the driver gathers
    // small frames into larger writes).
    bounded(30, "duplex", async {
        let (a, b) = tokio::io::duplex(16 * 1024);
        let (a, b) = (Plain(a), Plain(b));
        assert!(!tokio::io::AsyncWrite::is_write_vectored(&a));
        let client =
            smux_tokio::Session::new(a, config(ext), smux_tokio::Role::Dialer).expect("session");
        let server =
            smux_tokio::Session::new(b, config(ext), smux_tokio::Role::Acceptor).expect("session");
        common::settle(&client).await;
        assert_eq!(client.extensions_enabled(), ext);
        tokio::spawn(async move {
            while let Ok(s) = server.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let mut tasks = Vec::new();
        for i in 0..32 {
            let mut s = client.open().await.expect("open");
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(100 + i);
                for _ in 0..20 {
                    let len = 1 + rng.below(3000) as usize;
                    let data = rng.bytes(len);
                    s.write_all(&data).await.expect("write");
                    let mut got = vec![0u8; data.len()];
                    s.read_exact(&mut got).await.expect("read");
                    assert!(got == data);
                }
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
    })
    .await;
}

/// A transport that forwards reads and writes only (no vectored writes).
struct Plain<T>(T);

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Plain<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Plain<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<smux_tokio::Session>();
    check::<smux_tokio::Stream>();
    check::<smux_tokio::ReadHalf>();
    check::<smux_tokio::WriteHalf>();
    check::<smux_tokio::Listener>();
    check::<smux_tokio::PartialWrite>();
}
