//! Failures: a silent peer caught by keepalive, a hostile close mid-frame, the
//! transport lost under busy streams, ending a session here, a protocol violation.
//! Every pending and later call fails, with a reason; nothing hangs.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::{Duration, Instant};

use smux_proto::{EndReason, NotSmux, ProtocolError, Role};
use smux_tests::conformance::{Adapter, Session, Stream};
use smux_tests::wire::{header, Frames, PSH};

use crate::support::{config, dial_raw, ms, pair, small_buffer_pair, tcp_pair, End, Task};

conformance!(
    keepalive_ends_a_session_whose_peer_went_silent,
    keepalive_ends_a_session_whose_peer_neither_reads_nor_sends,
    a_hostile_close_mid_frame_is_a_clear_error,
    transport_lost_under_busy_streams,
    closing_the_session_fails_every_call,
    dropping_the_last_session_handle_ends_it,
    a_protocol_violation_ends_the_session,
);

/// A raw peer that accepts and then never sends: the session ends with
/// `KeepaliveTimeout`, not before the timeout; a parked read and a parked accept fail
/// with `TimedOut`; the peer got whole frames (the SYN and PINs), then the session
/// shut the connection.
fn keepalive_ends_a_session_whose_peer_went_silent<A: Adapter>() {
    const TIMEOUT: Duration = Duration::from_millis(800);
    for ext in [true, false] {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let silent = Task::spawn(move || {
            let (mut tcp, _) = l.accept().expect("accept");
            let mut sink = Vec::new();
            let end = tcp.read_to_end(&mut sink).map(|_| ());
            (sink.len(), end.map_err(|e| e.kind()))
        });
        let cfg = config(ext)
            .with_keepalive_interval(ms(100))
            .with_keepalive_timeout(TIMEOUT);
        let start = Instant::now();
        let sess = A::connect(addr, cfg).expect("connect");
        let st = sess.open().expect("open");
        let reader = Task::spawn(move || {
            let mut buf = [0u8; 8];
            st.read(&mut buf).map_err(|e| e.kind())
        });
        let s2 = sess.clone();
        let acceptor = Task::spawn(move || s2.accept().map(|_| ()).map_err(|e| e.kind()));
        let s2 = sess.clone();
        let reason = Task::spawn(move || s2.closed()).join(30, "keepalive timeout");
        let took = start.elapsed();
        assert_eq!(reason, EndReason::KeepaliveTimeout);
        assert!(took >= TIMEOUT, "ended after {took:?}, before the timeout");
        assert_eq!(reader.join(10, "parked read"), Err(ErrorKind::TimedOut));
        assert_eq!(acceptor.join(10, "parked accept"), Err(ErrorKind::TimedOut));
        let (sunk, end) = silent.join(20, "the silent peer sees the connection end");
        assert!(
            sunk >= 14 && sunk % 7 == 0,
            "{sunk} bytes sent to the silent peer: not a SYN and PINs"
        );
        assert!(
            end.is_ok() || end == Err(ErrorKind::ConnectionReset),
            "{end:?}"
        );
        assert!(sess.open().is_err());
    }
}

/// A raw peer that neither reads nor sends, over small socket buffers: our writes
/// block (window or transport), yet the keepalive still ends the session, and the
/// blocked writes fail with `TimedOut`.
fn keepalive_ends_a_session_whose_peer_neither_reads_nor_sends<A: Adapter>() {
    for ext in [true, false] {
        let (ours, raw) = small_buffer_pair();
        let cfg = config(ext)
            .with_keepalive_interval(ms(100))
            .with_keepalive_timeout(ms(800));
        let sess = A::new_session(ours, cfg, Role::Dialer).expect("session");
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let st = sess.open().expect("open");
                Task::spawn(move || {
                    let chunk = vec![9u8; 256 * 1024];
                    let mut total = 0;
                    loop {
                        match st.write(&chunk) {
                            Ok(n) => total += n,
                            Err(e) => return (total, e.kind()),
                        }
                    }
                })
            })
            .collect();
        let s2 = sess.clone();
        let reason = Task::spawn(move || s2.closed()).join(30, "keepalive timeout");
        assert_eq!(reason, EndReason::KeepaliveTimeout);
        for w in writers {
            let (total, kind) = w.join(10, "blocked writer");
            assert_eq!(kind, ErrorKind::TimedOut, "after {total} bytes");
        }
        drop(raw);
    }
}

