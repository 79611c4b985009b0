//! Deadlines: a write that hits its deadline reports exactly what was accepted, a read
//! deadline reads nothing, a read or write given up mid-wait loses nothing, and a
//! write given up does not keep its send-queue turn.

use std::io::ErrorKind;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smux_tests::conformance::{Adapter, Session, Stream};
use smux_tests::{pattern_vec, Checksum, Rng};

use crate::support::{
    config, eventually, ms, pair, raw_peer_of, small, small_buffer_pair, soon, Task,
};

conformance!(
    write_all_before_reports_an_honest_count,
    a_timed_out_write_takes_exactly_what_the_window_has_left,
    read_before_times_out_with_nothing_read,
    a_write_with_a_past_deadline_sends_nothing,
    random_short_write_deadlines_deliver_every_byte_once,
    cancelled_reads_and_writes_lose_nothing,
    a_given_up_write_does_not_hold_send_queue_room,
);

/// The reader takes 100 kB, then stops: the deadline-bound write of the rest stops
/// part-way with a count; resending exactly the rest delivers every byte once.
fn write_all_before_reports_an_honest_count<A: Adapter>() {
    const LEN: usize = 1_000_000;
    const FIRST: usize = 100_000;
    for ext in [true, false] {
        let (c, s) = pair::<A>(small(ext), small(ext));
        let data = pattern_vec(9, LEN);
        let a = c.open().expect("open");
        let b = s.accept().expect("accept");
        let reader = Task::spawn(move || {
            let mut first = vec![0u8; FIRST];
            b.read_exact(&mut first).expect("first part");
            (first, b)
        });
        a.write_all(&data[..FIRST]).expect("first part");
        let (first, b) = reader.join(60, "first part");
        assert!(first == data[..FIRST]);

        let rest = &data[FIRST..];
        let p = a
            .write_all_before(rest, Instant::now() + Duration::from_secs(1))
            .expect_err("the reader stopped: the window cannot take it all");
        assert!(p.is_timeout(), "{p}");
        let written = p.written();
        assert!(
            written > 0 && written < rest.len(),
            "{written} of {}",
            rest.len()
        );

        let reader = Task::spawn(move || {
            let got = b.read_to_end().expect("the rest");
            (got, b)
        });
        a.write_all(&rest[written..])
            .expect("resend exactly the rest");
        drop(a);
        let (got, _b) = reader.join(60, "the rest");
        assert_eq!(got.len(), rest.len(), "bytes after the first part");
        assert!(got == rest, "garbled: the count was not honest");
    }
}

/// The peer reads nothing: a deadline-bound write larger than the window takes
/// exactly what the window has left (the window less the first byte) and times out;
/// turned into an `io::Error` (by the adapter's `From`) it is `TimedOut`.
fn a_timed_out_write_takes_exactly_what_the_window_has_left<A: Adapter>() {
    for ext in [true, false] {
        let cfg = small(ext);
        let window = cfg.window() as usize;
        let (c, s) = pair::<A>(cfg.clone(), cfg);
        let a = c.open().expect("open");
        a.write_all(b"!").expect("first byte");
        let _b = s.accept().expect("accept");
        let p = a
            .write_all_before(&vec![3u8; 3 * window], Instant::now() + ms(300))
            .expect_err("the window is smaller than the write");
        assert!(p.is_timeout(), "{p}");
        assert_eq!(p.written(), window - 1, "ext {ext}");
        let e = a
            .write_all_before_io(b"x", Instant::now() + ms(50))
            .expect_err("the window is still full");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    }
}

/// A read deadline with no data: `TimedOut`, not early, nothing read; a deadline
/// already past: `TimedOut` at once. The data sent afterwards arrives whole.
fn read_before_times_out_with_nothing_read<A: Adapter>() {
    for ext in [true, false] {
        read_deadlines::<A>(ext);
    }
}

fn read_deadlines<A: Adapter>(ext: bool) {
    let (c, s) = pair::<A>(config(ext), config(ext));
    let a = c.open().expect("open");
    a.write_all(b"a").expect("write");
    let b = s.accept().expect("accept");
    let mut buf = [0u8; 8];
    b.read_exact(&mut buf[..1]).expect("read");

    let start = Instant::now();
    let e = b
        .read_before(&mut buf, start + ms(300))
        .expect_err("no data");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(
        start.elapsed() >= ms(290),
        "timed out early: {:?}",
        start.elapsed()
    );
    let e = b
        .read_before(&mut buf, Instant::now())
        .expect_err("a past deadline");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");

    a.write_all(b"late").expect("write");
    assert_eq!(read_some(&b, 4), b"late", "a timed-out read lost something");
}

