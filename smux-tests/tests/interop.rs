//! The adapters talk to each other over loopback TCP: a Tokio session against a
//! blocking session and against a smol session, with each side dialling in turn, and
//! with the extensions on at both ends (they agree) or off at one end (the other,
//! with them on, falls back to the base protocol, as it does with a reference peer).
//!
//! Both ends open streams (16 from the Tokio side, 8 from the other) and both ends
//! echo the streams the other opened. Each opener writes a random amount (up to
//! 512 KiB) of seeded data and reads the echo back concurrently; the echo must match
//! by length and checksum. On an extended stream the opener half-closes its write side
//! once everything is written and reads the echo to end-of-file, and the echo side
//! half-closes in turn when it has echoed everything: the request / shut-down /
//! read-the-answer pattern of a tunnel, across adapters. On a base stream (a FIN
//! closes both ways) the opener reads exactly as many bytes as it wrote, then closes.
//!
//! At the end the Tokio side goes away (`go_away`): with both ends agreed, the other
//! end is told and both sessions end `Drained`; otherwise the Tokio session drains on
//! its own (its peer only sees the connection end).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use smux_proto::EndReason;
use smux_tests::{pattern, pattern_sum, run, seed, serial, within, Checksum, Rng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKIO_STREAMS: u64 = 16;
const OTHER_STREAMS: u64 = 8;
const MAX_SIZE: u64 = 512 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    Blocking,
    Smol,
}

/// `Config::extensions` at each end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ext {
    tokio: bool,
    other: bool,
}

impl Ext {
    const BOTH: Ext = Ext {
        tokio: true,
        other: true,
    };
    const TOKIO_OFF: Ext = Ext {
        tokio: false,
        other: true,
    };
    const OTHER_OFF: Ext = Ext {
        tokio: true,
        other: false,
    };

    fn agreed(self) -> bool {
        self.tokio && self.other
    }
}

fn config(extensions: bool) -> smux_proto::Config {
    smux_proto::Config {
        extensions,
        ..smux_proto::Config::default()
    }
}

/// Sizes and seeds of one side's streams.
fn plan(rng: &mut Rng, n: u64) -> Vec<(u64, u64)> {
    (0..n)
        .map(|_| (rng.next_u64(), rng.range(0, MAX_SIZE + 1)))
        .collect()
}

/// What one side saw.
#[derive(Debug, Default)]
struct Seen {
    /// `extensions_enabled()` once its clients were done.
    enabled: bool,
    /// Streams it opened that were extended.
    opened_extended: u64,
    /// Streams the other end opened that were extended, as this side saw them (read
    /// once the other end's clients are done: all their streams were accepted then).
    accepted_extended: u64,
}

/// Checks what the echo of one stream brought: exactly `size` bytes of `seed`.
fn check_echo(c: &Checksum, seed: u64, size: u64, side: &str) {
    assert_eq!(c.len(), size, "{side}: echo length");
    assert_eq!(c.sum(), pattern_sum(seed, size), "{side}: echo checksum");
}

/// Waits (on any thread) until `enabled()`: the extensions were agreed.
fn wait_agreed(enabled: impl Fn() -> bool, side: &str) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !enabled() {
        assert!(
            std::time::Instant::now() < end,
            "{side}: the ends did not agree on extensions within 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ----- the Tokio side ----------------------------------------------------------------

/// One stream opened by the Tokio side; returns whether it was extended.
async fn tokio_client(s: &smux_tokio::Session, seed: u64, size: u64) -> bool {
    let st = s.open().await.expect("open");
    let ext = st.is_extended();
    let (mut r, mut w) = st.into_split();
    let writer = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            pattern(seed, off, &mut buf[..n]);
            w.write_all(&buf[..n]).await.expect("write");
            off += n as u64;
        }
        if ext {
            // Half-close: the echo goes on coming.
            w.shutdown().await.expect("half-close");
        }
        w
    });
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 32 * 1024];
    while ext || c.len() < size {
        let n = r.read(&mut buf).await.expect("read echo");
        if n == 0 {
            assert!(ext, "echo ended early");
            break;
        }
        c.update(&buf[..n]);
    }
    let _w = writer.await.expect("writer");
    check_echo(&c, seed, size, "tokio side");
    ext
}

/// Echoes every stream the other side opens, then shuts its write side once the
/// stream's end-of-file came (a half-close on an extended stream); counts the bytes
/// echoed and the extended streams.
fn tokio_echo(
    s: smux_tokio::Session,
    echoed: Arc<AtomicU64>,
    extended: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        while let Ok(mut st) = s.accept().await {
            if st.is_extended() {
                extended.fetch_add(1, Ordering::Relaxed);
            }
            let echoed = echoed.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match st.read(&mut buf).await {
                        Ok(0) => {
                            let _ = st.shutdown().await;
                            break;
                        }
                        Ok(n) => {
                            if st.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            echoed.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("echo task");
        }
    })
}

