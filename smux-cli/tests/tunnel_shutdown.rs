//! Stopping `smux tunnel` with real signals, on loopback: the first SIGINT or SIGTERM
//! closes the listener and lets connections in flight finish, then the process exits
//! 0; connections still open when the grace period ends, or when a second signal
//! arrives (exit 130), get a reset. Every connection either completes intact or ends
//! with a reset, never with a clean end-of-file on truncated data. Checked for a
//! signal to either end, with the extensions on and off.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{start, Proc};

/// Bound on every socket operation of the test.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in flight when the signal arrives.
const CONNS: usize = 20;
/// Size of each chunk the target writes, and the pause after each.
const CHUNK: usize = 4096;
const PAUSE: Duration = Duration::from_millis(50);

/// Byte `i` of every answer: a pattern that shows a lost or repeated chunk.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8).wrapping_mul(7)) as u8
}

/// A target that, for each connection, reads one byte: `F` asks for a finite answer
/// of `chunks` chunks, `E` for an endless one; either is written slowly (a pause
/// after each chunk), the finite one followed by end-of-file.
fn slow_target(chunks: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut cmd = [0u8; 1];
                if conn.read_exact(&mut cmd).is_err() {
                    return;
                }
                let limit = if cmd[0] == b'F' { chunks } else { usize::MAX };
                let mut offset = 0;
                for _ in 0..limit {
                    let chunk: Vec<u8> = (offset..offset + CHUNK).map(pattern).collect();
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                    offset += CHUNK;
                    thread::sleep(PAUSE);
                }
            });
        }
    });
    addr
}

/// How one connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The whole finite answer, intact, then end-of-file.
    Complete,
    /// A reset, after an intact prefix of the answer.
    Reset,
}

/// Asks for an answer through `addr` (`finite`: of `chunks` chunks); tells `first`
/// once the first bytes arrived, then reads to the end. Anything but a complete
/// answer or a reset after an intact prefix is an error.
fn fetch(
    addr: SocketAddr,
    finite: bool,
    chunks: usize,
    first: mpsc::Sender<()>,
) -> Result<End, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(if finite { b"F" } else { b"E" })
        .map_err(|e| format!("write: {e}"))?;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut told = false;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => {
                let want = if finite { chunks * CHUNK } else { usize::MAX };
                return if got == want {
                    Ok(End::Complete)
                } else {
                    Err(format!("clean end-of-file after {got} bytes of {want}"))
                };
            }
            Ok(n) => {
                if let Some(at) = (0..n).find(|&k| buf[k] != pattern(got + k)) {
                    return Err(format!("byte {} differs", got + at));
                }
                got += n;
                if !told {
                    told = true;
                    let _ = first.send(());
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(End::Reset),
            Err(e) => return Err(format!("read after {got} bytes: {e}")),
        }
    }
}

/// Which end of the tunnel gets the signals.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signalled {
    Client,
    Server,
}

/// A tunnel to `target`; `extra` goes to both ends. Returns (client, server).
fn tunnel(target: SocketAddr, extra: &[&str]) -> (Proc, Proc) {
    let target = target.to_string();
    let mut args = vec![
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target,
    ];
    args.extend_from_slice(extra);
    let server = start(&args);
    let server_addr = server.addr.to_string();
    let mut args = vec![
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &server_addr,
    ];
    args.extend_from_slice(extra);
    let client = start(&args);
    (client, server)
}

fn signal(p: &Proc, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &p.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Waits (bounded) for the process to exit.
fn wait_exit(p: &mut Proc, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "smux did not exit within {limit:?} of the signal"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `addr` refuses connections: the listener is closed.
fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            other => panic!("{addr} still accepts connections after the signal: {other:?}"),
        }
    }
}

