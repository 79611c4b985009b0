//! The protocol extensions through the std adapter, over loopback TCP: half-close,
//! reset, go-away, the fallback to the base protocol when one end has them off, and
//! what the poller reports for such streams.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::{bounded, config, pair, pair_with, wait_until, Rng};
use smux_blocking::{reset_code, EndReason, Events, Interest, Session, Stream};

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

/// Deterministic test bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng(seed).fill(&mut v);
    v
}

/// The opener sends a request and shuts its write side; the other end answers only
/// after it read the request to end-of-file; the opener reads the whole answer.
/// Both roles open once.
#[test]
fn half_close_request_then_answer_after_end_of_file() {
    bounded(LIMIT, || {
        let (c, s) = pair(true);
        for client_opens in [true, false] {
            let (opener, answerer) = if client_opens {
                (c.clone(), s.clone())
            } else {
                (s.clone(), c.clone())
            };
            let request = bytes(1, 300 * 1024);
            let answer = bytes(2, 700 * 1024);
            let (req, ans) = (request.clone(), answer.clone());
            let server = thread::spawn(move || {
                let mut st = answerer.accept().expect("accept");
                assert!(st.is_extended());
                let mut got = Vec::new();
                st.read_to_end(&mut got).expect("request to end-of-file");
                assert!(got == req, "request differs");
                // Only now, after end-of-file: the answer.
                st.write_all(&ans).expect("answer after the peer's FIN");
                st.shutdown(Shutdown::Write).expect("answer done");
            });
            let mut st = opener.open().expect("open");
            assert!(st.is_extended());
            st.write_all(&request).expect("request");
            st.shutdown(Shutdown::Write).expect("half-close");
            st.shutdown(Shutdown::Write)
                .expect("a second half-close does nothing");
            let e = st
                .write(b"more")
                .expect_err("writes end with the half-close");
            assert_eq!(e.kind(), ErrorKind::NotConnected);
            let mut got = Vec::new();
            st.read_to_end(&mut got).expect("answer to end-of-file");
            assert!(got == answer, "answer differs");
            server.join().expect("answerer");
            drop(st);
            wait_no_streams(&c, &s);
        }
        assert!(c.end_reason().is_none() && s.end_reason().is_none());
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

/// A reset reaches the peer's blocked read, its blocked write and its later calls
/// with the code; what the peer had buffered is dropped; our own calls fail locally.
#[test]
fn reset_code_reaches_the_peers_reads_and_writes() {
    bounded(LIMIT, || {
        let (c, s) = pair(true);
        let open = |first: &[u8]| -> (Stream, Stream) {
            let st = c.open().expect("open");
            (&st).write_all(first).expect("write");
            let peer = s.accept().expect("accept");
            let mut buf = vec![0u8; first.len()];
            (&peer).read_exact(&mut buf).expect("first bytes");
            (st, peer)
        };

        // The peer is blocked reading.
        let (r, r_peer) = open(b"r");
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 16];
            let res = (&r_peer).read(&mut buf);
            (res, r_peer)
        });
        thread::sleep(Duration::from_millis(20)); // usually blocked by now; either way works
        r.reset(0xDEAD_BEEF);
        let (res, r_peer) = reader.join().expect("reader");
        assert_reset(res, 0xDEAD_BEEF, "blocked read");
        assert_reset((&r_peer).write(b"x"), 0xDEAD_BEEF, "write after the reset");
        assert_reset((&r_peer).read(&mut [0u8; 4]), 0xDEAD_BEEF, "read again");
        // Our side gave the stream up.
        assert_eq!(
            (&r).write(b"x").expect_err("local").kind(),
            ErrorKind::NotConnected
        );
        r.reset(1);

        // The peer is blocked writing: we do not read, its window fills.
        let (w, w_peer) = open(b"w");
        let writer = thread::spawn(move || {
            let chunk = vec![7u8; 64 * 1024];
            loop {
                if let Err(e) = (&w_peer).write(&chunk) {
                    return (e, w_peer);
                }
            }
        });
        wait_until(SHORT, "the peer's window is full", || {
            w.readable_len() >= 512 * 1024 - 64 * 1024
        });
        w.reset(7);
        let (e, w_peer) = writer.join().expect("writer");
        assert_reset(Err::<(), _>(e), 7, "blocked write");
        assert_reset((&w_peer).read(&mut [0u8; 4]), 7, "read after the reset");

        // The peer had data buffered: the reset drops it, reads report the reset.
        let (d, d_peer) = open(b"d");
        (&d).write_all(b"never read").expect("write");
        wait_until(SHORT, "data buffered at the peer", || {
            d_peer.readable_len() == 10
        });
        d.reset(3);
        wait_until(SHORT, "the peer dropped its buffer", || {
            d_peer.readable_len() == 0
        });
        assert_reset((&d_peer).read(&mut [0u8; 16]), 3, "read of dropped data");

        drop((r, r_peer, w, w_peer, d, d_peer));
        wait_no_streams(&c, &s);
        assert!(c.end_reason().is_none() && s.end_reason().is_none());
    });
}

