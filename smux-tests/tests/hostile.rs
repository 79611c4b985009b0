//! A hand-written misbehaving peer, speaking raw frames over loopback TCP, against a
//! Tokio session (`smux-tokio`, the accepting end).
//!
//! Each case says what the session must do (keep going, refuse, or end with a
//! precise `EndReason`) and checks the peak live heap of the whole process (session,
//! runtime and the hostile peer itself) against a bound derived from the session's
//! configuration. The core-level versions of some cases, on simulated time, live in
//! `smux-proto/src/tests/scenarios.rs`; these run the real adapter over real sockets.
//! The many-windows flood and the protocol errors also run against smol and blocking
//! sessions (at the end of the file).
//!
//! Our sessions have the extensions on (the default). These peers never offer them: they
//! open streams with `SYN(0)`, as a reference peer does, which tells our acceptor at
//! once that the peer has none; a peer that speaks first with something else gets our
//! offer (HELLO) and never answers it. Either way everything here runs on the base
//! protocol, i.e. tests the fallback, and the counts of VRM frames leave HELLO aside.
//! Peers that agree on the extensions by hand are in `hostile_ext.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smux_proto::{verify_code, EndReason, ProtocolError};
use smux_tests::mem::{kib, mib, Counting, Probe};
use smux_tests::wire::{self, loopback, spawn_reader, Frame, Frames};
use smux_tests::{eventually, lock, pattern, pattern_sum, run, serial, within, Checksum};
use smux_tokio::{Config, Role, Session, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fixed costs every case may spend on top of its configured bounds: the Tokio
/// runtime, the sockets, the driver's 64 KiB read buffer and 256 KiB transmit buffer,
/// the 8 KiB ID bitmap, the peer's own buffers.
const BASE: usize = mib(2);

/// Our session (accepting end) and the raw peer's halves (dialling end).
async fn setup(config: Config, buffers: Option<u32>) -> (Session, OwnedReadHalf, OwnedWriteHalf) {
    let (dial, acc) = loopback(buffers).await.expect("loopback");
    let session = Session::new(acc, config, Role::Acceptor).expect("session");
    let (r, w) = dial.into_split();
    (session, r, w)
}

async fn send(w: &mut OwnedWriteHalf, f: &Frames) {
    w.write_all(f.as_bytes()).await.expect("peer write");
}

/// Waits for the session to end (driver finished) and returns why.
async fn ended(s: &Session) -> EndReason {
    within(20, "session end", s.closed()).await
}

/// Reads the peer's socket to end-of-file (the session shut its transport down),
/// then closes it, as a peer that sees the end does.
async fn close_after_eof(mut r: OwnedReadHalf, w: OwnedWriteHalf) -> usize {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    within(20, "peer sees end-of-file", async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    drop((r, w));
    total
}

async fn read_all(s: &mut Stream) -> Vec<u8> {
    let mut v = Vec::new();
    within(20, "read stream to end-of-file", s.read_to_end(&mut v))
        .await
        .expect("stream read");
    v
}

async fn accept(s: &Session) -> Stream {
    within(20, "accept", s.accept()).await.expect("accept")
}

fn protocol(e: EndReason) -> ProtocolError {
    match e {
        EndReason::Protocol(p) => p,
        other => panic!("expected a protocol error, the session ended with {other:?}"),
    }
}

/// PSH beyond the stream's window: the session ends with `WindowExceeded`, naming the
/// stream and the exact overrun; the window's bytes stay readable, then reads fail.
/// The window a peer may fill is ours, or 512 KiB if ours is smaller: a peer that
/// cannot know our window (a reference peer, or one of ours before the agreement)
/// may always send the protocol's 512 KiB.
#[test]
fn psh_beyond_the_window_ends_the_session() {
    let _g = serial();
    let probe = Probe::start();
    let small = Config::default()
        .with_window(64 * 1024)
        .with_cfm_threshold(32 * 1024);
    let big = Config::default().with_window(1024 * 1024);
    let mut largest = 0;
    for config in [Config::default(), small, big] {
        let window = (config.window() as usize).max(wire::ASSUMED_WINDOW as usize);
        largest = largest.max(window);
        run(async {
            let (s, r, mut w) = setup(config.clone(), None).await;
            let data = smux_tests::pattern_vec(1, window + 1);
            let mut f = Frames::new();
            f.syn(1);
            for chunk in data.chunks(64 * 1024) {
                f.psh(1, chunk);
            }
            send(&mut w, &f).await;
            drop(f);
            close_after_eof(r, w).await;
            let reason = ended(&s).await;
            assert_eq!(
                protocol(reason),
                ProtocolError::WindowExceeded {
                    id: 1,
                    unconfirmed: window as u64 + 1,
                    window: window as u32,
                },
                "our window {}",
                config.window()
            );
            // The stream was never accepted before the end, so it is still in the
            // backlog.
            let mut st = accept(&s).await;
            let mut buf = vec![0u8; window];
            within(10, "read buffered window", st.read_exact(&mut buf))
                .await
                .expect("buffered bytes stay readable");
            assert!(buf == data[..window], "the buffered window, intact");
            let err = st.read(&mut [0u8; 1]).await.expect_err("then reads fail");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        });
    }
    probe.check("PSH beyond the window", BASE + 4 * largest);
}

/// PSH announcing more than `max_frame`: the session ends with `FrameTooLarge` from
/// the header alone, without buffering the announced payload (even 4 GiB).
#[test]
fn psh_longer_than_max_frame_ends_the_session() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        for len in [64 * 1024 + 1, u32::MAX] {
            let (s, r, mut w) = setup(Config::default(), None).await;
            let mut f = Frames::new();
            f.syn(1).raw(wire::PSH, 1, len).bytes(&[7u8; 1000]);
            send(&mut w, &f).await;
            close_after_eof(r, w).await;
            assert_eq!(
                protocol(ended(&s).await),
                ProtocolError::FrameTooLarge {
                    len,
                    max: 64 * 1024
                }
            );
        }
    });
    probe.check("PSH longer than max_frame", BASE);
}

