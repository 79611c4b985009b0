//! What only smux-blocking has, so the conformance suite (smux-tests, `--test
//! conformance`) cannot express it: the poller (accept watches, stream events, a
//! transport that goes away under a wait), `accept_timeout` and `try_accept`, and one
//! stream shared by two threads (a write parked while another thread half-closes).
//! Everything the adapters share is tested once there, for all three.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::{bounded, config, pair, tcp_pair, wait_until};
use smux_blocking::{reset_code, EndReason, Events, Interest, Role, Session, Stream};

const LIMIT: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(10);

/// Asserts that `r` failed with a reset carrying `code`.
fn assert_reset<T: std::fmt::Debug>(r: io::Result<T>, code: u32, what: &str) {
    let e = r.expect_err(what);
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{what}: {e}");
    assert_eq!(reset_code(&e), Some(code), "{what}: {e}");
}

/// Waits until neither session holds a stream any more (every ID was freed).
fn wait_no_streams(a: &Session, b: &Session) {
    wait_until(SHORT, "every stream freed on both ends", || {
        a.stats().streams == 0 && b.stats().streams == 0
    });
}

/// A write blocked on a full window fails once another handle shuts the write side;
/// everything accepted before still reaches the peer, then end-of-file.
#[test]
fn half_close_fails_a_blocked_writer_and_keeps_what_was_accepted() {
    bounded(LIMIT, || {
        let (c, s) = pair(true);
        let st = c.open().expect("open");
        (&st).write_all(b"!").expect("first byte");
        let peer = s.accept().expect("accept");
        let writer = st.try_clone().expect("clone");
        let blocked = thread::spawn(move || {
            // The peer does not read yet: this fills the window, then blocks.
            let chunk = vec![5u8; 64 * 1024];
            let mut total = 1usize;
            loop {
                match (&writer).write(&chunk) {
                    Ok(n) => total += n,
                    Err(e) => return (total, e.kind()),
                }
            }
        });
        wait_until(SHORT, "the window is full", || st.writable_len() == 0);
        st.shutdown(Shutdown::Write).expect("half-close");
        let (accepted, kind) = blocked.join().expect("writer");
        assert_eq!(kind, ErrorKind::NotConnected);
        let mut got = Vec::new();
        (&peer).read_to_end(&mut got).expect("read to end-of-file");
        assert_eq!(got.len(), accepted, "every accepted byte, then end-of-file");
        // Our read side is still open: the peer answers after our FIN.
        (&peer).write_all(b"late answer").expect("answer");
        drop(peer);
        let mut answer = Vec::new();
        (&st).read_to_end(&mut answer).expect("answer");
        assert_eq!(answer, b"late answer");
        drop(st);
        wait_no_streams(&c, &s);
    });
}

/// A go-away: no stream can come any more, yet a blocked accept and an accept poller
/// on the other end wait until the session ends, then fail with its reason (`Drained`);
/// on the going-away end `accept_timeout` times out and `try_accept` finds nothing.
#[test]
fn accepts_and_accept_pollers_wait_through_a_go_away() {
    bounded(LIMIT, || {
        let (c, s) = pair(true);
        let a = c.open().expect("open a");
        (&a).write_all(b"a").expect("write a");
        let a_peer = s.accept().expect("accept a");
        (&a_peer).read_exact(&mut [0u8; 1]).expect("read a");

        let c2 = c.clone();
        let accepting = thread::spawn(move || c2.accept().map(|_| ()));
        let c3 = c.clone();
        let polling = thread::spawn(move || {
            let poller = c3.poller();
            poller.watch_accept(99);
            let mut events = Events::with_capacity(4);
            loop {
                poller.wait(&mut events, Some(SHORT)).expect("wait");
                if let Some(ev) = events.iter().find(|e| e.token() == 99 && e.is_accept()) {
                    return (ev.is_closed(), c3.try_accept().map(|_| ()));
                }
            }
        });

        s.go_away(77);
        let waited = s.accept_timeout(Duration::from_millis(50));
        assert_eq!(waited.expect_err("no stream").kind(), ErrorKind::TimedOut);
        assert!(s.try_accept().expect("accept").is_none());
        wait_until(SHORT, "the peer learns of the go-away", || {
            c.is_going_away()
        });
        thread::sleep(Duration::from_millis(50));
        assert!(!accepting.is_finished() && !polling.is_finished());

        drop((a, a_peer));
        assert_eq!(c.closed(), EndReason::Drained);
        assert_eq!(s.closed(), EndReason::Drained);
        let drained = EndReason::Drained.io_kind();
        let e = accepting.join().expect("accepting").expect_err("ended");
        assert_eq!(e.kind(), drained, "the blocked accept: {e}");
        let (closed, r) = polling.join().expect("polling");
        assert!(closed, "the accept poller reports the end");
        assert_eq!(r.expect_err("ended").kind(), drained, "the poller's accept");
    });
}

