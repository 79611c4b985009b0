//! One body per row of the adapter spec's behaviour table (docs/ARCHITECTURE.md):
//! what every adapter does the same way.

use std::io::{self, ErrorKind, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use smux_proto::{reset_code, ConfigError, EndReason, ProtocolError, Role, SessionEnded};
use smux_tests::conformance::{Adapter, Session, Stream};
use smux_tests::pattern_sum;
use smux_tests::wire::{header, FIN, PSH};

use crate::support::{
    config, dial_raw, eventually, ms, pair, raw_peer_of, send_pattern, small_buffer_pair, soon,
    tally, tcp_pair, End, RawPeer, Task,
};

conformance!(
    accept_during_a_go_away_waits_then_fails_with_the_reason,
    calls_on_a_stream_closed_or_reset_here_fail_not_connected,
    drains_the_transport_after_our_own_clean_end,
    does_not_drain_after_the_peer_broke_the_protocol,
    close_drops_queued_frames,
    shutdown_writes_out_queued_frames,
    a_graceful_close_wakes_parked_writes_and_accepts_at_once,
    partial_write_into_io_error_keeps_the_count,
    partial_write_is_the_cores,
    interrupted_is_retried,
    dropping_the_last_session_lingers_to_write_out,
    a_bad_config_is_invalid_input_with_the_config_error,
    reset_is_a_no_op_once_released,
);

/// Streams of 450 kB each (under a window) that a raw peer does not read at first.
const QUEUED: u64 = 450_000;
const QUEUED_STREAMS: u64 = 4;

/// A session over small socket buffers to a raw peer that reads nothing yet, with
/// `QUEUED_STREAMS` streams of `QUEUED` bytes written (accepted, mostly still queued
/// in the session); and how much the two sockets' kernel buffers hold at most.
fn queued<A: Adapter>() -> (A::Session, Vec<A::Stream>, RawPeer, u64) {
    let (ours, raw) = small_buffer_pair();
    let sent = socket2::SockRef::from(&ours)
        .send_buffer_size()
        .expect("SO_SNDBUF");
    let received = socket2::SockRef::from(&raw)
        .recv_buffer_size()
        .expect("SO_RCVBUF");
    // Small frames, so that what the kernel holds is counted finely.
    let cfg = config(false).with_max_frame(16 * 1024);
    let (sess, peer) = raw_peer_of::<A>(ours, raw, cfg);
    let streams: Vec<_> = (0..QUEUED_STREAMS)
        .map(|i| {
            let st = sess.open().expect("open");
            send_pattern(&st, 50 + i, QUEUED).expect("accepted without the peer reading");
            st
        })
        .collect();
    std::thread::sleep(ms(200));
    (sess, streams, peer, (sent + received) as u64)
}

/// Checks that the raw peer got every queued stream whole (and its FIN if `fins`).
fn all_written_out(frames: &[smux_tests::wire::Frame], fins: bool) {
    let got = tally(frames);
    assert_eq!(got.len() as u64, QUEUED_STREAMS, "{got:?}");
    for (i, (id, (len, sum))) in got.iter().enumerate() {
        assert_eq!(*len, QUEUED, "stream {id}: bytes");
        assert_eq!(
            *sum,
            pattern_sum(50 + i as u64, QUEUED),
            "stream {id}: garbled"
        );
        let fin = frames.iter().any(|f| f.cmd == FIN && f.id == *id);
        assert_eq!(fin, fins, "stream {id}: FIN");
    }
}

/// Row "accept during a go-away": waits until the session ends, then fails with its
/// reason (both the end that went away and its peer).
fn accept_during_a_go_away_waits_then_fails_with_the_reason<A: Adapter>() {
    let (c, s) = pair::<A>(config(true), config(true));
    let a = c.open().expect("open");
    a.write_all(b"x").expect("write");
    let b = s.accept().expect("accept");
    s.go_away(1);
    eventually(20, "the go-away arrives", || c.is_going_away());
    let (s2, c2) = (s.clone(), c.clone());
    let mut ours = Task::spawn(move || s2.accept().map(|_| ()));
    let mut theirs = Task::spawn(move || c2.accept().map(|_| ()));
    std::thread::sleep(ms(300));
    let waited = (!ours.is_finished(), !theirs.is_finished());
    drop((a, b));
    let results = [
        ours.join(20, "our accept"),
        theirs.join(20, "peer's accept"),
    ];
    let (s2, c2) = (s.clone(), c.clone());
    assert_eq!(
        Task::spawn(move || s2.closed()).join(20, "our end"),
        EndReason::Drained
    );
    assert_eq!(
        Task::spawn(move || c2.closed()).join(20, "peer's end"),
        EndReason::Drained
    );
    assert_eq!(
        waited,
        (true, true),
        "accept returned during the go-away: {results:?}"
    );
    for r in results {
        let e = r.expect_err("accept after the end");
        let reason = e.get_ref().and_then(|i| i.downcast_ref::<SessionEnded>());
        assert_eq!(reason, Some(&SessionEnded(EndReason::Drained)), "{e:?}");
    }
}

/// Row "a call on a stream this end closed or reset": `NotConnected`, for reads and
/// writes (with and without deadlines) after a reset, and writes after a half-close.
fn calls_on_a_stream_closed_or_reset_here_fail_not_connected<A: Adapter>() {
    for ext in [true, false] {
        let (c, s) = pair::<A>(config(ext), config(ext));
        let a = c.open().expect("open");
        a.write_all(b"x").expect("write");
        let _b = s.accept().expect("accept");
        a.reset(9).expect("reset");
        let mut buf = [0u8; 4];
        let calls = [
            ("read", a.read(&mut buf).map(|_| ())),
            ("write", a.write(b"y").map(|_| ())),
            ("read_before", a.read_before(&mut buf, soon(5)).map(|_| ())),
            (
                "write_all_before",
                a.write_all_before(b"y", soon(5))
                    .map_err(|p| p.into_error()),
            ),
        ];
        for (what, r) in calls {
            let e = r.expect_err(what);
            assert_eq!(
                e.kind(),
                ErrorKind::NotConnected,
                "ext {ext}: {what} after reset: {e}"
            );
        }
        if ext {
            let a = c.open().expect("open");
            a.shutdown().expect("half-close");
            let e = a.write(b"z").expect_err("write after half-close");
            assert_eq!(
                e.kind(),
                ErrorKind::NotConnected,
                "write after half-close: {e}"
            );
        }
    }
}

/// Row "drains the transport after the session ends": after our own clean end the
/// session reads (and drops) what the peer still sends until it closes, so the peer's
/// connection is never reset.
fn drains_the_transport_after_our_own_clean_end<A: Adapter>() {
    let (sess, mut peer) = dial_raw::<A>(config(false));
    let st = sess.open().expect("open");
    st.write_all(b"x").expect("write");
    sess.close();
    let (_, end) = peer.read_to_end(20);
    assert_eq!(end, End::Eof, "our write side ends cleanly");
    let s2 = sess.clone();
    let closed = Task::spawn(move || s2.closed());
    let junk = vec![0xABu8; 64 * 1024];
    let first = peer.tcp.write_all(&junk);
    std::thread::sleep(ms(100));
    let second = peer.tcp.write_all(&junk);
    let shut = peer.tcp.shutdown(std::net::Shutdown::Write);
    let (_, after) = peer.read_to_end(20);
    assert_eq!(closed.join(20, "session end"), EndReason::Local);
    assert!(
        first.is_ok() && second.is_ok() && shut.is_ok(),
        "the peer's connection was closed under it: not drained ({first:?}, {second:?}, {shut:?})"
    );
    assert_eq!(
        after,
        End::Eof,
        "the peer's connection was reset: not drained"
    );
}

/// Same row, the other case: after the peer broke the protocol the session closes the
/// transport at once (no draining): the peer's next writes fail.
fn does_not_drain_after_the_peer_broke_the_protocol<A: Adapter>() {
    let (sess, mut peer) = dial_raw::<A>(config(false));
    peer.tcp.write_all(&header(200, 0, 0)).expect("write");
    let (_, _end) = peer.read_to_end(20);
    let start = Instant::now();
    let mut failed = None;
    while failed.is_none() && start.elapsed() < Duration::from_secs(1) {
        if let Err(e) = peer.tcp.write_all(&[0xAB; 1024]) {
            failed = Some(e.kind());
        }
        std::thread::sleep(ms(20));
    }
    let s2 = sess.clone();
    let reason = Task::spawn(move || s2.closed()).join(20, "session end");
    assert_eq!(
        reason,
        EndReason::Protocol(ProtocolError::UnknownCommand(200))
    );
    assert!(
        failed.is_some(),
        "the peer could still write 1 s after the protocol error: the session drained"
    );
}

/// Row "frames still buffered on Session::close": dropped (close is hard). What
/// reaches the peer is at most what the kernel buffers held, and a frame.
fn close_drops_queued_frames<A: Adapter>() {
    let (sess, _streams, mut peer, kernel) = queued::<A>();
    sess.close();
    let (frames, end) = peer.read_to_end(30);
    let total: u64 = tally(&frames).values().map(|(n, _)| n).sum();
    let queued = QUEUED * QUEUED_STREAMS;
    println!(
        "{total} of {queued} queued bytes reached the peer ({end:?}); kernel buffers {kernel}"
    );
    let bound = kernel + 16 * 1024;
    assert!(
        total <= bound,
        "close wrote out {total} queued bytes (kernel buffers: {kernel})"
    );
    let s2 = sess.clone();
    assert_eq!(
        Task::spawn(move || s2.closed()).join(20, "session end"),
        EndReason::Local
    );
}

/// Same row: `shutdown` writes them out first (and waits for the peer to take them).
fn shutdown_writes_out_queued_frames<A: Adapter>() {
    let (sess, streams, mut peer, _) = queued::<A>();
    let s2 = sess.clone();
    let mut shutdown = Task::spawn(move || s2.shutdown());
    std::thread::sleep(ms(300));
    assert!(
        !shutdown.is_finished(),
        "shutdown ended before the queue was written"
    );
    let (frames, end) = peer.read_to_end(60);
    all_written_out(&frames, false);
    assert_eq!(end, End::Eof);
    assert_eq!(shutdown.join(20, "shutdown"), EndReason::Local);
    drop(streams);
}

/// Row "a graceful close wakes parked calls": a write parked on the window and a
/// parked accept fail at once, while the close still waits for the queue to drain.
fn a_graceful_close_wakes_parked_writes_and_accepts_at_once<A: Adapter>() {
    let (ours, raw) = small_buffer_pair();
    let (sess, mut peer) = raw_peer_of::<A>(ours, raw, config(false));
    let st = sess.open().expect("open");
    let mut writer = Task::spawn(move || (send_pattern(&st, 7, 2_000_000), st));
    let s2 = sess.clone();
    let mut acceptor = Task::spawn(move || s2.accept().map(|_| ()));
    std::thread::sleep(ms(300));
    assert!(
        !writer.is_finished(),
        "the write did not park on the window"
    );
    let s2 = sess.clone();
    let mut shutdown = Task::spawn(move || s2.shutdown());
    let woke = (
        writer.wait(Duration::from_secs(5)),
        acceptor.wait(Duration::from_secs(5)),
    );
    let still_closing = !shutdown.is_finished() && sess.end_reason().is_none();
    // Let the close finish: the peer reads everything.
    let (_, end) = peer.read_to_end(60);
    assert_eq!(end, End::Eof);
    assert_eq!(shutdown.join(20, "shutdown"), EndReason::Local);
    let (write, accept) = woke;
    let write = write.map(|(r, _st)| r.map_err(|e| e.kind()));
    assert!(
        matches!(write, Some(Err(_))),
        "parked write not woken by the graceful close: {write:?}"
    );
    assert!(
        matches!(accept, Some(Err(_))),
        "parked accept not woken by the graceful close: {accept:?}"
    );
    assert!(still_closing, "the calls woke only when the session ended");
}

/// Row "PartialWrite into io::Error": the count stays reachable (inner error).
fn partial_write_into_io_error_keeps_the_count<A: Adapter>() {
    let (c, s) = pair::<A>(config(true), config(true));
    let a = c.open().expect("open");
    let b = s.accept().expect("accept");
    let data = vec![7u8; 3 * 512 * 1024];
    let e = a
        .write_all_before_io(&data, Instant::now() + ms(500))
        .expect_err("nobody reads: the window cannot take it all");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    let written = A::partial_written(&e);
    let n = written.unwrap_or_else(|| panic!("the count was dropped: {e:?}"));
    assert!(n > 0 && n < data.len(), "{n}");
    // The count is what the peer gets.
    let mut got = vec![0u8; n];
    b.read_exact(&mut got).expect("the accepted bytes");
    let mut more = [0u8; 1];
    let e = b
        .read_for(&mut more, ms(300))
        .expect_err("nothing after the count");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
}

/// The one `PartialWrite` of the spec: the core's, not an adapter's own copy.
fn partial_write_is_the_cores<A: Adapter>() {
    assert!(
        A::partial_write_is_the_cores(),
        "smux-{}::PartialWrite is its own type, not smux_proto::PartialWrite",
        A::NAME
    );
}

/// Row "Interrupted": retried. Both ends over transports whose every other call fails
/// with `Interrupted`: the agreement, 1 MiB both ways on two streams, no end.
fn interrupted_is_retried<A: Adapter>() {
    const LEN: u64 = 1024 * 1024;
    let (ct, st) = tcp_pair();
    let c = A::new_session_interrupted(ct, config(true), Role::Dialer).expect("session");
    let s = A::new_session_interrupted(st, config(true), Role::Acceptor).expect("session");
    let ready = (c.ready(), s.ready());
    assert!(
        matches!(ready, (Ok(true), Ok(true))),
        "agreement over an interrupting transport: {ready:?} (ended: {:?})",
        c.end_reason()
    );
    let ours: Vec<_> = (0..2).map(|_| c.open().expect("open")).collect();
    let theirs: Vec<_> = (0..2).map(|_| s.accept().expect("accept")).collect();
    std::thread::scope(|sc| {
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let seed = 300 + i as u64;
            sc.spawn(move || send_pattern(a, seed, LEN).expect("write"));
            sc.spawn(move || send_pattern(b, seed + 10, LEN).expect("write back"));
            sc.spawn(move || {
                assert_eq!(
                    crate::support::recv_sum(b, LEN).expect("read"),
                    pattern_sum(seed, LEN)
                )
            });
            sc.spawn(move || {
                assert_eq!(
                    crate::support::recv_sum(a, LEN).expect("read back"),
                    pattern_sum(seed + 10, LEN)
                )
            });
        }
    });
    assert_eq!((c.end_reason(), s.end_reason()), (None, None));
    c.close();
    let c2 = c.clone();
    assert_eq!(
        Task::spawn(move || c2.closed()).join(20, "end"),
        EndReason::Local
    );
}