/// PSH for an ID that was never opened: dropped and counted; the session keeps
/// going. 16 MiB of such data does not grow memory.
#[test]
fn psh_for_an_unknown_id_is_discarded() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        let (s, _r, mut w) = setup(Config::default(), None).await;
        let mut f = Frames::new();
        f.psh(77, &[0xAB; 64 * 1024]);
        for _ in 0..256 {
            send(&mut w, &f).await;
        }
        f.clear();
        f.syn(1).psh(1, b"hello").fin(1);
        send(&mut w, &f).await;
        let mut st = accept(&s).await;
        assert_eq!(st.id().number(), 1);
        assert_eq!(read_all(&mut st).await, b"hello");
        let stats = s.stats();
        assert_eq!(stats.bytes_discarded, 16 * 1024 * 1024);
        assert_eq!(stats.protocol_errors, 0);
        assert!(!s.is_closed());
    });
    probe.check("PSH for an unknown ID (16 MiB)", BASE + mib(1));
}

/// A command byte the protocol does not define: `UnknownCommand` naming the byte.
/// 6 (WND) and 9 (SET) are extension commands, unknown here because the peer's
/// `SYN(0)` said it has no extensions.
#[test]
fn unknown_command_ends_the_session() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        for cmd in [wire::WND, wire::SET, 0x7F, 0xFF] {
            let (s, r, mut w) = setup(Config::default(), None).await;
            let mut f = Frames::new();
            f.syn(1).psh(1, b"x").raw(cmd, 1, 0);
            send(&mut w, &f).await;
            close_after_eof(r, w).await;
            assert_eq!(
                protocol(ended(&s).await),
                ProtocolError::UnknownCommand(cmd)
            );
        }
    });
    probe.check("unknown command", BASE);
}

/// The connection ends inside a frame: `TruncatedFrame` with the exact count of bytes
/// of the unfinished frame; at a frame boundary the end is `PeerClosed`.
#[test]
fn connection_end_inside_a_frame_is_truncated() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        let cut_header = {
            let mut f = Frames::new();
            f.syn(1).bytes(&wire::header(wire::PSH, 1, 100)[..3]);
            f
        };
        let cut_payload = {
            let mut f = Frames::new();
            f.syn(1).raw(wire::PSH, 1, 100).bytes(&[1u8; 40]);
            f
        };
        let whole = {
            let mut f = Frames::new();
            f.syn(1).psh(1, b"complete");
            f
        };
        let cases = [
            (cut_header, Some(3)),
            (cut_payload, Some(wire::HEADER + 40)),
            (whole, None),
        ];
        for (frames, have) in cases {
            let (s, r, mut w) = setup(Config::default(), None).await;
            send(&mut w, &frames).await;
            w.shutdown().await.expect("peer shutdown");
            close_after_eof(r, w).await;
            let reason = ended(&s).await;
            match have {
                Some(have) => assert_eq!(protocol(reason), ProtocolError::TruncatedFrame { have }),
                None => assert_eq!(reason, EndReason::PeerClosed),
            }
        }
    });
    probe.check("connection end inside a frame", BASE);
}

/// What the peer's reader counts.
#[derive(Default)]
struct Tally {
    /// HELLO frames received: our acceptor offers the extensions before its own first
    /// frame, or after the peer's first frame when that did not settle the agreement.
    /// These peers never answer it; HELLO is counted here and not among the VRM frames
    /// (answers).
    hello: u64,
    /// Frames received, by command (HELLO aside; 10 counts every undefined command).
    frames: [u64; 11],
    /// FIN frames received, by stream.
    fins: HashMap<u16, u32>,
    /// SYN frames received, by stream.
    syns: Vec<u16>,
    /// PSH payload received, by stream.
    psh: HashMap<u16, Checksum>,
}

fn tally(t: &mut Tally, f: Frame) {
    if wire::is_hello(&f) {
        t.hello += 1;
        return;
    }
    t.frames[(f.cmd as usize).min(10)] += 1;
    match f.cmd {
        wire::FIN => *t.fins.entry(f.id).or_default() += 1,
        wire::SYN => t.syns.push(f.id),
        wire::PSH => t.psh.entry(f.id).or_default().update(&f.payload),
        _ => {}
    }
}

fn new_tally() -> Arc<Mutex<Tally>> {
    Arc::new(Mutex::new(Tally::default()))
}

/// 65,536 SYNs the application never accepts: 1,024 wait in the backlog, the other
/// 64,512 are refused with one FIN each, every ID is then taken (opening fails
/// cleanly), and once the peer answers those FINs the IDs come back and the link
/// carries new streams both ways.
#[test]
fn syn_flood_beyond_the_backlog_is_refused_with_fin() {
    let _g = serial();
    let probe = Probe::start();
    let config = Config::default();
    let backlog = config.accept_backlog();
    let refused = 65_536 - backlog;
    run(async {
        let (s, r, mut w) = setup(config.clone(), None).await;
        let t = new_tally();
        let reader = spawn_reader(r, t.clone(), None, tally);
        let mut f = Frames::new();
        for id in 0..=u16::MAX {
            f.syn(id);
        }
        send(&mut w, &f).await;
        eventually(30, "64,512 refusing FINs", || {
            lock(&t).frames[wire::FIN as usize] == refused as u64
        })
        .await;
        {
            let t = lock(&t);
            for id in 0..=u16::MAX {
                let want = u32::from(id as usize >= backlog);
                assert_eq!(t.fins.get(&id).copied().unwrap_or(0), want, "FINs for {id}");
            }
        }
        let stats = s.stats();
        assert_eq!(stats.accept_backlog, backlog);
        assert_eq!(stats.streams_refused, refused as u64);
        assert_eq!(stats.streams, 65_536);
        let err = s.open().await.expect_err("every ID is taken");
        assert!(err.to_string().contains("65536"), "{err}");

        // The peer completes the refused handshakes: those IDs are free again.
        f.clear();
        for id in backlog..65_536 {
            f.fin(id as u16);
        }
        send(&mut w, &f).await;
        drop(f);
        eventually(20, "refused streams released", || {
            s.stats().streams == backlog
        })
        .await;

        // The link still carries data both ways.
        let mut mine = s.open().await.expect("open after release");
        mine.write_all(b"ours").await.expect("write");
        let mut g = Frames::new();
        g.psh(0, b"theirs").fin(0);
        send(&mut w, &g).await;
        let mut first = accept(&s).await;
        assert_eq!(
            first.id().number(),
            0,
            "the backlog is first come, first served"
        );
        assert_eq!(read_all(&mut first).await, b"theirs");
        let id = mine.id().number();
        eventually(10, "peer receives our stream", || {
            let t = lock(&t);
            t.syns.contains(&id) && t.psh.get(&id) == Some(&Checksum::of(b"ours"))
        })
        .await;
        assert_eq!(s.stats().protocol_errors, 0);
        s.close();
        within(10, "peer reader ends", reader)
            .await
            .expect("reader");
    });
    // 65,536 stream records (about 100 bytes each with their table slot), the FIN
    // queue, and the peer's own 450 KiB of SYNs and tally.
    probe.check("65,536 SYNs never accepted", BASE + 65_536 * 256);
}

