//! Session failure: the transport goes away under active reads and writes; every call
//! fails quickly and the driver tasks end. Also: ending a session locally.

#[macro_use]
mod common;

use std::time::Duration;

use common::{bounded, config, pair};
use smux_tokio::{EndReason, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

both_ways!(
    transport_lost_under_active_streams,
    closing_the_session_fails_every_call,
    dropping_the_last_session_handle_ends_it,
    a_peer_that_breaks_the_protocol_ends_the_session,
);

/// A TCP relay between a client and a server, killed at will: the connection then
/// vanishes under both sessions.
async fn relayed_pair(ext: bool) -> (Session, Session, tokio::task::JoinHandle<()>) {
    let listener = Listener::bind("127.0.0.1:0", config(ext))
        .await
        .expect("bind");
    let server_addr = listener.local_addr().expect("addr");
    let relay = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let relay_addr = relay.local_addr().expect("addr");
    let relay_task = tokio::spawn(async move {
        let (mut a, _) = relay.accept().await.expect("relay accept");
        let mut b = TcpStream::connect(server_addr)
            .await
            .expect("relay connect");
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let (client, server) = tokio::join!(
        smux_tokio::connect(relay_addr, config(ext)),
        listener.accept()
    );
    let client = client.expect("connect");
    common::settle(&client).await;
    assert_eq!(client.extensions_enabled(), ext);
    (client, server.expect("accept").0, relay_task)
}

/// Starts, on `session`, one stream that is blocked reading and one blocked writing
/// (its peer never reads), and returns their tasks' outcomes as errors.
async fn busy_streams(
    session: &Session,
    peer: &Session,
) -> (
    tokio::task::JoinHandle<std::io::Error>,
    tokio::task::JoinHandle<std::io::Error>,
    Vec<smux_tokio::Stream>,
) {
    let mut reading = session.open().await.expect("open");
    reading.write_all(b"r").await.expect("write");
    let mut writing = session.open().await.expect("open");
    writing.write_all(b"w").await.expect("write");
    let peers = vec![
        peer.accept().await.expect("accept"),
        peer.accept().await.expect("accept"),
    ];
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match reading.read(&mut buf).await {
                Ok(0) => panic!("end-of-file instead of an error"),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    });
    let writer = tokio::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = writing.write_all(&chunk).await {
                return e;
            }
        }
    });
    (reader, writer, peers)
}

async fn transport_lost_under_active_streams(ext: bool) {
    bounded(20, "transport loss", async {
        let (client, server, relay) = relayed_pair(ext).await;
        let (reader, writer, _peers) = busy_streams(&client, &server).await;
        let acceptor = {
            let client = client.clone();
            tokio::spawn(async move { client.accept().await.map(|_| ()) })
        };
        // Let the writer fill its window, then cut the connection.
        while client.stats().buffered_out > 0 || server.stats().buffered_in < 512 * 1024 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        relay.abort();
        let _ = relay.await;

        let read_err = bounded(5, "pending read", reader).await.expect("reader");
        let write_err = bounded(5, "pending write", writer).await.expect("writer");
        let accept_err = bounded(5, "pending accept", acceptor)
            .await
            .expect("acceptor");
        println!("read: {read_err}\nwrite: {write_err}\naccept: {accept_err:?}");
        assert!(accept_err.is_err());
        // Later calls fail at once too.
        assert!(client.open().await.is_err());
        assert!(server.open().await.is_err());
        // Both drivers ended, with a reason the application can read.
        let reason = bounded(5, "client driver", client.closed()).await;
        bounded(5, "server driver", server.closed()).await;
        println!("client ended: {reason}");
        assert!(matches!(
            reason,
            EndReason::PeerClosed | EndReason::Transport(..)
        ));
        assert_eq!(client.end_reason(), Some(reason));
    })
    .await;
}

async fn closing_the_session_fails_every_call(ext: bool) {
    bounded(20, "local close", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let (reader, writer, _peers) = busy_streams(&client, &server).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.close();
        let e = bounded(5, "pending read", reader).await.expect("reader");
        assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
        bounded(5, "pending write", writer).await.expect("writer");
        assert_eq!(
            bounded(5, "client driver", client.closed()).await,
            EndReason::Local
        );
        // The peer sees the connection end.
        assert_eq!(
            bounded(5, "server driver", server.closed()).await,
            EndReason::PeerClosed
        );
        assert!(server.accept().await.is_err());
    })
    .await;
}

async fn dropping_the_last_session_handle_ends_it(ext: bool) {
    bounded(20, "drop session", async {
        let (client, server) = pair(config(ext), config(ext)).await;
        let mut s = client.open().await.expect("open");
        s.write_all(b"hi").await.expect("write");
        let mut peer = server.accept().await.expect("accept");
        let clone = client.clone();
        drop(client);
        assert!(!clone.is_closed(), "a clone keeps the session alive");
        drop(clone);
        let mut buf = [0u8; 8];
        assert!(s.read(&mut buf).await.is_err());
        assert!(s.write_all(b"more").await.is_err());
        // The peer still reads what arrived, then fails.
        assert_eq!(peer.read(&mut buf).await.expect("buffered data"), 2);
        assert!(peer.read(&mut buf).await.is_err());
        assert_eq!(
            bounded(5, "server driver", server.closed()).await,
            EndReason::PeerClosed
        );
    })
    .await;
}

async fn a_peer_that_breaks_the_protocol_ends_the_session(ext: bool) {
    bounded(20, "protocol error", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let mut sink = [0u8; 1024];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let session = smux_tokio::connect(addr, config(ext))
            .await
            .expect("connect");
        let reason = bounded(5, "session end", session.closed()).await;
        println!("ended: {reason}");
        assert!(matches!(reason, EndReason::Protocol(_)), "{reason:?}");
        assert_eq!(session.stats().protocol_errors, 1);
        let err = session.open().await.expect_err("open after the end");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    })
    .await;
}
