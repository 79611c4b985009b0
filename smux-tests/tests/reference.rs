//! Interop with the real reference implementation (yddeng/smux, in Go), over loopback
//! TCP, on each adapter (every test exists as `<scenario>::tokio`, `::smol` and
//! `::blocking`). See `smux_tests::reference` for how the Go programs are built and
//! run; without Go these tests say SKIPPED loudly and pass, unless
//! `SMUX_REQUIRE_REFERENCE=1` (CI) makes them fail.
//!
//! Elsewhere: the memory bound while we stop reading in `reference_memory.rs`; the
//! slow scenarios (idle for 110 s, 70,000 sequential streams) and the `smux` tool's in
//! `smux-cli/tests/reference/`, one binary so that they run side by side.
//!
//! "Role" below is who dialled the TCP connection; the end that opens the streams is
//! said separately.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use smux_proto::Config;
use smux_tests::reference::adapter::{soon, wait_no_streams, Adapter, Sess, Strm};
use smux_tests::reference::echo::{echo_check, EchoServer};
use smux_tests::reference::relay::{Options, ReferenceIs, Relay};
use smux_tests::reference::{binaries, fnv1a, Binaries, Peer, FNV_START};
use smux_tests::{pattern, pattern_sum, pattern_vec};

smux_tests::per_adapter!(
    probe_both_ways,
    echo_64_streams_our_client,
    echo_64_streams_reference_client,
);

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Reports that the reference is there (or, loudly, that it is not) even when every
/// scenario is filtered out.
#[test]
fn reference_implementation_is_available() {
    if let Some(b) = binaries() {
        eprintln!("refpeer: {}", b.refpeer.display());
        eprintln!("scenarios: {}", b.scenarios.display());
        eprintln!("{}", b.go_version);
        assert!(b.refpeer.is_file() && b.scenarios.is_file());
    }
}

/// The reference's `IsSmux` against our server; our probe against a reference server;
/// a reference server that probes every connection first (as servers built on it
/// often do) against our client, which then uses the connection.
fn probe_both_ways(adapter: Adapter) {
    let Some(bins) = binaries() else { return };

    let ours = EchoServer::start(adapter, Config::default());
    let mut probe = Peer::spawn(
        "refpeer probe",
        &bins.refpeer,
        &["-mode", "probe", "-addr", &ours.addr().to_string()],
    );
    let verdict = probe.line(SECS(15));
    let status = probe.wait(SECS(15));
    assert!(
        status.success() && verdict == "smux: yes",
        "{adapter}: the reference's probe of our server said {verdict:?} ({status})"
    );

    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    let yes = adapter
        .probe(addr, SECS(5))
        .expect("probe the reference server");
    assert!(
        yes,
        "{adapter}: our probe says the reference server is not smux"
    );

    let (_gate, addr) = Peer::refpeer_server("refpeer gate", bins, "gate");
    let session = adapter.connect(addr, Config::default()).expect("connect");
    // Our dialer sends nothing of its own first, so the probe's answer is the first
    // frame the gate reads; the application waits until it has left, as the docs say.
    let end = soon(10);
    while session.stats().frames_sent == 0 {
        assert!(
            Instant::now() < end,
            "{adapter}: the gate's probe was not answered"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let stream = session.open().expect("open behind the gate");
    let sum = echo_check(stream, b"", 7, 100_000).expect("echo behind the gate");
    assert_eq!(
        sum.sum(),
        pattern_sum(7, 100_000),
        "{adapter}: echo behind the gate"
    );
}

/// Our client against a reference server: 64 concurrent streams of 300 KB and more,
/// echoed and checked by length and checksum.
fn echo_64_streams_our_client(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    let session: Arc<dyn Sess> = Arc::from(adapter.connect(addr, Config::default()).unwrap());
    let threads: Vec<_> = (0..64u64)
        .map(|i| {
            let session = session.clone();
            thread::spawn(move || {
                let len = 300_000 + i * 997;
                let stream = session.open().expect("open");
                let sum = echo_check(stream, b"", 1000 + i, len)
                    .unwrap_or_else(|e| panic!("{adapter}: stream {i}: {e}"));
                assert_eq!(sum.len(), len);
                assert_eq!(
                    sum.sum(),
                    pattern_sum(1000 + i, len),
                    "stream {i}: checksum"
                );
            })
        })
        .collect();
    for t in threads {
        t.join().expect("stream thread");
    }
    assert_eq!(session.end_reason(), None, "{adapter}: session ended");
}

/// The reference's checking client against our echo server: 64 concurrent streams of
/// 300 KB and more, each compared byte for byte by the reference.
fn echo_64_streams_reference_client(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    let ours = EchoServer::start(adapter, Config::default());
    let addr = ours.addr().to_string();
    let args = [
        "-mode", "client", "-addr", &addr, "-streams", "64", "-size", "300000",
    ];
    let mut client = Peer::spawn("refpeer client", &bins.refpeer, &args);
    let report = client.line_starting("", SECS(120));
    let status = client.wait(SECS(10));
    assert!(
        status.success() && report == "64/64 streams intact",
        "{adapter}: reference client: {report:?} ({status})"
    );
}

// ----- scenarios on streams our end opens, in both roles -------------------------

smux_tests::per_adapter!(
    write_deadlines_slow_reader,
    late_frames_never_reach_a_new_stream,
    simultaneous_close,
    reference_closes_connection_mid_transfer,
);

/// Who dialled the connection (our end opens the streams either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialer {
    Ours,
    Reference,
}

const DIALERS: [Dialer; 2] = [Dialer::Ours, Dialer::Reference];

/// What to put between the two ends: nothing, or a [`Relay`] that holds FINs back
/// until both ends sent theirs (`Cross`) or our CFMs until our FIN (`CfmWithFin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Between {
    Nothing,
    Cross,
    CfmWithFin,
}

