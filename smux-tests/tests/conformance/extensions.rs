//! Extensions: half-close, reset codes, go-away, and `ready`; and how each falls back
//! when either end has them off.

use std::io::ErrorKind;
use std::sync::Arc;

use smux_proto::{reset_code, EndReason, OpenError, RESET_REFUSED};
use smux_tests::conformance::{Adapter, Session, Stream};
use smux_tests::{pattern_sum, pattern_vec};

use crate::support::{
    config, eventually, ms, pair, pair_unsettled, recv_sum, recv_to_end, send_pattern, soon, Task,
};

conformance!(
    half_close_then_read_the_whole_answer,
    half_close_on_a_base_stream_is_unsupported,
    reset_codes_reach_the_peer_both_ways,
    a_reset_wakes_parked_writes_and_drops_buffered_data,
    reset_and_go_away_fall_back_against_a_base_peer,
    go_away_lets_open_streams_finish_then_both_drain,
    ready_is_true_between_our_ends,
    ready_is_false_with_extensions_off_on_either_end,
);

/// Each end in turn opens a stream, sends a request larger than a window and
/// half-closes; a read parked before the half-close gets the whole answer (larger
/// than a window too), which the peer writes only once it read the request to its
/// end. A second half-close does nothing, a write after it fails, end-of-file stays
/// end-of-file, and the stream is freed on both ends.
fn half_close_then_read_the_whole_answer<A: Adapter>() {
    const REQUEST: usize = 1_500_000;
    const ANSWER: u64 = 1_200_000;
    let (c, s) = pair::<A>(config(true), config(true));
    for (opener, answerer) in [(&c, &s), (&s, &c)] {
        let answerer = answerer.clone();
        let server = Task::spawn(move || {
            let p = answerer.accept().expect("accept");
            let request = p.read_to_end().expect("read the request to its end");
            send_pattern(&p, 2, ANSWER).expect("answer");
            request
        });
        let st = opener.open().expect("open");
        assert!(st.is_extended());
        let answer = std::thread::scope(|sc| {
            let reader = sc.spawn(|| recv_to_end(&st));
            st.write_all(&pattern_vec(1, REQUEST)).expect("request");
            st.shutdown().expect("half-close");
            st.shutdown().expect("a second half-close does nothing");
            assert!(st.write(b"more").is_err(), "a write after our half-close");
            reader.join().expect("reader")
        });
        assert_eq!(answer.expect("answer"), (ANSWER, pattern_sum(2, ANSWER)));
        assert_eq!(st.read(&mut [0u8; 8]).expect("end-of-file again"), 0);
        let request = server.join(60, "answerer");
        assert!(request == pattern_vec(1, REQUEST), "request garbled");
        drop(st);
        eventually(20, "the stream freed on both ends", || {
            c.stats().streams == 0 && s.stats().streams == 0
        });
    }
    assert!(c.end_reason().is_none() && s.end_reason().is_none());
}

/// With extensions off on either end, half-close fails with `Unsupported`, sends
/// nothing, and the stream goes on both ways (beyond a window); once one end closes
/// it, the other reads end-of-file and its writes fail (`BrokenPipe`).
fn half_close_on_a_base_stream_is_unsupported<A: Adapter>() {
    const BULK: u64 = 1_200_000;
    for dialer_off in [true, false] {
        let (c, s) = pair::<A>(config(!dialer_off), config(dialer_off));
        let a = c.open().expect("open");
        a.write_all(b"a").expect("write");
        let b = s.accept().expect("accept");
        assert!(!a.is_extended() && !b.is_extended());
        let e = a.shutdown().expect_err("half-close of a base stream");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf[..1]).expect("first byte");
        // Nothing was sent: no end-of-file, and the stream still carries data.
        let e = b
            .read_for(&mut buf, ms(200))
            .expect_err("end-of-file after a refused half-close");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        // Beyond a window each way, between an end with extensions and one without.
        std::thread::scope(|sc| {
            sc.spawn(|| send_pattern(&a, 5, BULK).expect("bulk write"));
            sc.spawn(|| send_pattern(&b, 6, BULK).expect("bulk write back"));
            sc.spawn(|| assert_eq!(recv_sum(&b, BULK).expect("bulk"), pattern_sum(5, BULK)));
            assert_eq!(recv_sum(&a, BULK).expect("bulk back"), pattern_sum(6, BULK));
        });
        a.write_all(b"b")
            .expect("write after the refused half-close");
        b.read_exact(&mut buf[..1]).expect("read");
        assert_eq!(buf[0], b'b');
        b.write_all(b"c").expect("write back");
        a.read_exact(&mut buf[..1]).expect("read back");
        assert_eq!(buf[0], b'c');
        drop(a);
        assert_eq!(b.read(&mut buf).expect("end-of-file after the close"), 0);
        let e = b.write(b"x").expect_err("a write after the peer's close");
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
    }
}

