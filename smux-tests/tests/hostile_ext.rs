//! Hand-written peers that agree on the extensions byte by byte and then misuse them,
//! or misuse the agreement itself, against a Tokio session (`smux-tokio`) over
//! loopback TCP.
//!
//! The agreement by hand (see `smux_tests::wire`): as the dialling end, the peer sends
//! its first frame and ASK; our acceptor answers with HELLO, its SET and the answer to
//! ASK; the peer then answers HELLO and sends its own SET. As the accepting end, the
//! peer waits for our dialer's `SYN(1)` and ASK and sends HELLO, SET and the answer to
//! ASK. Each case says what our session must do and, like `hostile.rs`, checks the peak
//! live heap of the whole process against a bound derived from the configuration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smux_proto::{verify_code, EndReason, ProtocolError, RESET_REFUSED};
use smux_tests::mem::{kib, mib, Counting, Probe};
use smux_tests::wire::{
    self, loopback, read_frame, spawn_reader_from, Frame, Frames, Parser, ASSUMED_WINDOW,
};
use smux_tests::{eventually, lock, pattern, pattern_sum, run, serial, within, Checksum};
use smux_tokio::{Config, Role, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fixed costs every case may spend on top of its configured bounds (as in
/// `hostile.rs`): runtime, sockets, the driver's buffers, the ID bitmap, the peer.
const BASE: usize = mib(2);

/// A VRM challenge the peer sends after frames it wants applied: frames are applied
/// in order, so once its answer is back, everything before it was.
const BARRIER: (u16, u32) = (0x1230, 0x0456_7890);

async fn send(w: &mut OwnedWriteHalf, f: &Frames) {
    w.write_all(f.as_bytes()).await.expect("peer write");
}

async fn next(r: &mut OwnedReadHalf, p: &mut Parser, what: &str) -> Frame {
    within(10, what, read_frame(r, p))
        .await
        .unwrap_or_else(|| panic!("{what}: the connection ended"))
}

/// Reads frames until the answer to `challenge` and returns those before it.
async fn until_answer(r: &mut OwnedReadHalf, p: &mut Parser, challenge: (u16, u32)) -> Vec<Frame> {
    let mut seen = Vec::new();
    loop {
        let f = next(r, p, "the frames before an answer").await;
        if wire::is_answer_to(&f, challenge) {
            return seen;
        }
        seen.push(f);
    }
}

fn protocol(e: EndReason) -> ProtocolError {
    match e {
        EndReason::Protocol(p) => p,
        other => panic!("expected a protocol error, the session ended with {other:?}"),
    }
}

/// Reads the peer's socket to end-of-file (our session closed it), then drops it.
async fn close_after_eof(mut r: OwnedReadHalf, w: OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    within(20, "peer sees end-of-file", async {
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    drop((r, w));
}

/// Our session accepts; the raw peer dials and agrees by hand (see [`dial_by_hand`]),
/// with `SET` of the default window. Frames of ours besides the agreement's (streams
/// our application opened early) are returned.
async fn acceptor_agreed(
    config: Config,
    buffers: Option<u32>,
) -> (Session, OwnedReadHalf, Parser, OwnedWriteHalf, Vec<Frame>) {
    let (dial, acc) = loopback(buffers).await.expect("loopback");
    let window = config.window();
    let s = Session::new(acc, config, Role::Acceptor).expect("session");
    let (r, w) = dial.into_split();
    let (r, p, w, early) = dial_by_hand(r, w, window, Some(ASSUMED_WINDOW)).await;
    (s, r, p, w, early)
}

/// The dialling peer's half of the agreement, as a dialer of ours does it: a PIN (its
/// first frame), then ASK. Our acceptor's HELLO must come first of all, and its
/// `SET(window)` before the answer to ASK; a ping of ours is answered. The peer then
/// answers HELLO, sends `SET(set)` if given, and a barrier whose answer proves all of
/// it was applied. Frames of ours besides the agreement's are returned.
async fn dial_by_hand(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    window: u32,
    set: Option<u32>,
) -> (OwnedReadHalf, Parser, OwnedWriteHalf, Vec<Frame>) {
    let mut p = Parser::new();
    send(&mut w, Frames::new().pin().ask()).await;
    let first = next(&mut r, &mut p, "HELLO").await;
    assert!(wire::is_hello(&first), "HELLO goes first: {first:?}");
    let mut early = Vec::new();
    let mut our_set = None;
    let mut f = Frames::new();
    for g in until_answer(&mut r, &mut p, wire::ASK).await {
        if let Some(v) = wire::set_window(&g) {
            assert_eq!(our_set.replace(v), None, "one SET");
        } else if g.cmd == wire::VRM {
            // Our session's ping (it measures the round trip once agreed).
            f.answer((g.id, g.length));
        } else {
            early.push(g);
        }
    }
    assert_eq!(
        our_set,
        Some(window),
        "SET of our window before the answer to ASK"
    );
    f.answer(wire::HELLO);
    if let Some(v) = set {
        f.set_recv_window(v);
    }
    f.vrm(BARRIER.0, BARRIER.1);
    send(&mut w, &f).await;
    for g in until_answer(&mut r, &mut p, BARRIER).await {
        assert_ne!(g.cmd, wire::VRM, "nothing answers an answer: {g:?}");
        early.push(g);
    }
    (r, p, w, early)
}

/// What the peer's reader records.
#[derive(Default)]
struct Tally {
    /// Frames received, by command (10 counts every undefined command).
    frames: [u64; 11],
    /// SYN frames received: ID and length (1 asks for an extended stream).
    syns: Vec<(u16, u32)>,
    /// FIN(0) frames received, by stream.
    fin0: HashMap<u16, u32>,
    /// FIN(1) (last FIN) frames received, by stream.
    fin1: HashMap<u16, u32>,
    /// RST frames received: stream → (count, last code).
    rsts: HashMap<u16, (u32, u32)>,
    /// Bytes confirmed by CFM, by stream.
    cfm: HashMap<u16, u64>,
    /// PSH payload received, by stream.
    psh: HashMap<u16, Checksum>,
    /// The last WND received, by stream.
    wnd: HashMap<u16, u32>,
    /// Codes of the GWY frames received.
    gwy: Vec<u32>,
    /// VRM frames received (answers, and our session's own RTT challenges).
    vrms: Vec<(u16, u32)>,
}

impl Tally {
    /// True once the answer to `challenge` arrived.
    fn answered(&self, challenge: (u16, u32)) -> bool {
        self.vrms.contains(&verify_code(challenge.0, challenge.1))
    }
}

fn tally(t: &mut Tally, f: Frame) {
    t.frames[(f.cmd as usize).min(10)] += 1;
    match f.cmd {
        wire::SYN => t.syns.push((f.id, f.length)),
        wire::FIN if f.length == 0 => *t.fin0.entry(f.id).or_default() += 1,
        wire::FIN => *t.fin1.entry(f.id).or_default() += 1,
        wire::RST => {
            let e = t.rsts.entry(f.id).or_default();
            *e = (e.0 + 1, f.length);
        }
        wire::CFM => *t.cfm.entry(f.id).or_default() += u64::from(f.length),
        wire::PSH => t.psh.entry(f.id).or_default().update(&f.payload),
        wire::VRM => t.vrms.push((f.id, f.length)),
        wire::WND => {
            t.wnd.insert(f.id, f.length);
        }
        wire::GWY => t.gwy.push(f.length),
        _ => {}
    }
}

type Tallied = Arc<Mutex<Tally>>;

fn reader(
    r: OwnedReadHalf,
    p: Parser,
    early: Vec<Frame>,
    gate: Option<Arc<AtomicBool>>,
) -> (Tallied, tokio::task::JoinHandle<usize>) {
    let t: Tallied = Arc::default();
    for f in early {
        tally(&mut lock(&t), f);
    }
    let h = spawn_reader_from(r, p, t.clone(), gate, tally);
    (t, h)
}

/// How far the agreement got when the peer sends an extension command.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Our acceptor sent HELLO after the peer's PIN; the peer never answered.
    Unanswered,
    /// The peer answered HELLO, as a reference peer does: our acceptor fell back.
    AnsweredHello,
    /// Our acceptor has extensions off: the peer's ASK is only answered (no HELLO).
    OursOff,
    /// Our session dials and sent `SYN(1)` and ASK; the peer sends a challenge, which
    /// tells nothing, instead of HELLO.
    OurDialer,
    /// Our dialer's ASK was answered, as a reference peer does: it fell back.
    AnsweredAsk,
    /// Our dialer has extensions off: `SYN(0)`, no ASK, and the peer's HELLO is only
    /// answered.
    OurDialerOff,
}

/// WND, RST, GWY and SET before both ends agreed are unknown commands, as for a
/// reference peer: the session ends with `UnknownCommand` naming the byte, whether
/// the agreement is pending or fell back, in either role.
#[test]
fn extension_commands_before_the_agreement_end_the_session() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        for cmd in [wire::WND, wire::RST, wire::GWY, wire::SET] {
            for phase in [
                Phase::Unanswered,
                Phase::AnsweredHello,
                Phase::OursOff,
                Phase::OurDialer,
                Phase::AnsweredAsk,
                Phase::OurDialerOff,
            ] {
                let (dial, acc) = loopback(None).await.expect("loopback");
                let ext_off = Config::default().with_extensions(false);
                let (s, sock) = match phase {
                    Phase::OurDialer | Phase::AnsweredAsk => (
                        Session::new(dial, Config::default(), Role::Dialer).expect("session"),
                        acc,
                    ),
                    Phase::OurDialerOff => (
                        Session::new(dial, ext_off, Role::Dialer).expect("session"),
                        acc,
                    ),
                    Phase::OursOff => (
                        Session::new(acc, ext_off, Role::Acceptor).expect("session"),
                        dial,
                    ),
                    Phase::Unanswered | Phase::AnsweredHello => (
                        Session::new(acc, Config::default(), Role::Acceptor).expect("session"),
                        dial,
                    ),
                };
                let (mut r, mut w) = sock.into_split();
                let mut p = Parser::new();
                let mut f = Frames::new();
                match phase {
                    Phase::Unanswered | Phase::AnsweredHello => {
                        send(&mut w, Frames::new().pin()).await;
                        assert!(wire::is_hello(&next(&mut r, &mut p, "HELLO").await));
                        if let Phase::AnsweredHello = phase {
                            f.answer(wire::HELLO);
                        }
                    }
                    Phase::OursOff => {
                        send(&mut w, Frames::new().pin().ask()).await;
                        let first = next(&mut r, &mut p, "answer").await;
                        assert!(
                            wire::is_answer_to(&first, wire::ASK),
                            "extensions off: no HELLO, just the answer: {first:?}"
                        );
                    }
                    Phase::OurDialer | Phase::AnsweredAsk | Phase::OurDialerOff => {
                        let st = s.open().await.expect("open");
                        let syn = next(&mut r, &mut p, "our SYN").await;
                        let ext = !matches!(phase, Phase::OurDialerOff);
                        assert_eq!(
                            (syn.cmd, syn.id, syn.length),
                            (wire::SYN, st.id().number(), u32::from(ext))
                        );
                        if ext {
                            assert!(wire::is_ask(&next(&mut r, &mut p, "ASK").await));
                        }
                        drop(st);
                        match phase {
                            Phase::OurDialer => f.vrm(0x0F00, 5),
                            Phase::AnsweredAsk => f.answer(wire::ASK),
                            _ => f.hello(),
                        };
                    }
                }
                f.raw(cmd, 1, 7);
                send(&mut w, &f).await;
                close_after_eof(r, w).await;
                let reason = within(20, "session end", s.closed()).await;
                assert_eq!(
                    protocol(reason),
                    ProtocolError::UnknownCommand(cmd),
                    "{phase:?}"
                );
            }
        }
    });
    probe.check("extension commands before the agreement", BASE);
}