// ----- the blocking side -------------------------------------------------------------

/// The blocking side: echoes what the Tokio side opens and runs its own clients
/// (the first before waiting for the agreement when it dials, see [`interop`]).
/// Reports what it saw once its clients are done, then waits for its session to end.
fn blocking_side(
    s: smux_blocking::Session,
    plan: Vec<(u64, u64)>,
    wait: bool,
    dials: bool,
    accepted_extended: Arc<AtomicU64>,
    done: mpsc::Sender<Seen>,
) -> EndReason {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    let echo = {
        let (s, ext) = (s.clone(), accepted_extended.clone());
        std::thread::spawn(move || {
            let mut threads = Vec::new();
            while let Ok(st) = s.accept() {
                if st.is_extended() {
                    ext.fetch_add(1, Ordering::Relaxed);
                }
                threads.push(std::thread::spawn(move || {
                    let (mut r, mut w) = (&st, &st);
                    if std::io::copy(&mut r, &mut w).is_ok() {
                        let _ = st.shutdown(Shutdown::Write);
                    }
                }));
            }
            for t in threads {
                t.join().expect("echo thread");
            }
        })
    };
    let client = |seed: u64, size: u64| {
        let st = s.open().expect("open");
        std::thread::spawn(move || {
            let ext = st.is_extended();
            let w = st.try_clone().expect("clone");
            let writer = std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                let mut off = 0;
                while off < size {
                    let n = (size - off).min(buf.len() as u64) as usize;
                    pattern(seed, off, &mut buf[..n]);
                    (&w).write_all(&buf[..n]).expect("write");
                    off += n as u64;
                }
                if ext {
                    w.shutdown(Shutdown::Write).expect("half-close");
                }
                w
            });
            let mut c = Checksum::new();
            let mut buf = vec![0u8; 32 * 1024];
            while ext || c.len() < size {
                let n = (&st).read(&mut buf).expect("read echo");
                if n == 0 {
                    assert!(ext, "echo ended early");
                    break;
                }
                c.update(&buf[..n]);
            }
            drop(writer.join().expect("writer"));
            check_echo(&c, seed, size, "blocking side");
            ext
        })
    };
    let mut plan = plan.into_iter();
    let mut clients = Vec::new();
    if dials {
        let (seed, size) = plan.next().expect("a stream");
        clients.push(client(seed, size));
    }
    if wait {
        wait_agreed(|| s.extensions_enabled(), "blocking side");
    }
    clients.extend(plan.map(|(seed, size)| client(seed, size)));
    let mut opened_extended = 0;
    for c in clients {
        opened_extended += u64::from(c.join().expect("blocking client"));
    }
    let _ = done.send(Seen {
        enabled: s.extensions_enabled(),
        opened_extended,
        accepted_extended: 0,
    });
    echo.join().expect("echo acceptor");
    s.closed()
}

// ----- the smol side -----------------------------------------------------------------

/// The smol side (see [`blocking_side`]).
async fn smol_side(
    s: smux_smol::Session,
    plan: Vec<(u64, u64)>,
    wait: bool,
    dials: bool,
    accepted_extended: Arc<AtomicU64>,
    done: mpsc::Sender<Seen>,
) {
    use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let echo = {
        let (s, ext) = (s.clone(), accepted_extended.clone());
        smol::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(st) = s.accept().await {
                if st.is_extended() {
                    ext.fetch_add(1, Ordering::Relaxed);
                }
                tasks.push(smol::spawn(async move {
                    let (r, mut w) = st.into_split();
                    let _ = smol::io::copy(r, &mut w).await;
                    // A half-close on an extended stream, a close on a base one.
                    let _ = w.close().await;
                }));
            }
            for t in tasks {
                t.await;
            }
        })
    };
    let client = |st: smux_smol::Stream, seed: u64, size: u64| {
        smol::spawn(async move {
            let ext = st.is_extended();
            let (mut r, mut w) = st.into_split();
            let writer = smol::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                let mut off = 0;
                while off < size {
                    let n = (size - off).min(buf.len() as u64) as usize;
                    pattern(seed, off, &mut buf[..n]);
                    w.write_all(&buf[..n]).await.expect("write");
                    off += n as u64;
                }
                if ext {
                    w.close().await.expect("half-close");
                }
                w
            });
            let mut c = Checksum::new();
            let mut buf = vec![0u8; 32 * 1024];
            while ext || c.len() < size {
                let n = r.read(&mut buf).await.expect("read echo");
                if n == 0 {
                    assert!(ext, "echo ended early");
                    break;
                }
                c.update(&buf[..n]);
            }
            drop(writer.await);
            check_echo(&c, seed, size, "smol side");
            ext
        })
    };
    let mut plan = plan.into_iter();
    let mut clients = Vec::new();
    if dials {
        let (seed, size) = plan.next().expect("a stream");
        clients.push(client(s.open().await.expect("open"), seed, size));
    }
    if wait {
        let s2 = s.clone();
        smol::unblock(move || wait_agreed(|| s2.extensions_enabled(), "smol side")).await;
    }
    for (seed, size) in plan {
        clients.push(client(s.open().await.expect("open"), seed, size));
    }
    let mut opened_extended = 0;
    for c in clients {
        opened_extended += u64::from(c.await);
    }
    let _ = done.send(Seen {
        enabled: s.extensions_enabled(),
        opened_extended,
        accepted_extended: 0,
    });
    echo.await;
}