/// The acceptor resets: every call of the dialer reports the code, the acceptor's own
/// calls fail with none. Then the dialer resets while the acceptor's read is parked
/// (it wakes with the code), and resets a stream on which its own read is parked (it
/// wakes, `NotConnected`).
fn reset_codes_reach_the_peer_both_ways<A: Adapter>() {
    let (c, s) = pair::<A>(config(true), config(true));
    let a = c.open().expect("open");
    a.write_all(b"hi").expect("write");
    let b = s.accept().expect("accept");
    let mut buf = [0u8; 8];
    b.read_exact(&mut buf[..2]).expect("read");
    b.reset(0xB0B).expect("reset");
    let e = a.read(&mut buf).expect_err("read of a reset stream");
    assert_eq!(
        (e.kind(), reset_code(&e)),
        (ErrorKind::ConnectionReset, Some(0xB0B)),
        "{e}"
    );
    let e = a.write(b"x").expect_err("write to a reset stream");
    assert_eq!(
        (e.kind(), reset_code(&e)),
        (ErrorKind::ConnectionReset, Some(0xB0B)),
        "{e}"
    );
    // Every later call of the peer reports the code too: a read again, a half-close,
    // a deadline-bound write (nothing written).
    let code = |e: std::io::Error| (e.kind(), reset_code(&e));
    let again = a.read(&mut buf).map_err(code);
    assert_eq!(again, Err((ErrorKind::ConnectionReset, Some(0xB0B))));
    let shut = a.shutdown().map_err(code);
    assert_eq!(shut, Err((ErrorKind::ConnectionReset, Some(0xB0B))));
    let p = a
        .write_all_before(b"x", soon(5))
        .expect_err("a deadline-bound write to a reset stream");
    assert_eq!(p.written(), 0, "{p}");
    let e = a
        .write_all_before_io(b"x", soon(5))
        .expect_err("a deadline-bound write to a reset stream");
    assert_eq!(code(e), (ErrorKind::ConnectionReset, Some(0xB0B)));
    // Our own calls after our reset fail here, with no code: the reset was ours.
    let ours = [b.read(&mut buf).map(|_| ()), b.write(b"y").map(|_| ())];
    for r in ours {
        assert_eq!(r.map_err(code), Err((ErrorKind::NotConnected, None)));
    }

    let a = c.open().expect("open");
    a.write_all(b"x").expect("write");
    let b = s.accept().expect("accept");
    let (tx, rx) = std::sync::mpsc::channel();
    let parked = Task::spawn(move || {
        let mut buf = [0u8; 8];
        b.read_exact(&mut buf[..1]).expect("first byte");
        tx.send(()).expect("signal");
        let read = b.read(&mut buf).expect_err("parked read of a reset stream");
        let write = b.write(b"y").expect_err("write to a reset stream");
        [read, write].map(|e| (e.kind(), reset_code(&e)))
    });
    rx.recv().expect("reader started");
    std::thread::sleep(ms(50));
    a.reset(0xA11CE).expect("reset");
    let got = parked.join(20, "parked read");
    assert_eq!(got, [(ErrorKind::ConnectionReset, Some(0xA11CE)); 2]);

    // A read parked on our own stream wakes when another thread resets it.
    let a = Arc::new(c.open().expect("open"));
    a.write_all(b"?").expect("write");
    let _b = s.accept().expect("accept");
    let a2 = a.clone();
    let mut parked = Task::spawn(move || {
        let mut buf = [0u8; 8];
        a2.read(&mut buf).map_err(|e| (e.kind(), reset_code(&e)))
    });
    std::thread::sleep(ms(50));
    assert!(!parked.is_finished(), "the read did not park");
    a.reset(9).expect("reset");
    let got = parked.join(20, "our parked read");
    assert_eq!(got, Err((ErrorKind::NotConnected, None)));
}