both_modes!(a_poller_reports_its_stream_closed_when_the_transport_goes);
/// A poller waiting (no timeout) on a stream when the TCP connection is shut down
/// reports that stream closed.
fn a_poller_reports_its_stream_closed_when_the_transport_goes(ext: bool) {
    bounded(LIMIT, move || {
        let (ct, st) = tcp_pair();
        let killer = ct.try_clone().expect("clone");
        let c = Session::new(ct, config(ext), Role::Dialer).expect("session");
        let s = Session::new(st, config(ext), Role::Acceptor).expect("session");
        let stream = c.open().expect("open");
        (&stream).write_all(b"!").expect("write");
        let _peer = s.accept().expect("accept");
        let c2 = c.clone();
        let waiter = thread::spawn(move || {
            let poller = c2.poller();
            poller
                .register(&stream, 7, Interest::READABLE)
                .expect("register");
            let mut events = Events::with_capacity(8);
            let n = poller.wait(&mut events, None).expect("wait");
            let seen: Vec<_> = events.iter().map(|e| (e.token(), e.is_closed())).collect();
            (n, seen)
        });
        thread::sleep(Duration::from_millis(50));
        killer.shutdown(Shutdown::Both).expect("shutdown");
        let (n, seen) = waiter.join().expect("poller thread");
        assert_eq!(
            (n, seen),
            (1, vec![(7, true)]),
            "the stream reported closed"
        );
        assert!(c.closed() != EndReason::Local);
    });
}

/// The poller reports a reset stream readable (read interest) and writable (write
/// interest, window full), and closed; a peer's FIN on an extended stream is
/// reported readable (end-of-file) while the stream stays writable.
#[test]
fn poller_reports_reset_and_half_closed_streams() {
    bounded(LIMIT, || {
        let (c, s) = pair(true);
        let poller = s.poller();
        let mut events = Events::with_capacity(8);
        let accept = |first: &[u8]| -> (Stream, Stream) {
            let st = c.open().expect("open");
            (&st).write_all(first).expect("write");
            let peer = s.accept().expect("accept");
            (&peer)
                .read_exact(&mut vec![0u8; first.len()])
                .expect("read");
            peer.set_nonblocking(true).expect("nonblocking");
            (st, peer)
        };
        let (r, r_peer) = accept(b"r");
        poller.register(&r_peer, 1, Interest::READABLE).unwrap();
        let (w, w_peer) = accept(b"w");
        // Fill w's window, so the stream is not writable.
        let chunk = vec![1u8; 64 * 1024];
        loop {
            match (&w_peer).write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        poller.register(&w_peer, 2, Interest::WRITABLE).unwrap();
        let n = poller
            .wait(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(n, 0, "nothing ready yet: {events:?}");

        r.reset(11);
        w.reset(12);
        let mut seen = [false; 2];
        while seen != [true, true] {
            poller.wait(&mut events, Some(SHORT)).unwrap();
            assert!(!events.is_empty(), "the resets were reported");
            for ev in &events {
                match ev.token() {
                    1 => {
                        assert!(ev.is_readable() && ev.is_closed(), "{ev:?}");
                        assert_reset((&r_peer).read(&mut [0u8; 4]), 11, "read");
                        poller.deregister(&r_peer).unwrap();
                        seen[0] = true;
                    }
                    2 => {
                        assert!(ev.is_writable() && ev.is_closed(), "{ev:?}");
                        assert_reset((&w_peer).write(b"x"), 12, "write");
                        poller.deregister(&w_peer).unwrap();
                        seen[1] = true;
                    }
                    t => panic!("unexpected token {t}"),
                }
            }
        }

        // A peer's FIN on an extended stream: readable for end-of-file, not closed,
        // and our answer still goes out.
        let (h, h_peer) = accept(b"h");
        poller.register(&h_peer, 3, Interest::READABLE).unwrap();
        (&h).write_all(b"question").unwrap();
        h.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        'eof: loop {
            poller.wait(&mut events, Some(SHORT)).unwrap();
            assert!(!events.is_empty(), "the FIN was reported");
            for ev in &events {
                assert_eq!(ev.token(), 3);
                assert!(!ev.is_closed(), "{ev:?}");
                match (&h_peer).read(&mut buf) {
                    Ok(0) => break 'eof,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
        assert_eq!(got, b"question");
        poller
            .reregister(&h_peer, 3, Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        poller.wait(&mut events, Some(SHORT)).unwrap();
        let ev = events.iter().next().expect("an event");
        assert!(
            ev.is_readable() && ev.is_writable() && !ev.is_closed(),
            "{ev:?}"
        );
        (&h_peer).write_all(b"answer").unwrap();
        h_peer.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        (&h).read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"answer");

        drop((r, r_peer, w, w_peer, h, h_peer));
        wait_no_streams(&c, &s);
    });
}
