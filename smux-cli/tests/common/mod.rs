//! Helpers shared by the `smux` process tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A `smux` child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its log lines (stderr) after the "listening on" one.
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Waits (up to `limit`) for a log line containing `pattern`; returns it.
    pub fn wait_line(&self, pattern: &str, limit: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `smux args...` with `RUST_LOG=info` and waits (bounded) for its "listening
/// on ADDR" log line.
pub fn start(args: &[&str]) -> Proc {
    start_with(args, Some("info"))
}

/// Like [`start`], with `RUST_LOG` set to `rust_log`, or unset for `None` (the
/// tool's default level).
pub fn start_with(args: &[&str], rust_log: Option<&str>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smux"));
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smux");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let (line_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[smux] {line}");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                if let (Some(tx), Ok(a)) = (tx.take(), addr.parse::<SocketAddr>()) {
                    let _ = tx.send(a);
                    continue;
                }
            }
            let _ = line_tx.send(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!("smux {args:?} did not report its address");
        }
    };
    Proc { child, addr, lines }
}