/// WND of `u32::MAX` on an extended stream of ours: the send window grows (clamped
/// by the core), so the writer is no longer held to the base window, but it is still
/// held by `max_buffered_out`: with the peer not reading, the send queue stays within
/// its bound and the heap with it; once the peer reads, 16 MiB arrive intact without
/// a single CFM.
#[test]
fn wnd_of_u32_max_keeps_the_send_queue_bounded() {
    let _g = serial();
    let probe = Probe::start();
    const TOTAL: usize = 16 * 1024 * 1024;
    const PIECE: usize = 256 * 1024;
    let config = Config::default().with_max_buffered_out(mib(1));
    let (window, bound_out) = (config.window() as usize, config.max_buffered_out());
    run(async {
        let (s, r, p, mut w, early) = acceptor_agreed(config, Some(16 * 1024)).await;
        let gate = Arc::new(AtomicBool::new(true));
        let (t, rd) = reader(r, p, early, Some(gate.clone()));
        let mut st = s.open().await.expect("open");
        let id = st.id().number();
        send(
            &mut w,
            Frames::new().wnd(id, u32::MAX).vrm(BARRIER.0, BARRIER.1),
        )
        .await;
        eventually(10, "SYN(1) and the barrier's answer", || {
            let t = lock(&t);
            t.syns.contains(&(id, 1)) && t.answered(BARRIER)
        })
        .await;
        // The peer stops reading; our writer fills what it may.
        gate.store(false, Ordering::Release);
        let max_out = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (s, max_out, stop) = (s.clone(), max_out.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    max_out.fetch_max(s.stats().buffered_out, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let mut buf = vec![0u8; PIECE];
        let mut off = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while off < TOTAL {
            pattern(5, off as u64, &mut buf);
            match st.write_all_before(&buf, deadline).await {
                Ok(()) => off += PIECE,
                Err(e) => {
                    assert!(e.is_timeout(), "{e}");
                    off += e.written();
                    break;
                }
            }
        }
        let paused_at = off;
        let peak_paused = probe.peak();
        eprintln!(
            "WND u32::MAX, peer not reading: {} KiB accepted, send queue peaked at {} KiB, heap peak {} KiB",
            paused_at / 1024,
            max_out.load(Ordering::Relaxed) / 1024,
            peak_paused / 1024
        );
        assert!(paused_at > window, "WND raised the window beyond {window}");
        assert!(paused_at < TOTAL, "the send queue bound held the writer");
        // The peer reads again (never confirming): the rest goes through.
        gate.store(true, Ordering::Release);
        within(60, "write the rest", async {
            while off < TOTAL {
                let n = (TOTAL - off).min(PIECE - off % PIECE);
                pattern(5, off as u64, &mut buf[..n]);
                st.write_all(&buf[..n]).await.expect("write");
                off += n;
            }
        })
        .await;
        eventually(60, "the peer receives 16 MiB", || {
            lock(&t).psh.get(&id).map_or(0, Checksum::len) == TOTAL as u64
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        monitor.await.expect("monitor");
        let max_out = max_out.load(Ordering::Relaxed);
        assert!(max_out <= bound_out, "send queue {max_out} > {bound_out}");
        assert_eq!(
            lock(&t).psh[&id].sum(),
            pattern_sum(5, TOTAL as u64),
            "every byte, in order"
        );
        let stats = s.stats();
        assert_eq!((stats.protocol_errors, stats.buffered_out), (0, 0));
        assert!(!s.is_closed());
        drop(st);
        s.close();
        within(10, "reader ends", rd).await.expect("reader");
    });
    // The send queue is bounded, but frames sliced from a stream's send buffer pin
    // that buffer while they wait in the adapter's transmit buffer, and the next write
    // allocates afresh: up to one buffer of about `bound_out` plus a write per frame in
    // transmit (256 KiB of 64 KiB frames: 5) and the current one. Reported to the core
    // (/work/notes/core-requests.md); the ideal bound is about BASE + 2 x bound_out.
    // Still far below what ignoring the bound would cost (16 MiB held).
    probe.check(
        "WND u32::MAX, peer not reading",
        BASE + 6 * (bound_out + PIECE) + kib(512),
    );
}

/// Every stream of an agreed session is extended, whatever its SYN said and whenever
/// it was opened: one of ours opened before the agreement and one the peer opens with
/// `SYN(0)` after it take WND (exactly the granted window goes out, and a half-close
/// works), and RST aborts the peer's `SYN(0)` stream as it does a `SYN(1)` one. WND
/// and RST for IDs that are not open are ignored.
#[test]
fn every_stream_of_an_agreed_session_is_extended() {
    let _g = serial();
    let probe = Probe::start();
    let config = Config::default();
    let window = config.window() as usize;
    run(async {
        let (dial, acc) = loopback(None).await.expect("loopback");
        let s = Session::new(acc, config.clone(), Role::Acceptor).expect("session");
        // Opened before the peer said anything: the agreement is pending.
        let mut ours = s.open().await.expect("open");
        assert!(!ours.is_extended(), "not known yet");
        let a = ours.id().number();
        let (r, w) = dial.into_split();
        let (r, p, mut w, early) = dial_by_hand(r, w, config.window(), Some(ASSUMED_WINDOW)).await;
        let (t, _rd) = reader(r, p, early, None);
        assert!(
            lock(&t).syns.contains(&(a, 1)),
            "our early SYN said we have them"
        );
        assert!(
            ours.is_extended(),
            "our early stream took the session's mode"
        );
        let (b, c, d) = (1u16, 3u16, 5u16);
        let mut f = Frames::new();
        f.wnd(999, u32::MAX).rst(998, 1);
        f.syn(b).rst(b, 9);
        f.syn_ext(c).rst(c, 42);
        f.syn(d).wnd(d, 2 * window as u32);
        f.wnd(a, 2 * window as u32);
        f.vrm(BARRIER.0, BARRIER.1);
        send(&mut w, &f).await;
        eventually(10, "barrier answered", || lock(&t).answered(BARRIER)).await;
        for (id, code) in [(b, 9), (c, 42)] {
            let mut st = within(10, "accept", s.accept()).await.expect("accept");
            assert_eq!(st.id().number(), id);
            assert!(st.is_extended(), "stream {id}");
            let e = st
                .read(&mut [0u8; 8])
                .await
                .expect_err("RST aborts an extended stream");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            assert_eq!(smux_tokio::reset_code(&e), Some(code), "{e}");
        }
        let mut theirs = within(10, "accept", s.accept()).await.expect("accept");
        assert_eq!(theirs.id().number(), d);
        assert!(theirs.is_extended(), "SYN(0) in an agreed session");
        // WND raised both windows: exactly twice the window goes out on each.
        let data = vec![7u8; 3 * window];
        for st in [&mut ours, &mut theirs] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            let e = st
                .write_all_before(&data, deadline)
                .await
                .expect_err("the raised window stops the write");
            assert!(e.is_timeout(), "{e}");
            assert_eq!(
                e.written(),
                2 * window,
                "stream {}: the raised window",
                st.id()
            );
        }
        eventually(10, "the peer receives both windows", || {
            let t = lock(&t);
            [a, d]
                .iter()
                .all(|id| t.psh.get(id).map_or(0, Checksum::len) == 2 * window as u64)
        })
        .await;
        // A half-close on the peer's SYN(0) stream: our FIN(0), and its data still comes.
        theirs.shutdown().await.expect("half-close");
        eventually(10, "our FIN", || lock(&t).fin0.get(&d) == Some(&1)).await;
        send(&mut w, Frames::new().psh(d, b"after our FIN").fin(d)).await;
        let mut rest = Vec::new();
        within(10, "end-of-file", theirs.read_to_end(&mut rest))
            .await
            .expect("read");
        assert_eq!(rest, b"after our FIN");
        let st = s.stats();
        assert_eq!((st.protocol_errors, st.streams_refused), (0, 0));
        assert!(!s.is_closed());
    });
    probe.check(
        "every stream of an agreed session is extended",
        BASE + 8 * window,
    );
}

/// Our application releases an extended stream the peer is still writing on: the
/// session asks it to stop (`WND(id, 0)` after our FIN), and when the peer ignores
/// that and writes on, keeps confirming and discarding what arrives (the peer,
/// honouring its window, never blocks), counts it in `bytes_discarded`, and frees the
/// ID after the last FINs.
#[test]
fn a_released_extended_stream_is_confirmed_and_drained() {
    let _g = serial();
    let probe = Probe::start();
    const TOTAL: u64 = 16 * 1024 * 1024;
    const FRAME: usize = 64 * 1024;
    let config = Config::default();
    let window = u64::from(config.window());
    run(async {
        let (s, r, p, mut w, early) = acceptor_agreed(config, None).await;
        let (t, _rd) = reader(r, p, early, None);
        let id = 1u16;
        send(&mut w, Frames::new().syn_ext(id).psh(id, b"hi")).await;
        let mut st = within(10, "accept", s.accept()).await.expect("accept");
        let mut hi = [0u8; 2];
        st.read_exact(&mut hi).await.expect("read");
        assert_eq!(&hi, b"hi");
        drop(st);
        eventually(10, "our FIN, then WND(0): stop writing", || {
            let t = lock(&t);
            t.fin0.get(&id) == Some(&1) && t.wnd.get(&id) == Some(&0)
        })
        .await;
        let discarded_before = s.stats().bytes_discarded;
        // The peer writes on, honouring its window: it waits for CFMs.
        let chunk = vec![0x5Au8; FRAME];
        let mut f = Frames::new();
        f.psh(id, &chunk);
        let mut sent = 2u64;
        let mut waits = 0u64;
        within(60, "16 MiB into the released stream", async {
            while sent < TOTAL + 2 {
                let confirmed = lock(&t).cfm.get(&id).copied().unwrap_or(0);
                if sent - confirmed + FRAME as u64 > window {
                    waits += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                send(&mut w, &f).await;
                sent += FRAME as u64;
            }
        })
        .await;
        // Once the barrier is answered, every PSH before it was applied.
        send(&mut w, Frames::new().vrm(BARRIER.0, BARRIER.1)).await;
        eventually(10, "barrier", || lock(&t).answered(BARRIER)).await;
        let stats = s.stats();
        eprintln!(
            "released stream: {} MiB confirmed and dropped, peer waited for credit {waits} times",
            TOTAL >> 20
        );
        assert_eq!(stats.bytes_discarded - discarded_before, TOTAL);
        assert_eq!((stats.buffered_in, stats.protocol_errors), (0, 0));
        assert_eq!(stats.streams, 1, "the ID is held until the last FINs");
        // The close handshake: the peer's FIN, our last FIN, the peer's last FIN.
        send(&mut w, Frames::new().fin(id)).await;
        eventually(10, "our last FIN", || lock(&t).fin1.get(&id) == Some(&1)).await;
        assert_eq!(s.stats().streams, 1);
        send(&mut w, Frames::new().fin_last(id)).await;
        eventually(10, "ID freed", || s.stats().streams == 0).await;
        let t = lock(&t);
        assert_eq!(t.fin0.get(&id), Some(&1), "one first FIN");
        assert!(t.rsts.is_empty(), "no RST");
        drop(t);
        assert!(!s.is_closed());
    });
    probe.check("released extended stream drained", BASE + mib(1));
}

/// The peer says it goes away (GWY), then floods SYN(1) for all 65,536 IDs: every one
/// is refused with RST code `RESET_REFUSED` (none reaches the application, and our
/// own opens fail with `ConnectionRefused`). Once the peer sends its last FINs, every
/// ID is freed, and with nothing left the session ends `Drained`.
#[test]
fn syn_flood_after_gwy_is_refused_with_rst() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        let (s, r, p, mut w, early) = acceptor_agreed(Config::default(), None).await;
        let (t, rd) = reader(r, p, early, None);
        let mut f = Frames::new();
        f.gwy(0);
        for id in 0..=u16::MAX {
            f.syn_ext(id);
        }
        send(&mut w, &f).await;
        eventually(30, "65,536 refusing RSTs", || {
            lock(&t).frames[wire::RST as usize] == 65_536
        })
        .await;
        {
            let t = lock(&t);
            assert_eq!(t.rsts.len(), 65_536);
            assert!(t
                .rsts
                .values()
                .all(|&(n, code)| (n, code) == (1, RESET_REFUSED)));
            assert_eq!(t.frames[wire::FIN as usize], 0, "refused with RST, not FIN");
        }
        let stats = s.stats();
        assert_eq!(
            (stats.streams, stats.accept_backlog, stats.streams_refused),
            (65_536, 0, 65_536)
        );
        let e = s.open().await.expect_err("going away: no new streams");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        // The peer completes every refused stream with its last FIN; we answer with
        // ours, every ID is freed, and the go-away has run its course.
        f.clear();
        for id in 0..=u16::MAX {
            f.fin_last(id);
        }
        send(&mut w, &f).await;
        drop(f);
        // The session ends and closes the transport; the peer sees that and closes its
        // end too (our driver waits for that, within a grace period).
        within(30, "peer sees end-of-file", rd)
            .await
            .expect("reader");
        drop(w);
        let reason = within(10, "session drains", s.closed()).await;
        assert_eq!(reason, EndReason::Drained);
        let t = lock(&t);
        assert_eq!(t.fin1.len(), 65_536, "our last FIN for every refused ID");
        assert_eq!(s.stats().protocol_errors, 0);
    });
    // As the base-protocol SYN flood in `hostile.rs`: the stream records, the queued
    // frames and the peer's own tally.
    probe.check("65,536 SYN(1) after GWY", BASE + 65_536 * 256);
}

/// Our application goes away while a stream the peer opened is in use: the peer is
/// told (GWY with our code), and when it opens 4,096 more streams anyway every one is
/// refused with RST `RESET_REFUSED` and never reaches the application, while the open
/// stream keeps carrying data both ways. Once that stream is closed, the refused ones
/// are finished and the peer answered our GWY, the session ends `Drained`.
#[test]
fn our_go_away_refuses_new_streams_and_drains() {
    let _g = serial();
    let probe = Probe::start();
    const N: u16 = 4_096;
    run(async {
        let (s, r, p, mut w, early) = acceptor_agreed(Config::default(), None).await;
        let (t, rd) = reader(r, p, early, None);
        send(&mut w, Frames::new().syn_ext(1).psh(1, b"before")).await;
        let mut st = within(10, "accept", s.accept()).await.expect("accept");
        let mut got = [0u8; 6];
        st.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"before");
        s.go_away(5);
        eventually(10, "our GWY", || lock(&t).gwy == [5]).await;
        // The peer opens more streams regardless.
        let mut f = Frames::new();
        for i in 0..N {
            let id = 3 + 2 * i;
            f.syn_ext(id).psh(id, b"ignored");
        }
        f.psh(1, b"after").vrm(BARRIER.0, BARRIER.1);
        send(&mut w, &f).await;
        eventually(10, "every new stream refused", || {
            let t = lock(&t);
            t.answered(BARRIER) && t.rsts.len() == usize::from(N)
        })
        .await;
        {
            let t = lock(&t);
            assert!(t
                .rsts
                .values()
                .all(|&(n, code)| (n, code) == (1, RESET_REFUSED)));
            assert!(!t.rsts.contains_key(&1), "the open stream is untouched");
        }
        let stats = s.stats();
        assert_eq!(
            (stats.accept_backlog, stats.streams_refused),
            (0, u64::from(N))
        );
        let e = s.open().await.expect_err("no new streams");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        // The open stream works on, both ways.
        let mut after = [0u8; 5];
        within(10, "read", st.read_exact(&mut after))
            .await
            .expect("read");
        assert_eq!(&after, b"after");
        st.write_all(b"reply").await.expect("write");
        eventually(10, "the reply", || {
            lock(&t).psh.get(&1).map(Checksum::len) == Some(5)
        })
        .await;
        // The peer finishes the refused streams and answers our GWY; we close ours.
        f.clear();
        for i in 0..N {
            f.fin_last(3 + 2 * i);
        }
        f.gwy(0);
        send(&mut w, &f).await;
        drop(st);
        eventually(10, "our FIN on the open stream", || {
            lock(&t).fin0.get(&1) == Some(&1)
        })
        .await;
        assert!(!s.is_closed(), "a stream is still open");
        // The peer releases it too: its last FIN, then ours, and the session drains.
        send(&mut w, Frames::new().fin_last(1)).await;
        within(20, "peer sees end-of-file", rd)
            .await
            .expect("reader");
        drop(w);
        let reason = within(10, "session drains", s.closed()).await;
        assert_eq!(reason, EndReason::Drained);
        let t = lock(&t);
        assert_eq!(t.fin1.get(&1), Some(&1), "our last FIN on the open stream");
        assert_eq!(t.fin1.len(), usize::from(N) + 1, "and on every refused one");
        assert_eq!(s.stats().protocol_errors, 0);
    });
    probe.check("our go-away, 4,096 refused", BASE + usize::from(N) * kib(1));
}

