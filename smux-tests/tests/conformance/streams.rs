//! Streams: open and accept both ways, data both ways beyond several windows, a stream
//! nobody reads stalls only itself, keepalives keep live peers alive.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use smux_proto::reset_code;

use smux_tests::conformance::{Adapter, Session, Stream};
use smux_tests::wire::Frames;
use smux_tests::{pattern, pattern_sum, pattern_vec};

use crate::support::{
    config, eventually, ms, pair, raw_peer_of, recv_sum, send_pattern, small_buffer_pair, Task,
};

conformance!(
    open_and_accept_both_ways,
    data_both_ways_with_checksums,
    a_stream_nobody_reads_stalls_only_itself,
    reads_go_on_while_writes_are_blocked,
    keepalives_keep_live_peers_alive,
);

/// Each end opens three streams; the other accepts them with their first bytes and
/// the same stream numbers.
fn open_and_accept_both_ways<A: Adapter>() {
    let (c, s) = pair::<A>(config(true), config(true));
    let mut kept = Vec::new();
    for (opener, acceptor, tag) in [(&c, &s, "dialer"), (&s, &c, "acceptor")] {
        let opened: Vec<_> = (0..3)
            .map(|i| {
                let st = opener.open().expect("open");
                st.write_all(format!("{tag} {i}").as_bytes())
                    .expect("write");
                st
            })
            .collect();
        for _ in 0..3 {
            let st = acceptor.accept().expect("accept");
            let mut buf = vec![0u8; tag.len() + 2];
            st.read_exact(&mut buf).expect("read");
            let i = usize::from(buf[buf.len() - 1].wrapping_sub(b'0'));
            assert!(i < 3, "{}", String::from_utf8_lossy(&buf));
            assert_eq!(buf, format!("{tag} {i}").as_bytes());
            assert_eq!(st.id().number(), opened[i].id().number(), "stream numbers");
            assert!(st.is_extended() && opened[i].is_extended());
            kept.push(st);
        }
        kept.extend(opened);
    }
    assert_eq!((c.stats().streams, s.stats().streams), (6, 6));
    assert!(c.end_reason().is_none() && s.end_reason().is_none());
}

/// 2 MiB each way on each of three streams at once (four default windows), base and
/// extended: every byte arrives once and in order.
fn data_both_ways_with_checksums<A: Adapter>() {
    const LEN: u64 = 2 * 1024 * 1024;
    for ext in [true, false] {
        let (c, s) = pair::<A>(config(ext), config(ext));
        let mut ours: Vec<_> = (0..3).map(|_| c.open().expect("open")).collect();
        let mut theirs: Vec<_> = (0..3).map(|_| s.accept().expect("accept")).collect();
        ours.sort_by_key(|st| st.id().number());
        theirs.sort_by_key(|st| st.id().number());
        thread::scope(|sc| {
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a.id().number(), b.id().number());
                let (ab, ba) = (100 + i as u64, 200 + i as u64);
                sc.spawn(move || send_pattern(a, ab, LEN).expect("dialer writes"));
                sc.spawn(move || send_pattern(b, ba, LEN).expect("acceptor writes"));
                sc.spawn(move || {
                    let got = recv_sum(b, LEN).expect("acceptor reads");
                    assert_eq!(got, pattern_sum(ab, LEN), "dialer to acceptor, stream {i}");
                });
                sc.spawn(move || {
                    let got = recv_sum(a, LEN).expect("dialer reads");
                    assert_eq!(got, pattern_sum(ba, LEN), "acceptor to dialer, stream {i}");
                });
            }
        });
        assert_eq!(c.stats().protocol_errors + s.stats().protocol_errors, 0);
        assert!(c.end_reason().is_none() && s.end_reason().is_none());
    }
}