/// A session with a `scenarios` peer that serves the streams we open (see its command
/// protocol), directly or through a [`Relay`].
fn command_session(
    adapter: Adapter,
    bins: &Binaries,
    dialer: Dialer,
    between: Between,
) -> (Peer, Option<Relay>, Arc<dyn Sess>) {
    let relay = |target, reference| {
        (between != Between::Nothing).then(|| {
            let options = Options {
                reference,
                cross_fins: between == Between::Cross,
                cfm_with_fin: between == Between::CfmWithFin,
            };
            Relay::start(target, options)
        })
    };
    match dialer {
        Dialer::Ours => {
            let (peer, addr) = Peer::scenarios_server("scenarios server", bins, &[]);
            let relay = relay(addr, ReferenceIs::Target);
            let to = relay.as_ref().map_or(addr, Relay::addr);
            let session = adapter.connect(to, Config::default()).expect("connect");
            (peer, relay, Arc::from(session))
        }
        Dialer::Reference => {
            let listener = adapter.listen(Config::default()).expect("listen");
            let relay = relay(listener.addr(), ReferenceIs::Client);
            let to = relay
                .as_ref()
                .map_or(listener.addr(), Relay::addr)
                .to_string();
            let peer = Peer::scenarios("scenarios dial", bins, &["-mode", "dial", "-addr", &to]);
            let session = listener.accept(SECS(10)).expect("accept the reference");
            (peer, relay, Arc::from(session))
        }
    }
}

/// Writes under short deadlines while the reference reads slowly (16 KiB every 5 ms):
/// every write that misses its deadline reports exactly the bytes it accepted, and we
/// resend exactly the rest. The reference must receive every byte once: same length,
/// same FNV-1a hash.
fn write_deadlines_slow_reader(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    for dialer in DIALERS {
        let (peer, _, session) = command_session(adapter, bins, dialer, Between::Nothing);
        let tag = 0x5100 + dialer as u64;
        let data = pattern_vec(tag, 3 << 20);
        let mut stream = session.open().expect("open");
        let mut head = b"S".to_vec();
        head.extend_from_slice(&tag.to_le_bytes());
        stream.write_all(&head, soon(10)).expect("command");
        let (mut off, mut timeouts, mut partial) = (0, 0, 0);
        let end = soon(60);
        while off < data.len() {
            assert!(Instant::now() < end, "{adapter}: no progress in 60 s");
            let piece = &data[off..(off + 96 * 1024).min(data.len())];
            match stream
                .wr
                .write_all(piece, Instant::now() + Duration::from_millis(15))
            {
                Ok(()) => off += piece.len(),
                Err(p) => {
                    assert_eq!(
                        p.error.kind(),
                        std::io::ErrorKind::TimedOut,
                        "{adapter}: {}",
                        p.error
                    );
                    assert!(
                        p.written < piece.len(),
                        "{adapter}: timed out after all of it"
                    );
                    timeouts += 1;
                    partial += usize::from(p.written > 0);
                    off += p.written;
                }
            }
        }
        drop(stream);
        let line = peer.line_starting(&format!("slow {tag:x} "), SECS(60));
        let want = format!("slow {tag:x} {} {:x}", data.len(), fnv1a(FNV_START, &data));
        eprintln!("{adapter}, {dialer:?} dials: {timeouts} deadlines missed, {partial} with a partial count");
        assert_eq!(
            line, want,
            "{adapter}, {dialer:?} dials: what the reference received"
        );
        assert!(
            timeouts > 0 && partial > 0,
            "{adapter}: no deadline was missed: the reader was not slow"
        );
    }
}