// ----- the pairing -------------------------------------------------------------------

/// Runs one pairing. The dialling end opens its first stream at once (before the
/// agreement, so a base stream, and the session's first frame, which makes the
/// acceptor offer the extensions); when both ends have extensions on, every other
/// stream is opened once they agreed, so it is extended.
fn interop(other: Other, tokio_dials: bool, ext: Ext) {
    let _g = serial();
    let mut rng = Rng::new(seed(&format!(
        "interop {other:?}, tokio dials: {tokio_dials}, {ext:?}"
    )));
    let mine = plan(&mut rng, TOKIO_STREAMS);
    let theirs = plan(&mut rng, OTHER_STREAMS);
    let their_bytes: u64 = theirs.iter().map(|(_, n)| n).sum();
    let wait = ext.agreed();
    run(async move {
        let (done_tx, done_rx) = mpsc::channel();
        // Whoever listens takes the listener, bound before either side starts.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let (for_other, for_tokio) = if tokio_dials {
            (Some(std_listener), None)
        } else {
            (None, Some(std_listener))
        };
        // The other side runs on its own thread; it dials or accepts as told, and
        // returns why its session ended.
        let other_config = config(ext.other);
        let their_accepted = Arc::new(AtomicU64::new(0));
        let their_acc = their_accepted.clone();
        let other_thread = std::thread::spawn(move || match other {
            Other::Blocking => {
                let s = match for_other {
                    Some(l) => {
                        smux_blocking::Listener::from_tcp(l, other_config)
                            .expect("listener")
                            .accept()
                            .expect("accept")
                            .0
                    }
                    None => smux_blocking::connect(addr, other_config).expect("connect"),
                };
                blocking_side(s, theirs, wait, !tokio_dials, their_acc, done_tx)
            }
            Other::Smol => smol::block_on(async move {
                let (s, driver) = match for_other {
                    Some(l) => {
                        let l = smux_smol::Listener::from_tcp(
                            smol::Async::new(l).expect("async listener"),
                            other_config,
                        )
                        .expect("listener");
                        let (s, d, _) = l.accept().await.expect("accept");
                        (s, d)
                    }
                    None => smux_smol::connect(addr, other_config)
                        .await
                        .expect("connect"),
                };
                let driver = smol::spawn(driver);
                smol_side(s, theirs, wait, !tokio_dials, their_acc, done_tx).await;
                driver.await
            }),
        });
        let config = config(ext.tokio);
        let session = match for_tokio {
            None => smux_tokio::connect(addr, config).await.expect("connect"),
            Some(l) => {
                l.set_nonblocking(true).expect("nonblocking");
                let tcp = tokio::net::TcpListener::from_std(l).expect("listener");
                let l = smux_tokio::Listener::from_tcp(tcp, config).expect("listener");
                l.accept().await.expect("accept").0
            }
        };
        let echoed = Arc::new(AtomicU64::new(0));
        let accepted_extended = Arc::new(AtomicU64::new(0));
        let echo = tokio_echo(session.clone(), echoed.clone(), accepted_extended.clone());
        let mut plan = mine.clone().into_iter();
        let mut clients = Vec::new();
        let mut client = |(seed, size): (u64, u64)| {
            let s = session.clone();
            clients.push(tokio::spawn(
                async move { tokio_client(&s, seed, size).await },
            ));
        };
        if tokio_dials {
            client(plan.next().expect("a stream"));
        }
        if wait {
            let s = session.clone();
            tokio::task::spawn_blocking(move || {
                wait_agreed(|| s.extensions_enabled(), "tokio side")
            })
            .await
            .expect("wait");
        }
        plan.for_each(&mut client);
        let mut mine_seen = Seen::default();
        for c in clients {
            let extended = within(60, "tokio clients", c).await.expect("tokio client");
            mine_seen.opened_extended += u64::from(extended);
        }
        let mut their_seen = within(60, "the other side's clients", async {
            loop {
                match done_rx.try_recv() {
                    Ok(seen) => break seen,
                    Err(mpsc::TryRecvError::Empty) => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(mpsc::TryRecvError::Disconnected) => {
                        panic!("the other side's thread failed")
                    }
                }
            }
        })
        .await;
        mine_seen.enabled = session.extensions_enabled();
        mine_seen.accepted_extended = accepted_extended.load(Ordering::Relaxed);
        their_seen.accepted_extended = their_accepted.load(Ordering::Relaxed);
        assert_eq!(session.stats().protocol_errors, 0);

        // Both ends agree, or neither uses the extensions: only streams opened after
        // the agreement (all but the dialler's first) are extended.
        assert_eq!(mine_seen.enabled, ext.agreed(), "tokio side: {mine_seen:?}");
        assert_eq!(
            their_seen.enabled,
            ext.agreed(),
            "{other:?}: {their_seen:?}"
        );
        let (tokio_base, other_base) = if tokio_dials { (1, 0) } else { (0, 1) };
        let (tokio_ext, other_ext) = if ext.agreed() {
            (TOKIO_STREAMS - tokio_base, OTHER_STREAMS - other_base)
        } else {
            (0, 0)
        };
        assert_eq!(
            (mine_seen.opened_extended, their_seen.accepted_extended),
            (tokio_ext, tokio_ext),
            "extended streams opened by the Tokio side"
        );
        assert_eq!(
            (their_seen.opened_extended, mine_seen.accepted_extended),
            (other_ext, other_ext),
            "extended streams opened by the {other:?} side"
        );

        // The Tokio side goes away once every stream is done: it ends `Drained`, and
        // so does the other side when it was told (both ends agreed).
        session.go_away(0);
        let reason = within(30, "the Tokio session drains", session.closed()).await;
        assert_eq!(reason, EndReason::Drained);
        within(30, "tokio echo ends", echo).await.expect("echo");
        let echoed = echoed.load(Ordering::Relaxed);
        assert_eq!(echoed, their_bytes, "the Tokio side echoed every byte");
        let their_end = within(
            30,
            "the other side ends",
            tokio::task::spawn_blocking(move || other_thread.join()),
        )
        .await
        .expect("join")
        .expect("the other side did not panic");
        if ext.agreed() {
            assert_eq!(their_end, EndReason::Drained, "{other:?} side was told");
        }
        let mine_bytes: u64 = mine.iter().map(|(_, n)| n).sum();
        eprintln!(
            "interop tokio <-> {other:?} (tokio dials: {tokio_dials}, {ext:?}): {} streams ({} extended), \
             {} KiB echoed each way from the Tokio side, {} KiB from the other; the other side ended {their_end:?}",
            TOKIO_STREAMS + OTHER_STREAMS,
            tokio_ext + other_ext,
            mine_bytes >> 10,
            their_bytes >> 10
        );
    });
}