/// Our session dials; the raw peer accepts and agrees as our acceptor does (HELLO,
/// SET and the answer, after our first frames: the `SYN(1)` of a stream opened early,
/// and ASK). Then our
/// application opens 10,000 extended streams, writes a byte on each and releases
/// them. The peer answers each with its FIN but never sends its last FIN: every such
/// stream keeps its ID and a small record, and nothing else (no buffers). The cost is
/// bounded by the ID space: at most 65,536 records of about the size measured here.
/// Other streams keep working, and the IDs come back once the last FINs arrive.
#[test]
fn a_peer_that_never_sends_its_last_fin_holds_only_ids() {
    let _g = serial();
    let probe = Probe::start();
    const N: usize = 10_000;
    run(async {
        let (dial, acc) = loopback(None).await.expect("loopback");
        let s = Session::new(dial, Config::default(), Role::Dialer).expect("session");
        let (mut r, mut w) = acc.into_split();
        let mut p = Parser::new();
        let early = s.open().await.expect("open");
        let syn = next(&mut r, &mut p, "our first frame").await;
        assert_eq!(
            (syn.cmd, syn.id, syn.length),
            (wire::SYN, early.id().number(), 1)
        );
        assert!(
            wire::is_ask(&next(&mut r, &mut p, "ASK").await),
            "ASK follows"
        );
        let mut f = Frames::new();
        f.hello()
            .set_recv_window(ASSUMED_WINDOW)
            .answer(wire::ASK)
            .vrm(BARRIER.0, BARRIER.1);
        send(&mut w, &f).await;
        // Our dialer learnt yes from HELLO: its SET, a ping, its answer to HELLO.
        let mut set = None;
        f.clear();
        for g in until_answer(&mut r, &mut p, wire::HELLO).await {
            if let Some(v) = wire::set_window(&g) {
                set = Some(v);
            } else if g.cmd == wire::VRM {
                f.answer((g.id, g.length));
            } else {
                panic!("only the agreement's frames so far: {g:?}");
            }
        }
        assert_eq!(set, Some(Config::default().window()), "our SET");
        let between = until_answer(&mut r, &mut p, BARRIER).await;
        assert!(between.is_empty(), "no answer to the answer: {between:?}");
        send(&mut w, &f).await;
        let mut f = Frames::new();
        // Counters only, so the peer's own records do not blur the measurement.
        #[derive(Default)]
        struct Counts {
            syn_ext: usize,
            fin0: usize,
            fin1: usize,
            psh: u64,
            barrier: bool,
        }
        let t: Arc<Mutex<Counts>> = Arc::default();
        let _rd = spawn_reader_from(r, p, t.clone(), None, |c: &mut Counts, f: Frame| {
            match (f.cmd, f.length) {
                (wire::SYN, 1) => c.syn_ext += 1,
                (wire::FIN, 0) => c.fin0 += 1,
                (wire::FIN, _) => c.fin1 += 1,
                (wire::PSH, n) => c.psh += u64::from(n),
                (wire::VRM, _) => {
                    c.barrier |= (f.id, f.length) == verify_code(BARRIER.0, BARRIER.1)
                }
                _ => {}
            }
        });
        let mut ids = Vec::with_capacity(N + 1);
        f.bytes(&vec![0u8; (N + 1) * wire::HEADER]).clear();
        let live_before = smux_tests::mem::live();
        for _ in 0..N {
            let mut st = s.open().await.expect("open");
            st.write_all(b"x").await.expect("write");
            ids.push(st.id().number());
        }
        eventually(30, "every SYN(1), byte and FIN", || {
            let c = lock(&t);
            (c.syn_ext, c.psh, c.fin0) == (N, N as u64, N)
        })
        .await;
        // The peer finishes its side but withholds its last FIN.
        for id in &ids {
            f.fin(*id);
        }
        send(&mut w, &f).await;
        eventually(30, "our last FINs", || lock(&t).fin1 == N).await;
        send(&mut w, Frames::new().vrm(BARRIER.0, BARRIER.1)).await;
        eventually(10, "barrier", || lock(&t).barrier).await;
        let stats = s.stats();
        assert_eq!(stats.streams, N + 1, "held IDs, and the early stream");
        assert_eq!((stats.buffered_in, stats.buffered_out), (0, 0));
        // What the held IDs cost: their records in the session's stream table (which
        // keeps its capacity once they are freed) and nothing else.
        let per_id = smux_tests::mem::live().saturating_sub(live_before) / N;
        eprintln!(
            "{N} IDs held by missing last FINs: about {per_id} bytes of heap each; \
             at most 65,536 such IDs: {} KiB",
            per_id * 65_536 / 1024
        );
        assert!(per_id <= 512, "a held ID costs {per_id} bytes");
        // Another stream works meanwhile, on an ID that is not held.
        let mut more = s.open().await.expect("open");
        assert!(!ids.contains(&more.id().number()));
        more.write_all(b"still").await.expect("write");
        let m = more.id().number();
        send(&mut w, Frames::new().psh(m, b"works")).await;
        let mut got = [0u8; 5];
        within(10, "read", more.read_exact(&mut got))
            .await
            .expect("read");
        assert_eq!(&got, b"works");
        eventually(10, "its data", || lock(&t).psh == N as u64 + 5).await;
        // The last FINs arrive at last: the IDs are free.
        f.clear();
        for id in &ids {
            f.fin_last(*id);
        }
        send(&mut w, &f).await;
        eventually(10, "IDs freed", || s.stats().streams == 2).await;
        assert_eq!(s.stats().protocol_errors, 0);
        drop((early, more));
    });
    probe.check("10,000 IDs held without last FIN", BASE + N * kib(1));
}