/// Starts `finite` + `endless` connections through the tunnel and waits until each
/// has received its first bytes; returns their handles (finite ones first).
fn start_fetches(
    addr: SocketAddr,
    finite: usize,
    endless: usize,
    chunks: usize,
) -> Vec<thread::JoinHandle<Result<End, String>>> {
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..finite + endless)
        .map(|i| {
            let tx = tx.clone();
            thread::spawn(move || fetch(addr, i < finite, chunks, tx))
        })
        .collect();
    for k in 0..finite + endless {
        rx.recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|_| panic!("only {k} connections got their first bytes"));
    }
    handles
}

/// The first signal: no new connections, those in flight finish intact, exit 0.
fn first_signal_lets_connections_finish(signalled: Signalled, extra: &[&str]) {
    let chunks = 40; // about 2 s per answer
    let (mut client, mut server) =
        tunnel(slow_target(chunks), &[extra, &["--grace", "60s"]].concat());
    let handles = start_fetches(client.addr, CONNS, 0, chunks);
    let p = match signalled {
        Signalled::Client => &mut client,
        Signalled::Server => &mut server,
    };
    signal(p, "INT");
    wait_refused(p.addr);
    for (i, h) in handles.into_iter().enumerate() {
        let end = h.join().unwrap();
        assert_eq!(end, Ok(End::Complete), "connection {i}");
    }
    let status = wait_exit(p, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The grace period runs out: connections still open get a reset; the process
/// exits 0.
fn grace_over_resets_the_rest(signalled: Signalled, extra: &[&str]) {
    let chunks = 20;
    let (mut client, mut server) =
        tunnel(slow_target(chunks), &[extra, &["--grace", "2s"]].concat());
    let handles = start_fetches(client.addr, CONNS / 2, CONNS / 2, chunks);
    let p = match signalled {
        Signalled::Client => &mut client,
        Signalled::Server => &mut server,
    };
    signal(p, "TERM");
    for (i, h) in handles.into_iter().enumerate() {
        let end = h.join().unwrap();
        if i < CONNS / 2 {
            // Finite: intact if it finished within the grace period, else reset.
            assert!(end.is_ok(), "connection {i}: {end:?}");
        } else {
            assert_eq!(end, Ok(End::Reset), "connection {i} (endless)");
        }
    }
    let status = wait_exit(p, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A second signal: every connection in flight gets a reset at once; exit 130.
fn second_signal_exits_at_once(signalled: Signalled, extra: &[&str]) {
    let (mut client, mut server) = tunnel(slow_target(1), &[extra, &["--grace", "60s"]].concat());
    let handles = start_fetches(client.addr, 0, CONNS, 1);
    let p = match signalled {
        Signalled::Client => &mut client,
        Signalled::Server => &mut server,
    };
    signal(p, "INT");
    wait_refused(p.addr);
    signal(p, "TERM");
    // Well inside the 60 s grace period: the second signal did not wait it out.
    let status = wait_exit(p, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{status:?}");
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), Ok(End::Reset), "connection {i}");
    }
}

#[test]
fn client_first_signal_lets_connections_finish() {
    first_signal_lets_connections_finish(Signalled::Client, &[]);
}

#[test]
fn server_first_signal_lets_connections_finish() {
    first_signal_lets_connections_finish(Signalled::Server, &[]);
}

#[test]
fn client_grace_over_resets_the_rest() {
    grace_over_resets_the_rest(Signalled::Client, &[]);
}

#[test]
fn server_grace_over_resets_the_rest() {
    grace_over_resets_the_rest(Signalled::Server, &[]);
}

#[test]
fn grace_over_resets_base_streams_too() {
    // Base streams have no reset: the stopping end closes the session instead.
    grace_over_resets_the_rest(Signalled::Client, &["--no-extensions"]);
    grace_over_resets_the_rest(Signalled::Server, &["--no-extensions"]);
}

#[test]
fn client_second_signal_exits_at_once() {
    second_signal_exits_at_once(Signalled::Client, &[]);
}

#[test]
fn server_second_signal_exits_at_once() {
    second_signal_exits_at_once(Signalled::Server, &[]);
}
