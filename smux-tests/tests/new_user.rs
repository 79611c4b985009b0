//! The obvious client, as a new user writes it from the docs alone: connect, open 100
//! streams at once, and on each write 1 MB, shut the write side down and read the echo
//! to its end, with no ceremony after connecting; against an echo server of ours that
//! copies and then shuts its side down. On every adapter every stream must come back
//! whole. (An earlier version returned truncated data as a clean end-of-file: the
//! streams opened before the ends agreed on the extensions had no half-close.)
//!
//! Both ends size `max_buffered_in` for this program, as the docs of
//! `Config::max_buffered_in` say to: every stream here may hold a full window of
//! input unread (its echo at the client while it still writes, its request at the
//! server while the echo waits for the client), and 100 such streams need more than
//! the default bound. With the defaults, runs whose streams all progress at the same
//! pace filled the bound at both ends and stalled for good (seen once in CI on the
//! blocking adapter; in every run with a bound of 16 MiB on the blocking and Tokio
//! adapters).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use smux_tests::{pattern_vec, run, within, Checksum};

const STREAMS: usize = 100;
const SIZE: usize = 1 << 20;
/// Against the reference, whose window is a fixed 512 KiB and which stops reading
/// while its writer is blocked: a client that writes its whole request before reading
/// leaves up to a window of echo unread per stream, and past `max_buffered_in` (32
/// MiB, 64 such streams) our session pauses its input, which stalls the reference
/// and with it the confirmations the writes wait for (docs/PROTOCOL.md, section 11).
/// So this client stays within that bound.
const REFERENCE_STREAMS: usize = 48;

/// The input bound for [`STREAMS`] streams between two ends of ours: a full default
/// window (512 KiB) per stream, twice, since windows may grow by up to half of the
/// bound in all (`Config::max_buffered_in`).
const MAX_BUFFERED_IN: usize = 2 * STREAMS * 512 * 1024;

/// The data stream `i` sends.
fn data(i: usize) -> Vec<u8> {
    pattern_vec(0xC0FFEE + i as u64, SIZE)
}

fn check(i: usize, got: &[u8]) {
    assert_eq!(got.len(), SIZE, "stream {i}: {} of {SIZE} bytes", got.len());
    assert_eq!(
        Checksum::of(got),
        Checksum::of(&data(i)),
        "stream {i}: corrupted"
    );
}

#[test]
fn tokio_client_against_a_tokio_echo_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    run(within(120, "tokio new-user program", async {
        let config = smux_tokio::Config::default().with_max_buffered_in(MAX_BUFFERED_IN);
        let listener = smux_tokio::Listener::bind("127.0.0.1:0", config.clone())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((session, _)) = listener.accept().await {
                tokio::spawn(async move {
                    while let Ok(stream) = session.accept().await {
                        tokio::spawn(async move {
                            let (mut r, mut w) = stream.into_split();
                            tokio::io::copy(&mut r, &mut w).await.expect("echo");
                            w.shutdown().await.expect("echo shutdown");
                        });
                    }
                });
            }
        });
        let session = smux_tokio::connect(addr, config).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..STREAMS {
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = session.open().await.expect("open");
                s.write_all(&data(i)).await.expect("write");
                s.shutdown().await.expect("shutdown");
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("read");
                check(i, &got);
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
    }));
}