/// A peer opens 1,100 streams and fills every window (64 KiB each, 68.75 MiB in all)
/// against `max_buffered_in` = 4 MiB, while the application reads nothing: buffered
/// input stops at the bound and the peer's writes stall. Then the application drains
/// every stream and every byte arrives intact.
#[test]
fn many_full_windows_pause_the_link_and_lose_nothing() {
    let _g = serial();
    let probe = Probe::start();
    const STREAMS: u16 = 1_100;
    const FRAME: usize = 16 * 1024;
    let config = Config::default()
        .with_window(64 * 1024)
        .with_cfm_threshold(32 * 1024)
        .with_max_frame(FRAME as u32)
        .with_max_buffered_in(mib(4))
        .with_accept_backlog(2_048);
    let window = config.window() as usize;
    let total = STREAMS as u64 * window as u64;
    let bound_in = config.max_buffered_in();
    let peak_paused = run(async {
        let (s, r, mut w) = setup(config.clone(), None).await;
        let t = new_tally();
        let reader = spawn_reader(r, t.clone(), None, tally);
        let written = Arc::new(AtomicU64::new(0));
        let wr = written.clone();
        let writer = tokio::spawn(async move {
            let mut f = Frames::new();
            for id in 1..=STREAMS {
                f.syn(id);
            }
            send(&mut w, &f).await;
            let mut chunk = vec![0u8; FRAME];
            for round in 0..window / FRAME {
                for id in 1..=STREAMS {
                    pattern(u64::from(id), (round * FRAME) as u64, &mut chunk);
                    f.clear();
                    f.psh(id, &chunk);
                    if round + 1 == window / FRAME {
                        f.fin(id);
                    }
                    send(&mut w, &f).await;
                    wr.fetch_add(FRAME as u64, Ordering::Relaxed);
                }
            }
            w
        });
        eventually(30, "buffered input reaches its bound", || {
            s.stats().buffered_in + FRAME > bound_in
        })
        .await;
        // Paused: the bound holds and the peer cannot finish.
        for _ in 0..20 {
            let st = s.stats();
            assert!(
                st.buffered_in <= bound_in,
                "{} > {bound_in}",
                st.buffered_in
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sent = written.load(Ordering::Relaxed);
        assert!(
            sent < total,
            "the link did not pause: peer wrote everything"
        );
        let peak_paused = probe.peak();
        eprintln!(
            "paused with {} KiB buffered, peer wrote {} of {} MiB; peak so far {} KiB",
            s.stats().buffered_in / 1024,
            sent >> 20,
            total >> 20,
            peak_paused / 1024
        );

        // Drain: every stream, concurrently, checked against the pattern.
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let mut st = accept(&s).await;
            tasks.push(tokio::spawn(async move {
                let id = st.id().number();
                let mut c = Checksum::new();
                let mut buf = vec![0u8; 8 * 1024];
                loop {
                    let n = st.read(&mut buf).await.expect("stream read");
                    if n == 0 {
                        break;
                    }
                    c.update(&buf[..n]);
                }
                (id, c)
            }));
        }
        let mut seen = vec![false; STREAMS as usize + 1];
        for task in tasks {
            let (id, c) = within(60, "drain", task).await.expect("reader task");
            assert_eq!(c.len(), window as u64, "stream {id} length");
            assert_eq!(
                c.sum(),
                pattern_sum(u64::from(id), window as u64),
                "stream {id}"
            );
            seen[id as usize] = true;
        }
        assert!(seen[1..].iter().all(|x| *x), "every stream was delivered");
        let _w = within(10, "peer writer", writer).await.expect("writer");
        let st = s.stats();
        assert_eq!(st.streams_refused, 0);
        assert_eq!(st.protocol_errors, 0);
        assert_eq!(st.buffered_in, 0);
        eventually(10, "every stream closed", || s.stats().streams == 0).await;
        s.close();
        within(10, "peer reader ends", reader)
            .await
            .expect("reader");
        peak_paused
    });
    eprintln!(
        "many full windows: peak while paused {} KiB for {} KiB buffered",
        peak_paused / 1024,
        bound_in / 1024
    );
    // Received payloads are copied into per-stream buffers (growth slack at most 2x)
    // and drained buffers are pooled (at most 2 MiB); the reading tasks and their
    // buffers live in this process too. The bound keeps the old 4x slack for those.
    probe.check(
        "1,100 full windows, max_buffered_in 4 MiB",
        BASE + 4 * bound_in + STREAMS as usize * kib(1),
    );
    assert!(
        peak_paused <= BASE + 2 * bound_in,
        "while paused: {peak_paused} bytes"
    );
}

/// CFM for more bytes than were ever sent is clamped: it creates no credit, so the
/// next write still stops at exactly one window of unconfirmed bytes.
#[test]
fn cfm_beyond_what_was_sent_creates_no_credit() {
    let _g = serial();
    let probe = Probe::start();
    let config = Config::default();
    let window = config.window() as usize;
    run(async {
        let (s, r, mut w) = setup(config.clone(), None).await;
        let t = new_tally();
        let _reader = spawn_reader(r, t.clone(), None, tally);
        let mut st = s.open().await.expect("open");
        let id = st.id().number();
        st.write_all(&[1u8; 1000]).await.expect("write");
        eventually(10, "peer receives 1000 bytes", || {
            lock(&t).psh.get(&id).map_or(0, |c| c.len()) == 1000
        })
        .await;
        let mut f = Frames::new();
        f.cfm(id, 10_000_000);
        send(&mut w, &f).await;
        // Frames are applied in order, so once the VRM that follows the CFM is
        // answered, the CFM has been applied.
        f.clear();
        f.vrm(1, 2);
        send(&mut w, &f).await;
        eventually(10, "VRM answered", || {
            lock(&t).frames[wire::VRM as usize] == 1
        })
        .await;
        let data = vec![2u8; 2 * window];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let e = st
            .write_all_before(&data, deadline)
            .await
            .expect_err("the window stops the write");
        assert!(e.is_timeout(), "{e}");
        assert_eq!(e.written(), window, "exactly one window, no extra credit");
        eventually(10, "peer receives the window", || {
            lock(&t).psh.get(&id).map_or(0, |c| c.len()) == (1000 + window) as u64
        })
        .await;
        assert_eq!(s.stats().buffered_out, 0);
        assert!(!s.is_closed());
        // Honest credit still works: confirm half a window, exactly that much more
        // goes out.
        f.clear();
        f.cfm(id, (window / 2) as u32).vrm(3, 4);
        send(&mut w, &f).await;
        eventually(10, "CFM applied", || {
            lock(&t).frames[wire::VRM as usize] == 2
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let e = st
            .write_all_before(&data[..window], deadline)
            .await
            .expect_err("half a window of credit");
        assert_eq!(e.written(), window / 2);
    });
    probe.check("CFM beyond what was sent", BASE + 4 * window);
}

/// FIN for an ID that was never opened is ignored; the ID can then be opened.
#[test]
fn fin_for_an_unknown_id_is_ignored() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        let (s, _r, mut w) = setup(Config::default(), None).await;
        let mut f = Frames::new();
        f.fin(999).fin(12_345).fin(u16::MAX);
        f.syn(999).psh(999, b"after").fin(999);
        send(&mut w, &f).await;
        let mut st = accept(&s).await;
        assert_eq!(st.id().number(), 999);
        assert_eq!(read_all(&mut st).await, b"after");
        drop(st);
        eventually(10, "stream released", || s.stats().streams == 0).await;
        assert!(!s.is_closed());
        assert_eq!(s.stats().protocol_errors, 0);
    });
    probe.check("FIN for an unknown ID", BASE);
}