/// A deadline already past when the write starts (the reference implementation's rule:
/// once it fired, nothing more is handed over): `TimedOut` with 0 written, and nothing
/// sent.
fn a_write_with_a_past_deadline_sends_nothing<A: Adapter>() {
    for ext in [true, false] {
        past_deadline_write::<A>(ext);
    }
}

fn past_deadline_write<A: Adapter>(ext: bool) {
    let (c, s) = pair::<A>(config(ext), config(ext));
    let a = c.open().expect("open");
    a.write_all(b"a").expect("write");
    let b = s.accept().expect("accept");
    assert_eq!(read_some(&b, 1), b"a");
    let r = a.write_all_before(b"zzz", Instant::now());
    a.write_all(b"late").expect("write");
    let got = read_some(&b, 4);
    let p = r.expect_err("a write with a past deadline completed");
    assert!(p.is_timeout() && p.written() == 0, "{p}");
    assert_eq!(got, b"late", "the past-deadline write sent something");
}

/// Reads `n` bytes with generous read deadlines.
fn read_some<S: Stream>(s: &S, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut have = 0;
    while have < n {
        let k = s.read_before(&mut got[have..], soon(20)).expect("data");
        assert!(k > 0, "end-of-file");
        have += k;
    }
    got
}

/// Writes in random pieces with random short deadlines against a slow reader; each
/// timeout resends exactly the rest. Every byte arrives once, in order.
fn random_short_write_deadlines_deliver_every_byte_once<A: Adapter>() {
    const LEN: usize = 1024 * 1024;
    for ext in [true, false] {
        let (c, s) = pair::<A>(small(ext), small(ext));
        let data = pattern_vec(11, LEN);
        let a = c.open().expect("open");
        let b = s.accept().expect("accept");
        let reader = Task::spawn(move || {
            let mut rng = Rng::new(8);
            let mut sum = Checksum::new();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let want = rng.range(1, buf.len() as u64 + 1) as usize;
                match b.read(&mut buf[..want]).expect("read") {
                    0 => return sum,
                    n => sum.update(&buf[..n]),
                }
                if rng.chance(1, 3) {
                    std::thread::sleep(Duration::from_micros(rng.range(100, 2000)));
                }
            }
        });
        let mut rng = Rng::new(7);
        let (mut sent, mut timeouts) = (0, 0);
        while sent < LEN {
            let end = (sent + rng.range(1, 256 * 1024) as usize).min(LEN);
            let deadline = Instant::now() + Duration::from_micros(rng.range(0, 3000));
            match a.write_all_before(&data[sent..end], deadline) {
                Ok(()) => sent = end,
                Err(p) => {
                    assert!(p.is_timeout(), "{p}");
                    assert!(p.written() <= end - sent);
                    timeouts += 1;
                    sent += p.written();
                }
            }
        }
        drop(a);
        let got = reader.join(60, "reader");
        assert!(timeouts > 0, "no deadline was hit: the test tested nothing");
        assert_eq!(got.len(), LEN as u64);
        assert_eq!(got.sum(), Checksum::of(&data).sum(), "garbled");
    }
}

