//! Session failure and keepalive: calls fail promptly and the session's threads exit.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{bounded, config, tcp_pair};
use smux_blocking::{EndReason, Events, Interest, Role, Session};

both_modes!(transport_shut_down_under_active_reads_and_writes);
fn transport_shut_down_under_active_reads_and_writes(ext: bool) {
    bounded(Duration::from_secs(60), move || {
        let (ct, st) = tcp_pair();
        let killer = ct.try_clone().expect("clone");
        let c = Session::new(ct, config(ext), Role::Dialer).unwrap();
        let s = Session::new(st, config(ext), Role::Acceptor).unwrap();

        // Four streams the client reads (the server sends nothing) and four it writes
        // (the server does not read, so the writers block on the window).
        let (done_tx, done_rx) = mpsc::channel();
        let mut server_side = Vec::new();
        for i in 0..8 {
            let st = c.open().unwrap();
            (&st).write_all(b"!").unwrap();
            server_side.push(s.accept().unwrap());
            let done = done_tx.clone();
            thread::spawn(move || {
                let r = if i % 2 == 0 {
                    let mut buf = [0u8; 1024];
                    (&st).read(&mut buf).map(|_| ())
                } else {
                    let chunk = vec![1u8; 64 * 1024];
                    loop {
                        if let Err(e) = (&st).write(&chunk) {
                            break Err(e);
                        }
                    }
                };
                done.send(("stream", r.err().map(|e| e.kind()))).unwrap();
            });
        }
        // A blocked accept and a blocked poller.
        let c2 = c.clone();
        let done = done_tx.clone();
        thread::spawn(move || {
            let r = c2.accept().err().map(|e| e.kind());
            done.send(("accept", r)).unwrap();
        });
        let c3 = c.clone();
        let done = done_tx.clone();
        let probe_stream = c.open().unwrap();
        server_side.push(s.accept().unwrap());
        thread::spawn(move || {
            let poller = c3.poller();
            poller
                .register(&probe_stream, 7, Interest::READABLE)
                .unwrap();
            let mut events = Events::with_capacity(8);
            let n = poller.wait(&mut events, None).unwrap();
            let closed = n == 1 && events.iter().all(|e| e.token() == 7 && e.is_closed());
            done.send(("poller", (!closed).then_some(ErrorKind::Other)))
                .unwrap();
            drop(probe_stream);
        });
        drop(done_tx);
        thread::sleep(Duration::from_millis(50));

        let start = Instant::now();
        killer.shutdown(Shutdown::Both).unwrap();
        let mut failures = 0;
        for (what, kind) in done_rx.iter() {
            assert!(
                kind.is_some() || what == "poller",
                "{what} did not fail after the transport was shut down"
            );
            if what == "poller" {
                assert_eq!(kind, None, "poller did not report the stream closed");
            }
            failures += 1;
        }
        assert_eq!(failures, 10);
        // Every session thread exits, on both ends.
        c.closed();
        s.closed();
        println!(
            "all calls failed and all threads exited {:?} after the shutdown",
            start.elapsed()
        );
        assert!(c.end_reason().is_some());
        assert!(s.end_reason().is_some());
        assert!(c.open().is_err());
        assert!(s.accept().is_err());
        drop(server_side);
    });
}

both_modes!(a_silent_peer_is_detected_by_keepalive);
fn a_silent_peer_is_detected_by_keepalive(ext: bool) {
    bounded(Duration::from_secs(30), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let silent = thread::spawn(move || {
            // Accepts and then says nothing; reads whatever comes so writes never block.
            let (mut tcp, _) = l.accept().unwrap();
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink);
            sink.len()
        });
        let cfg = config(ext)
            .with_keepalive_interval(Duration::from_millis(50))
            .with_keepalive_timeout(Duration::from_millis(300));
        let start = Instant::now();
        let c = smux_blocking::connect(addr, cfg).unwrap();
        let e = c.accept().expect_err("accept ends with the session");
        let took = start.elapsed();
        assert_eq!(c.end_reason(), Some(EndReason::KeepaliveTimeout));
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        c.closed();
        // The session shut the transport down, so the silent end sees end-of-file.
        let sunk = silent.join().unwrap();
        println!("silent peer detected after {took:?}; it was sent {sunk} bytes of PINs");
        assert!(sunk > 0 && sunk % 7 == 0);
    });
}