/// FIN twice (and a third time once the stream is gone) changes nothing; the ID is
/// reused cleanly and the new stream sees only its own data.
#[test]
fn fin_twice_is_harmless() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        let (s, r, mut w) = setup(Config::default(), None).await;
        let t = new_tally();
        let _reader = spawn_reader(r, t.clone(), None, tally);
        let mut f = Frames::new();
        f.syn(5).psh(5, b"one").fin(5).fin(5);
        send(&mut w, &f).await;
        let mut st = accept(&s).await;
        assert_eq!(read_all(&mut st).await, b"one");
        drop(st);
        eventually(10, "our FIN", || lock(&t).fins.get(&5) == Some(&1)).await;
        eventually(10, "stream released", || s.stats().streams == 0).await;
        f.clear();
        f.fin(5).syn(5).psh(5, b"two").fin(5);
        send(&mut w, &f).await;
        let mut st = accept(&s).await;
        assert_eq!(st.id().number(), 5);
        assert_eq!(read_all(&mut st).await, b"two");
        drop(st);
        eventually(10, "second FIN", || lock(&t).fins.get(&5) == Some(&2)).await;
        eventually(10, "stream released", || s.stats().streams == 0).await;
        assert!(!s.is_closed());
    });
    probe.check("FIN twice", BASE);
}

/// SYN (and data) for an ID we are still closing: no new stream appears, the data is
/// dropped, and the handshake completes on the peer's FIN. The ID is then free on our
/// end (the peer opens a stream with it), but our own next stream takes another one
/// (IDs go round-robin), so a PSH the peer still sends for the old stream (the
/// reference implementation can, from a write in progress) finds no stream and is
/// dropped instead of landing in a new one.
#[test]
fn syn_for_an_id_we_are_still_closing_is_ignored() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        let (s, r, mut w) = setup(Config::default(), None).await;
        let t = new_tally();
        let _reader = spawn_reader(r, t.clone(), None, tally);
        let mut st = s.open().await.expect("open");
        let id = st.id().number();
        st.write_all(b"x").await.expect("write");
        // Released: our FIN goes out whatever the agreement (it is pending: the peer
        // has sent nothing yet).
        drop(st);
        eventually(10, "our FIN", || lock(&t).fins.get(&id) == Some(&1)).await;
        assert_eq!(lock(&t).hello, 1, "our offer went ahead of our SYN");
        let mut f = Frames::new();
        f.syn(id).psh(id, b"stray").syn(7).psh(7, b"marker").fin(7);
        send(&mut w, &f).await;
        let mut first = accept(&s).await;
        assert_eq!(
            first.id().number(),
            7,
            "no stream appeared for the closing ID"
        );
        assert_eq!(read_all(&mut first).await, b"marker");
        drop(first);
        let stats = s.stats();
        assert_eq!(stats.bytes_discarded, 5);
        eventually(10, "stream 7 released", || s.stats().streams == 1).await;
        f.clear();
        f.fin(id);
        send(&mut w, &f).await;
        eventually(10, "closing stream released", || s.stats().streams == 0).await;
        // Our next stream takes the next ID; a late PSH for the old one is dropped.
        let mut again = s.open().await.expect("reopen");
        let next = again.id().number();
        assert_ne!(next, id, "a freed ID is not handed out again at once");
        again.write_all(b"new").await.expect("write");
        f.clear();
        f.psh(id, b"late").vrm(1, 2);
        send(&mut w, &f).await;
        eventually(10, "barrier answered", || {
            lock(&t).frames[wire::VRM as usize] == 1
        })
        .await;
        assert_eq!(s.stats().bytes_discarded, 5 + 4, "the late PSH was dropped");
        assert_eq!(s.stats().streams, 1, "and made no stream");
        // The old ID is free on our end: the peer opens a stream with it.
        f.clear();
        f.syn(id).psh(id, b"theirs").fin(id);
        send(&mut w, &f).await;
        let mut theirs = accept(&s).await;
        assert_eq!(theirs.id().number(), id, "the ID is free again");
        assert_eq!(read_all(&mut theirs).await, b"theirs");
        drop(theirs);
        eventually(10, "peer sees our new stream", || {
            let t = lock(&t);
            t.syns.contains(&next) && t.psh.get(&next).map_or(0, |c| c.len()) == 3
        })
        .await;
        let mut buf = [0u8; 1];
        let nothing = tokio::time::timeout(Duration::from_millis(50), again.read(&mut buf)).await;
        assert!(nothing.is_err(), "no data reached the new stream");
        assert!(!s.is_closed());
        assert_eq!(s.stats().protocol_errors, 0);
    });
    probe.check("SYN for an ID we are still closing", BASE);
}