/// The raw peer sends a frame and a half, then closes mid-frame: first its write side
/// (end-of-file), then abruptly (a reset). The whole frame is read, then an error
/// (never a clean end-of-file); the session ends with a reason that says so.
fn a_hostile_close_mid_frame_is_a_clear_error<A: Adapter>() {
    for abrupt in [false, true] {
        let (sess, mut peer) = dial_raw::<A>(config(false));
        let st = sess.open().expect("open");
        st.write_all(b"hello").expect("write");
        let seen = peer.until(20, |f| f.cmd == PSH && &f.payload[..] == b"hello");
        let id = seen.last().expect("the PSH").id;
        let s2 = sess.clone();
        let acceptor = Task::spawn(move || s2.accept().map(|_| ()).map_err(|e| e.kind()));
        let mut frames = Frames::new();
        frames.psh(id, b"abc");
        frames.bytes(&header(PSH, id, 1000));
        frames.bytes(&[7u8; 10]);
        peer.send(&frames);
        std::thread::sleep(ms(50));
        if abrupt {
            socket2::SockRef::from(&peer.tcp)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
            drop(peer);
        } else {
            peer.tcp.shutdown(Shutdown::Write).expect("shutdown");
        }
        let mut buf = [0u8; 3];
        let r = st.read(&mut buf);
        if !abrupt {
            // The connection ended cleanly at the TCP level: the whole frame counts.
            assert_eq!(r.expect("the whole frame before the cut"), 3);
            assert_eq!(&buf, b"abc");
        }
        let e = loop {
            match st.read(&mut buf) {
                Ok(0) => panic!("a connection cut mid-frame read as a clean end-of-file"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        let s2 = sess.clone();
        let reason = Task::spawn(move || s2.closed()).join(20, "session end");
        println!("abrupt {abrupt}: read error {e}; ended: {reason}");
        if abrupt {
            assert!(
                matches!(
                    reason,
                    EndReason::Transport(_)
                        | EndReason::Protocol(ProtocolError::TruncatedFrame { .. })
                ),
                "{reason:?}"
            );
        } else {
            assert_eq!(
                reason,
                EndReason::Protocol(ProtocolError::TruncatedFrame { have: 17 })
            );
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
        }
        assert!(acceptor.join(10, "parked accept").is_err());
        assert!(sess.open().is_err());
    }
}

/// The TCP connection is shut down under a parked read, a parked write and a parked
/// accept: all fail, both sessions end with a reason, later calls fail at once, and
/// the peer's ends read what arrived, then an error (never a clean end-of-file).
fn transport_lost_under_busy_streams<A: Adapter>() {
    for ext in [true, false] {
        let (ct, st) = tcp_pair();
        let killer = ct.try_clone().expect("clone");
        let c = A::new_session(ct, config(ext), Role::Dialer).expect("session");
        let s = A::new_session(st, config(ext), Role::Acceptor).expect("session");
        let (busy, peers) = busy::<A>(&c, &s);
        std::thread::sleep(ms(200));
        killer.shutdown(Shutdown::Both).expect("shutdown");
        for (task, what) in busy.into_iter().zip(["read", "write", "accept"]) {
            let kind = task.join(20, what);
            assert!(kind.is_some(), "{what} did not fail");
        }
        let (c2, s2) = (c.clone(), s.clone());
        let rc = Task::spawn(move || c2.closed()).join(20, "dialer end");
        let rs = Task::spawn(move || s2.closed()).join(20, "acceptor end");
        for r in [&rc, &rs] {
            assert!(
                matches!(r, EndReason::PeerClosed | EndReason::Transport(_)),
                "{r:?}"
            );
        }
        assert_eq!(c.end_reason(), Some(rc));
        assert!(c.open().is_err() && c.accept().is_err());
        assert!(s.open().is_err() && s.accept().is_err());
        for p in &peers {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match p.read(&mut buf) {
                    Ok(0) => panic!("a stream of a lost connection read as a clean end-of-file"),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
}

/// Ending here with `close` fails parked calls (`NotConnected` for the read); the
/// peer sees the connection end (`PeerClosed`).
fn closing_the_session_fails_every_call<A: Adapter>() {
    for ext in [true, false] {
        let (c, s) = pair::<A>(config(ext), config(ext));
        let (busy, _peers) = busy::<A>(&c, &s);
        std::thread::sleep(ms(50));
        c.close();
        let mut busy = busy.into_iter();
        let read = busy.next().expect("reader").join(20, "parked read");
        assert_eq!(read, Some(ErrorKind::NotConnected));
        for (task, what) in busy.zip(["write", "accept"]) {
            assert!(task.join(20, what).is_some(), "{what} did not fail");
        }
        let (c2, s2) = (c.clone(), s.clone());
        assert_eq!(
            Task::spawn(move || c2.closed()).join(20, "our end"),
            EndReason::Local
        );
        assert_eq!(
            Task::spawn(move || s2.closed()).join(20, "peer's end"),
            EndReason::PeerClosed
        );
        assert!(s.accept().is_err());
    }
}

/// A clone keeps the session; dropping the last ends it: our stream fails, the peer
/// reads what arrived and then an error.
fn dropping_the_last_session_handle_ends_it<A: Adapter>() {
    for ext in [true, false] {
        let (c, s) = pair::<A>(config(ext), config(ext));
        let st = c.open().expect("open");
        st.write_all(b"hi").expect("write");
        let peer = s.accept().expect("accept");
        let clone = c.clone();
        drop(c);
        assert!(!clone.is_closed(), "a clone keeps the session");
        drop(clone);
        let mut buf = [0u8; 8];
        let st = Task::spawn(move || {
            let r = st.read(&mut buf).map_err(|e| e.kind());
            (r, st.write_all(b"more").is_err())
        });
        let (r, write_failed) = st.join(20, "our stream");
        assert!(r.is_err() && write_failed, "{r:?}");
        let mut buf = [0u8; 8];
        assert_eq!(peer.read(&mut buf).expect("what arrived"), 2);
        assert!(
            peer.read(&mut buf).is_err(),
            "a clean end-of-file of a stream never closed"
        );
        let s2 = s.clone();
        assert_eq!(
            Task::spawn(move || s2.closed()).join(20, "peer's end"),
            EndReason::PeerClosed
        );
    }
}

/// A raw peer sends a header with an undefined command: the session ends with that
/// protocol error; a parked read fails with `InvalidData`, as does `open`. A raw peer
/// that answers in HTTP ends the session with an error that names HTTP.
fn a_protocol_violation_ends_the_session<A: Adapter>() {
    for ext in [true, false] {
        let (sess, mut peer) = dial_raw::<A>(config(ext));
        let st = sess.open().expect("open");
        let reader = Task::spawn(move || {
            let mut buf = [0u8; 8];
            st.read(&mut buf).map_err(|e| e.kind())
        });
        std::thread::sleep(ms(20));
        peer.tcp.write_all(&header(200, 0, 0)).expect("write");
        let s2 = sess.clone();
        let reason = Task::spawn(move || s2.closed()).join(20, "session end");
        assert_eq!(
            reason,
            EndReason::Protocol(ProtocolError::UnknownCommand(200))
        );
        assert_eq!(reader.join(10, "parked read"), Err(ErrorKind::InvalidData));
        assert_eq!(
            sess.open().map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::InvalidData)
        );
        assert_eq!(sess.stats().protocol_errors, 1);
        let (_, end) = peer.read_to_end(20);
        assert!(matches!(end, End::Eof | End::Error(_)));

        let (sess, mut peer) = dial_raw::<A>(config(ext));
        peer.tcp
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .expect("write");
        let s2 = sess.clone();
        let reason = Task::spawn(move || s2.closed()).join(20, "session end");
        assert_eq!(
            reason,
            EndReason::Protocol(ProtocolError::NotSmux(NotSmux::Http))
        );
        assert_eq!(sess.stats().protocol_errors, 1);
        assert_eq!(
            sess.open().map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::InvalidData)
        );
    }
}

/// On `ours`: a parked read (the peer sends nothing), a parked write (the peer reads
/// nothing, the window fills) and a parked accept, each returning its error's kind
/// (`None` if it succeeded); and the peer's ends of the streams.
#[allow(clippy::type_complexity)]
fn busy<A: Adapter>(
    ours: &A::Session,
    peer: &A::Session,
) -> (Vec<Task<Option<ErrorKind>>>, Vec<A::Stream>) {
    let reading = ours.open().expect("open");
    reading.write_all(b"r").expect("write");
    let writing = ours.open().expect("open");
    writing.write_all(b"w").expect("write");
    let peers = vec![
        peer.accept().expect("accept"),
        peer.accept().expect("accept"),
    ];
    let reader = Task::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match reading.read(&mut buf) {
                Ok(0) => panic!("end-of-file instead of an error"),
                Ok(_) => {}
                Err(e) => return Some(e.kind()),
            }
        }
    });
    let writer = Task::spawn(move || {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = writing.write_all(&chunk) {
                return Some(e.kind());
            }
        }
    });
    let o = ours.clone();
    let acceptor = Task::spawn(move || o.accept().err().map(|e| e.kind()));
    (vec![reader, writer, acceptor], peers)
}