// ----- the agreement's own frames, misused -------------------------------------------

/// Writes `len` bytes of zeros on `st` until `secs` seconds have passed and returns how
/// many were accepted: with the peer reading and never confirming, exactly the stream's
/// send window.
async fn window_of(st: &mut smux_tokio::Stream, len: usize, secs: u64) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let e = st
        .write_all_before(&vec![0u8; len], deadline)
        .await
        .expect_err("the window stops the write");
    assert!(e.is_timeout(), "{e}");
    e.written()
}

/// Waits until the peer has received `n` bytes on stream `id` in all.
async fn received(t: &Tallied, id: u16, n: u64) {
    eventually(30, "the peer receives what was written", || {
        lock(t).psh.get(&id).map_or(0, Checksum::len) == n
    })
    .await;
}

/// The peer's SET governs our send windows, within sane bounds. Until it arrives a
/// stream may have min(our window, 512 KiB) unconfirmed (our window is 2 MiB here);
/// `SET(RECV_WINDOW, 0)` and a SET of an unknown key change nothing; a larger value
/// applies; a value below what is in flight stops the writer until the confirmations
/// bring it under the new window (no underflow), also on streams opened after it;
/// `u32::MAX` is clamped, and 4 MiB then go through without a single CFM.
#[test]
fn the_peers_set_governs_our_windows() {
    let _g = serial();
    let probe = Probe::start();
    const KIB: u32 = 1024;
    let config = Config::default().with_window(2048 * KIB);
    run(async {
        let (dial, acc) = loopback(None).await.expect("loopback");
        let s = Session::new(acc, config.clone(), Role::Acceptor).expect("session");
        let (r, w) = dial.into_split();
        let (r, p, mut w, early) = dial_by_hand(r, w, config.window(), None).await;
        let (t, _rd) = reader(r, p, early, None);
        let mut st = s.open().await.expect("open");
        let id = st.id().number();
        let mut sent = 0u64;
        // No SET yet: the assumed window.
        assert_eq!(
            window_of(&mut st, 4 << 20, 1).await,
            ASSUMED_WINDOW as usize
        );
        sent += u64::from(ASSUMED_WINDOW);
        received(&t, id, sent).await;
        // SET 0 and an unknown key are ignored: confirming the window frees it all.
        let mut f = Frames::new();
        f.set_recv_window(0).set(7, 5).cfm(id, ASSUMED_WINDOW);
        send(&mut w, &f).await;
        assert_eq!(
            window_of(&mut st, 4 << 20, 1).await,
            ASSUMED_WINDOW as usize
        );
        sent += u64::from(ASSUMED_WINDOW);
        received(&t, id, sent).await;
        // A larger window applies.
        f.clear();
        f.set_recv_window(1024 * KIB).cfm(id, ASSUMED_WINDOW);
        send(&mut w, &f).await;
        assert_eq!(window_of(&mut st, 4 << 20, 1).await, 1 << 20);
        sent += 1 << 20;
        received(&t, id, sent).await;
        // A smaller one than what is in flight: nothing until the confirmations bring
        // the stream under it, then only what fits.
        f.clear();
        f.set_recv_window(64 * KIB).vrm(BARRIER.0, BARRIER.1);
        send(&mut w, &f).await;
        eventually(10, "barrier", || lock(&t).answered(BARRIER)).await;
        assert_eq!(window_of(&mut st, 1 << 20, 1).await, 0);
        f.clear();
        f.cfm(id, 1024 * KIB - 16 * KIB);
        send(&mut w, &f).await;
        assert_eq!(window_of(&mut st, 1 << 20, 1).await, 48 * 1024);
        sent += 48 * 1024;
        received(&t, id, sent).await;
        let mut st2 = s.open().await.expect("open");
        assert_eq!(
            window_of(&mut st2, 1 << 20, 1).await,
            64 * 1024,
            "a new stream"
        );
        // Huge: clamped, and far more than any window goes through unconfirmed.
        f.clear();
        f.set_recv_window(u32::MAX);
        send(&mut w, &f).await;
        let data = vec![1u8; 4 << 20];
        within(30, "4 MiB without a CFM", st.write_all(&data))
            .await
            .expect("write");
        sent += 4 << 20;
        received(&t, id, sent).await;
        let stats = s.stats();
        assert_eq!((stats.protocol_errors, stats.buffered_out), (0, 0));
        assert!(!s.is_closed());
    });
    probe.check("the peer's SET", BASE + 4 * mib(4));
}