/// A reset wakes the peer's write parked on a full window (with the code), drops the
/// data the peer had buffered unread, and aborts the peer's answer after our
/// half-close; then every stream is freed on both ends.
fn a_reset_wakes_parked_writes_and_drops_buffered_data<A: Adapter>() {
    let (c, s) = pair::<A>(config(true), config(true));
    let reset = |e: std::io::Error| (e.kind(), reset_code(&e));

    let a = c.open().expect("open");
    a.write_all(b"!").expect("write");
    let b = s.accept().expect("accept");
    let writer = Task::spawn(move || {
        let chunk = vec![7u8; 64 * 1024];
        loop {
            if let Err(e) = b.write_all(&chunk) {
                return (e, b);
            }
        }
    });
    eventually(20, "our window is full", || {
        c.stats().buffered_in >= 512 * 1024 - 64 * 1024
    });
    a.reset(7).expect("reset");
    let (e, b) = writer.join(20, "the peer's parked write");
    assert_eq!(reset(e), (ErrorKind::ConnectionReset, Some(7)));
    let e = b.read(&mut [0u8; 16]).expect_err("a read after the reset");
    assert_eq!(reset(e), (ErrorKind::ConnectionReset, Some(7)));
    drop((a, b));

    let a = c.open().expect("open");
    a.write_all(b"never read").expect("write");
    let b = s.accept().expect("accept");
    eventually(20, "data buffered at the peer", || {
        s.stats().buffered_in == 10
    });
    a.reset(3).expect("reset");
    eventually(20, "the peer dropped it", || s.stats().buffered_in == 0);
    let e = b.read(&mut [0u8; 16]).expect_err("read of dropped data");
    assert_eq!(reset(e), (ErrorKind::ConnectionReset, Some(3)));
    drop((a, b));

    let a = c.open().expect("open");
    a.write_all(b"question").expect("write");
    a.shutdown().expect("half-close");
    let b = s.accept().expect("accept");
    assert_eq!(b.read_to_end().expect("question"), b"question");
    a.reset(5).expect("reset");
    let e = loop {
        if let Err(e) = b.write_all(&[0u8; 4096]) {
            break e;
        }
    };
    assert_eq!(reset(e), (ErrorKind::ConnectionReset, Some(5)));
    drop((a, b));

    eventually(20, "every stream freed", || {
        c.stats().streams == 0 && s.stats().streams == 0
    });
    assert!(c.end_reason().is_none() && s.end_reason().is_none());
}

/// One end with extensions off, in both roles: a reset is a close (the peer reads the
/// data, then end-of-file), and a go-away on the end with extensions only refuses the
/// base end's new streams (end-of-file, then writes fail); the open stream goes on, then the going-away
/// end ends `Drained` and the base end sees the connection close.
fn reset_and_go_away_fall_back_against_a_base_peer<A: Adapter>() {
    for dialer_ext in [true, false] {
        let (c, s) = pair::<A>(config(dialer_ext), config(!dialer_ext));
        let st = s.open().expect("open");
        st.write_all(b"r").expect("write");
        let peer = c.accept().expect("accept");
        st.reset(9).expect("reset");
        assert_eq!(peer.read_to_end().expect("no reset error"), b"r");
        drop((st, peer));

        let (on, off) = if dialer_ext { (&c, &s) } else { (&s, &c) };
        let keep = on.open().expect("open");
        keep.write_all(b"k").expect("write");
        let keep_peer = off.accept().expect("accept");
        on.go_away(5);
        let e = on.open().expect_err("open after our go-away");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        assert!(!off.is_going_away(), "a base end is not told");
        let refused = off.open().expect("the base end still opens");
        assert_eq!(refused.read_to_end().expect("refused: end-of-file"), b"");
        let e = refused
            .write(b"r")
            .expect_err("a write to a refused stream");
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
        drop(refused);
        keep.write_all(b"eep").expect("the open stream goes on");
        drop(keep);
        assert_eq!(keep_peer.read_to_end().expect("to end-of-file"), b"keep");
        drop(keep_peer);
        let (on2, off2) = (on.clone(), off.clone());
        assert_eq!(
            Task::spawn(move || on2.closed()).join(20, "going away"),
            EndReason::Drained
        );
        assert_eq!(
            Task::spawn(move || off2.closed()).join(20, "base end"),
            EndReason::PeerClosed
        );
    }
}

