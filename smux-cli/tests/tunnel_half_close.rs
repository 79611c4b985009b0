//! `smux tunnel` carries half-close and aborts end to end, on loopback: a client
//! that sends a request, shuts its write side and then reads the answer gets the
//! whole answer from a target that answers only after end-of-file (alone, on the
//! session's very first stream, and many at once); a client's reset reaches the
//! target as a reset; an unreachable target resets the client's connection.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{start, Proc};

/// Bound on every socket operation of the test, so a broken tunnel fails the test
/// instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A target that reads each connection to end-of-file and only then answers with
/// the request reversed, then closes. Runs until the test ends.
fn reversing_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut request = Vec::new();
                if conn.read_to_end(&mut request).is_err() {
                    return;
                }
                request.reverse();
                let _ = conn.write_all(&request);
            });
        }
    });
    addr
}

/// A tunnel (server and client processes) to `target`; returns the client's address
/// to connect to and the processes, which are killed when dropped.
fn tunnel(target: SocketAddr) -> (SocketAddr, Proc, Proc) {
    let target = target.to_string();
    let server = start(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target,
    ]);
    let server_addr = server.addr.to_string();
    let client = start(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &server_addr,
    ]);
    (client.addr, client, server)
}

/// Deterministic request data of client `i`.
fn request(i: usize, len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends a request of `len` bytes through `addr`, shuts the write side down, reads
/// the answer to end-of-file and checks it is the whole request reversed.
fn ask(addr: SocketAddr, i: usize, len: usize) -> Result<(), String> {
    let sent = request(i, len);
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // Nobody reads the answer while the request goes out: the target answers only
    // after end-of-file, so there is nothing to read yet.
    for chunk in sent.chunks(16 * 1024 + 7) {
        conn.write_all(chunk)
            .map_err(|e| format!("client {i}: write: {e}"))?;
    }
    conn.shutdown(Shutdown::Write)
        .map_err(|e| format!("client {i}: shutdown: {e}"))?;
    let mut answer = Vec::with_capacity(len);
    conn.read_to_end(&mut answer)
        .map_err(|e| format!("client {i}: read: {e}"))?;
    if answer.len() != len {
        return Err(format!(
            "client {i}: answer of {} bytes to a request of {len}",
            answer.len()
        ));
    }
    if !answer.iter().rev().eq(sent.iter()) {
        return Err(format!(
            "client {i}: the answer is not the request reversed"
        ));
    }
    Ok(())
}

#[test]
fn request_half_close_then_the_whole_answer() {
    let started = Instant::now();
    let (addr, _client, _server) = tunnel(reversing_target());

    // The first connection is the session's first stream: the client must have let
    // the negotiation settle before opening it, or it would be a base stream and
    // its half-close a full close. Several windows (512 KiB) each way.
    ask(addr, 0, 700 * 1024).unwrap();
    // An empty request: the half-close alone.
    ask(addr, 1, 0).unwrap();

    // Many at once, of different sizes, all on the same session.
    let handles: Vec<_> = (0..16)
        .map(|i| thread::spawn(move || ask(addr, 100 + i, 200 * 1024 + i * 40 * 1024)))
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    eprintln!("half-close test took {:?}", started.elapsed());
}

/// Connects through `addr`, sends `len` bytes and closes the connection with a
/// reset (RST) instead of a FIN.
fn send_then_reset(addr: SocketAddr, len: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(&request(7, len)).await.unwrap();
        conn.set_zero_linger().unwrap();
        drop(conn);
    });
}

#[test]
fn aborts_go_through_the_tunnel() {
    // A target that reads until its connection ends and reports how it ended.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            thread::spawn(move || {
                conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                let end = loop {
                    match conn.read(&mut buf) {
                        Ok(0) => break Ok(got),
                        Ok(n) => got += n,
                        Err(e) => break Err(e.kind()),
                    }
                };
                let _ = tx.send(end);
            });
        }
    });
    let (addr, _client, _server) = tunnel(target);

    // The first connection settles the negotiation and ends normally: end-of-file.
    ask_and_close(addr);
    assert_eq!(rx.recv_timeout(IO_TIMEOUT).unwrap(), Ok(5));

    // A client that resets its connection: the target sees a reset, not a clean
    // end-of-file that would pass a truncated request off as complete.
    send_then_reset(addr, 100 * 1024);
    let end = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "{end:?}");
}

/// Sends five bytes through `addr` and closes the connection normally.
fn ask_and_close(addr: SocketAddr) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"hello").unwrap();
}

#[test]
fn an_unreachable_target_resets_the_client() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (addr, _client, _server) = tunnel(closed);
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 16];
    let end = conn.read(&mut buf);
    // A reset, not the end-of-file of an empty but complete answer.
    assert_eq!(
        end.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "{end:?}"
    );
}
