//! Bounded-time soaks over loopback TCP: two Tokio sessions (about 5 s by default),
//! then a Tokio session against a blocking one (about 3 s); `SMUX_SOAK_SECS=<n>` runs
//! each for `n` seconds instead.
//!
//! Eight stream slots (four opened by each end) run lifetime after lifetime until the
//! time is up: open a stream, send a random amount (0 to 2 MiB) of seeded data in
//! random pieces, each under a random write deadline; on a deadline the write reports
//! exactly how many bytes it accepted and the rest, exactly, is sent again. Now and
//! then the writer gives up early (the reader must get exactly the accepted prefix)
//! or the reader closes early (it must have got a correct prefix). Readers stall at
//! random. Every lifetime is checked by length and checksum against what was sent.
//! Only a few streams are open at once and every handshake must complete; IDs go
//! round-robin, so none is handed out twice before the ID space wraps.
//!
//! Extensions: the Tokio soak runs two connections side by side, half the slots each:
//! one with extensions on at both ends (every stream is extended, the first ones too,
//! opened before the ends agreed: the writer half-closes, and a reader that stops early
//! resets the stream half the time), one whose accepting end has them off (every stream
//! is base: the writer's shutdown fails with `Unsupported`, sending nothing, and it
//! closes the stream instead). The Tokio-blocking soak has them on at both ends, so
//! half-close and reset cross adapters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smux_tests::{lock, pattern, pattern_sum, run, seed, serial, within, Checksum, Rng};
use smux_tokio::reset_code;
use smux_tokio::{Config, Role, Session, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLOTS_PER_END: usize = 4;
const MAX_SIZE: u64 = 2 * 1024 * 1024;
/// The code of the resets readers send when they stop early on an extended stream.
const RESET_CODE: u32 = 0x50AC;

/// What a reader saw on one lifetime.
#[derive(Debug, Clone, Copy)]
struct Report {
    len: u64,
    sum: u64,
    closed_early: bool,
}

#[derive(Default)]
struct Totals {
    lifetimes: AtomicU64,
    bytes: AtomicU64,
    timeouts: AtomicU64,
    resent: AtomicU64,
    writer_aborts: AtomicU64,
    reader_closes: AtomicU64,
    reader_resets: AtomicU64,
    stalls: AtomicU64,
}

/// Which connection and which end of it a lifetime's stream was opened by.
#[derive(Debug, Clone, Copy)]
struct Opener {
    /// The connection (the Tokio soak runs two).
    conn: usize,
    /// 0: its dialling end, 1: its accepting end.
    end: usize,
}

impl Opener {
    fn index(self) -> usize {
        self.conn * 2 + self.end
    }
}

struct Shared {
    reports: Mutex<HashMap<u64, Report>>,
    totals: Totals,
    /// Times each stream ID was opened, per connection and opening end.
    ids: [Mutex<HashMap<u16, u64>>; 4],
    /// Lifetimes on extended streams, per connection.
    extended: [AtomicU64; 2],
    /// Lifetimes, per connection.
    opened: [AtomicU64; 2],
    next_seq: AtomicU64,
}

fn count(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// A lifetime's size, the point where its writer gives up (if it does) and its header.
fn plan(seq: u64, rng: &mut Rng) -> (u64, Option<u64>, [u8; 16]) {
    let size = if rng.chance(1, 8) {
        rng.range(0, MAX_SIZE + 1)
    } else {
        rng.range(0, 256 * 1024)
    };
    let abort_at = rng.chance(1, 10).then(|| rng.range(0, size + 1));
    let mut head = [0u8; 16];
    head[..8].copy_from_slice(&seq.to_le_bytes());
    head[8..].copy_from_slice(&size.to_le_bytes());
    (size, abort_at, head)
}

/// Checks a reader's report against what the writer had accepted (`off` bytes, or a
/// failed write with `peer_gone`), and counts the lifetime.
fn verify(seq: u64, off: u64, peer_gone: bool, report: Report, sh: &Shared) {
    if report.closed_early {
        assert!(report.len <= off, "lifetime {seq}: got more than accepted");
    } else {
        assert!(
            !peer_gone,
            "lifetime {seq}: write failed, reader did not close"
        );
        assert_eq!(
            report.len, off,
            "lifetime {seq}: accepted bytes == received"
        );
    }
    assert_eq!(
        report.sum,
        pattern_sum(seq, report.len),
        "lifetime {seq}: checksum"
    );
    count(&sh.totals.lifetimes, 1);
    count(&sh.totals.bytes, report.len);
}

/// Whether a failed write or shutdown may be explained by the reader stopping early:
/// its close (`BrokenPipe`, after a base FIN or the extended stop) or its reset.
fn reader_stopped(e: &std::io::Error, reset: Option<u32>) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe || reset == Some(RESET_CODE)
}

/// What the writer's shutdown says about its stream: `Ok` is a half-close (extended),
/// `Unsupported` a base stream (nothing was sent; releasing it closes it), and any
/// other error must be the reader's reset, which only an extended stream has. Returns
/// whether the stream is extended and whether the reader reset it.
fn shutdown_outcome(
    seq: u64,
    res: std::io::Result<()>,
    code: impl Fn(&std::io::Error) -> Option<u32>,
) -> (bool, bool) {
    match res {
        Ok(()) => (true, false),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => (false, false),
        Err(e) => {
            // A reset that came after the last write.
            assert_eq!(code(&e), Some(RESET_CODE), "lifetime {seq}: {e}");
            (true, true)
        }
    }
}

/// Counts a lifetime of connection `by.conn`, extended or not.
fn count_mode(sh: &Shared, by: Opener, extended: bool) {
    count(&sh.opened[by.conn], 1);
    if extended {
        count(&sh.extended[by.conn], 1);
    }
}

/// One lifetime on the opening side: header, data under deadlines, shutdown (a
/// half-close on an extended stream, refused on a base one), release, check.
async fn lifetime(s: &Session, by: Opener, sh: &Shared, rng: &mut Rng) {
    let seq = sh.next_seq.fetch_add(1, Ordering::Relaxed);
    let mut st = s.open().await.expect("open");
    *lock(&sh.ids[by.index()])
        .entry(st.id().number())
        .or_default() += 1;
    let (size, abort_at, head) = plan(seq, rng);
    st.write_all(&head).await.expect("header");
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    let mut peer_gone = false;
    while off < size {
        if abort_at.is_some_and(|a| off >= a) {
            count(&sh.totals.writer_aborts, 1);
            break;
        }
        let n = rng.range(1, buf.len() as u64 + 1).min(size - off) as usize;
        pattern(seq, off, &mut buf[..n]);
        let mut piece = &buf[..n];
        while !piece.is_empty() {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(rng.range(1, 30));
            match st.write_all_before(piece, deadline).await {
                Ok(()) => {
                    off += piece.len() as u64;
                    piece = &[];
                }
                Err(e) if e.is_timeout() => {
                    // Exactly `written` bytes were taken: resend exactly the rest.
                    off += e.written() as u64;
                    piece = &piece[e.written()..];
                    count(&sh.totals.timeouts, 1);
                    count(&sh.totals.resent, piece.len() as u64);
                }
                Err(e) => {
                    // Only a reader that stopped early may stop us.
                    assert!(
                        reader_stopped(e.error(), reset_code(e.error())),
                        "lifetime {seq}: {e}"
                    );
                    off += e.written() as u64;
                    peer_gone = true;
                    break;
                }
            }
        }
        if peer_gone {
            break;
        }
    }
    let (extended, reset) = shutdown_outcome(seq, st.shutdown().await, reset_code);
    count_mode(sh, by, extended);
    peer_gone |= reset;
    drop(st);
    let report = within(60, "the reader's report", async {
        loop {
            if let Some(r) = lock(&sh.reports).remove(&seq) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    verify(seq, off, peer_gone, report, sh);
}

/// The accepting side of one lifetime: reads with random stalls and sizes, checks
/// every byte against the pattern, sometimes stops early (closes, or resets an
/// extended stream), and reports.
async fn reader(mut st: Stream, sh: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut head = [0u8; 16];
    st.read_exact(&mut head).await.expect("header");
    let seq = u64::from_le_bytes(head[..8].try_into().expect("8"));
    let size = u64::from_le_bytes(head[8..].try_into().expect("8"));
    let close_at = rng.chance(1, 10).then(|| rng.range(0, size + 1));
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut closed_early = false;
    let mut reset = false;
    loop {
        if close_at.is_some_and(|a| c.len() >= a) {
            closed_early = true;
            count(&sh.totals.reader_closes, 1);
            reset = st.is_extended() && rng.chance(1, 2);
            break;
        }
        if rng.chance(1, 16) {
            count(&sh.totals.stalls, 1);
            tokio::time::sleep(Duration::from_millis(rng.range(1, 50))).await;
        }
        let k = rng.range(1, buf.len() as u64 + 1) as usize;
        let n = st.read(&mut buf[..k]).await.expect("stream read");
        if n == 0 {
            break;
        }
        pattern(seq, c.len(), &mut want[..n]);
        assert!(
            buf[..n] == want[..n],
            "lifetime {seq}: wrong bytes at {}",
            c.len()
        );
        c.update(&buf[..n]);
    }
    if reset {
        count(&sh.totals.reader_resets, 1);
        st.reset(RESET_CODE);
    } else {
        drop(st);
    }
    lock(&sh.reports).insert(
        seq,
        Report {
            len: c.len(),
            sum: c.sum(),
            closed_early,
        },
    );
}

fn soak_secs(default: u64) -> u64 {
    std::env::var("SMUX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn new_shared() -> Arc<Shared> {
    Arc::new(Shared {
        reports: Mutex::default(),
        totals: Totals::default(),
        ids: Default::default(),
        extended: Default::default(),
        opened: Default::default(),
        next_seq: AtomicU64::new(0),
    })
}

/// Prints the soak's figures and checks that it did work, and that no ID was handed
/// out twice by one end before its IDs wrapped around (they go round-robin, so a frame
/// the peer still sends for a closed stream finds no new one).
fn report_totals(name: &str, secs: u64, sh: &Shared) {
    let t = &sh.totals;
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let opens: Vec<(u64, usize)> = sh
        .ids
        .iter()
        .map(|m| {
            let m = lock(m);
            (m.values().sum(), m.len())
        })
        .collect();
    let reused: u64 = opens.iter().map(|(n, d)| n - *d as u64).sum();
    let distinct: usize = opens.iter().map(|(_, d)| d).sum();
    let total: u64 = opens.iter().map(|(n, _)| n).sum();
    eprintln!(
        "{name} {secs} s: {} lifetimes ({:?} extended per connection), {} MiB checked, {} write deadlines hit ({} KiB resent exactly), \
         {} writer aborts, {} early reader closes ({} of them resets), {} read stalls; {} distinct IDs reused {} times",
        ld(&t.lifetimes),
        sh.extended.iter().map(ld).collect::<Vec<_>>(),
        ld(&t.bytes) >> 20,
        ld(&t.timeouts),
        ld(&t.resent) >> 10,
        ld(&t.writer_aborts),
        ld(&t.reader_closes),
        ld(&t.reader_resets),
        ld(&t.stalls),
        distinct,
        reused
    );
    assert!(ld(&t.lifetimes) >= 20, "the soak did some work");
    assert_eq!(total, ld(&t.lifetimes), "every lifetime opened a stream");
    if total < 65_536 / 2 {
        // Fewer opens than IDs on each connection: no allocator wrapped around.
        assert_eq!(
            reused, 0,
            "an ID came back before the ID space wrapped around"
        );
    }
}

/// Two pairs of Tokio sessions side by side: extensions on at both ends, and off at
/// the accepting end (the dialling end falls back).
#[test]
fn soak() {
    let _g = serial();
    let secs = soak_secs(5);
    let base = seed("soak");
    let sh = new_shared();
    let stop = Instant::now() + Duration::from_secs(secs);
    run(async {
        let mut conns = Vec::new();
        for acceptor_ext in [true, false] {
            let (a, b) = smux_tests::wire::loopback(None).await.expect("loopback");
            let a = Session::new(a, Config::default(), Role::Dialer).expect("session");
            let b_config = Config::default().with_extensions(acceptor_ext);
            conns.push([
                a,
                Session::new(b, b_config, Role::Acceptor).expect("session"),
            ]);
        }
        let mut acceptors = Vec::new();
        for (conn, pair) in conns.iter().enumerate() {
            for (end, s) in pair.iter().enumerate() {
                let k = (conn * 2 + end) as u64;
                acceptors.push(tokio_acceptor(s.clone(), sh.clone(), base ^ k << 60));
            }
        }
        // No waiting for the agreement: the first streams, opened by either end,
        // take the session's mode like every other.
        let mut slots = Vec::new();
        for slot in 0..2 * SLOTS_PER_END {
            let by = Opener {
                conn: slot / SLOTS_PER_END,
                end: slot % 2,
            };
            let s = conns[by.conn][by.end].clone();
            let sh = sh.clone();
            let mut rng = Rng::new(base.wrapping_add(slot as u64 * 0x9E37));
            slots.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    lifetime(&s, by, &sh, &mut rng).await;
                }
            }));
        }
        for t in slots {
            within(secs + 60, "soak slots", t).await.expect("slot task");
        }
        for (conn, [a, b]) in conns.iter().enumerate() {
            // Every handshake completes: no stream is left on either end.
            smux_tests::eventually(20, "all streams released", || {
                a.stats().streams == 0 && b.stats().streams == 0
            })
            .await;
            for st in [a.stats(), b.stats()] {
                assert_eq!(st.protocol_errors, 0);
                assert_eq!((st.buffered_in, st.buffered_out), (0, 0));
            }
            assert!(!a.is_closed() && !b.is_closed());
            let agreed = conn == 0;
            assert_eq!(
                (a.extensions_enabled(), b.extensions_enabled()),
                (agreed, agreed),
                "connection {conn}"
            );
            let extended = sh.extended[conn].load(Ordering::Relaxed);
            let opened = sh.opened[conn].load(Ordering::Relaxed);
            assert!(opened > 0, "connection {conn} was soaked");
            if agreed {
                assert_eq!(extended, opened, "every stream extended");
            } else {
                assert_eq!(extended, 0, "fallback: base streams only");
            }
            a.close();
            b.close();
        }
        for t in acceptors {
            within(20, "acceptors end", t).await.expect("acceptor task");
        }
    });
    report_totals("soak", secs, &sh);
}

fn tokio_acceptor(s: Session, sh: Arc<Shared>, seed: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while let Ok(st) = s.accept().await {
            i += 1;
            tokio::spawn(reader(st, sh.clone(), seed ^ i));
        }
    })
}