/// The reference answers a FIN at once, but a `Write` in progress goes on sending PSH
/// frames for that stream afterwards while its window lasts. Our end reads a whole
/// window of a flood (the reference's `Write` now waits for a CFM) and closes the
/// stream; the relay delivers our CFMs together with our FIN, so the reference learns
/// of new window and of the close at once. The moment the ID is free again here we
/// open the next stream, whose echo must be exact: no late frame may reach it. The
/// relay counts the frames the reference sent after its FIN, to show they were there.
fn late_frames_never_reach_a_new_stream(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    for dialer in DIALERS {
        let (_peer, relay, session) = command_session(adapter, bins, dialer, Between::CfmWithFin);
        let relay = relay.expect("relay");
        let mut reused = 0;
        for i in 0..20u64 {
            let mut flood = session.open().expect("open the flood stream");
            flood.write_all(b"F", soon(10)).expect("command");
            // A whole window: the reference's Write now waits for a CFM. Ours leave
            // as the data is read, but the relay holds them until our FIN.
            let mut buf = vec![0u8; 512 * 1024];
            flood
                .read_exact(&mut buf, soon(20))
                .expect("read the flood");
            assert!(buf.iter().all(|&b| b == 0xAA), "{adapter}: flood data");
            // Let our last CFM leave before the close (closing drops a CFM not yet
            // sent); the relay keeps it until the FIN.
            thread::sleep(Duration::from_millis(20));
            let old = flood.id;
            drop(flood);
            // The reference answers our FIN at once, before its late frames: open
            // the next stream the moment the ID is free again here.
            let end = soon(10);
            while session.stats().streams > 0 {
                assert!(
                    Instant::now() < end,
                    "{adapter}: the flood stream was not freed"
                );
                thread::yield_now();
            }
            let fresh = session.open().expect("open the next stream");
            let new = fresh.id;
            reused += u64::from(new == old);
            let len = 64 * 1024;
            match echo_check(fresh, b"E", 0x1A7E + i, len) {
                Ok(sum) if sum.sum() == pattern_sum(0x1A7E + i, len) => {}
                other => panic!(
                    "{adapter}, {dialer:?} dials, round {i}: the echo on stream {new} (the \
                     closed flood stream was {old}) is wrong: {:?}",
                    other.map(|s| s.len())
                ),
            }
        }
        thread::sleep(Duration::from_millis(300));
        let late = relay.seen().late_psh.load(Ordering::Relaxed);
        let bytes = relay.seen().late_bytes.load(Ordering::Relaxed);
        eprintln!(
            "{adapter}, {dialer:?} dials: {late} late PSH frames ({bytes} bytes) after the \
             reference's FIN; {reused} of 20 new streams reused the closed stream's ID"
        );
        assert!(
            late > 0,
            "{adapter}: the reference sent nothing after its FIN: scenario not exercised"
        );
        assert_eq!(session.end_reason(), None);
    }
}

