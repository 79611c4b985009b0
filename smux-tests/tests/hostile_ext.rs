//! Hand-written peers that negotiate the extensions byte by byte and then misuse them,
//! against a Tokio session (`smux-tokio`) over loopback TCP.
//!
//! The negotiation by hand (see `smux_proto::negotiate`): as the dialling end, the
//! peer sends a first frame, reads HELLO, answers it with the verify answer and ACK;
//! as the accepting end, it waits for our session's first frame, sends HELLO and
//! expects the verify answer followed by ACK. Each case says what our session must do
//! and, like `hostile.rs`, checks the peak live heap of the whole process against a
//! bound derived from the configuration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smux_proto::{verify_code, EndReason, ProtocolError, RESET_REFUSED};
use smux_tests::mem::{kib, mib, Counting, Probe};
use smux_tests::wire::{self, loopback, read_frame, spawn_reader_from, Frame, Frames, Parser};
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

/// Our session accepts; the raw peer dials and completes the negotiation: a PIN as
/// the session's first frame, HELLO back, the verify answer and ACK, then a barrier
/// whose answer proves the ACK was applied. Frames of ours that arrive before HELLO
/// (streams our application opened early) are returned.
async fn acceptor_negotiated(
    config: Config,
    buffers: Option<u32>,
) -> (Session, OwnedReadHalf, Parser, OwnedWriteHalf, Vec<Frame>) {
    let (dial, acc) = loopback(buffers).await.expect("loopback");
    let s = Session::new(acc, config, Role::Acceptor);
    let (r, w) = dial.into_split();
    let (r, p, w, early) = dial_by_hand(r, w, |_| {}).await;
    (s, r, p, w, early)
}

/// The dialling peer's half of the negotiation (see [`acceptor_negotiated`]);
/// `before` runs once the PIN was sent, so the test can have our application act
/// before HELLO is answered.
async fn dial_by_hand(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    before: impl FnOnce(&mut Frames),
) -> (OwnedReadHalf, Parser, OwnedWriteHalf, Vec<Frame>) {
    let mut p = Parser::new();
    let mut f = Frames::new();
    f.pin();
    before(&mut f);
    send(&mut w, &f).await;
    let mut early = Vec::new();
    loop {
        let f = next(&mut r, &mut p, "HELLO").await;
        if wire::is_hello(&f) {
            break;
        }
        assert_ne!(f.cmd, wire::VRM, "no VRM of ours before HELLO: {f:?}");
        early.push(f);
    }
    let mut f = Frames::new();
    f.answer_hello().vrm(BARRIER.0, BARRIER.1);
    send(&mut w, &f).await;
    loop {
        let f = next(&mut r, &mut p, "barrier answer").await;
        if f.cmd == wire::VRM {
            assert_eq!((f.id, f.length), verify_code(BARRIER.0, BARRIER.1));
            break;
        }
        early.push(f);
    }
    (r, p, w, early)
}

/// What the peer's reader records.
#[derive(Default)]
struct Tally {
    /// Frames received, by command.
    frames: [u64; 9],
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
    t.frames[(f.cmd as usize).min(8)] += 1;
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

/// How far the negotiation got when the peer sends an extension command.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Our acceptor sent HELLO; the peer never answered.
    Unanswered,
    /// The peer sent HELLO's verify answer but not ACK.
    NoAck,
    /// Our acceptor has extensions off; the peer sends a verify answer and ACK as if
    /// it had seen HELLO (it never came).
    OursOff,
    /// Our session dials and sent its first frame; the peer sends the command
    /// instead of HELLO.
    OurDialer,
}