/// A write given up while it waits for window, and a read given up while it waits
/// for data (the async adapters drop the future, the blocking one times out): both
/// took nothing, and the data arrives once, in order.
fn cancelled_reads_and_writes_lose_nothing<A: Adapter>() {
    const LEN: usize = 600 * 1024;
    for ext in [true, false] {
        let (c, s) = pair::<A>(small(ext), small(ext));
        let data = pattern_vec(21, LEN);
        let a = c.open().expect("open");
        let b = s.accept().expect("accept");
        let (parked_tx, parked_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let expected = data.clone();
        let writer = Task::spawn(move || {
            let (mut off, mut given_up) = (0, 0);
            while off < LEN {
                match a.write_for(&data[off..], ms(100)) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::TimedOut => {
                        given_up += 1;
                        if given_up == 1 {
                            parked_tx.send(()).expect("signal");
                            go_rx.recv().expect("go");
                        }
                    }
                    Err(e) => panic!("write: {e}"),
                }
            }
            drop(a);
            given_up
        });
        parked_rx.recv().expect("the writer gave a write up");
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut reads_given_up = 0;
        // Take what was sent; the writer waits, so a read is given up at last.
        while reads_given_up == 0 {
            match b.read_for(&mut buf, ms(100)) {
                Ok(0) => panic!("end-of-file"),
                Ok(n) => sum.update(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::TimedOut => reads_given_up += 1,
                Err(e) => panic!("read: {e}"),
            }
        }
        go_tx.send(()).expect("go");
        loop {
            match b.read_for(&mut buf, ms(50)) {
                Ok(0) => break,
                Ok(n) => sum.update(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::TimedOut => reads_given_up += 1,
                Err(e) => panic!("read: {e}"),
            }
        }
        let writes_given_up = writer.join(60, "writer");
        println!("ext {ext}: {writes_given_up} writes and {reads_given_up} reads given up");
        assert_eq!(sum.len(), LEN as u64, "bytes");
        assert_eq!(
            sum.sum(),
            Checksum::of(&expected).sum(),
            "lost or duplicated data"
        );
    }
}

/// Send-queue turns expire (issue 10, core item 3). A session with a send queue of
/// four frames, to a raw peer that does not read yet: filler streams fill the queue,
/// four writers give their writes up while they wait for room, and one more writer
/// waits. When the peer starts reading, the four abandoned writers get their
/// turns in order and hold all the room; the turns must expire after their grant time
/// (500 ms) and the last writer go on, long before the next keepalive (10 s) would
/// wake the session. (Without the expiry in `poll_timeout` it waits about 9 s.)
fn a_given_up_write_does_not_hold_send_queue_room<A: Adapter>() {
    const FRAME: usize = 16 * 1024;
    const GIVEN_UP: usize = 4;
    let (ours, raw) = small_buffer_pair();
    let cfg = config(false)
        .with_max_frame(FRAME as u32)
        .with_max_buffered_out(GIVEN_UP * FRAME)
        .with_keepalive_interval(Duration::from_secs(10))
        .with_keepalive_timeout(Duration::from_secs(60));
    let (sess, peer) = raw_peer_of::<A>(ours, raw, cfg);
    // Fillers, each well under a window (no CFM ever comes from the raw peer), all
    // together well over what the socket buffers and the queue hold.
    let mut fillers: Vec<_> = (0..6)
        .map(|i| {
            let st = sess.open().expect("open");
            Task::spawn(move || (st.write_all(&pattern_vec(i, 400 * 1024)), st))
        })
        .collect();
    eventually(20, "the send queue is full", || {
        sess.stats().buffered_out >= GIVEN_UP * FRAME - FRAME
    });
    std::thread::sleep(ms(100));
    assert!(
        fillers.iter_mut().any(|f| !f.is_finished()),
        "no filler waits for queue room"
    );
    let abandoned: Vec<_> = (0..GIVEN_UP)
        .map(|_| {
            let st = sess.open().expect("open");
            let e = st
                .write_for(&[5u8; FRAME], ms(200))
                .expect_err("a write while the queue is full");
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
            st
        })
        .collect();
    let last = sess.open().expect("open");
    let mut waiting = Task::spawn(move || (last.write_all(&[6u8; 1000]), last));
    std::thread::sleep(ms(100));
    assert!(
        !waiting.is_finished(),
        "the last writer did not wait for room"
    );

    let mut tcp = peer.tcp;
    let start = Instant::now();
    let _drain = Task::spawn(move || std::io::copy(&mut tcp, &mut std::io::sink()));
    let (r, _last) = waiting.join(30, "the writer behind the abandoned turns");
    let took = start.elapsed();
    r.expect("write behind the abandoned turns");
    println!("the last writer went on {took:?} after the peer started reading");
    assert!(
        took < Duration::from_secs(3),
        "abandoned send-queue turns held the room for {took:?} (turns expire after 500 ms)"
    );
    drop(abandoned);
    for f in fillers {
        let (r, _st) = f.join(30, "filler");
        r.expect("filler");
    }
    sess.close();
}
