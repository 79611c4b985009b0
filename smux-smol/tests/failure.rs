//! Session failure and keepalive: every call fails promptly once the transport is
//! gone or the peer went silent, and the drivers finish.

mod common;

use std::io;
use std::net::{Shutdown, TcpListener};
use std::time::{Duration, Instant};

use async_io::Async;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smux_smol::{connect, Config, EndReason, Role, Session};

use common::{both_modes, config, negotiate, pair, run, tcp_pair, with_ext};

both_modes!(
    transport_closed_under_active_reads_and_writes,
    silent_peer_is_detected_by_keepalive,
    keepalive_keeps_an_idle_session_alive,
    dropping_the_session_or_the_driver_ends_everything,
);

fn transport_closed_under_active_reads_and_writes(ext: bool) {
    run(Duration::from_secs(30), async {
        let (c, s) = tcp_pair().await;
        let killer = s.get_ref().try_clone().unwrap();
        let (client, cd) = Session::with_driver(c, config(ext), Role::Dialer).unwrap();
        let (server, sd) = Session::with_driver(s, config(ext), Role::Acceptor).unwrap();
        let (cd, sd) = (smol::spawn(cd), smol::spawn(sd));
        if ext {
            negotiate(&client, &server).await;
        }

        // Server: streams that write forever, and streams that never read.
        let srv = server.clone();
        let server_tasks = smol::spawn(async move {
            let mut tasks: Vec<smol::Task<io::Result<usize>>> = Vec::new();
            while let Ok(mut s) = srv.accept().await {
                let id = s.id().number();
                let srv = srv.clone();
                tasks.push(smol::spawn(async move {
                    if id % 2 == 0 {
                        let chunk = vec![1u8; 16 * 1024];
                        loop {
                            s.write_all(&chunk).await?;
                        }
                    } else {
                        // Never reads while the session lives: the client's writer
                        // fills the window and waits.
                        // Then what did arrive is still readable, and the end is an
                        // error, never a clean end-of-file.
                        srv.closed().await;
                        let mut b = vec![0u8; 64 * 1024];
                        loop {
                            if s.read(&mut b).await? == 0 {
                                return Ok(0);
                            }
                        }
                    }
                }));
            }
            tasks
        });

        // Client: a reader on the even streams, a writer on the odd ones.
        let mut client_tasks: Vec<smol::Task<io::Result<()>>> = Vec::new();
        for _ in 0..16 {
            let mut s = client.open().await.unwrap();
            assert_eq!(s.is_extended(), ext);
            s.write_all(b"x").await.unwrap();
            let id = s.id().number();
            client_tasks.push(smol::spawn(async move {
                let mut buf = vec![0u8; 8192];
                if id % 2 == 0 {
                    loop {
                        if s.read(&mut buf).await? == 0 {
                            return Err(io::Error::other("unexpected end-of-file"));
                        }
                    }
                } else {
                    loop {
                        s.write_all(&buf).await?;
                    }
                }
            }));
        }
        // A pending accept on the client too.
        let acceptor = {
            let client = client.clone();
            smol::spawn(async move { client.accept().await.map(|_| ()) })
        };

        // Let data flow, then pull the connection out from under both sessions.
        while client.stats().bytes_received < 1 << 20 {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        let start = Instant::now();
        killer.shutdown(Shutdown::Both).unwrap();

        for t in client_tasks {
            let e = t.await.expect_err("client call must fail");
            assert_ne!(e.kind(), io::ErrorKind::WouldBlock);
        }
        acceptor.await.expect_err("accept must fail");
        let client_reason = cd.await;
        let server_reason = sd.await;
        println!(
            "all client calls failed and both drivers finished {:?} after the transport \
             closed (client: {client_reason}; server: {server_reason})",
            start.elapsed()
        );
        for t in server_tasks.await {
            t.await.expect_err("server call must fail");
        }
        assert_eq!(client.end_reason(), Some(client_reason));
        assert!(server.end_reason().is_some());

        // Later calls fail at once too.
        assert!(client.open().await.is_err());
        assert!(client.accept().await.is_err());
        assert!(server.open().await.is_err());
        assert!(server.accept().await.is_err());
    });
}

fn silent_peer_is_detected_by_keepalive(ext: bool) {
    run(Duration::from_secs(30), async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Async::new(listener).unwrap();
        // A raw TCP peer that accepts and then never sends a byte.
        let silent = smol::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            smol::Timer::after(Duration::from_secs(3600)).await;
            drop(conn);
        });

        let cfg = config(ext)
            .with_keepalive_interval(Duration::from_millis(100))
            .with_keepalive_timeout(Duration::from_millis(500));
        let start = Instant::now();
        let session = connect(addr, cfg).await.unwrap();
        let mut stream = session.open().await.unwrap();
        let mut buf = [0u8; 8];
        let err = stream.read(&mut buf).await.expect_err("read must fail");
        let detected = start.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let reason = session.closed().await;
        println!(
            "silent peer detected after {detected:?} (keepalive timeout 500 ms), \
             driver finished after {:?}",
            start.elapsed()
        );
        assert_eq!(reason, EndReason::KeepaliveTimeout);
        drop(silent);
    });
}

fn keepalive_keeps_an_idle_session_alive(ext: bool) {
    run(Duration::from_secs(30), async {
        let config = with_ext(
            Config::default()
                .with_keepalive_interval(Duration::from_millis(50))
                .with_keepalive_timeout(Duration::from_millis(250)),
            ext,
        );
        let p = pair(config.clone(), config).await;
        smol::Timer::after(Duration::from_millis(1000)).await;
        assert_eq!(p.client.end_reason(), None);
        assert_eq!(p.server.end_reason(), None);
        assert!(p.client.stats().frames_received > 0, "PINs arrived");
        let mut s = p.client.open().await.unwrap();
        s.write_all(b"still here").await.unwrap();
        let mut r = p.server.accept().await.unwrap();
        let mut buf = [0u8; 10];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still here");
    });
}

fn dropping_the_session_or_the_driver_ends_everything(ext: bool) {
    run(Duration::from_secs(30), async {
        // Last session handle dropped: the driver finishes, streams fail.
        let p = pair(config(ext), config(ext)).await;
        let mut s = p.client.open().await.unwrap();
        assert_eq!(s.is_extended(), ext);
        drop(p.client);
        assert_eq!(p.client_driver.await, EndReason::Local);
        assert!(s.write_all(b"x").await.is_err());
        assert!(p.server.closed().await != EndReason::Local);

        // Driver dropped (never spawned, executor gone): every call fails.
        let (c, mut peer) = tcp_pair().await;
        let (session, driver) = Session::with_driver(c, config(ext), Role::Dialer).unwrap();
        let mut s = session.open().await.unwrap();
        let reader = {
            let session = session.clone();
            smol::spawn(async move { session.accept().await.map(|_| ()) })
        };
        smol::Timer::after(Duration::from_millis(20)).await;
        drop(driver);
        reader
            .await
            .expect_err("accept fails once the driver is gone");
        let mut buf = [0u8; 1];
        assert!(s.read(&mut buf).await.is_err());
        assert!(session.open().await.is_err());
        assert!(matches!(session.closed().await, EndReason::Transport(..)));
        // The transport went with the driver, though the session's handles live on.
        let eof = smol::future::or(async { peer.read(&mut buf).await.ok() }, async {
            smol::Timer::after(Duration::from_secs(5)).await;
            None
        });
        assert_eq!(eof.await, Some(0), "the peer sees the connection close");
    });
}