/// 200,000 VRM challenges from a peer that does not read: answers pile up only to
/// `max_pending_answers` (plus what the transport holds), then input pauses and the
/// peer's writes stall. Once it reads, every challenge has its exact answer, in order.
#[test]
fn vrm_flood_is_answered_within_bounds() {
    let _g = serial();
    let probe = Probe::start();
    const N: u32 = 200_000;
    let config = Config::default();
    let answers = config.max_pending_answers();
    run(async {
        let (s, r, mut w) = setup(config.clone(), Some(16 * 1024)).await;
        let gate = Arc::new(AtomicBool::new(false));
        #[derive(Default)]
        struct Answers {
            n: u32,
            wrong: u32,
            hello: u32,
            hello_after: u32,
        }
        let got = Arc::new(Mutex::new(Answers::default()));
        let reader = spawn_reader(r, got.clone(), Some(gate.clone()), |a: &mut Answers, f| {
            // Our acceptor offers the extensions once, right after answering the
            // first challenge; the flood never answers it, so the rest is base.
            if wire::is_hello(&f) {
                a.hello += 1;
                a.hello_after = a.n;
                return;
            }
            let want = verify_code(a.n as u16, a.n.wrapping_mul(7));
            if f.cmd != wire::VRM || (f.id, f.length) != want {
                a.wrong += 1;
            }
            a.n += 1;
        });
        let written = Arc::new(AtomicU64::new(0));
        let wr = written.clone();
        let writer = tokio::spawn(async move {
            let mut f = Frames::new();
            for i in 0..N {
                f.vrm(i as u16, i.wrapping_mul(7));
                if f.len() >= 7 * 1024 {
                    send(&mut w, &f).await;
                    wr.fetch_add(f.len() as u64, Ordering::Relaxed);
                    f.clear();
                }
            }
            send(&mut w, &f).await;
            wr.fetch_add(f.len() as u64, Ordering::Relaxed);
            w
        });
        // Wait until the peer's writes stall (no progress for 300 ms).
        let mut last = u64::MAX;
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
            last < u64::from(N) * 7,
            "input did not pause: the peer wrote all {N} challenges while not reading"
        );
        eprintln!("VRM flood stalled after {} of {N} challenges", last / 7);
        let stalled_peak = probe.peak();
        gate.store(true, Ordering::Release);
        let _w = within(60, "flood completes", writer).await.expect("writer");
        eventually(60, "every challenge answered", || lock(&got).n == N).await;
        assert_eq!(lock(&got).wrong, 0, "answers match, in order");
        let hello = {
            let g = lock(&got);
            (g.hello, g.hello_after)
        };
        assert_eq!(hello, (1, 1), "one HELLO, after the first answer");
        assert!(!s.is_closed());
        assert_eq!(s.stats().protocol_errors, 0);
        s.close();
        within(10, "reader ends", reader).await.expect("reader");
        eprintln!("VRM flood: peak while stalled {} KiB", stalled_peak / 1024);
    });
    // The answers owed (`max_pending_answers`), the adapter's transmit buffer (up to
    // 256 KiB of answers taken from the core), its read buffer (64 KiB) and the
    // peer's parse buffer.
    probe.check(
        "VRM flood",
        BASE + answers * 64 + kib(256) + kib(64) + kib(128),
    );
}

/// A peer that never sends PIN (nor anything else): the session ends with
/// `KeepaliveTimeout`, having sent its own PINs meanwhile.
#[test]
fn a_silent_peer_times_out() {
    let _g = serial();
    let probe = Probe::start();
    let config = Config::default()
        .with_keepalive_interval(Duration::from_millis(100))
        .with_keepalive_timeout(Duration::from_millis(600));
    run(async {
        let (s, r, mut w) = setup(config, None).await;
        let t = new_tally();
        let reader = spawn_reader(r, t.clone(), None, tally);
        let mut f = Frames::new();
        f.syn(1).psh(1, b"then silence");
        send(&mut w, &f).await;
        within(10, "peer sees end-of-file", reader)
            .await
            .expect("reader");
        drop(w);
        assert_eq!(ended(&s).await, EndReason::KeepaliveTimeout);
        assert!(lock(&t).frames[wire::PIN as usize] >= 1, "we sent PINs");
        let mut st = accept(&s).await;
        let mut buf = [0u8; 12];
        st.read_exact(&mut buf).await.expect("buffered data");
        assert_eq!(&buf, b"then silence");
        let e = st.read(&mut buf).await.expect_err("then the end");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    });
    probe.check("silent peer", BASE);
}

/// A peer that stops reading while we write on 8 streams: writes stop with honest
/// counts at their deadline, the send queue never exceeds `max_buffered_out`, a
/// stream the peer writes to is still read meanwhile, and once the peer reads again
/// it gets exactly the accepted bytes of every stream, then its FIN.
#[test]
fn a_peer_that_stops_reading() {
    let _g = serial();
    let probe = Probe::start();
    const STREAMS: usize = 8;
    const SIZE: usize = 1024 * 1024;
    let config = Config::default().with_max_buffered_out(mib(1));
    let bound_out = config.max_buffered_out();
    run(async {
        let (s, r, mut w) = setup(config, Some(16 * 1024)).await;
        let gate = Arc::new(AtomicBool::new(false));
        let t = new_tally();
        let reader = spawn_reader(r, t.clone(), Some(gate.clone()), tally);
        let data = Arc::new(smux_tests::pattern_vec(9, SIZE));
        let mut writers = Vec::new();
        for _ in 0..STREAMS {
            let mut st = s.open().await.expect("open");
            let data = data.clone();
            writers.push(tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                let e = st
                    .write_all_before(&data, deadline)
                    .await
                    .expect_err("the peer is not reading");
                assert!(e.is_timeout(), "{e}");
                (st, e.written())
            }));
        }
        // Meanwhile the peer writes on its own stream, and we read it.
        let mut f = Frames::new();
        f.syn(3);
        for i in 0..16u64 {
            let mut chunk = vec![0u8; 4096];
            pattern(3, i * 4096, &mut chunk);
            f.psh(3, &chunk);
        }
        f.fin(3);
        send(&mut w, &f).await;
        let mut theirs = accept(&s).await;
        let got = read_all(&mut theirs).await;
        assert_eq!(Checksum::of(&got).sum(), pattern_sum(3, 64 * 1024));
        let mut max_out = 0;
        let mut results = Vec::new();
        for h in writers {
            while !h.is_finished() {
                max_out = max_out.max(s.stats().buffered_out);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            results.push(within(10, "writer", h).await.expect("writer task"));
        }
        assert!(max_out <= bound_out, "send queue {max_out} > {bound_out}");
        let accepted: usize = results.iter().map(|(_, n)| n).sum();
        eprintln!(
            "peer not reading: {accepted} bytes accepted on {STREAMS} streams, send queue peaked at {max_out}"
        );
        assert!(accepted < STREAMS * SIZE);
        // The peer reads again: each stream delivers exactly its accepted prefix.
        let expect: Vec<(u16, usize)> = results
            .into_iter()
            .map(|(st, n)| (st.id().number(), n))
            .collect();
        gate.store(true, Ordering::Release);
        eventually(20, "every FIN after its data", || {
            let t = lock(&t);
            expect.iter().all(|(id, _)| t.fins.get(id) == Some(&1))
        })
        .await;
        for (id, n) in &expect {
            let c = lock(&t).psh.get(id).cloned().unwrap_or_default();
            assert_eq!(c.len(), *n as u64, "stream {id}: accepted count is exact");
            assert_eq!(c.sum(), Checksum::of(&data[..*n]).sum(), "stream {id}");
        }
        assert!(!s.is_closed());
        s.close();
        within(10, "reader ends", reader).await.expect("reader");
    });
    probe.check(
        "peer that stops reading",
        BASE + SIZE + bound_out + kib(256),
    );
}