/// Only an exact offer counts, and an answer to our own offer is never answered (with
/// a peer that answers every VRM, as a reference peer does, answering answers could go
/// on forever). A near-miss offer, a copy of our own offer, an offer that arrives after
/// the fallback: each is just answered, and nothing else goes out (no SET, no second
/// offer). In both roles; our dialer's `ready()` makes ASK its very first frame.
#[test]
fn near_miss_offers_are_just_answered_and_answers_never_are() {
    let _g = serial();
    let probe = Probe::start();
    let (hello, ask) = (wire::HELLO, wire::ASK);
    run(async {
        for role in [Role::Acceptor, Role::Dialer] {
            let (dial, acc) = loopback(None).await.expect("loopback");
            let (ours, theirs) = match role {
                Role::Acceptor => (acc, dial),
                Role::Dialer => (dial, acc),
            };
            let s = Session::new(ours, Config::default(), role).expect("session");
            let (mut r, mut w) = theirs.into_split();
            let mut p = Parser::new();
            let (our_offer, their_offer) = match role {
                Role::Acceptor => (hello, ask),
                Role::Dialer => (ask, hello),
            };
            let ready = {
                let s = s.clone();
                tokio::spawn(async move { s.ready().await })
            };
            if role == Role::Acceptor {
                // Our acceptor's `ready()` sends HELLO at once too.
                send(&mut w, Frames::new().pin()).await;
            }
            let first = next(&mut r, &mut p, "our offer").await;
            assert_eq!(
                (first.cmd, first.id, first.length),
                (wire::VRM, our_offer.0, our_offer.1)
            );
            // Near misses (one bit off in either value) and our own offer: answered,
            // and the agreement is still pending.
            let near = [
                (their_offer.0, their_offer.1 ^ 1),
                (their_offer.0, their_offer.1 ^ 0x8000_0000),
                (their_offer.0 ^ 0x0100, their_offer.1),
                our_offer,
            ];
            let mut f = Frames::new();
            for v in near {
                f.vrm(v.0, v.1);
            }
            f.vrm(BARRIER.0, BARRIER.1);
            send(&mut w, &f).await;
            let got = until_answer(&mut r, &mut p, BARRIER).await;
            assert_eq!(got.len(), near.len(), "{role:?}: {got:?}");
            for (g, v) in got.iter().zip(near) {
                assert!(wire::is_answer_to(g, v), "{role:?}: {g:?} for {v:?}");
            }
            assert!(!ready.is_finished(), "{role:?}: still pending");
            // The peer answers our offer (twice): we fall back, and answer neither; the
            // exact offer that follows is just answered.
            f.clear();
            f.answer(our_offer)
                .answer(our_offer)
                .vrm(their_offer.0, their_offer.1);
            f.vrm(BARRIER.0, BARRIER.1);
            send(&mut w, &f).await;
            let got = until_answer(&mut r, &mut p, BARRIER).await;
            assert_eq!(got.len(), 1, "{role:?}: {got:?}");
            assert!(
                wire::is_answer_to(&got[0], their_offer),
                "{role:?}: {got:?}"
            );
            let agreed = within(10, "ready", ready)
                .await
                .expect("task")
                .expect("ready");
            assert!(!agreed, "{role:?}: fell back");
            assert!(!s.extensions_enabled());
            // Our SYN still says we have them (a reference peer ignores the flag),
            // and the stream is base.
            let st = s.open().await.expect("open");
            let syn = next(&mut r, &mut p, "SYN").await;
            assert_eq!(
                (syn.cmd, syn.id, syn.length),
                (wire::SYN, st.id().number(), 1)
            );
            assert!(!st.is_extended());
            assert_eq!(s.stats().protocol_errors, 0);
            s.close();
            close_after_eof(r, w).await;
        }
    });
    probe.check("near-miss offers and answers", BASE);
}