#[test]
fn tokio_dials_blocking() {
    interop(Other::Blocking, true, Ext::BOTH);
}

#[test]
fn blocking_dials_tokio() {
    interop(Other::Blocking, false, Ext::BOTH);
}

#[test]
fn tokio_dials_smol() {
    interop(Other::Smol, true, Ext::BOTH);
}

#[test]
fn smol_dials_tokio() {
    interop(Other::Smol, false, Ext::BOTH);
}

// Fallback: one end has extensions off and stands in for a reference peer; the end
// with them on must speak the base protocol only, in either role.

#[test]
fn tokio_dials_blocking_without_extensions() {
    interop(Other::Blocking, true, Ext::OTHER_OFF);
}

#[test]
fn blocking_without_extensions_dials_tokio() {
    interop(Other::Blocking, false, Ext::OTHER_OFF);
}

#[test]
fn tokio_without_extensions_dials_blocking() {
    interop(Other::Blocking, true, Ext::TOKIO_OFF);
}

#[test]
fn blocking_dials_tokio_without_extensions() {
    interop(Other::Blocking, false, Ext::TOKIO_OFF);
}

#[test]
fn tokio_dials_smol_without_extensions() {
    interop(Other::Smol, true, Ext::OTHER_OFF);
}

#[test]
fn smol_without_extensions_dials_tokio() {
    interop(Other::Smol, false, Ext::OTHER_OFF);
}

#[test]
fn tokio_without_extensions_dials_smol() {
    interop(Other::Smol, true, Ext::TOKIO_OFF);
}

#[test]
fn smol_dials_tokio_without_extensions() {
    interop(Other::Smol, false, Ext::TOKIO_OFF);
}
