//! What the core costs: heap bytes per idle stream and allocations per frame in
//! steady state, measured with a counting allocator. The figures are printed (run with
//! `--nocapture`) and bounded loosely, so the test fails on a regression, not on noise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use bytes::BytesMut;
use smux_proto::{Config, Role, Session, StreamId, Transmit};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Tests in this file run one at a time so the counters mean something.
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every method forwards to the system allocator with the caller's arguments;
// the counters are side effects only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwards the caller's layout to the system allocator unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        // SAFETY: `p` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as `GlobalAlloc::realloc`, forwarded unchanged.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn pump(
    from: &mut Session,
    to: &mut Session,
    tx: &mut Transmit,
    wire: &mut BytesMut,
    now: Instant,
) {
    from.poll_transmit(now, tx, usize::MAX);
    tx.drain_into(wire);
    to.handle_input(now, wire);
}

#[test]
fn idle_stream_cost() {
    let _g = SERIAL.lock().unwrap();
    const N: usize = 10_000;
    let now = Instant::now();
    let mut a = Session::new(Config::default(), Role::Dialer, now).unwrap();
    let config = Config::default().with_accept_backlog(N);
    let mut b = Session::new(config, Role::Acceptor, now).unwrap();
    let (mut tx, mut wire) = (Transmit::new(), BytesMut::with_capacity(1 << 20));
    let mut ids = Vec::with_capacity(N);
    let mut accepted = Vec::with_capacity(N);
    let before = LIVE.load(Relaxed);
    for _ in 0..N {
        ids.push(a.open().unwrap());
    }
    let after_a = LIVE.load(Relaxed);
    pump(&mut a, &mut b, &mut tx, &mut wire, now);
    while let Some(id) = b.accept() {
        accepted.push(id);
    }
    while b.poll_event().is_some() {}
    let after_b = LIVE.load(Relaxed);
    let per_a = (after_a - before) as f64 / N as f64;
    let per_b = (after_b - after_a) as f64 / N as f64;
    println!("idle stream: {per_a:.0} B on the opening end, {per_b:.0} B on the accepting end");
    assert_eq!(accepted.len(), N);
    assert!(
        per_a <= 256.0 && per_b <= 256.0,
        "{per_a} / {per_b} bytes per idle stream"
    );
}

#[test]
fn steady_state_allocations_per_frame() {
    let _g = SERIAL.lock().unwrap();
    let now = Instant::now();
    let mut a = Session::new(Config::default(), Role::Dialer, now).unwrap();
    let mut b = Session::new(Config::default(), Role::Acceptor, now).unwrap();
    let ids: Vec<StreamId> = (0..4).map(|_| a.open().unwrap()).collect();
    let (mut tx, mut wire, mut back) = (Transmit::new(), BytesMut::new(), BytesMut::new());
    let data = vec![1u8; 64 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut run = |rounds: usize, a: &mut Session, b: &mut Session| {
        for _ in 0..rounds {
            for id in &ids {
                let _ = a.write(*id, &data);
            }
            // A reused input buffer, as adapters keep theirs.
            wire.reserve(1 << 20);
            pump(a, b, &mut tx, &mut wire, now);
            while b.accept().is_some() {}
            for id in &ids {
                while b.read(*id, &mut buf).is_ok_and(|n| n > 0) {}
            }
            pump(b, a, &mut tx, &mut back, now);
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
        }
    };
    run(50, &mut a, &mut b); // warm up pools and buffers
    let frames_before = a.stats().frames_sent + b.stats().frames_sent;
    let allocs_before = ALLOCS.load(Relaxed);
    run(200, &mut a, &mut b);
    let frames = a.stats().frames_sent + b.stats().frames_sent - frames_before;
    let allocs = ALLOCS.load(Relaxed) - allocs_before;
    let per_frame = allocs as f64 / frames as f64;
    println!("steady state: {allocs} allocations for {frames} frames ({per_frame:.3} per frame)");
    assert!(per_frame < 0.1, "{per_frame} allocations per frame");
}
