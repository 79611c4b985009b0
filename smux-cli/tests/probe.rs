//! `smux probe` against peers that do not speak smux, on loopback: one that answers
//! in text is named at once with what it sent (well before a long timeout); a silent
//! one costs the timeout and is reported as having sent nothing. And a tunnel client
//! pointed at a text server says so when its session ends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A server that, on each connection, reads what comes within `wait` (our 7-byte
/// challenge), then writes `answer` and closes the connection.
fn answering(answer: &'static [u8], wait: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(wait));
                let mut buf = [0u8; 64];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(answer);
                // Keep it open a moment: the verdict must not need the close.
                thread::sleep(Duration::from_secs(2));
            });
        }
    });
    addr
}

/// A server that accepts and reads but never answers, like an HTTP server waiting
/// for the rest of a request.
fn silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = [0u8; 64];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Runs `smux probe ADDR --timeout T`; returns (exit code, stdout, time taken).
fn probe(addr: SocketAddr, timeout: &str) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_smux"))
        .args(["probe", &addr.to_string(), "--timeout", timeout])
        .stdin(Stdio::null())
        .output()
        .expect("run smux probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        started.elapsed(),
    )
}

/// Probes a peer that answers `answer`, with a 60 s timeout: exit 1, each of `want`
/// in the message, and no wait for the timeout.
fn named_at_once(answer: &'static [u8], want: &[&str]) {
    let addr = answering(answer, Duration::from_millis(500));
    let (code, out, took) = probe(addr, "60s");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not speak smux"), "{out}");
    for w in want {
        assert!(out.contains(w), "{w:?} missing from: {out}");
    }
    // Far inside the timeout: the answer decided it, not the clock.
    assert!(took < Duration::from_secs(30), "took {took:?}: {out}");
}

#[test]
fn an_http_server_is_named_with_its_status_line() {
    named_at_once(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        &[r#"peer speaks HTTP ("HTTP/1.1 400 Bad Request")"#],
    );
}

#[test]
fn html_is_named_as_text() {
    named_at_once(
        b"<html><body>400 Bad Request</body></html>\n",
        &[r#"peer sent text "<html><body>400 Bad Request</body></html>""#],
    );
}

#[test]
fn an_ssh_banner_is_named() {
    named_at_once(
        b"SSH-2.0-OpenSSH_9.6\r\n",
        &[r#"peer speaks SSH ("SSH-2.0-OpenSSH_9.6")"#],
    );
}

#[test]
fn any_printable_text_is_named() {
    named_at_once(
        b"220 mail.example ESMTP ready\r\n",
        &[r#"peer sent text "220 mail.example ESMTP ready""#],
    );
    // Fewer than 7 bytes, then the connection closes: still quoted.
    named_at_once(b"nope\n", &["closed the connection", r#""nope""#]);
}

#[test]
fn a_binary_answer_is_shown_in_hex() {
    named_at_once(
        &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
        &["not the verify code", "de ad be ef 00 01 02"],
    );
}

/// A server that sends its own VRM challenge first (as servers of the reference
/// implementation that probe their clients do) is told apart from a wrong answer.
#[test]
fn a_server_that_probes_first_is_told_apart() {
    named_at_once(
        &[4, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66],
        &[
            "VRM frame that does not answer ours",
            "04 11 22 33 44 55 66",
        ],
    );
}

#[test]
fn a_silent_server_costs_the_timeout_and_is_said_to_have_sent_nothing() {
    let (code, out, _) = probe(silent(), "500ms");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no answer within 500ms (nothing received)"),
        "{out}"
    );
}

/// A tunnel client whose --server answers in HTML: the session ends with "peer does
/// not speak smux (it sent text: ...)", not an unknown frame command.
#[test]
fn a_session_against_a_text_server_names_the_text() {
    let server = answering(
        b"<html><body>Bad Request</body></html>\n",
        Duration::from_secs(5),
    );
    let client = common::start(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &server.to_string(),
        "--max-backoff",
        "5s",
    ]);
    // The session sends its first frame once a local connection arrives.
    let _conn = std::net::TcpStream::connect(client.addr).unwrap();
    let line = client
        .wait_line(" lost: ", Duration::from_secs(30))
        .expect("no line saying the connection was lost");
    assert!(
        line.contains(r#"peer does not speak smux (it sent text: "<html><")"#),
        "{line}"
    );
}