/// Both ends close the same streams at once: the relay forwards each FIN only once the
/// other end has sent its own, so every close crosses. Every ID must be freed on both
/// ends. Then a write blocked on a full window must fail with a clear error (not time
/// out) when the reference closes that stream.
fn simultaneous_close(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    const LANES: u64 = 8;
    const PER_LANE: u64 = 25;
    for dialer in DIALERS {
        let (_peer, relay, session) = command_session(adapter, bins, dialer, Between::Cross);
        let relay = relay.expect("relay");
        let lanes: Vec<_> = (0..LANES)
            .map(|_| {
                let session = session.clone();
                thread::spawn(move || {
                    for _ in 0..PER_LANE {
                        let mut s = session.open().expect("open");
                        s.write_all(b"C", soon(10)).expect("command");
                    }
                })
            })
            .collect();
        for lane in lanes {
            lane.join().expect("lane");
        }
        wait_no_streams(&*session, SECS(20));
        let mut query = session.open().expect("open the query stream");
        query.write_all(b"Q", soon(10)).expect("query");
        let answer = query.read_line(soon(10)).expect("the reference's answer");
        drop(query);
        wait_no_streams(&*session, SECS(10));
        let n = LANES * PER_LANE;
        assert_eq!(
            answer,
            format!("conns 0 active {n} passive 0"),
            "{adapter}, {dialer:?} dials: the reference's view"
        );
        let crossed = relay.seen().crossed_fins.load(Ordering::Relaxed);
        let lonely = relay.seen().gave_up.load(Ordering::Relaxed);
        assert_eq!(
            (crossed, lonely),
            (2 * n + 2, 0),
            "{adapter}: FINs crossed / not"
        );
        assert_eq!(session.end_reason(), None);
    }
    for dialer in DIALERS {
        let (_peer, _, session) = command_session(adapter, bins, dialer, Between::Nothing);
        let mut s = session.open().expect("open");
        let mut head = b"W".to_vec();
        head.extend_from_slice(&300u32.to_le_bytes());
        s.write_all(&head, soon(10)).expect("command");
        let started = Instant::now();
        let big = vec![7u8; 4 << 20];
        let p =
            s.wr.write_all(&big, soon(30))
                .expect_err("the reference closed the stream");
        eprintln!(
            "{adapter}, {dialer:?} dials: blocked write: {} after {} bytes",
            p.error, p.written
        );
        assert_ne!(
            p.error.kind(),
            std::io::ErrorKind::TimedOut,
            "{adapter}: {}",
            p.error
        );
        assert!(
            p.written > 0 && p.written <= 512 * 1024,
            "{adapter}: {} bytes",
            p.written
        );
        assert!(
            started.elapsed() < SECS(10),
            "{adapter}: the error took {:?}",
            started.elapsed()
        );
        drop(s);
        wait_no_streams(&*session, SECS(10));
    }
}

/// The reference closes the whole connection while 8 streams are echoing: every read
/// and write still pending fails with an error (never a clean end-of-file, never a
/// timeout), and the session reports why it ended.
fn reference_closes_connection_mid_transfer(adapter: Adapter) {
    let Some(bins) = binaries() else { return };
    const SIZE: u64 = 2 << 20;
    for dialer in DIALERS {
        let (_peer, _, session) = command_session(adapter, bins, dialer, Between::Nothing);
        let limit: u64 = 4 << 20;
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let mut s = session.open().expect("open");
                let mut head = b"K".to_vec();
                head.extend_from_slice(&limit.to_le_bytes());
                s.write_all(&head, soon(10)).expect("command");
                let Strm { mut rd, mut wr, .. } = s;
                let writer = thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut off = 0;
                    while off < SIZE {
                        pattern(i, off, &mut buf);
                        wr.write_all(&buf, soon(30)).map_err(|p| p.error)?;
                        off += buf.len() as u64;
                    }
                    Ok::<_, std::io::Error>(())
                });
                let reader = thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = 0u64;
                    loop {
                        match rd.read(&mut buf, soon(30)) {
                            Ok(0) => return (got, Ok(())),
                            Ok(n) => got += n as u64,
                            Err(e) => return (got, Err(e)),
                        }
                    }
                });
                (writer, reader)
            })
            .collect();
        let mut echoed = 0;
        for (i, (w, r)) in threads.into_iter().enumerate() {
            let written = w.join().expect("writer");
            let (got, read) = r.join().expect("reader");
            echoed += got;
            if let Err(e) = &written {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut,
                    "{adapter}: stream {i}: write hung"
                );
            }
            match read {
                Ok(()) => panic!("{adapter}, {dialer:?} dials: stream {i}: clean end-of-file after {got} of {SIZE} bytes"),
                Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{adapter}: stream {i}: read hung"),
            }
        }
        let reason = session.end_reason();
        eprintln!(
            "{adapter}, {dialer:?} dials: cut after {echoed} echoed bytes; session: {reason:?}"
        );
        assert!(reason.is_some(), "{adapter}: the session did not end");
        assert!(session.open().is_err(), "{adapter}: open after the end");
    }
}