/// Reads frames from the raw peer's socket until the answer to `challenge` arrives and
/// returns those before it.
async fn frames_until_answer(
    r: &mut OwnedReadHalf,
    p: &mut wire::Parser,
    challenge: (u16, u32),
) -> Vec<Frame> {
    let mut seen = Vec::new();
    loop {
        let f = within(10, "the frames before an answer", wire::read_frame(r, p))
            .await
            .expect("the connection ended");
        if wire::is_answer_to(&f, challenge) {
            return seen;
        }
        seen.push(f);
    }
}

/// A peer that does what a reference peer does with our offer, answer it, makes our
/// session fall back, in either role. A stream opened before that, and shut down at
/// once (the obvious client), waits for the answer, then fails with `Unsupported`
/// and sends nothing: a base FIN would end both directions and lose the peer's
/// answer. The stream is intact: the peer's data and end-of-file still arrive, and
/// releasing it sends the one FIN. The answer to our offer is not answered.
#[test]
fn shutdown_against_a_peer_that_answers_our_offer_is_unsupported() {
    let _g = serial();
    let probe = Probe::start();
    run(async {
        for role in [Role::Acceptor, Role::Dialer] {
            let (dial, acc) = loopback(None).await.expect("loopback");
            let (ours, theirs) = match role {
                Role::Acceptor => (acc, dial),
                Role::Dialer => (dial, acc),
            };
            let s = Session::new(ours, Config::default(), role).expect("session");
            let (mut r, mut w) = theirs.into_split();
            let mut p = wire::Parser::new();
            let mut st = s.open().await.expect("open");
            let id = st.id().number();
            st.write_all(b"request").await.expect("write");
            let shut = tokio::spawn(async move {
                let res = st.shutdown().await;
                (st, res)
            });
            // What our session sends first: its offer, SYN(1), the data.
            let mut first = Vec::new();
            while first.len() < 3 {
                let f = within(10, "our first frames", wire::read_frame(&mut r, &mut p))
                    .await
                    .expect("the connection ended");
                first.push(f);
            }
            let offer = match role {
                Role::Acceptor => wire::HELLO,
                Role::Dialer => wire::ASK,
            };
            let syn = (wire::SYN, id, 1);
            let head: Vec<_> = first.iter().map(|f| (f.cmd, f.id, f.length)).collect();
            match role {
                // HELLO goes ahead of the acceptor's first frame; ASK follows the
                // dialer's.
                Role::Acceptor => assert_eq!(head[..2], [(wire::VRM, offer.0, offer.1), syn]),
                Role::Dialer => assert_eq!(head[..2], [syn, (wire::VRM, offer.0, offer.1)]),
            }
            assert_eq!(
                (first[2].cmd, &first[2].payload[..]),
                (wire::PSH, &b"request"[..])
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                !shut.is_finished(),
                "{role:?}: the shutdown waits for the agreement"
            );
            // The peer answers the offer (and asks for an answer of its own).
            const BARRIER: (u16, u32) = (0x0BAD, 0xC0FFEE);
            let mut f = Frames::new();
            f.answer(offer).vrm(BARRIER.0, BARRIER.1);
            send(&mut w, &f).await;
            let (mut st, res) = within(10, "the shutdown fails", shut)
                .await
                .expect("shutdown task");
            let e = res.expect_err("no half-close against a base peer");
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{role:?}: {e}");
            assert!(!s.extensions_enabled());
            assert!(!within(10, "ready", s.ready()).await.expect("ready"));
            // Nothing went out for it: the peer's challenge is answered, nothing else
            // came before that answer (no FIN, no answer to an answer, no SET).
            let between = frames_until_answer(&mut r, &mut p, BARRIER).await;
            assert!(between.is_empty(), "{role:?}: {between:?}");
            // The stream is intact: the peer's answer, then its end-of-file.
            f.clear();
            f.psh(id, b"answer").fin(id);
            send(&mut w, &f).await;
            assert_eq!(read_all(&mut st).await, b"answer");
            drop(st);
            f.clear();
            f.vrm(BARRIER.0, BARRIER.1);
            send(&mut w, &f).await;
            let rest = frames_until_answer(&mut r, &mut p, BARRIER).await;
            // A CFM for the answer may come first (its reader caught up), if the driver
            // sent it before the release; then exactly one FIN.
            let rest: Vec<_> = rest
                .iter()
                .map(|f| (f.cmd, f.id, f.length))
                .filter(|&f| f != (wire::CFM, id, 6))
                .collect();
            assert_eq!(rest, [(wire::FIN, id, 0)], "{role:?}: one FIN, on release");
            assert_eq!(s.stats().protocol_errors, 0);
            eventually(10, "stream released", || s.stats().streams == 0).await;
            s.close();
            close_after_eof(r, w).await;
        }
    });
    probe.check("shutdown against a base peer", BASE);
}

// ----- the same flood against the smol and blocking adapters -------------------------

/// Parameters of the many-windows flood.
const FLOOD_STREAMS: u16 = 1_100;
const FLOOD_FRAME: usize = 16 * 1024;

fn flood_config() -> Config {
    Config::default()
        .with_window(64 * 1024)
        .with_cfm_threshold(32 * 1024)
        .with_max_frame(FLOOD_FRAME as u32)
        .with_max_buffered_in(mib(4))
        .with_accept_backlog(2_048)
}

/// A loopback pair of std sockets: (peer's end, application's end).
fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (a, _) = l.accept().expect("accept");
    (c, a)
}