/// A dialer that sends ASK 300,000 times and does not read: the first ASK settles
/// the agreement, so HELLO and SET go out once; every ASK is just answered, the
/// answers owed stay within `max_pending_answers` (then input pauses and the peer's
/// writes stall), and once the peer reads, every answer is there, in order.
#[test]
fn an_ask_flood_gets_one_hello_one_set_and_bounded_answers() {
    let _g = serial();
    let probe = Probe::start();
    const N: u64 = 300_000;
    let config = Config::default();
    let (answers, window) = (config.max_pending_answers(), config.window());
    run(async {
        let (dial, acc) = loopback(Some(16 * 1024)).await.expect("loopback");
        let s = Session::new(acc, config, Role::Acceptor).expect("session");
        let (r, mut w) = dial.into_split();
        let gate = Arc::new(AtomicBool::new(false));
        #[derive(Default)]
        struct Seen {
            hello: u64,
            sets: Vec<u32>,
            answers: u64,
            pings: u64,
            other: Vec<Frame>,
        }
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let rd = spawn_reader_from(r, Parser::new(), seen.clone(), Some(gate.clone()), {
            |t: &mut Seen, f: Frame| {
                if wire::is_hello(&f) {
                    t.hello += 1;
                } else if let Some(v) = wire::set_window(&f) {
                    t.sets.push(v);
                } else if wire::is_answer_to(&f, wire::ASK) {
                    t.answers += 1;
                } else if f.cmd == wire::VRM && t.answers == 0 {
                    // Our session's one ping, which goes ahead of the first answer.
                    t.pings += 1;
                } else {
                    t.other.push(f);
                }
            }
        });
        let written = Arc::new(AtomicUsize::new(0));
        let writer = {
            let written = written.clone();
            tokio::spawn(async move {
                let mut f = Frames::new();
                for _ in 0..N {
                    f.ask();
                    if f.len() >= 7 * 1024 {
                        send(&mut w, &f).await;
                        written.fetch_add(f.len() / wire::HEADER, Ordering::Relaxed);
                        f.clear();
                    }
                }
                send(&mut w, &f).await;
                written.fetch_add(f.len() / wire::HEADER, Ordering::Relaxed);
                w
            })
        };
        // Until the peer's writes stall (no progress for 300 ms).
        let mut last = usize::MAX;
        within(30, "the flood stalls", async {
            loop {
                let now = written.load(Ordering::Relaxed);
                if now == last {
                    break;
                }
                last = now;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await;
        assert!(
            (last as u64) < N,
            "input did not pause: all {N} ASKs were taken"
        );
        let stalled_peak = probe.peak();
        eprintln!(
            "ASK flood stalled after {last} of {N}; peak so far {} KiB",
            stalled_peak / 1024
        );
        // The answers owed (`max_pending_answers`), the adapter's transmit buffer (up
        // to 256 KiB of answers taken from the core) and read buffer (64 KiB), the
        // peer's parse buffer.
        let bound = BASE + answers * 64 + kib(256) + kib(64) + kib(128);
        assert!(
            stalled_peak <= bound,
            "while stalled: {stalled_peak} > {bound}"
        );
        assert!(s.extensions_enabled(), "the first ASK settled it");
        gate.store(true, Ordering::Release);
        let _w = within(60, "the flood completes", writer)
            .await
            .expect("writer");
        eventually(60, "every ASK answered", || lock(&seen).answers == N).await;
        {
            let t = lock(&seen);
            assert_eq!((t.hello, &t.sets[..], t.pings), (1, &[window][..], 1));
            assert!(t.other.is_empty(), "{:?}", t.other);
        }
        assert_eq!(s.stats().protocol_errors, 0);
        s.close();
        within(10, "reader ends", rd).await.expect("reader");
    });
    // Once the peer reads, the backlog drains at full speed through the same buffers,
    // which may grow (and be copied) on the way: with more than about 115,000 ASKs
    // stalled in the kernel (after another test ran in the same process) the peak
    // reaches 4.26 MiB, against 2.2 MiB with fewer; measured the same on a48cfe0, so
    // not new. The bound on the stalled session above is the one that matters.
    probe.check("ASK flood", BASE + answers * 64 + mib(4));
}

/// A peer that opens with `SYN(1)`, saying it has the extensions, and then behaves as a
/// base peer: it answers HELLO and our ping as a reference peer does, never sends ASK
/// or SET, and ends streams with `FIN(0)` only. Our acceptor took it at its word (the
/// session is extended) and stays sound: it never answers the answer, its writes keep
/// to the assumed window (min(our 2 MiB, 512 KiB)) without the peer's SET, the stream
/// whose last FIN never comes holds its ID and nothing else, the peer reusing that ID
/// opens nothing (its data is counted and dropped), and other streams work.
#[test]
fn a_syn_ext_from_a_peer_that_then_behaves_base() {
    let _g = serial();
    let probe = Probe::start();
    let config = Config::default().with_window(2 * 1024 * 1024);
    run(async {
        let (dial, acc) = loopback(None).await.expect("loopback");
        let s = Session::new(acc, config.clone(), Role::Acceptor).expect("session");
        let (mut r, mut w) = dial.into_split();
        let mut p = Parser::new();
        send(&mut w, Frames::new().syn_ext(1).psh(1, b"hi")).await;
        // HELLO, our SET and a ping: answered as a reference peer answers VRMs.
        let hello = next(&mut r, &mut p, "HELLO").await;
        assert!(wire::is_hello(&hello), "{hello:?}");
        let set = next(&mut r, &mut p, "SET").await;
        assert_eq!(wire::set_window(&set), Some(config.window()));
        let ping = next(&mut r, &mut p, "ping").await;
        assert_eq!(ping.cmd, wire::VRM);
        let mut f = Frames::new();
        f.answer(wire::HELLO)
            .answer((ping.id, ping.length))
            .vrm(BARRIER.0, BARRIER.1);
        send(&mut w, &f).await;
        let between = until_answer(&mut r, &mut p, BARRIER).await;
        assert!(between.is_empty(), "nothing answers an answer: {between:?}");
        assert!(s.extensions_enabled());
        let (t, _rd) = reader(r, p, Vec::new(), None);
        let mut st = within(10, "accept", s.accept()).await.expect("accept");
        assert!(st.is_extended());
        let mut hi = [0u8; 2];
        st.read_exact(&mut hi).await.expect("read");
        assert_eq!(&hi, b"hi");
        assert_eq!(
            window_of(&mut st, 1 << 20, 1).await,
            ASSUMED_WINDOW as usize
        );
        received(&t, 1, u64::from(ASSUMED_WINDOW)).await;
        // The peer ends the stream the base way; we release it: our FINs go out, and
        // the peer's last FIN never comes.
        send(&mut w, Frames::new().fin(1)).await;
        let mut rest = Vec::new();
        within(10, "end-of-file", st.read_to_end(&mut rest))
            .await
            .expect("read");
        assert!(rest.is_empty());
        drop(st);
        eventually(10, "our last FIN", || lock(&t).fin1.get(&1) == Some(&1)).await;
        // For the peer the ID is free: it opens a new stream with it.
        f.clear();
        f.syn(1).psh(1, b"again").syn(3).psh(3, b"works").fin(3);
        send(&mut w, &f).await;
        let mut other = within(10, "accept", s.accept()).await.expect("accept");
        assert_eq!(other.id().number(), 3, "no new stream with the held ID");
        assert!(other.is_extended(), "the session's mode");
        let mut got = Vec::new();
        within(10, "read", other.read_to_end(&mut got))
            .await
            .expect("read");
        assert_eq!(got, b"works");
        let stats = s.stats();
        assert_eq!(stats.bytes_discarded, 5, "the data for the held ID");
        assert_eq!((stats.buffered_in, stats.buffered_out), (0, 0));
        assert_eq!(stats.protocol_errors, 0);
        assert!(stats.streams >= 1, "the held ID");
        assert!(!s.is_closed());
        let t = lock(&t);
        assert_eq!(
            t.fin0.get(&1),
            None,
            "one FIN, the last, on a stream the peer ended"
        );
        assert!(t.rsts.is_empty());
    });
    probe.check("SYN(1), then base", BASE + mib(2));
}
