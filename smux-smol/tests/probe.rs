//! `is_smux`: true against a smux session (whose connection is then used for a
//! session), false against an echo server and a silent one, an error for a closed
//! port.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use async_io::Async;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{connect, is_smux, is_smux_at, Role, Session};

use common::{both_modes, config, run};

both_modes!(probe_then_session_on_the_same_connection,);

fn listener() -> (Async<TcpListener>, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (Async::new(l).unwrap(), addr)
}

fn probe_then_session_on_the_same_connection(ext: bool) {
    run(Duration::from_secs(20), async {
        let (listener, addr) = listener();
        // The dialling side is a smux session: it answers the probe by itself.
        let (client, accepted) =
            smol::future::zip(async { connect(addr, config(ext)).await.unwrap() }, async {
                listener.accept().await.unwrap().0
            })
            .await;

        // The server probes the accepted connection, then runs a session on it.
        let mut tcp = accepted;
        assert!(is_smux(&mut tcp, Duration::from_secs(5)).await.unwrap());
        let server = Session::new(tcp, config(ext), Role::Acceptor).unwrap();

        let mut s = client.open().await.unwrap();
        s.write_all(b"after the probe").await.unwrap();
        let mut r = server.accept().await.unwrap();
        let mut buf = [0u8; 15];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"after the probe");
        r.write_all(b"ok").await.unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
        assert_eq!(client.end_reason(), None);
        assert_eq!(server.end_reason(), None);
    });
}

#[test]
fn echo_server_is_not_smux() {
    run(Duration::from_secs(20), async {
        let (listener, addr) = listener();
        smol::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                smol::spawn(async move {
                    let (r, mut w) = smol::io::split(conn);
                    let _ = smol::io::copy(r, &mut w).await;
                })
                .detach();
            }
        })
        .detach();
        for _ in 0..5 {
            assert!(!is_smux_at(addr, Duration::from_secs(5)).await.unwrap());
        }
    });
}

#[test]
fn silent_server_is_not_smux() {
    run(Duration::from_secs(20), async {
        let (listener, addr) = listener();
        let _hold = smol::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                conns.push(conn);
            }
        });
        let start = Instant::now();
        assert!(!is_smux_at(addr, Duration::from_millis(200)).await.unwrap());
        println!("silent server judged after {:?}", start.elapsed());
    });
}

#[test]
fn closed_port_is_an_error() {
    run(Duration::from_secs(20), async {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: nothing listens on `addr` any more.
        let err = is_smux_at(addr, Duration::from_secs(2))
            .await
            .expect_err("closed port");
        println!("closed port: {err}");
    });
}

#[test]
fn server_that_hangs_up_is_not_smux() {
    run(Duration::from_secs(20), async {
        let (listener, addr) = listener();
        smol::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut b = [0u8; 7];
                let _ = conn.read_exact(&mut b).await;
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        })
        .detach();
        assert!(!is_smux_at(addr, Duration::from_secs(5)).await.unwrap());
    });
}