/// The hostile peer of the flood on plain threads: opens the streams, then fills every
/// window round by round (each stream's `FLOOD_FRAME` slice of its pattern per round),
/// FIN after the last round; a second thread reads and drops what we send. Returns the
/// count of bytes written so far and both threads.
fn std_flood_peer(
    tcp: std::net::TcpStream,
    window: usize,
) -> (
    Arc<AtomicU64>,
    std::thread::JoinHandle<std::net::TcpStream>,
    std::thread::JoinHandle<()>,
) {
    use std::io::{Read, Write};
    let mut rd = tcp.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(rd.read(&mut buf), Ok(n) if n > 0) {}
    });
    let written = Arc::new(AtomicU64::new(0));
    let wr = written.clone();
    let writer = std::thread::spawn(move || {
        let mut tcp = tcp;
        let mut f = Frames::new();
        for id in 1..=FLOOD_STREAMS {
            f.syn(id);
        }
        tcp.write_all(f.as_bytes()).expect("peer write");
        let mut chunk = vec![0u8; FLOOD_FRAME];
        let rounds = window / FLOOD_FRAME;
        for round in 0..rounds {
            for id in 1..=FLOOD_STREAMS {
                pattern(u64::from(id), (round * FLOOD_FRAME) as u64, &mut chunk);
                f.clear();
                f.psh(id, &chunk);
                if round + 1 == rounds {
                    f.fin(id);
                }
                tcp.write_all(f.as_bytes()).expect("peer write");
                wr.fetch_add(FLOOD_FRAME as u64, Ordering::Relaxed);
            }
        }
        tcp
    });
    (written, writer, reader)
}

/// Polls `cond` until it holds, failing after `secs` (a hang guard), on any thread.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks what was drained: every stream, its whole window, its own pattern.
fn check_drained(got: &[(u16, Checksum)], window: usize) {
    assert_eq!(got.len(), FLOOD_STREAMS as usize);
    let mut seen = vec![false; FLOOD_STREAMS as usize + 1];
    for (id, c) in got {
        assert_eq!(c.len(), window as u64, "stream {id} length");
        assert_eq!(
            c.sum(),
            pattern_sum(u64::from(*id), window as u64),
            "stream {id}"
        );
        seen[*id as usize] = true;
    }
    assert!(seen[1..].iter().all(|x| *x), "every stream was delivered");
}

