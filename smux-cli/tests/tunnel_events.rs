//! `smux tunnel` prints one line per session event at its default level (no
//! `RUST_LOG`, no `-v`): the client's connected, lost with the reason and
//! reconnecting, server going away, drained; the server's session started, drained.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{start_with, Proc};

const WAIT: Duration = Duration::from_secs(30);

/// A target that answers each connection, after its first byte, with `len` bytes
/// written slowly (a second or so), then closes.
fn slow_target(len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(WAIT));
                let mut b = [0u8; 1];
                if conn.read_exact(&mut b).is_err() {
                    return;
                }
                for _ in 0..10 {
                    if conn.write_all(&vec![b'x'; len / 10]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    addr
}

fn server(listen: &str, target: &str) -> Proc {
    start_with(
        &["tunnel", "server", "--listen", listen, "--to", target],
        None,
    )
}

fn expect(p: &Proc, pattern: &str) -> String {
    p.wait_line(pattern, WAIT)
        .unwrap_or_else(|| panic!("no line with {pattern:?}"))
}

#[test]
fn session_events_are_printed_at_the_default_level() {
    let target = slow_target(100_000).to_string();
    let s = server("127.0.0.1:0", &target);
    let server_addr = s.addr.to_string();
    let client = start_with(
        &[
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--max-backoff",
            "200ms",
        ],
        None,
    );
    expect(&client, &format!("connected to {server_addr}"));
    expect(&s, "started");

    // The server dies: lost, with the reason, and reconnecting.
    drop(s);
    let line = expect(&client, &format!("connection to {server_addr} lost: "));
    assert!(line.contains("reconnecting in"), "{line}");
    expect(&client, &format!("cannot connect to {server_addr}: "));

    // It comes back on the same address: connected again.
    let s = server(&server_addr, &target);
    expect(&client, &format!("connected to {server_addr}"));

    // A connection in flight when the server is told to stop: the client hears the
    // go-away, the connection finishes, both ends report the session drained.
    let mut conn = TcpStream::connect(client.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(b"g").unwrap();
    let mut first = [0u8; 1];
    conn.read_exact(&mut first).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    expect(&client, &format!("server {server_addr} is going away"));
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len() + 1, 100_000);
    // Both directions done: the connection is over.
    drop(conn);
    expect(&s, "drained");
    expect(
        &client,
        &format!("previous session to {server_addr} drained"),
    );
}