// ----- a Tokio session against a blocking one -------------------------------------------

/// [`lifetime`] with a blocking stream: `write_all_before` reports the exact count
/// accepted when its deadline passes; `shutdown(Shutdown::Write)` half-closes an
/// extended stream.
fn blocking_lifetime(s: &smux_blocking::Session, by: Opener, sh: &Shared, rng: &mut Rng) {
    use std::io::Write;
    let seq = sh.next_seq.fetch_add(1, Ordering::Relaxed);
    let mut st = s.open().expect("open");
    *lock(&sh.ids[by.index()])
        .entry(st.id().number())
        .or_default() += 1;
    let (size, abort_at, head) = plan(seq, rng);
    (&st).write_all(&head).expect("header");
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    let mut peer_gone = false;
    while off < size && !peer_gone {
        if abort_at.is_some_and(|a| off >= a) {
            count(&sh.totals.writer_aborts, 1);
            break;
        }
        let n = rng.range(1, buf.len() as u64 + 1).min(size - off) as usize;
        pattern(seq, off, &mut buf[..n]);
        let mut piece = &buf[..n];
        while !piece.is_empty() {
            let deadline = Instant::now() + Duration::from_millis(rng.range(1, 30));
            match st.write_all_before(piece, deadline) {
                Ok(()) => {
                    off += piece.len() as u64;
                    piece = &[];
                }
                Err(e) if e.is_timeout() => {
                    off += e.written() as u64;
                    piece = &piece[e.written()..];
                    count(&sh.totals.timeouts, 1);
                    count(&sh.totals.resent, piece.len() as u64);
                }
                Err(e) => {
                    assert!(
                        reader_stopped(e.error(), smux_blocking::reset_code(e.error())),
                        "lifetime {seq}: {e}"
                    );
                    off += e.written() as u64;
                    peer_gone = true;
                    break;
                }
            }
        }
    }
    let res = st.shutdown(std::net::Shutdown::Write);
    let (extended, reset) = shutdown_outcome(seq, res, smux_blocking::reset_code);
    count_mode(sh, by, extended);
    peer_gone |= reset;
    drop(st);
    let end_at = Instant::now() + Duration::from_secs(60);
    let report = loop {
        if let Some(r) = lock(&sh.reports).remove(&seq) {
            break r;
        }
        assert!(
            Instant::now() < end_at,
            "lifetime {seq}: no report within 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    verify(seq, off, peer_gone, report, sh);
}

/// [`reader`] on a blocking stream, on its own thread.
fn blocking_reader(st: smux_blocking::Stream, sh: Arc<Shared>, seed: u64) {
    use std::io::Read;
    let mut rng = Rng::new(seed);
    let mut head = [0u8; 16];
    (&st).read_exact(&mut head).expect("header");
    let seq = u64::from_le_bytes(head[..8].try_into().expect("8"));
    let size = u64::from_le_bytes(head[8..].try_into().expect("8"));
    let close_at = rng.chance(1, 10).then(|| rng.range(0, size + 1));
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut closed_early = false;
    let mut reset = false;
    loop {
        if close_at.is_some_and(|a| c.len() >= a) {
            closed_early = true;
            count(&sh.totals.reader_closes, 1);
            reset = st.is_extended() && rng.chance(1, 2);
            break;
        }
        if rng.chance(1, 16) {
            count(&sh.totals.stalls, 1);
            std::thread::sleep(Duration::from_millis(rng.range(1, 50)));
        }
        let k = rng.range(1, buf.len() as u64 + 1) as usize;
        let n = (&st).read(&mut buf[..k]).expect("stream read");
        if n == 0 {
            break;
        }
        pattern(seq, c.len(), &mut want[..n]);
        assert!(
            buf[..n] == want[..n],
            "lifetime {seq}: wrong bytes at {}",
            c.len()
        );
        c.update(&buf[..n]);
    }
    if reset {
        count(&sh.totals.reader_resets, 1);
        st.reset(RESET_CODE);
    }
    drop(st);
    lock(&sh.reports).insert(
        seq,
        Report {
            len: c.len(),
            sum: c.sum(),
            closed_early,
        },
    );
}

/// A Tokio session (dialling) against a blocking one, extensions on at both ends:
/// each end opens streams and writes under deadlines with its own adapter's API,
/// half-closes, and reads the other's (resetting some that it stops early).
#[test]
fn soak_tokio_blocking() {
    let _g = serial();
    let secs = soak_secs(3);
    let base = seed("soak tokio-blocking");
    let sh = new_shared();
    let stop = Instant::now() + Duration::from_secs(secs);
    run(async {
        let (a, b) = smux_tests::wire::loopback(None).await.expect("loopback");
        let b = b.into_std().expect("std socket");
        let a = Session::new(a, Config::default(), Role::Dialer).expect("session");
        let b = smux_blocking::Session::new(b, Config::default(), smux_blocking::Role::Acceptor)
            .expect("session");
        let acc_a = tokio_acceptor(a.clone(), sh.clone(), base);
        let acc_b = {
            let (b, sh) = (b.clone(), sh.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while let Ok(st) = b.accept() {
                    i += 1;
                    let sh = sh.clone();
                    std::thread::spawn(move || blocking_reader(st, sh, base ^ 1 << 60 ^ i));
                }
            })
        };
        let mut tokio_slots = Vec::new();
        let mut thread_slots = Vec::new();
        for slot in 0..SLOTS_PER_END {
            let mut rng = Rng::new(base.wrapping_add(slot as u64 * 0x9E37));
            let (sh_a, a) = (sh.clone(), a.clone());
            tokio_slots.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    lifetime(&a, Opener { conn: 0, end: 0 }, &sh_a, &mut rng).await;
                }
            }));
            let mut rng = Rng::new(base.wrapping_add(slot as u64 * 0x9E37 + 1));
            let (sh_b, b) = (sh.clone(), b.clone());
            thread_slots.push(std::thread::spawn(move || {
                while Instant::now() < stop {
                    blocking_lifetime(&b, Opener { conn: 0, end: 1 }, &sh_b, &mut rng);
                }
            }));
        }
        for t in tokio_slots {
            within(secs + 60, "soak slots", t).await.expect("slot task");
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in thread_slots {
                t.join().expect("blocking slot");
            }
        });
        within(secs + 60, "blocking slots", joined)
            .await
            .expect("join");
        smux_tests::eventually(20, "all streams released", || {
            a.stats().streams == 0 && b.stats().streams == 0
        })
        .await;
        for st in [a.stats(), b.stats()] {
            assert_eq!(st.protocol_errors, 0);
            assert_eq!((st.buffered_in, st.buffered_out), (0, 0));
        }
        assert!(a.extensions_enabled() && b.extensions_enabled());
        let extended = sh.extended[0].load(Ordering::Relaxed);
        assert_eq!(
            extended,
            sh.opened[0].load(Ordering::Relaxed),
            "every stream extended"
        );
        a.close();
        b.close();
        within(20, "acceptor ends", acc_a)
            .await
            .expect("acceptor task");
        let joined = tokio::task::spawn_blocking(move || acc_b.join());
        within(20, "blocking acceptor ends", joined)
            .await
            .expect("join")
            .expect("blocking acceptor");
    });
    report_totals("soak tokio-blocking", secs, &sh);
}