/// Row "linger": dropping the last handles (streams, then the session) writes out
/// what was queued, FINs included, even when the peer starts reading a second later,
/// then closes the connection cleanly.
fn dropping_the_last_session_lingers_to_write_out<A: Adapter>() {
    let (sess, streams, mut peer, _) = queued::<A>();
    drop(streams);
    drop(sess);
    std::thread::sleep(Duration::from_secs(1));
    let (frames, end) = peer.read_to_end(60);
    all_written_out(&frames, true);
    assert_eq!(end, End::Eof, "the connection was not closed cleanly");
    assert!(frames.iter().all(|f| f.cmd != PSH || !f.payload.is_empty()));
}

/// Row "constructor": a bad config is `InvalidInput` with the `ConfigError` inside,
/// from `Listener::bind`, `connect` and `Session::new`.
fn a_bad_config_is_invalid_input_with_the_config_error<A: Adapter>() {
    let bad = config(true).with_window(0);
    let check = |what: &str, r: io::Result<()>| {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<ConfigError>());
        assert!(inner.is_some(), "{what}: no ConfigError inside: {e:?}");
    };
    check("Listener::bind", A::bind(bad.clone()).map(|_| ()));
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    check("connect", A::connect(addr, bad.clone()).map(|_| ()));
    let (ours, _theirs) = tcp_pair();
    let made = catch_unwind(AssertUnwindSafe(|| A::new_session(ours, bad, Role::Dialer)));
    let made = made.unwrap_or_else(|_| panic!("Session::new panicked on a bad config"));
    check("Session::new", made.map(|_| ()));
}