both_modes!(live_peers_keep_each_other_alive_with_short_keepalive);
fn live_peers_keep_each_other_alive_with_short_keepalive(ext: bool) {
    bounded(Duration::from_secs(30), move || {
        let cfg = config(ext)
            .with_keepalive_interval(Duration::from_millis(50))
            .with_keepalive_timeout(Duration::from_millis(300));
        let (c, s) = common::pair_with(cfg.clone(), cfg);
        thread::sleep(Duration::from_millis(1000));
        assert_eq!(c.end_reason(), None);
        assert_eq!(s.end_reason(), None);
        assert!(c.stats().frames_received > 0, "PINs arrived");
    });
}

both_modes!(a_peer_that_neither_reads_nor_sends_is_detected_while_our_writes_block);
fn a_peer_that_neither_reads_nor_sends_is_detected_while_our_writes_block(ext: bool) {
    bounded(Duration::from_secs(60), move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let peer = thread::spawn(move || {
            // Accepts, then neither reads nor writes until told to go.
            let (tcp, _) = l.accept().unwrap();
            let _ = rx.recv();
            drop(tcp);
        });
        let cfg = config(ext)
            .with_keepalive_interval(Duration::from_millis(100))
            .with_keepalive_timeout(Duration::from_millis(600));
        let c = smux_blocking::connect(addr, cfg).unwrap();
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let st = c.open().unwrap();
                thread::spawn(move || {
                    let chunk = vec![9u8; 256 * 1024];
                    let mut total = 0usize;
                    loop {
                        match (&st).write(&chunk) {
                            Ok(n) => total += n,
                            Err(e) => return (total, e.kind()),
                        }
                    }
                })
            })
            .collect();
        let reason = c.closed();
        assert_eq!(reason, EndReason::KeepaliveTimeout);
        for w in writers {
            let (total, kind) = w.join().unwrap();
            println!("writer stopped after {total} bytes: {kind:?}");
            assert_eq!(kind, ErrorKind::TimedOut);
        }
        tx.send(()).unwrap();
        peer.join().unwrap();
    });
}

both_modes!(a_protocol_violation_ends_the_session);
fn a_protocol_violation_ends_the_session(ext: bool) {
    bounded(Duration::from_secs(30), move || {
        let (ct, mut raw) = tcp_pair();
        let c = Session::new(ct, config(ext), Role::Dialer).unwrap();
        let st = c.open().unwrap();
        let blocked = thread::spawn(move || {
            let mut buf = [0u8; 8];
            (&st).read(&mut buf).map_err(|e| e.kind())
        });
        // A header with a command byte the protocol does not define.
        raw.write_all(&[9, 0, 0, 0, 0, 0, 0]).unwrap();
        let reason = c.closed();
        assert!(
            matches!(
                reason,
                EndReason::Protocol(smux_proto::ProtocolError::UnknownCommand(9))
            ),
            "{reason:?}"
        );
        assert_eq!(blocked.join().unwrap(), Err(ErrorKind::InvalidData));
        // The session shut the connection down.
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
    });
}

both_modes!(dropping_the_last_session_handle_ends_the_session);
fn dropping_the_last_session_handle_ends_the_session(ext: bool) {
    bounded(Duration::from_secs(30), move || {
        let (ct, mut raw) = tcp_pair();
        let c = Session::new(ct, config(ext), Role::Dialer).unwrap();
        let st = c.open().unwrap();
        drop(c);
        // The transport is shut down: the raw peer reads the SYN (and, with
        // extensions on, the ASK behind it) if they were sent, then end-of-file.
        let mut got = Vec::new();
        raw.read_to_end(&mut got).unwrap();
        assert!(got.len() <= if ext { 14 } else { 7 }, "{got:?}");
        assert!((&st).write(b"x").is_err());
    });
}
