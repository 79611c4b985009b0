//! The adapters talk to each other over loopback TCP: a Tokio session against a
//! blocking session and against a smol session, with each side dialling in turn, and
//! with the extensions on at both ends (they agree) or off at one end (the other,
//! with them on, falls back to the base protocol, as it does with a reference peer).
//!
//! Both ends open streams (16 from the Tokio side, 8 from the other) and both ends
//! echo the streams the other opened. Nobody waits for the agreement first: the Tokio
//! side opens all its streams at once, the other side half of them, then waits with
//! `ready()` (which must say whether they agreed), then the rest. Every stream takes
//! the session's mode, the first ones too. Each opener writes a random amount (up to
//! 512 KiB) of seeded data and reads the echo back concurrently; the echo must match
//! by length and checksum. Once everything is written the opener shuts its write side
//! down: on an extended stream that is a half-close, and it reads the echo to
//! end-of-file (the echo side half-closes in turn when it has echoed everything: the
//! request / shut-down / read-the-answer pattern of a tunnel, across adapters); on a
//! base stream the shutdown fails with `Unsupported` and sends nothing (a FIN would
//! close both ways), so the opener reads exactly as many bytes as it wrote, then
//! closes.
//!
//! At the end the Tokio side goes away (`go_away`): with both ends agreed, the other
//! end is told and both sessions end `Drained`; otherwise the Tokio session drains on
//! its own (its peer only sees the connection end).

use std::io::ErrorKind;
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
    smux_proto::Config::default().with_extensions(extensions)
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
    /// What `ready()` said (the other side calls it halfway through its opens).
    ready: Option<bool>,
    /// Streams it opened that were extended.
    opened_extended: u64,
}

/// The streams one side's echo saw to their end-of-file, and how many were extended.
#[derive(Debug, Default)]
struct Echoed {
    streams: AtomicU64,
    extended: AtomicU64,
    bytes: AtomicU64,
}

impl Echoed {
    /// Counts a stream whose end-of-file arrived, with its mode.
    fn finished(&self, extended: bool) {
        self.extended
            .fetch_add(u64::from(extended), Ordering::Relaxed);
        self.streams.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks what the echo of one stream brought: exactly `size` bytes of `seed`.
fn check_echo(c: &Checksum, seed: u64, size: u64, side: &str) {
    assert_eq!(c.len(), size, "{side}: echo length");
    assert_eq!(c.sum(), pattern_sum(seed, size), "{side}: echo checksum");
}

/// What an opener's shutdown says about its stream: `Ok` is a half-close (extended),
/// `Unsupported` a base stream, where nothing was sent.
fn shut_extended(res: std::io::Result<()>, side: &str) -> bool {
    match res {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::Unsupported => false,
        Err(e) => panic!("{side}: shutdown: {e}"),
    }
}

// ----- the Tokio side ----------------------------------------------------------------

/// One stream opened by the Tokio side; returns whether it was extended.
async fn tokio_client(s: &smux_tokio::Session, seed: u64, size: u64) -> bool {
    let st = s.open().await.expect("open");
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
        // A half-close on an extended stream: the echo goes on coming.
        let ext = shut_extended(w.shutdown().await, "tokio side");
        assert_eq!(w.is_extended(), ext, "tokio side");
        (w, ext)
    });
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 32 * 1024];
    while c.len() < size {
        let n = r.read(&mut buf).await.expect("read echo");
        assert!(n > 0, "tokio side: echo ended early");
        c.update(&buf[..n]);
    }
    let (_w, ext) = writer.await.expect("writer");
    if ext {
        let n = r.read(&mut buf).await.expect("read echo");
        assert_eq!(n, 0, "tokio side: the echo's half-close follows it");
    }
    check_echo(&c, seed, size, "tokio side");
    ext
}

