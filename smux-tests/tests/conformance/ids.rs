//! Stream IDs: a handle kept after its stream ended never touches a later stream with
//! the same number; IDs are recycled past 65,536 streams; with all 65,536 in use, a
//! clear error, and one freed ID is usable again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smux_tests::conformance::{Adapter, Session, Stream};
use smux_tests::wire::{Frames, CFM, FIN, PSH};

use crate::support::{config, dial_raw, eventually, ms, pair, Task};

conformance!(
    a_stale_handle_never_touches_a_stream_that_reuses_its_id,
    ids_are_recycled_past_65536_streams,
    all_ids_in_use_then_a_clear_error,
);

/// A raw peer opens stream 5, sends "one" and its FIN; our handle reads it and closes
/// (a reset of a base stream), but is kept. Once our FIN went out the peer opens 5
/// again. The old handle's calls fail and touch nothing: the new stream keeps its data,
/// the peer sees no data or FIN from the old handle, even when it is dropped.
fn a_stale_handle_never_touches_a_stream_that_reuses_its_id<A: Adapter>() {
    const X: u16 = 5;
    let (sess, mut peer) = dial_raw::<A>(config(false));
    let mut f = Frames::new();
    f.syn(X).psh(X, b"one").fin(X);
    peer.send(&f);
    let old = sess.accept().expect("accept");
    assert_eq!(old.id().number(), X);
    assert_eq!(old.read_to_end().expect("read"), b"one");
    let _ = old.reset(1);
    peer.until(20, |f| f.cmd == FIN && f.id == X);

    let mut f = Frames::new();
    f.syn(X).psh(X, b"two");
    peer.send(&f);
    let new = sess.accept().expect("accept the reused number");
    assert_eq!(new.id().number(), X);
    assert_ne!(new.id(), old.id(), "a reused number is a new stream ID");

    let mut buf = [0u8; 8];
    let read = old.read(&mut buf);
    assert!(
        read.is_err(),
        "the stale handle read {read:?} (of the new stream?)"
    );
    assert!(
        old.write(b"stale").is_err(),
        "the stale handle took a write"
    );
    let _ = old.reset(2);
    drop(old);

    new.read_exact(&mut buf[..3])
        .expect("the new stream's data");
    assert_eq!(&buf[..3], b"two");
    new.write_all(b"fresh").expect("write");
    let seen = peer.until(20, |f| f.cmd == PSH && f.id == X);
    let last = seen.last().expect("a PSH");
    assert_eq!(
        &last.payload[..],
        b"fresh",
        "stale data on the new stream: {seen:?}"
    );
    let stray: Vec<_> = seen
        .iter()
        .filter(|f| f.id == X && f.cmd != CFM && f.cmd != PSH)
        .collect();
    assert!(
        stray.is_empty(),
        "the stale handle touched the new stream: {stray:?}"
    );
    let mut f = Frames::new();
    f.psh(X, b"after");
    peer.send(&f);
    new.read_exact(&mut buf[..5]).expect("still open");
    assert_eq!(&buf[..5], b"after");
    // The new stream's FIN goes out only when its own handle goes.
    std::thread::sleep(ms(100));
    new.write_all(b"!").expect("write");
    let seen = peer.until(20, |f| f.cmd == PSH && f.id == X);
    assert!(seen.iter().all(|f| f.cmd != FIN), "{seen:?}");
}

/// 70,000 streams one after another, each opened, written, closed on both ends:
/// numbers are reused, nothing fails, both ends hold no stream at the end.
fn ids_are_recycled_past_65536_streams<A: Adapter>() {
    recycled::<A>(true);
    recycled::<A>(false);
}

fn recycled<A: Adapter>(ext: bool) {
    const TOTAL: usize = 70_000;
    let cfg = config(ext).with_accept_backlog(TOTAL);
    let (c, s) = pair::<A>(cfg.clone(), cfg);
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let s2 = s.clone();
    let acceptor = Task::spawn(move || {
        for _ in 0..TOTAL {
            let st = s2.accept().expect("accept");
            let mut b = [0u8; 4];
            st.read_exact(&mut b).expect("read");
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut numbers = HashSet::new();
    for i in 0..TOTAL {
        let st = c.open().unwrap_or_else(|e| panic!("open #{i}: {e}"));
        numbers.insert(st.id().number());
        st.write_all(&(i as u32).to_le_bytes()).expect("write");
        drop(st);
        // A bounded number of closes in flight, so numbers come round again.
        while i + 1 - served.load(Ordering::Relaxed) > 256 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    acceptor.join(120, "acceptor");
    eventually(30, "every stream handshaken away", || {
        c.stats().streams == 0 && s.stats().streams == 0
    });
    println!(
        "ext {ext}: {TOTAL} streams; {} distinct numbers",
        numbers.len()
    );
    assert!(numbers.len() < TOTAL, "numbers were reused");
    assert_eq!(c.stats().protocol_errors + s.stats().protocol_errors, 0);
    assert!(c.end_reason().is_none() && s.end_reason().is_none());
}

/// All 65,536 numbers open: the next open fails with an error that says so; one
/// stream closed on both ends frees its number for the next open.
fn all_ids_in_use_then_a_clear_error<A: Adapter>() {
    exhausted::<A>(true);
    exhausted::<A>(false);
}

fn exhausted<A: Adapter>(ext: bool) {
    const ALL: usize = 65_536;
    let cfg = config(ext).with_accept_backlog(ALL);
    let (c, s) = pair::<A>(cfg.clone(), cfg);
    let s2 = s.clone();
    let acceptor = Task::spawn(move || {
        (0..ALL)
            .map(|_| s2.accept().expect("accept"))
            .collect::<Vec<_>>()
    });
    let mut streams: Vec<_> = (0..ALL)
        .map(|i| c.open().unwrap_or_else(|e| panic!("open #{i}: {e}")))
        .collect();
    let e = c.open().map(|_| ()).expect_err("open past 65,536");
    assert!(e.to_string().contains("65536 stream IDs are in use"), "{e}");
    let source = e
        .get_ref()
        .and_then(|s| s.downcast_ref::<smux_proto::OpenError>());
    assert_eq!(source, Some(&smux_proto::OpenError::IdsExhausted), "{e:?}");
    let mut held = acceptor.join(120, "acceptor");
    assert_eq!(c.stats().streams, ALL);

    let last = streams.pop().expect("a stream");
    let number = last.id().number();
    drop(last);
    let pos = held
        .iter()
        .position(|p| p.id().number() == number)
        .expect("peer's end");
    let peer = held.swap_remove(pos);
    let mut b = [0u8; 1];
    assert_eq!(peer.read(&mut b).expect("end-of-file"), 0);
    drop(peer);
    let mut again = None;
    eventually(20, "the freed number", || {
        again = c.open().ok();
        again.is_some()
    });
    assert_eq!(again.expect("opened").id().number(), number);
    assert!(c.end_reason().is_none() && s.end_reason().is_none());
}