/// One end goes away (each end in turn): new opens fail on both ends, the backlog of
/// the end that went away is refused (RESET_REFUSED), the open stream finishes both
/// ways, and both sessions end `Drained`.
fn go_away_lets_open_streams_finish_then_both_drain<A: Adapter>() {
    for acceptor_goes in [true, false] {
        let (c, s) = pair::<A>(config(true), config(true));
        let open = c.open().expect("open");
        open.write_all(b"first part, ").expect("write");
        let peer = s.accept().expect("accept");
        let waiting = c.open().expect("open");
        waiting.write_all(b"w").expect("write");
        eventually(20, "backlog", || s.stats().accept_backlog == 1);

        let (going, other) = if acceptor_goes { (&s, &c) } else { (&c, &s) };
        going.go_away(5);
        assert!(going.is_going_away());
        eventually(20, "the go-away arrives", || other.is_going_away());
        for end in [&c, &s] {
            let e = end.open().expect_err("open after a go-away");
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<OpenError>());
            assert_eq!(inner, Some(&OpenError::GoingAway), "{e:?}");
        }
        let mut b = [0u8; 1];
        if acceptor_goes {
            let e = waiting.read(&mut b).expect_err("a refused stream");
            assert_eq!(
                (e.kind(), reset_code(&e)),
                (ErrorKind::ConnectionReset, Some(RESET_REFUSED)),
                "{e}"
            );
        } else {
            let w = s.accept().expect("the peer's go-away leaves our backlog");
            w.read_exact(&mut b).expect("read");
            assert_eq!(&b, b"w");
        }
        drop(waiting);

        let server = Task::spawn(move || {
            let mut request = peer.read_to_end().expect("request");
            request.reverse();
            peer.write_all(&request).expect("answer");
        });
        open.write_all(b"second part").expect("write");
        open.shutdown().expect("half-close");
        let answer = open.read_to_end().expect("answer");
        assert_eq!(answer, b"trap dnoces ,trap tsrif");
        server.join(20, "server side");
        assert!(c.end_reason().is_none(), "a stream is still open");
        drop(open);
        let (c2, s2) = (c.clone(), s.clone());
        let ends = [
            Task::spawn(move || c2.closed()),
            Task::spawn(move || s2.closed()),
        ];
        for (end, who) in ends.into_iter().zip(["dialer", "acceptor"]) {
            assert_eq!(end.join(20, who), EndReason::Drained, "{who}");
        }
    }
}

/// Two ends with extensions on agree: `ready` is true on both, streams are extended.
fn ready_is_true_between_our_ends<A: Adapter>() {
    let (c, s) = pair_unsettled::<A>(config(true), config(true));
    assert!(c.ready().expect("dialer ready"));
    assert!(s.ready().expect("acceptor ready"));
    assert!(c.extensions_enabled() && s.extensions_enabled());
    let a = c.open().expect("open");
    a.write_all(b"x").expect("write");
    let b = s.accept().expect("accept");
    assert!(a.is_extended() && b.is_extended());
}

/// Extensions off on either end (or both): `ready` is false on both ends, streams are
/// base streams, data flows.
fn ready_is_false_with_extensions_off_on_either_end<A: Adapter>() {
    for (dialer, acceptor) in [(false, true), (true, false), (false, false)] {
        let (c, s) = pair_unsettled::<A>(config(dialer), config(acceptor));
        let case = format!("dialer extensions {dialer}, acceptor {acceptor}");
        assert!(!c.ready().expect("dialer ready"), "{case}");
        assert!(!s.ready().expect("acceptor ready"), "{case}");
        assert!(!c.extensions_enabled() && !s.extensions_enabled(), "{case}");
        let a = c.open().expect("open");
        a.write_all(b"x").expect("write");
        let b = s.accept().expect("accept");
        let mut buf = [0u8; 1];
        b.read_exact(&mut buf).expect("read");
        assert!(!a.is_extended() && !b.is_extended(), "{case}");
    }
}