/// WND, RST and GWY before both ends agreed are unknown commands, as for a
/// reference peer: the session ends with `UnknownCommand` naming the byte.
#[test]
fn extension_commands_before_negotiation_end_the_session() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        for cmd in [wire::WND, wire::RST, wire::GWY] {
            for phase in [
                Phase::Unanswered,
                Phase::NoAck,
                Phase::OursOff,
                Phase::OurDialer,
            ] {
                let (dial, acc) = loopback(None).await.expect("loopback");
                let ext_off = Config {
                    extensions: false,
                    ..Config::default()
                };
                let (s, sock) = match phase {
                    Phase::OurDialer => (Session::new(dial, Config::default(), Role::Dialer), acc),
                    Phase::OursOff => (Session::new(acc, ext_off, Role::Acceptor), dial),
                    _ => (Session::new(acc, Config::default(), Role::Acceptor), dial),
                };
                let (mut r, mut w) = sock.into_split();
                let mut p = Parser::new();
                let mut f = Frames::new();
                match phase {
                    Phase::Unanswered => {
                        // SYN(1) before the agreement opens a base stream; HELLO is
                        // queued after it, and the command arrives before any answer.
                        f.syn_ext(1).psh(1, b"x");
                    }
                    Phase::NoAck => {
                        send(&mut w, Frames::new().pin()).await;
                        assert!(wire::is_hello(&next(&mut r, &mut p, "HELLO").await));
                        let (a, b) = verify_code(wire::HELLO.0, wire::HELLO.1);
                        f.vrm(a, b);
                    }
                    Phase::OursOff => {
                        send(&mut w, Frames::new().pin().vrm(BARRIER.0, BARRIER.1)).await;
                        let first = next(&mut r, &mut p, "answer").await;
                        let want = verify_code(BARRIER.0, BARRIER.1);
                        assert_eq!(
                            (first.cmd, first.id, first.length),
                            (wire::VRM, want.0, want.1),
                            "extensions off: no HELLO, just the answer"
                        );
                        f.answer_hello();
                    }
                    Phase::OurDialer => {
                        let st = s.open().await.expect("open");
                        let syn = next(&mut r, &mut p, "our SYN").await;
                        assert_eq!((syn.cmd, syn.id, syn.length), (wire::SYN, st.id().0, 0));
                        drop(st);
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
    let config = Config {
        max_buffered_out: mib(1),
        ..Config::default()
    };
    let (window, bound_out) = (config.window as usize, config.max_buffered_out);
    run(async {
        let (s, r, p, mut w, early) = acceptor_negotiated(config, Some(16 * 1024)).await;
        let gate = Arc::new(AtomicBool::new(true));
        let (t, rd) = reader(r, p, early, Some(gate.clone()));
        let mut st = s.open().await.expect("open");
        let id = st.id().0;
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

/// RST and WND are extension frames for extended streams only. On base streams (one
/// of ours opened before the agreement, one the peer opens with SYN(0) after it) they
/// are ignored: data before and after the RST is delivered, and the window stays the
/// base window. A RST on an extended stream (SYN(1)) in the same session does abort
/// it, so the frames did reach the session.
#[test]
fn rst_and_wnd_on_base_streams_are_ignored() {
    let _g = serial();
    let probe = Probe::start();
    let config = Config::default();
    let window = config.window as usize;
    run(async {
        let (dial, acc) = loopback(None).await.expect("loopback");
        let s = Session::new(acc, config, Role::Acceptor);
        // Opened before the agreement: a base stream (its SYN reaches the peer first).
        let mut ours = s.open().await.expect("open");
        let a = ours.id().0;
        let (r, w) = dial.into_split();
        let (r, p, mut w, early) = dial_by_hand(r, w, |_| {}).await;
        let (t, _rd) = reader(r, p, early, None);
        assert!(lock(&t).syns.contains(&(a, 0)), "our early stream is base");
        let (b, c) = (1u16, 3u16);
        let mut f = Frames::new();
        f.syn(b)
            .psh(b, b"before")
            .wnd(b, u32::MAX)
            .rst(b, 9)
            .psh(b, b"after");
        f.wnd(a, u32::MAX).rst(a, 9);
        f.syn_ext(c).psh(c, b"c").rst(c, 42);
        f.vrm(BARRIER.0, BARRIER.1);
        send(&mut w, &f).await;
        eventually(10, "barrier answered", || lock(&t).answered(BARRIER)).await;
        let mut theirs = within(10, "accept", s.accept()).await.expect("accept");
        assert_eq!(theirs.id().0, b);
        let mut got = [0u8; 11];
        within(10, "read", theirs.read_exact(&mut got))
            .await
            .expect("base stream not reset");
        assert_eq!(&got, b"beforeafter");
        // The extended stream was aborted: the control case.
        let mut ext = within(10, "accept", s.accept()).await.expect("accept");
        assert_eq!(ext.id().0, c);
        let e = ext
            .read(&mut got)
            .await
            .expect_err("RST aborts an extended stream");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        assert!(e.to_string().contains("42"), "{e}");
        // WND did not raise the base windows: exactly one window goes out on each.
        let data = vec![7u8; 2 * window];
        for st in [&mut ours, &mut theirs] {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            let e = st
                .write_all_before(&data, deadline)
                .await
                .expect_err("the base window stops the write");
            assert!(e.is_timeout(), "{e}");
            assert_eq!(e.written(), window, "stream {}: the base window", st.id());
        }
        eventually(10, "the peer receives both windows", || {
            let t = lock(&t);
            [a, b]
                .iter()
                .all(|id| t.psh.get(id).map_or(0, Checksum::len) == window as u64)
        })
        .await;
        // The base streams still end normally: the peer's FIN is end-of-file.
        send(&mut w, Frames::new().fin(b)).await;
        let mut rest = Vec::new();
        within(10, "end-of-file", theirs.read_to_end(&mut rest))
            .await
            .expect("read");
        assert!(rest.is_empty());
        assert_eq!(s.stats().protocol_errors, 0);
        assert!(!s.is_closed());
    });
    probe.check("RST and WND on base streams", BASE + 4 * window);
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
    let window = u64::from(config.window);
    run(async {
        let (s, r, p, mut w, early) = acceptor_negotiated(config, None).await;
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
        let (s, r, p, mut w, early) = acceptor_negotiated(Config::default(), None).await;
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
        let (s, r, p, mut w, early) = acceptor_negotiated(Config::default(), None).await;
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

/// Our session dials; the raw peer accepts and negotiates as our acceptor does (HELLO
/// after our first frame, which is a SYN(0) of a stream opened early). Then our
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
        let s = Session::new(dial, Config::default(), Role::Dialer);
        let (mut r, mut w) = acc.into_split();
        let mut p = Parser::new();
        let early = s.open().await.expect("open");
        let syn = next(&mut r, &mut p, "our first frame").await;
        assert_eq!((syn.cmd, syn.id, syn.length), (wire::SYN, early.id().0, 0));
        send(&mut w, Frames::new().hello()).await;
        let answer = next(&mut r, &mut p, "HELLO's answer").await;
        assert_eq!(
            (answer.cmd, answer.id, answer.length),
            (
                wire::VRM,
                verify_code(wire::HELLO.0, wire::HELLO.1).0,
                verify_code(wire::HELLO.0, wire::HELLO.1).1
            ),
            "the verify answer first"
        );
        assert!(wire::is_ack(&next(&mut r, &mut p, "ACK").await), "then ACK");
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
        let mut f = Frames::new();
        f.bytes(&vec![0u8; (N + 1) * wire::HEADER]).clear();
        let live_before = smux_tests::mem::live();
        for _ in 0..N {
            let mut st = s.open().await.expect("open");
            st.write_all(b"x").await.expect("write");
            ids.push(st.id().0);
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
        assert!(!ids.contains(&more.id().0));
        more.write_all(b"still").await.expect("write");
        let m = more.id().0;
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
