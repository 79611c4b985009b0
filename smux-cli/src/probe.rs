//! `smux probe ADDR`: does the server at ADDR speak smux? And if not, what does it
//! speak?
//!
//! The probe sends a VRM challenge and judges the answer as it arrives
//! (`Probe::judge_partial`): a peer whose first byte differs from a smux answer is
//! known at once, and one that answers in text (an HTTP server's error response, an
//! SSH banner, HTML) is named with the first line it sent. Only a silent peer costs
//! the whole timeout.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smux_proto::{NotSmux, Probe, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::args::{duration, peer_addr};

/// Arguments of `smux probe`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Connects to ADDR, sends a smux verify challenge and judges the answer. Prints the
verdict, and what the peer sent if it is not smux (a peer that answers in text, such
as an HTTP or SSH server, is named at once). Exit status 0 if ADDR speaks smux, 1 if
not, 2 if it could not tell (cannot connect, bad arguments).

Example: smux probe 127.0.0.1:7000")]
pub struct Args {
    /// Address to probe (HOST:PORT)
    #[arg(value_name = "ADDR", value_parser = peer_addr)]
    addr: String,
    /// Bound on connecting and on the answer
    #[arg(long, value_name = "D", default_value = "3s", value_parser = duration)]
    timeout: Duration,
}

/// Entry point of `smux probe`.
pub fn main(args: Args) -> ExitCode {
    let Args {
        addr,
        timeout: limit,
    } = args;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(probe(&addr, limit)) {
        Ok(Seen::Smux) => {
            println!("{addr}: speaks smux");
            ExitCode::SUCCESS
        }
        Ok(seen) => {
            println!("{addr}: does not speak smux: {}", seen.describe(limit));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: cannot probe {addr}: {e}");
            ExitCode::from(2)
        }
    }
}

/// What came back.
#[derive(Debug)]
enum Seen {
    /// The right verify code.
    Smux,
    /// Our challenge, sent back as it was.
    Echo,
    /// A verdict against smux, and the bytes received (the first line at least, when
    /// it is text).
    Not(Verdict, Vec<u8>),
    /// The peer closed the connection after these bytes.
    Closed(Vec<u8>),
    /// The peer reset the connection after these bytes.
    Reset(Vec<u8>),
    /// Nothing more within the timeout, after these bytes.
    Silent(Vec<u8>),
}

/// Time allowed for the rest of a text peer's first line once its protocol is known.
const LINE_WAIT: Duration = Duration::from_millis(250);
/// Most bytes of a first line read and quoted.
const LINE_MAX: usize = 256;

async fn probe(addr: &str, limit: Duration) -> io::Result<Seen> {
    let deadline = Instant::now() + limit;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connecting timed out");
    let mut tcp = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    tcp.set_nodelay(true)?;
    let probe = Probe::from_seed(seed());
    tcp.write_all(&probe.challenge()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; LINE_MAX];
    let verdict = loop {
        match timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return Ok(Seen::Silent(got)),
            Ok(Ok(0)) => return Ok(Seen::Closed(got)),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if let Some(v) = probe.judge_partial(&got) {
                    break v;
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Seen::Reset(got))
            }
            Ok(Err(e)) => return Err(e),
        }
    };
    if verdict.is_smux() {
        return Ok(Seen::Smux);
    }
    if got.starts_with(&probe.challenge()) {
        return Ok(Seen::Echo);
    }
    // More to show, briefly and bounded: a text peer's whole first line, or at least
    // a header's worth of a binary answer.
    let text = matches!(verdict, Verdict::Foreign(_)) && is_text(&got);
    let until = deadline.min(Instant::now() + LINE_WAIT);
    while got.len() < LINE_MAX
        && if text {
            !got.contains(&b'\n')
        } else {
            got.len() < 7
        }
    {
        match timeout_at(until, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    Ok(Seen::Not(verdict, got))
}

impl Seen {
    fn describe(&self, limit: Duration) -> String {
        match self {
            Seen::Smux => "speaks smux".into(),
            Seen::Echo => "peer sent the challenge back unchanged (an echo server?)".into(),
            Seen::Not(Verdict::Foreign(NotSmux::Text(_)), got) => {
                format!("peer sent text {}", quote(got))
            }
            Seen::Not(Verdict::Foreign(NotSmux::Tls), got) => {
                format!("peer speaks TLS (first bytes {})", hex(got))
            }
            Seen::Not(Verdict::Foreign(kind), got) => {
                format!("peer speaks {kind} ({})", quote(got))
            }
            // A server of the reference implementation may probe its clients first.
            Seen::Not(_, got) if got.first() == Some(&4) => format!(
                "peer sent a VRM frame that does not answer ours (a smux server that \
                 probes its clients first?); first bytes {}",
                hex(got)
            ),
            Seen::Not(_, got) => format!(
                "peer's answer is not the verify code (first bytes {})",
                hex(got)
            ),
            Seen::Closed(got) => {
                format!(
                    "peer closed the connection without answering ({})",
                    after(got)
                )
            }
            Seen::Reset(got) => format!("peer reset the connection ({})", after(got)),
            Seen::Silent(got) if got.is_empty() => {
                format!("no answer within {limit:?} (nothing received)")
            }
            Seen::Silent(got) => {
                format!("no complete answer within {limit:?} ({})", after(got))
            }
        }
    }
}

/// What arrived before the connection ended or went silent.
fn after(got: &[u8]) -> String {
    match got.len() {
        0 => "nothing received".into(),
        n if is_text(got) => format!("after {n} byte(s) of text: {}", quote(got)),
        n => format!("after {n} byte(s): {}", hex(got)),
    }
}

/// Printable ASCII and line breaks only.
fn is_text(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| c.is_ascii_graphic() || matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The first line of `got`, quoted and escaped (cut to 72 characters, with "...").
fn quote(got: &[u8]) -> String {
    const MAX: usize = 72;
    let line = got.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{:?}", cut + "...")
    } else {
        format!("{text:?}")
    }
}

/// Up to 16 bytes in hex.
fn hex(got: &[u8]) -> String {
    let mut s: Vec<String> = got.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if got.len() > 16 {
        s.push("...".into());
    }
    s.join(" ")
}

/// A seed for the challenge: the clock, the process and a counter (unpredictable
/// enough that a peer does not send the answer by accident; not a secret).
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_hex() {
        assert_eq!(
            quote(b"HTTP/1.1 400 Bad Request\r\nServer: x"),
            r#""HTTP/1.1 400 Bad Request""#
        );
        assert_eq!(quote(b"<html>"), r#""<html>""#);
        assert_eq!(quote(&[b'a'; 100]).len(), 72 + 3 + 2);
        assert_eq!(hex(&[4, 0x20, 0xff]), "04 20 ff");
        assert_eq!(after(b""), "nothing received");
        assert_eq!(after(b"OK\n"), r#"after 3 byte(s) of text: "OK""#);
        assert_eq!(after(&[0, 1]), "after 2 byte(s): 00 01");
    }
}