/// A go-away: new streams are refused both ways (an unaccepted one too); accepts wait,
/// blocked ones and accept pollers, since no stream can come any more; open streams
/// keep working to their end; then both sessions end `Drained` and the waiting accepts
/// fail with that reason.
#[test]
fn go_away_refuses_new_streams_lets_open_ones_finish_then_both_end_drained() {
    bounded(LIMIT, || {
        let (c, s) = pair(true);
        let a = c.open().expect("open a");
        (&a).write_all(b"a").expect("write a");
        let a_peer = s.accept().expect("accept a");
        (&a_peer).read_exact(&mut [0u8; 1]).expect("read a");

        // b waits in the server's backlog, not accepted.
        let b = c.open().expect("open b");
        (&b).write_all(b"b").expect("write b");
        wait_until(SHORT, "b in the backlog", || s.stats().accept_backlog == 1);

        // The client waits for streams in a blocked accept and in a poller.
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
        assert!(s.is_going_away());
        let refused = |r: io::Result<()>, what: &str| {
            assert_eq!(
                r.expect_err(what).kind(),
                ErrorKind::ConnectionRefused,
                "{what}"
            );
        };
        refused(s.open().map(|_| ()), "open on the going-away end");
        let waited = s.accept_timeout(Duration::from_millis(50));
        assert_eq!(waited.expect_err("no stream").kind(), ErrorKind::TimedOut);
        assert!(s.try_accept().expect("accept").is_none());
        wait_until(SHORT, "the peer learns of the go-away", || {
            c.is_going_away()
        });
        refused(c.open().map(|_| ()), "open on the peer");
        // The unaccepted stream was refused with a reset.
        assert_reset(
            (&b).read(&mut [0u8; 4]),
            smux_blocking::RESET_REFUSED,
            "refused stream",
        );
        drop(b);
        assert!(!accepting.is_finished() && !polling.is_finished());

        // The open stream finishes normally, both ways.
        (&a).write_all(b"request").expect("write after the go-away");
        a.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        (&a_peer).read_to_end(&mut got).expect("request");
        assert_eq!(got, b"request");
        (&a_peer).write_all(b"answer").expect("answer");
        drop(a_peer);
        let mut got = Vec::new();
        (&a).read_to_end(&mut got).expect("answer");
        assert_eq!(got, b"answer");
        drop(a);

        // Both ends drain, whichever sees the other's end of the transport first.
        assert_eq!(c.closed(), EndReason::Drained);
        assert_eq!(s.closed(), EndReason::Drained);
        // The accepts that waited fail with the session's reason.
        let drained = EndReason::Drained.io_kind();
        let e = accepting.join().expect("accepting").expect_err("ended");
        assert_eq!(e.kind(), drained, "the blocked accept: {e}");
        let (closed, r) = polling.join().expect("polling");
        assert!(closed, "the accept poller reports the end");
        assert_eq!(r.expect_err("ended").kind(), drained, "the poller's accept");
    });
}

/// One end with extensions on, the other off, in both roles: nothing is agreed, every
/// stream is a base stream, half-close fails, and reset and go-away fall back to what
/// the base protocol can do.
#[test]
fn ext_on_against_ext_off_falls_back_in_both_roles() {
    bounded(LIMIT, || {
        for client_ext in [true, false] {
            let (c, s) = pair_with(config(client_ext), config(!client_ext));
            // Frames both ways, so an acceptor with extensions has offered them.
            assert!(c.ping());
            wait_until(SHORT, "ping answered", || c.rtt().is_some());
            let st = c.open().expect("open");
            (&st).write_all(b"hi").expect("write");
            let peer = s.accept().expect("accept");
            (&peer).read_exact(&mut [0u8; 2]).expect("read");
            (&peer).write_all(b"ho").expect("answer");
            (&st).read_exact(&mut [0u8; 2]).expect("answer");
            assert!(!c.extensions_enabled() && !s.extensions_enabled());
            assert!(!st.is_extended() && !peer.is_extended());

            // No half-close: shutdown fails and sends nothing, the stream works on,
            // and closing it ends both directions.
            let e = st.shutdown(Shutdown::Write).expect_err("base stream");
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            (&peer).write_all(b"on").expect("the stream works on");
            (&st).read_exact(&mut [0u8; 2]).expect("read");
            (&st).write_all(b"last").expect("write");
            st.close();
            assert_eq!(
                (&st).read(&mut [0u8; 4]).expect_err("given up").kind(),
                ErrorKind::NotConnected
            );
            let mut got = Vec::new();
            (&peer).read_to_end(&mut got).expect("to end-of-file");
            assert_eq!(got, b"last");
            assert_eq!(
                (&peer).write(b"x").expect_err("peer closed").kind(),
                ErrorKind::BrokenPipe
            );
            drop((st, peer));

            // Reset is a close: the peer reads what was sent, then end-of-file.
            let st = s.open().expect("open");
            (&st).write_all(b"r").expect("write");
            let peer = c.accept().expect("accept");
            st.reset(9);
            let mut got = Vec::new();
            (&peer).read_to_end(&mut got).expect("no reset error");
            assert_eq!(got, b"r");
            drop((st, peer));
            wait_no_streams(&c, &s);

            // Go-away on the end with extensions: the other is not told, its new
            // stream is refused (end-of-file), the open one goes on, and once it is
            // closed the going-away end ends Drained.
            let (on, off) = if client_ext { (&c, &s) } else { (&s, &c) };
            let keep = on.open().expect("open");
            (&keep).write_all(b"k").expect("write");
            let keep_peer = off.accept().expect("accept");
            on.go_away(5);
            assert_eq!(
                on.open().expect_err("going away").kind(),
                ErrorKind::ConnectionRefused
            );
            assert!(!off.is_going_away());
            let st = off.open().expect("the base end still opens");
            let mut got = Vec::new();
            (&st).read_to_end(&mut got).expect("refused: end-of-file");
            assert!(got.is_empty());
            drop(st);
            (&keep).write_all(b"eep").expect("the open stream goes on");
            drop(keep);
            let mut got = Vec::new();
            (&keep_peer).read_to_end(&mut got).expect("to end-of-file");
            assert_eq!(got, b"keep");
            drop(keep_peer);
            assert_eq!(on.closed(), EndReason::Drained);
            assert_eq!(off.closed(), EndReason::PeerClosed);
        }
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
