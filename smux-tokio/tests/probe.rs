//! Peer detection with `is_smux`.

#[macro_use]
mod common;

use std::time::Duration;

use common::{bounded, config};
use smux_tokio::{is_smux, is_smux_at, Role, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// The tests below these two probe non-smux peers: no session, nothing to negotiate.
both_ways!(
    probe_an_accepted_connection_then_run_a_session_on_it,
    probe_a_listening_session,
);

const TIMEOUT: Duration = Duration::from_millis(300);

async fn probe_an_accepted_connection_then_run_a_session_on_it(ext: bool) {
    bounded(20, "probe then session", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The server probes each accepted connection, as reference servers do, and
        // wraps it in a session only if the peer speaks smux.
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let verdict = is_smux(&mut tcp, Duration::from_secs(5))
                .await
                .expect("probe");
            assert!(verdict, "our own session answers the probe");
            let session = Session::new(tcp, config(ext), Role::Acceptor).expect("session");
            let mut s = session.accept().await.expect("accept stream");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.expect("read");
            s.write_all(&buf).await.expect("echo");
            let mut rest = [0u8; 1];
            assert_eq!(s.read(&mut rest).await.expect("eof"), 0);
        });
        let client = smux_tokio::connect(addr, config(ext))
            .await
            .expect("connect");
        // The client does nothing until the probe was answered: a dialling session
        // sends nothing on its own, so the answer is the first frame.
        while client.stats().frames_received == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut s = client.open().await.expect("open");
        s.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hello");
        // The acceptor offered extensions after the stream's first frame, before the
        // echo, so a probe first does not keep two ends of ours on the base protocol.
        assert_eq!(client.extensions_enabled(), ext);
        drop(s);
        server.await.expect("server");
    })
    .await;
}

async fn probe_a_listening_session(ext: bool) {
    bounded(20, "probe a listener", async {
        let listener = smux_tokio::Listener::bind("127.0.0.1:0", config(ext))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (session, _) = listener.accept().await.expect("accept");
            session.closed().await
        });
        assert!(is_smux_at(addr, Duration::from_secs(5))
            .await
            .expect("probe"));
        // The prober hung up: the server's session ends.
        bounded(5, "server", server).await.expect("server");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_an_echo_server_is_false() {
    bounded(20, "probe echo", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let (mut r, mut w) = tcp.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        assert!(!is_smux_at(addr, TIMEOUT).await.expect("probe"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_a_silent_server_is_false() {
    bounded(20, "probe silent", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let holder = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(tcp);
        });
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        assert!(!is_smux(&mut tcp, TIMEOUT).await.expect("probe"));
        holder.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_a_server_that_hangs_up_is_false() {
    bounded(20, "probe hang-up", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            // Answers with three bytes and closes: not 7 bytes, not smux.
            let _ = tcp.write_all(b"no\n").await;
            let mut b = [0u8; 7];
            let _ = tcp.read_exact(&mut b).await;
        });
        assert!(!is_smux_at(addr, TIMEOUT).await.expect("probe"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_a_closed_port_is_an_error() {
    bounded(20, "probe closed port", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = is_smux_at(addr, TIMEOUT).await.expect_err("closed port");
        println!("closed port: {err}");
    })
    .await;
}
