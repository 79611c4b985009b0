//! A reference client (yddeng/smux, in Go) pushes data on 16 streams while our server,
//! on each adapter, reads nothing for a while: our memory must stay within the
//! configured bounds (the session's input bound, far below what 16 full windows would
//! hold), and once we read again every byte must arrive intact.
//!
//! The live heap of the whole test process is measured with a counting allocator, so
//! the cases run one at a time (`serial`). Without Go they say SKIPPED (see
//! `smux_tests::reference`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use smux_proto::Config;
use smux_tests::mem::{kib, mib, Probe};
use smux_tests::reference::adapter::{Adapter, Sess, Strm};
use smux_tests::reference::{binaries, Peer};
use smux_tests::{pattern_sum, serial, Checksum};

#[global_allocator]
static ALLOC: smux_tests::mem::Counting = smux_tests::mem::Counting;

const STREAMS: usize = 16;
const SIZE: u64 = 2 << 20;
const MAX_IN: usize = 4 << 20;

#[test]
fn tokio() {
    stop_reading_then_recover(Adapter::Tokio);
}

#[test]
fn smol() {
    stop_reading_then_recover(Adapter::Smol);
}

#[test]
fn blocking() {
    stop_reading_then_recover(Adapter::Blocking);
}

fn stop_reading_then_recover(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    let _one_at_a_time = serial();
    let config = Config::default().with_max_buffered_in(MAX_IN);
    let window = config.window() as usize;
    settle();
    let listener = adapter.listen(config).expect("listen");
    let probe = Probe::start();
    let addr = listener.addr().to_string();
    let (n, size) = (STREAMS.to_string(), SIZE.to_string());
    let args = [
        "-mode",
        "push-client",
        "-addr",
        &addr,
        "-n",
        &n,
        "-size",
        &size,
        "-seed",
        "77",
    ];
    let client = Peer::scenarios("scenarios push-client", bins, &args);
    let session: Arc<dyn Sess> = Arc::from(listener.accept(Duration::from_secs(10)).unwrap());
    // Each stream's reader waits for `go`: streams keep arriving while we do not read
    // (until the bound stops input, which holds back the later ones' SYNs too).
    let go = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (session, go) = (session.clone(), go.clone());
        thread::spawn(move || {
            (0..STREAMS)
                .map(|i| {
                    let s = session.accept(Duration::from_secs(60));
                    let s = s.unwrap_or_else(|e| panic!("{adapter}: stream {i}: {e}"));
                    let go = go.clone();
                    thread::spawn(move || read_stream(i, s, &go))
                })
                .collect::<Vec<_>>()
        })
    };

    // Read nothing for 1.5 s: the reference could fill 16 windows (8 MiB); our session
    // stops taking input at its 4 MiB bound instead.
    let mut most = 0;
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        let stats = session.stats();
        assert_eq!(stats.protocol_errors, 0);
        most = most.max(stats.buffered_in);
        thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{adapter}: at most {} KiB buffered while not reading",
        most / 1024
    );
    assert!(
        most <= MAX_IN,
        "{adapter}: {most} bytes buffered, bound {MAX_IN}"
    );
    assert!(
        most + window > MAX_IN,
        "{adapter}: only {most} bytes arrived: the reference did not push to the bound"
    );
    // The input bound, plus the transport's read buffer and per-stream bookkeeping.
    probe.check(
        &format!("{adapter}, not reading"),
        MAX_IN + mib(1) + kib(256),
    );

    // Read again: everything arrives, checked by length and checksum.
    go.store(true, Ordering::Release);
    for r in acceptor.join().expect("acceptor") {
        r.join().expect("reader");
    }
    let done = client.line_starting("push-done", Duration::from_secs(30));
    assert_eq!(done, format!("push-done {STREAMS}/{STREAMS}"));
    assert_eq!(session.end_reason(), None, "{adapter}: session ended");
    session.close();
}

/// Waits (at most 3 s) until the live heap stops moving: what the previous case left
/// to background tasks is freed before this one measures.
fn settle() {
    let end = Instant::now() + Duration::from_secs(3);
    let mut last = smux_tests::mem::live();
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(100));
        let now = smux_tests::mem::live();
        if now.abs_diff(last) < kib(64) {
            return;
        }
        last = now;
    }
}

/// Waits for `go`, then reads the stream's header and data, checks them, answers "ok"
/// and waits for the reference's close.
fn read_stream(i: usize, mut s: Strm, go: &AtomicBool) {
    while !go.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut head = [0u8; 16];
    s.read_exact(&mut head, deadline).expect("header");
    let seed = u64::from_le_bytes(head[..8].try_into().unwrap());
    let len = u64::from_le_bytes(head[8..].try_into().unwrap());
    assert_eq!(len, SIZE, "stream {i}: announced length");
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    while sum.len() < len {
        let want = (len - sum.len()).min(buf.len() as u64) as usize;
        s.read_exact(&mut buf[..want], deadline).expect("data");
        sum.update(&buf[..want]);
    }
    assert_eq!(sum.sum(), pattern_sum(seed, len), "stream {i}: checksum");
    s.write_all(b"ok", deadline).expect("answer");
    // The reference closes once it has the answer.
    assert_eq!(
        s.rd.read(&mut buf, deadline).expect("end"),
        0,
        "stream {i}: end"
    );
}