#[test]
fn smol_client_against_a_smol_echo_server() {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    smol::block_on(async {
        let config = smux_smol::Config::default().with_max_buffered_in(MAX_BUFFERED_IN);
        let listener = smux_smol::Listener::bind("127.0.0.1:0", config.clone()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = smol::spawn(async move {
            let (session, _) = listener.accept().await.unwrap();
            while let Ok(stream) = session.accept().await {
                smol::spawn(async move {
                    let (mut r, mut w) = stream.into_split();
                    smol::io::copy(&mut r, &mut w).await.expect("echo");
                    w.close().await.expect("echo close");
                })
                .detach();
            }
        });
        let session = smux_smol::connect(addr, config).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..STREAMS {
            let session = session.clone();
            tasks.push(smol::spawn(async move {
                let mut s = session.open().await.expect("open");
                s.write_all(&data(i)).await.expect("write");
                s.close().await.expect("close (half-close)");
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("read");
                check(i, &got);
            }));
        }
        let all = async {
            for t in tasks {
                t.await;
            }
        };
        let limit = async {
            smol::Timer::after(Duration::from_secs(120)).await;
            panic!("smol new-user program did not finish within 120 s");
        };
        smol::future::or(all, limit).await;
        drop(server);
    });
}

#[test]
fn blocking_client_against_a_blocking_echo_server() {
    let config = smux_blocking::Config::default().with_max_buffered_in(MAX_BUFFERED_IN);
    let listener = smux_blocking::Listener::bind("127.0.0.1:0", config.clone()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (server_tx, server_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (session, _) = listener.accept().unwrap();
        let session = Arc::new(session);
        let _ = server_tx.send(session.clone());
        while let Ok(stream) = session.accept() {
            std::thread::spawn(move || {
                let reader = stream.try_clone().unwrap();
                std::io::copy(&mut &reader, &mut &stream).expect("echo");
                stream.shutdown(Shutdown::Write).expect("echo shutdown");
            });
        }
    });
    let session = Arc::new(smux_blocking::connect(addr, config).unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for i in 0..STREAMS {
        let session = session.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| {
                let mut s = session.open().expect("open");
                s.write_all(&data(i)).expect("write");
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut got = Vec::new();
                s.read_to_end(&mut got).expect("read");
                check(i, &got);
            });
            let _ = done.send(result.is_ok());
        });
    }
    let server = server_rx.recv_timeout(Duration::from_secs(120));
    for done in 0..STREAMS {
        let Ok(ok) = done_rx.recv_timeout(Duration::from_secs(120)) else {
            // What both sessions hold, for a hang that does not reproduce at will.
            let server = server.as_ref().map(|s| s.stats());
            panic!(
                "blocking new-user program did not finish within 120 s: {done} of \
                 {STREAMS} streams done; client {:?}; server {server:?}",
                session.stats()
            );
        };
        assert!(ok, "a stream failed (see its panic above)");
    }
}

/// The same program (with [`REFERENCE_STREAMS`] streams) against an echo server on
/// the reference implementation, which
/// has no half-close: the shutdown fails loudly (`Unsupported`) and sends nothing, so
/// no read ever reports a clean end-of-file that hides lost data; the stream is intact
/// and the whole echo can still be read.
#[test]
fn every_client_fails_loudly_against_a_reference_echo_server() {
    use smux_tests::reference::{binaries, Peer};
    let Some(bins) = binaries() else { return };
    let (_server, addr) = Peer::refpeer_server("refpeer server", bins, "server");
    let check_refused = |i: usize, e: std::io::Error| {
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "stream {i}: {e}");
    };
    // Tokio.
    run(within(120, "tokio against the reference", async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let session = smux_tokio::connect(addr, smux_tokio::Config::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..REFERENCE_STREAMS {
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = session.open().await.expect("open");
                s.write_all(&data(i)).await.expect("write");
                check_refused(i, s.shutdown().await.expect_err("no half-close"));
                let mut got = vec![0u8; SIZE];
                s.read_exact(&mut got).await.expect("the whole echo");
                check(i, &got);
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
        assert!(!session.ready().await.unwrap(), "a base peer");
    }));
    // smol.
    smol::block_on(async {
        use smol::io::{AsyncReadExt, AsyncWriteExt};
        let session = smux_smol::connect(addr, smux_smol::Config::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..REFERENCE_STREAMS {
            let session = session.clone();
            tasks.push(smol::spawn(async move {
                let mut s = session.open().await.expect("open");
                s.write_all(&data(i)).await.expect("write");
                check_refused(i, s.close().await.expect_err("no half-close"));
                let mut got = vec![0u8; SIZE];
                s.read_exact(&mut got).await.expect("the whole echo");
                check(i, &got);
            }));
        }
        let all = async {
            for t in tasks {
                t.await;
            }
        };
        let limit = async {
            smol::Timer::after(Duration::from_secs(120)).await;
            panic!("smol against the reference did not finish within 120 s");
        };
        smol::future::or(all, limit).await;
    });
    // Blocking.
    let session = Arc::new(smux_blocking::connect(addr, smux_blocking::Config::default()).unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for i in 0..REFERENCE_STREAMS {
        let session = session.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| {
                let mut s = session.open().expect("open");
                s.write_all(&data(i)).expect("write");
                check_refused(i, s.shutdown(Shutdown::Write).expect_err("no half-close"));
                let mut got = vec![0u8; SIZE];
                s.read_exact(&mut got).expect("the whole echo");
                check(i, &got);
            });
            let _ = done.send(result.is_ok());
        });
    }
    for _ in 0..REFERENCE_STREAMS {
        let ok = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("blocking against the reference did not finish within 120 s");
        assert!(ok, "a stream failed (see its panic above)");
    }
}
