//! `smux tunnel` end to end on loopback: both ends as processes, a local echo
//! target, many concurrent tunnelled connections moving checksummed data; a restart
//! of the server that the client reconnects to; and `smux probe` exit codes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::start;

/// An echo server on loopback (a thread per connection); runs until the test ends.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Deterministic test data of connection `i`.
fn data(i: usize, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sends `len` bytes through `addr` and reads the echo back concurrently; returns
/// (checksum sent, checksum received).
fn round_trip(addr: SocketAddr, i: usize, len: usize) -> Result<(u64, u64), String> {
    let sent = data(i, len);
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let to_send = sent.clone();
    let w = thread::spawn(move || {
        for chunk in to_send.chunks(7 * 1024 + 13) {
            writer.write_all(chunk)?;
        }
        Ok::<(), std::io::Error>(())
    });
    let mut got = vec![0u8; len];
    conn.read_exact(&mut got)
        .map_err(|e| format!("connection {i}: read: {e}"))?;
    w.join()
        .unwrap()
        .map_err(|e| format!("connection {i}: write: {e}"))?;
    Ok((fnv1a(&sent), fnv1a(&got)))
}

fn many_round_trips(addr: SocketAddr, conns: usize, len: usize) {
    let handles: Vec<_> = (0..conns)
        .map(|i| thread::spawn(move || round_trip(addr, i, len)))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (sent, got) = h.join().unwrap().unwrap();
        assert_eq!(sent, got, "connection {i}: data differs");
    }
}

#[test]
fn many_connections_through_the_tunnel_and_a_server_restart() {
    let started = Instant::now();
    let echo = echo_server().to_string();
    let server = start(&["tunnel", "server", "--listen", "127.0.0.1:0", "--to", &echo]);
    let server_addr = server.addr.to_string();
    let client = start(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &server_addr,
        "--max-backoff",
        "300ms",
    ]);

    // 48 concurrent connections of 512 KiB each (beyond one 512 KiB window in flight).
    many_round_trips(client.addr, 48, 512 * 1024);

    // The server goes away and comes back on the same address: the client reconnects.
    drop(server);
    let server = start(&["tunnel", "server", "--listen", &server_addr, "--to", &echo]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match round_trip(client.addr, 1000, 64 * 1024) {
            Ok((a, b)) => {
                assert_eq!(a, b);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("not reconnected yet: {e}");
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the client did not reconnect: {e}"),
        }
    }
    many_round_trips(client.addr, 16, 128 * 1024);
    drop(client);
    drop(server);
    eprintln!("tunnel test took {:?}", started.elapsed());
}

/// Runs `smux probe` and returns its exit code and stdout.
fn probe(addr: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_smux"))
        .args(["probe", addr, "--timeout", "2s"])
        .stdin(Stdio::null())
        .output()
        .expect("run smux probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn probe_exit_codes() {
    // A smux server: yes.
    let echo = echo_server();
    let server = start(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &echo.to_string(),
    ]);
    let (code, out) = probe(&server.addr.to_string());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("speaks smux"), "{out}");

    // An echo server answers the challenge unchanged: no.
    let (code, out) = probe(&echo.to_string());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not speak smux"), "{out}");

    // A server that never answers: no (after the timeout).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, _) = probe(&silent.local_addr().unwrap().to_string());
    assert_eq!(code, 1);

    // Nobody listening: an error.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (code, _) = probe(&closed.to_string());
    assert_eq!(code, 2);

    // Bad arguments: an error.
    let (code, _) = probe("not an address");
    assert_eq!(code, 2);
}

/// Issue: a larger `--window` on one end made its writes overrun the other end's
/// window ("peer overran the window of stream 0"), which killed every session and
/// made the client reconnect forever. The receiver's window governs now: ends of ours
/// exchange it, and a sender assumes 512 KiB until it knows. Both ways round, and with
/// the extensions off (then nothing can be exchanged: the sender keeps to 512 KiB).
#[test]
fn ends_with_different_windows_move_data_both_ways() {
    let echo = echo_server().to_string();
    for (server_window, client_window, extra) in [
        ("4M", "512K", None),
        ("512K", "4M", None),
        ("128K", "8M", None),
        ("512K", "512K", Some("--no-extensions")),
        ("4M", "512K", Some("--no-extensions")),
    ] {
        let mut server_args = vec![
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &echo,
            "--window",
            server_window,
        ];
        server_args.extend(extra);
        let server = start(&server_args);
        let server_addr = server.addr.to_string();
        let mut client_args = vec![
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--window",
            client_window,
        ];
        client_args.extend(extra);
        let client = start(&client_args);
        // 4 MiB per connection: far beyond every window, in both directions.
        many_round_trips(client.addr, 4, 4 << 20);
        assert!(
            client
                .wait_line("lost", Duration::from_millis(200))
                .is_none(),
            "{server_window} / {client_window}: the session was lost"
        );
    }
}