/// Two streams whose readers read nothing while their peers write: each writer gets
/// exactly one window in and waits; meanwhile three other streams carry 2 MiB each,
/// whole. Then one stalled reader reads its window (every byte as written) and
/// resets (the writer fails with the code; on a base stream a reset is a close, and
/// the writer's pipe is broken), and the other is dropped unread (its writer's pipe is
/// broken). Extensions on and off.
fn a_stream_nobody_reads_stalls_only_itself<A: Adapter>() {
    const LEN: u64 = 2 * 1024 * 1024;
    for ext in [true, false] {
        let cfg = config(ext);
        let window = cfg.window() as usize;
        let (c, s) = pair::<A>(cfg.clone(), cfg);
        let mut stalled: Vec<_> = (1..=2)
            .map(|seed| {
                let ours = c.open().expect("open");
                ours.write_all(b"s").expect("write");
                let theirs = s.accept().expect("accept");
                let count = Arc::new(AtomicUsize::new(0));
                let n = count.clone();
                let writer = Task::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut off = 0u64;
                    loop {
                        pattern(seed, off, &mut buf);
                        match theirs.write(&buf) {
                            Ok(k) => {
                                off += k as u64;
                                n.fetch_add(k, Ordering::SeqCst);
                            }
                            Err(e) => return (e.kind(), reset_code(&e)),
                        }
                    }
                });
                (ours, count, writer)
            })
            .collect();
        for (_, count, _) in &stalled {
            eventually(20, "a stalled stream's window is full", || {
                count.load(Ordering::SeqCst) == window
            });
        }
        let ours: Vec<_> = (0..3).map(|_| c.open().expect("open")).collect();
        let theirs: Vec<_> = ours
            .iter()
            .map(|st| {
                st.write_all(b"f").expect("write");
                s.accept().expect("accept")
            })
            .collect();
        thread::scope(|sc| {
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let seed = 10 + i as u64;
                sc.spawn(move || send_pattern(b, seed, LEN).expect("write"));
                sc.spawn(move || {
                    let got = recv_sum(a, LEN).expect("read");
                    assert_eq!(got, pattern_sum(seed, LEN), "stream {i}");
                });
            }
        });
        for (_, count, writer) in &mut stalled {
            assert_eq!(count.load(Ordering::SeqCst), window, "a stalled writer");
            assert!(!writer.is_finished(), "a stalled writer finished");
        }
        let (dropped, _, dropped_writer) = stalled.pop().expect("stalled");
        let (read, _, read_writer) = stalled.pop().expect("stalled");
        let mut got = vec![0u8; window];
        read.read_exact(&mut got).expect("the stalled data");
        assert!(got == pattern_vec(1, window), "the stalled data garbled");
        read.reset(9).expect("reset");
        let want = if ext {
            (ErrorKind::ConnectionReset, Some(9))
        } else {
            (ErrorKind::BrokenPipe, None)
        };
        assert_eq!(read_writer.join(20, "the read stream's writer"), want);
        drop(dropped);
        assert_eq!(
            dropped_writer.join(20, "the dropped stream's writer"),
            (ErrorKind::BrokenPipe, None)
        );
        assert!(c.end_reason().is_none() && s.end_reason().is_none());
    }
}

/// A raw peer that does not read its socket (small buffers): our stream's writes fill
/// its window, which is far more than the socket buffers take, so the session's
/// transport writes are stuck; yet the stream the peer opens meanwhile is accepted and
/// its data read to its end. Extensions on and off on our end.
fn reads_go_on_while_writes_are_blocked<A: Adapter>() {
    reads_while_blocked::<A>(true);
    reads_while_blocked::<A>(false);
}

fn reads_while_blocked<A: Adapter>(ext: bool) {
    const LEN: usize = 200_000;
    let (ours, raw) = small_buffer_pair();
    let (sess, mut peer) = raw_peer_of::<A>(ours, raw, config(ext));
    let st = sess.open().expect("open");
    let mut writer = Task::spawn(move || send_pattern(&st, 3, 4_000_000).map(|_| st));
    thread::sleep(ms(300));
    assert!(!writer.is_finished(), "the writes did not block");
    let data = pattern_vec(4, LEN);
    let mut f = Frames::new();
    f.syn(7);
    for chunk in data.chunks(16 * 1024) {
        f.psh(7, chunk);
    }
    f.fin(7);
    // The peer's own writes need ours to read: both in the background, bounded.
    let sender = Task::spawn(move || {
        peer.send(&f);
        peer
    });
    let s2 = sess.clone();
    let reader = Task::spawn(move || {
        let theirs = s2.accept().expect("accept while our writes are blocked");
        let got = theirs
            .read_to_end()
            .expect("read while our writes are blocked");
        (theirs.id().number(), got)
    });
    let (number, got) = reader.join(60, "the peer's stream, read while our writes are blocked");
    let _peer = sender.join(20, "the peer's writes");
    assert_eq!(number, 7);
    assert!(got == data, "garbled or cut short ({} bytes)", got.len());
    assert!(
        !writer.is_finished(),
        "our writes were not blocked throughout"
    );
    sess.close();
    assert!(writer.join(20, "writer").is_err());
}

/// Short keepalives between two live, idle ends: for longer than the timeout nothing
/// ends, pings flow, streams work. (The timeout leaves room for a loaded machine.)
fn keepalives_keep_live_peers_alive<A: Adapter>() {
    for ext in [true, false] {
        let cfg = config(ext)
            .with_keepalive_interval(ms(100))
            .with_keepalive_timeout(Duration::from_secs(2));
        let (c, s) = pair::<A>(cfg.clone(), cfg);
        thread::sleep(ms(3000));
        assert_eq!(c.end_reason(), None);
        assert_eq!(s.end_reason(), None);
        assert!(c.stats().frames_received > 0 && s.stats().frames_received > 0);
        let a = c.open().expect("open");
        a.write_all(b"still here").expect("write");
        let b = s.accept().expect("accept");
        let mut buf = [0u8; 10];
        b.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"still here");
    }
}
