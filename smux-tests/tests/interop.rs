//! The adapters talk to each other over loopback TCP: a Tokio session against a
//! blocking session and against a smol session, with each side dialling in turn.
//!
//! Both ends open streams (16 from the Tokio side, 8 from the other) and both ends
//! echo the streams the other opened. Each opener writes a random amount (up to
//! 512 KiB) of seeded data and reads the echo back concurrently; the echo must match
//! by length and checksum.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

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

/// Sizes and seeds of one side's streams.
fn plan(rng: &mut Rng, n: u64) -> Vec<(u64, u64)> {
    (0..n)
        .map(|_| (rng.next_u64(), rng.range(0, MAX_SIZE + 1)))
        .collect()
}

// ----- the Tokio side ----------------------------------------------------------------

async fn tokio_client(s: &smux_tokio::Session, seed: u64, size: u64) {
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
        w
    });
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 32 * 1024];
    while c.len() < size {
        let n = r.read(&mut buf).await.expect("read echo");
        assert!(n > 0, "echo ended early");
        c.update(&buf[..n]);
    }
    let _w = writer.await.expect("writer");
    assert_eq!(c.len(), size);
    assert_eq!(
        c.sum(),
        pattern_sum(seed, size),
        "tokio side: echo checksum"
    );
}

/// Echoes every stream the other side opens; counts the bytes echoed (the session
/// may be closed before an echo has seen its stream's end, so not `io::copy`).
fn tokio_echo(s: smux_tokio::Session, echoed: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        while let Ok(mut st) = s.accept().await {
            let echoed = echoed.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = st.read(&mut buf).await {
                    if n == 0 || st.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    echoed.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.expect("echo task");
        }
    })
}

// ----- the blocking side -------------------------------------------------------------

fn blocking_side(s: smux_blocking::Session, plan: Vec<(u64, u64)>, done: mpsc::Sender<()>) {
    use std::io::{Read, Write};
    let echo = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut threads = Vec::new();
            while let Ok(st) = s.accept() {
                threads.push(std::thread::spawn(move || {
                    let (mut r, mut w) = (&st, &st);
                    let _ = std::io::copy(&mut r, &mut w);
                }));
            }
            for t in threads {
                t.join().expect("echo thread");
            }
        })
    };
    let clients: Vec<_> = plan
        .into_iter()
        .map(|(seed, size)| {
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
                    w
                });
                let mut c = Checksum::new();
                let mut buf = vec![0u8; 32 * 1024];
                while c.len() < size {
                    let n = (&st).read(&mut buf).expect("read echo");
                    assert!(n > 0, "echo ended early");
                    c.update(&buf[..n]);
                }
                drop(writer.join().expect("writer"));
                assert_eq!(c.sum(), pattern_sum(seed, size), "blocking side: echo");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("blocking client");
    }
    let _ = done.send(());
    echo.join().expect("echo acceptor");
}

// ----- the smol side -----------------------------------------------------------------

async fn smol_side(s: smux_smol::Session, plan: Vec<(u64, u64)>, done: mpsc::Sender<()>) {
    use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let echo = {
        let s = s.clone();
        smol::spawn(async move {
            let mut tasks = Vec::new();
            while let Ok(st) = s.accept().await {
                tasks.push(smol::spawn(async move {
                    let (r, mut w) = st.into_split();
                    let _ = smol::io::copy(r, &mut w).await;
                    let _ = w.close().await;
                }));
            }
            for t in tasks {
                t.await;
            }
        })
    };
    let mut clients = Vec::new();
    for (seed, size) in plan {
        let st = s.open().await.expect("open");
        clients.push(smol::spawn(async move {
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
                w
            });
            let mut c = Checksum::new();
            let mut buf = vec![0u8; 32 * 1024];
            while c.len() < size {
                let n = r.read(&mut buf).await.expect("read echo");
                assert!(n > 0, "echo ended early");
                c.update(&buf[..n]);
            }
            drop(writer.await);
            assert_eq!(c.sum(), pattern_sum(seed, size), "smol side: echo");
        }));
    }
    for c in clients {
        c.await;
    }
    let _ = done.send(());
    echo.await;
}

// ----- the pairing -------------------------------------------------------------------

fn interop(other: Other, tokio_dials: bool) {
    let _g = serial();
    let mut rng = Rng::new(seed(&format!(
        "interop {other:?}, tokio dials: {tokio_dials}"
    )));
    let mine = plan(&mut rng, TOKIO_STREAMS);
    let theirs = plan(&mut rng, OTHER_STREAMS);
    let their_bytes: u64 = theirs.iter().map(|(_, n)| n).sum();
    let config = smux_tokio::Config::default();
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
        // The other side runs on its own thread; it dials or accepts as told.
        let other_config = config.clone();
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
                blocking_side(s, theirs, done_tx);
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
                smol_side(s, theirs, done_tx).await;
                let _ = driver.await;
            }),
        });
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
        let echo = tokio_echo(session.clone(), echoed.clone());
        let clients: Vec<_> = mine
            .iter()
            .map(|&(seed, size)| {
                let s = session.clone();
                tokio::spawn(async move { tokio_client(&s, seed, size).await })
            })
            .collect();
        for c in clients {
            within(60, "tokio clients", c).await.expect("tokio client");
        }
        within(60, "the other side's clients", async {
            loop {
                match done_rx.try_recv() {
                    Ok(()) => break,
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
        let stats = session.stats();
        assert_eq!(stats.protocol_errors, 0);
        session.close();
        within(30, "tokio echo ends", echo).await.expect("echo");
        let echoed = echoed.load(Ordering::Relaxed);
        assert_eq!(echoed, their_bytes, "the Tokio side echoed every byte");
        within(
            30,
            "the other side ends",
            tokio::task::spawn_blocking(move || other_thread.join()),
        )
        .await
        .expect("join")
        .expect("the other side did not panic");
        let mine_bytes: u64 = mine.iter().map(|(_, n)| n).sum();
        eprintln!(
            "interop tokio <-> {other:?} (tokio dials: {tokio_dials}): {} streams, {} KiB echoed each way from the Tokio side, {} KiB from the other",
            TOKIO_STREAMS + OTHER_STREAMS,
            mine_bytes >> 10,
            their_bytes >> 10
        );
    });
}

#[test]
fn tokio_dials_blocking() {
    interop(Other::Blocking, true);
}

#[test]
fn blocking_dials_tokio() {
    interop(Other::Blocking, false);
}

#[test]
fn tokio_dials_smol() {
    interop(Other::Smol, true);
}

#[test]
fn smol_dials_tokio() {
    interop(Other::Smol, false);
}