/// The flood against a smol session (`smux-smol`), drained by one task per stream.
#[test]
fn many_full_windows_smol() {
    use smol::io::AsyncReadExt as _;
    let _g = serial();
    let probe = Probe::start();
    let config = flood_config();
    let (window, bound_in) = (config.window() as usize, config.max_buffered_in());
    let total = u64::from(FLOOD_STREAMS) * window as u64;
    let (peer, app) = std_pair();
    let (written, writer, reader) = std_flood_peer(peer, window);
    let peak_paused = smol::block_on(async {
        let io = smol::Async::new(app).expect("async socket");
        let (s, driver) = smux_smol::Session::with_driver(io, config, smux_smol::Role::Acceptor)
            .expect("session");
        let driver = smol::spawn(driver);
        let paused = {
            let s = s.clone();
            smol::unblock(move || {
                wait_until(30, "buffered input reaches its bound", || {
                    s.stats().buffered_in + FLOOD_FRAME > bound_in
                });
                for _ in 0..20 {
                    assert!(s.stats().buffered_in <= bound_in);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        paused.await;
        assert!(
            written.load(Ordering::Relaxed) < total,
            "the link did not pause"
        );
        let peak_paused = probe.peak();
        let mut tasks = Vec::new();
        for _ in 0..FLOOD_STREAMS {
            let mut st = s.accept().await.expect("accept");
            tasks.push(smol::spawn(async move {
                let id = st.id().number();
                let mut c = Checksum::new();
                let mut buf = vec![0u8; 8 * 1024];
                loop {
                    let n = st.read(&mut buf).await.expect("stream read");
                    if n == 0 {
                        break;
                    }
                    c.update(&buf[..n]);
                }
                (id, c)
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await);
        }
        check_drained(&got, window);
        let st = s.stats();
        assert_eq!(
            (st.streams_refused, st.protocol_errors, st.buffered_in),
            (0, 0, 0)
        );
        s.close();
        let _ = driver.await;
        peak_paused
    });
    drop(writer.join().expect("peer writer"));
    reader.join().expect("peer reader");
    eprintln!("smol: peak while paused {} KiB", peak_paused / 1024);
    probe.check(
        "smol: 1,100 full windows, max_buffered_in 4 MiB",
        BASE + 8 * bound_in + FLOOD_STREAMS as usize * kib(1),
    );
}

/// The flood against a blocking session (`smux-blocking`), drained by one thread that
/// polls every stream without blocking. (Reading the streams one after the other with
/// blocking reads would wait forever: the data a stream still lacks sits behind
/// `max_buffered_in` bytes of other streams.)
#[test]
fn many_full_windows_blocking() {
    use std::io::Read;
    let _g = serial();
    let probe = Probe::start();
    let config = flood_config();
    let (window, bound_in) = (config.window() as usize, config.max_buffered_in());
    let total = u64::from(FLOOD_STREAMS) * window as u64;
    let (peer, app) = std_pair();
    let (written, writer, reader) = std_flood_peer(peer, window);
    let s =
        smux_blocking::Session::new(app, config, smux_blocking::Role::Acceptor).expect("session");
    wait_until(30, "buffered input reaches its bound", || {
        s.stats().buffered_in + FLOOD_FRAME > bound_in
    });
    for _ in 0..20 {
        assert!(s.stats().buffered_in <= bound_in);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        written.load(Ordering::Relaxed) < total,
        "the link did not pause"
    );
    let peak_paused = probe.peak();
    let mut open: Vec<(smux_blocking::Stream, Checksum)> = (0..FLOOD_STREAMS)
        .map(|_| {
            let st = s.accept_timeout(Duration::from_secs(20)).expect("accept");
            st.set_nonblocking(true).expect("nonblocking");
            (st, Checksum::new())
        })
        .collect();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(std::time::Instant::now() < end, "drain: not within 60 s");
        let mut progress = false;
        let mut i = 0;
        while i < open.len() {
            match open[i].0.read(&mut buf) {
                Ok(0) => {
                    let (st, c) = open.swap_remove(i);
                    got.push((st.id().number(), c));
                    progress = true;
                    continue;
                }
                Ok(n) => {
                    open[i].1.update(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("stream read: {e}"),
            }
            i += 1;
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    check_drained(&got, window);
    let st = s.stats();
    assert_eq!(
        (st.streams_refused, st.protocol_errors, st.buffered_in),
        (0, 0, 0)
    );
    s.close();
    drop(writer.join().expect("peer writer"));
    reader.join().expect("peer reader");
    eprintln!("blocking: peak while paused {} KiB", peak_paused / 1024);
    probe.check(
        "blocking: 1,100 full windows, max_buffered_in 4 MiB",
        BASE + 4 * bound_in + FLOOD_STREAMS as usize * kib(1),
    );
}

/// A peer opens 20,000 streams that the application accepts and holds, and sends one
/// byte on each: only 20,000 bytes are counted against `max_buffered_in`, but each
/// stream with data buffered holds its buffers. Measures what that costs per stream;
/// the ID space (65,536) bounds the total.
#[test]
fn one_byte_on_many_streams() {
    let _g = serial();
    const STREAMS: u16 = 20_000;
    let probe = Probe::start();
    // A backlog that holds them all: the application accepts as fast as it can, but
    // the peer is faster, and with the default backlog most SYNs would be refused.
    let config = Config::default().with_accept_backlog(STREAMS as usize);
    let per_stream = run(async {
        let (s, r, mut w) = setup(config, None).await;
        let t = new_tally();
        let _reader = spawn_reader(r, t.clone(), None, tally);
        let acceptor = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut held = Vec::with_capacity(STREAMS as usize);
                while held.len() < STREAMS as usize {
                    held.push(accept(&s).await);
                }
                held
            })
        };
        let mut f = Frames::new();
        for id in 1..=STREAMS {
            f.syn(id).psh(id, &[id as u8]);
            if f.len() > 60_000 {
                send(&mut w, &f).await;
                f.clear();
            }
        }
        send(&mut w, &f).await;
        drop(f);
        let held = within(30, "accept every stream", acceptor)
            .await
            .expect("acceptor");
        eventually(30, "every byte buffered", || {
            s.stats().buffered_in == STREAMS as usize
        })
        .await;
        let peak = probe.peak();
        let st = s.stats();
        assert_eq!((st.streams, st.protocol_errors), (STREAMS as usize, 0));
        // Every byte is there, on its own stream.
        for mut st in held {
            let mut b = [0u8; 1];
            st.read_exact(&mut b).await.expect("read");
            assert_eq!(b[0], st.id().number() as u8);
        }
        assert_eq!(s.stats().buffered_in, 0);
        peak / STREAMS as usize
    });
    eprintln!("one byte on 20,000 streams: about {per_stream} bytes of heap per stream");
    probe.check(
        "one byte on 20,000 streams",
        BASE + STREAMS as usize * kib(1),
    );
}

// ----- protocol errors end smol and blocking sessions the same way -------------------

/// The protocol-error cases above, each with its expected reason, as raw bytes. With
/// `eof` the peer shuts its write side after sending (a frame cut off by the end).
fn protocol_cases() -> Vec<(Frames, bool, ProtocolError)> {
    let window = Config::default().window();
    let mut over = Frames::new();
    over.syn(1);
    let chunk = vec![5u8; 64 * 1024];
    for _ in 0..window / (64 * 1024) {
        over.psh(1, &chunk);
    }
    over.psh(1, b"!");
    let mut big = Frames::new();
    big.syn(1).raw(wire::PSH, 1, 64 * 1024 + 1);
    // SET after the peer's `SYN(0)` said it has no extensions.
    let mut unknown = Frames::new();
    unknown.syn(1).raw(wire::SET, 1, 0);
    let mut cut = Frames::new();
    cut.syn(1).raw(wire::PSH, 1, 100).bytes(&[1u8; 40]);
    // The extension commands while the agreement is pending: the peer's PIN and
    // challenge tell nothing, and our HELLO goes unanswered.
    let early = |cmd: u8| {
        let mut f = Frames::new();
        f.pin().vrm(3, 4).raw(cmd, 1, 0);
        (f, false, ProtocolError::UnknownCommand(cmd))
    };
    let mut cases = vec![
        (
            over,
            false,
            ProtocolError::WindowExceeded {
                id: 1,
                unconfirmed: u64::from(window) + 1,
                window,
            },
        ),
        (
            big,
            false,
            ProtocolError::FrameTooLarge {
                len: 64 * 1024 + 1,
                max: 64 * 1024,
            },
        ),
        (unknown, false, ProtocolError::UnknownCommand(wire::SET)),
        (cut, true, ProtocolError::TruncatedFrame { have: 47 }),
    ];
    cases.extend([wire::WND, wire::RST, wire::GWY, wire::SET].map(early));
    cases
}

/// Plays one case as a raw peer on a thread: sends, maybe shuts its write side, reads
/// to end-of-file (the session closed the connection), then closes.
fn std_raw_peer(mut tcp: std::net::TcpStream, f: Frames, eof: bool) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        tcp.write_all(f.as_bytes()).expect("peer write");
        if eof {
            tcp.shutdown(std::net::Shutdown::Write).expect("shutdown");
        }
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = vec![0u8; 16 * 1024];
        while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
    })
}

#[test]
fn protocol_errors_end_smol_and_blocking_sessions() {
    let _g = serial();
    let probe = Probe::start();
    for (frames, eof, want) in protocol_cases() {
        // Blocking: the session ends with the reason and both its threads exit.
        let (peer, app) = std_pair();
        let p = std_raw_peer(peer, frames.clone(), eof);
        let s = smux_blocking::Session::new(app, Config::default(), smux_blocking::Role::Acceptor)
            .expect("session");
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = s.clone();
        std::thread::spawn(move || {
            let _ = tx.send(s2.closed());
        });
        let reason = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("blocking session ends");
        assert_eq!(reason, EndReason::Protocol(want), "blocking");
        p.join().expect("peer");
        assert!(s.open().is_err());

        // smol: the driver completes with the reason.
        let (peer, app) = std_pair();
        let p = std_raw_peer(peer, frames, eof);
        let reason = smol::block_on(async {
            let io = smol::Async::new(app).expect("async socket");
            let (s, driver) =
                smux_smol::Session::with_driver(io, Config::default(), smux_smol::Role::Acceptor)
                    .expect("session");
            let reason = smol::future::or(async { Some(driver.await) }, async {
                smol::Timer::after(Duration::from_secs(20)).await;
                None
            })
            .await
            .expect("smol driver ends");
            assert!(s.open().await.is_err());
            reason
        });
        assert_eq!(reason, EndReason::Protocol(want), "smol");
        p.join().expect("peer");
    }
    probe.check("protocol errors, smol and blocking", BASE + 4 * 512 * 1024);
}