/// Echoes every stream the other side opens, then shuts its write side once the
/// stream's end-of-file came (a half-close on an extended stream; refused on a base
/// one, which the release then closes); counts the bytes and the streams echoed.
fn tokio_echo(s: smux_tokio::Session, echoed: Arc<Echoed>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        while let Ok(mut st) = s.accept().await {
            let echoed = echoed.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match st.read(&mut buf).await {
                        Ok(0) => {
                            echoed.finished(st.is_extended());
                            let _ = st.shutdown().await;
                            break;
                        }
                        Ok(n) => {
                            if st.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            echoed.bytes.fetch_add(n as u64, Ordering::Relaxed);
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

/// The blocking side: echoes what the Tokio side opens and runs its own clients (see
/// [`interop`]). Reports what it saw once its clients are done, then waits for its
/// session to end.
fn blocking_side(
    s: smux_blocking::Session,
    plan: Vec<(u64, u64)>,
    echoed: Arc<Echoed>,
    done: mpsc::Sender<Seen>,
) -> EndReason {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    let echo = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut threads = Vec::new();
            while let Ok(st) = s.accept() {
                let echoed = echoed.clone();
                threads.push(std::thread::spawn(move || {
                    let (mut r, mut w) = (&st, &st);
                    if let Ok(n) = std::io::copy(&mut r, &mut w) {
                        echoed.bytes.fetch_add(n, Ordering::Relaxed);
                        echoed.finished(st.is_extended());
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
                let ext = shut_extended(w.shutdown(Shutdown::Write), "blocking side");
                assert_eq!(w.is_extended(), ext, "blocking side");
                (w, ext)
            });
            let mut c = Checksum::new();
            let mut buf = vec![0u8; 32 * 1024];
            while c.len() < size {
                let n = (&st).read(&mut buf).expect("read echo");
                assert!(n > 0, "blocking side: echo ended early");
                c.update(&buf[..n]);
            }
            let (w, ext) = writer.join().expect("writer");
            drop(w);
            if ext {
                let n = (&st).read(&mut buf).expect("read echo");
                assert_eq!(n, 0, "blocking side: the echo's half-close follows it");
            }
            check_echo(&c, seed, size, "blocking side");
            ext
        })
    };
    let half = plan.len() / 2;
    let mut ready = None;
    let mut clients = Vec::new();
    for (i, (seed, size)) in plan.into_iter().enumerate() {
        if i == half {
            // The first streams are on their way (or done): the agreement may be
            // settled or not; `ready` settles it and says how.
            ready = Some(s.ready().expect("ready"));
        }
        clients.push(client(seed, size));
    }
    let mut opened_extended = 0;
    for c in clients {
        opened_extended += u64::from(c.join().expect("blocking client"));
    }
    let _ = done.send(Seen {
        enabled: s.extensions_enabled(),
        ready,
        opened_extended,
    });
    echo.join().expect("echo acceptor");
    s.closed()
}

// ----- the smol side -----------------------------------------------------------------

/// The smol side (see [`blocking_side`]).
async fn smol_side(
    s: smux_smol::Session,
    plan: Vec<(u64, u64)>,
    echoed: Arc<Echoed>,
    done: mpsc::Sender<Seen>,
) {
    use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let echo = {
        let s = s.clone();
        smol::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(st) = s.accept().await {
                let echoed = echoed.clone();
                tasks.push(smol::spawn(async move {
                    let (r, mut w) = st.into_split();
                    if let Ok(n) = smol::io::copy(r, &mut w).await {
                        echoed.bytes.fetch_add(n, Ordering::Relaxed);
                        echoed.finished(w.is_extended());
                    }
                    // A half-close on an extended stream; refused on a base one, which
                    // the release then closes.
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
                let ext = shut_extended(w.close().await, "smol side");
                assert_eq!(w.is_extended(), ext, "smol side");
                (w, ext)
            });
            let mut c = Checksum::new();
            let mut buf = vec![0u8; 32 * 1024];
            while c.len() < size {
                let n = r.read(&mut buf).await.expect("read echo");
                assert!(n > 0, "smol side: echo ended early");
                c.update(&buf[..n]);
            }
            let (w, ext) = writer.await;
            drop(w);
            if ext {
                let n = r.read(&mut buf).await.expect("read echo");
                assert_eq!(n, 0, "smol side: the echo's half-close follows it");
            }
            check_echo(&c, seed, size, "smol side");
            ext
        })
    };
    let half = plan.len() / 2;
    let mut ready = None;
    let mut clients = Vec::new();
    for (i, (seed, size)) in plan.into_iter().enumerate() {
        if i == half {
            ready = Some(s.ready().await.expect("ready"));
        }
        clients.push(client(s.open().await.expect("open"), seed, size));
    }
    let mut opened_extended = 0;
    for c in clients {
        opened_extended += u64::from(c.await);
    }
    let _ = done.send(Seen {
        enabled: s.extensions_enabled(),
        ready,
        opened_extended,
    });
    echo.await;
}

// ----- the pairing -------------------------------------------------------------------

/// Waits until `echoed` saw `n` streams to their end-of-file.
async fn all_echoed(echoed: &Echoed, n: u64, side: &str) {
    within(30, side, async {
        while echoed.streams.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Runs one pairing (see the module documentation).
fn interop(other: Other, tokio_dials: bool, ext: Ext) {
    let _g = serial();
    let mut rng = Rng::new(seed(&format!(
        "interop {other:?}, tokio dials: {tokio_dials}, {ext:?}"
    )));
    let mine = plan(&mut rng, TOKIO_STREAMS);
    let theirs = plan(&mut rng, OTHER_STREAMS);
    let their_bytes: u64 = theirs.iter().map(|(_, n)| n).sum();
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
        let their_echo = Arc::new(Echoed::default());
        let their_echoed = their_echo.clone();
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
                blocking_side(s, theirs, their_echoed, done_tx)
            }
            Other::Smol => smol::block_on(async move {
                let s = match for_other {
                    Some(l) => {
                        let l = smux_smol::Listener::from_tcp(
                            smol::Async::new(l).expect("async listener"),
                            other_config,
                        )
                        .expect("listener");
                        l.accept().await.expect("accept").0
                    }
                    None => smux_smol::connect(addr, other_config)
                        .await
                        .expect("connect"),
                };
                let s2 = s.clone();
                smol_side(s, theirs, their_echoed, done_tx).await;
                s2.closed().await
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
        let my_echo = Arc::new(Echoed::default());
        let echo = tokio_echo(session.clone(), my_echo.clone());
        // Every stream at once, before the agreement settles.
        let clients: Vec<_> = mine
            .iter()
            .map(|&(seed, size)| {
                let s = session.clone();
                tokio::spawn(async move { tokio_client(&s, seed, size).await })
            })
            .collect();
        let mut mine_seen = Seen::default();
        for c in clients {
            let extended = within(60, "tokio clients", c).await.expect("tokio client");
            mine_seen.opened_extended += u64::from(extended);
        }
        let their_seen = within(60, "the other side's clients", async {
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
        mine_seen.ready = Some(within(10, "ready", session.ready()).await.expect("ready"));
        all_echoed(&my_echo, OTHER_STREAMS, "the Tokio side's echo").await;
        all_echoed(&their_echo, TOKIO_STREAMS, "the other side's echo").await;
        assert_eq!(session.stats().protocol_errors, 0);

        // Both ends agree, or neither uses the extensions, and every stream takes the
        // session's mode, the ones opened before the agreement settled too.
        let agreed = ext.agreed();
        assert_eq!(mine_seen.enabled, agreed, "tokio side: {mine_seen:?}");
        assert_eq!(mine_seen.ready, Some(agreed), "tokio side: {mine_seen:?}");
        assert_eq!(their_seen.enabled, agreed, "{other:?}: {their_seen:?}");
        assert_eq!(their_seen.ready, Some(agreed), "{other:?}: {their_seen:?}");
        let (tokio_ext, other_ext) = if agreed {
            (TOKIO_STREAMS, OTHER_STREAMS)
        } else {
            (0, 0)
        };
        assert_eq!(
            (
                mine_seen.opened_extended,
                their_echo.extended.load(Ordering::Relaxed)
            ),
            (tokio_ext, tokio_ext),
            "extended streams opened by the Tokio side"
        );
        assert_eq!(
            (
                their_seen.opened_extended,
                my_echo.extended.load(Ordering::Relaxed)
            ),
            (other_ext, other_ext),
            "extended streams opened by the {other:?} side"
        );

        // The Tokio side goes away once every stream is done: it ends `Drained`, and
        // so does the other side when it was told (both ends agreed).
        session.go_away(0);
        let reason = within(30, "the Tokio session drains", session.closed()).await;
        assert_eq!(reason, EndReason::Drained);
        within(30, "tokio echo ends", echo).await.expect("echo");
        let echoed = my_echo.bytes.load(Ordering::Relaxed);
        assert_eq!(echoed, their_bytes, "the Tokio side echoed every byte");
        let their_end = within(
            30,
            "the other side ends",
            tokio::task::spawn_blocking(move || other_thread.join()),
        )
        .await
        .expect("join")
        .expect("the other side did not panic");
        if agreed {
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