/// Row "reset": `reset(&self, code)` is a no-op once released: a second reset, and a
/// reset of a stream the peer reset, change nothing and fail nothing.
fn reset_is_a_no_op_once_released<A: Adapter>() {
    let (c, s) = pair::<A>(config(true), config(true));
    let a = c.open().expect("open");
    a.write_all(b"x").expect("write");
    let b = s.accept().expect("accept");
    let mut buf = [0u8; 1];
    b.read_exact(&mut buf).expect("read");
    a.reset(1).expect("reset");
    let e = b.read(&mut buf).expect_err("read of a reset stream");
    assert_eq!(reset_code(&e), Some(1), "{e}");
    let again = a.reset(2);
    let theirs = b.reset(3);
    // Nothing else was touched: a new stream works, and no reset reaches it.
    let a2 = c.open().expect("open");
    a2.write_all(b"y").expect("write");
    let b2 = s.accept().expect("accept");
    b2.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"y");
    let e = b2.read_for(&mut buf, ms(200)).expect_err("nothing more");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    a2.write_all(b"z")
        .expect("a later stream still takes writes");
    assert!(again.is_ok(), "a second reset: {again:?}");
    assert!(
        theirs.is_ok(),
        "a reset of a stream the peer reset: {theirs:?}"
    );
}
