//! The slow and the tool-level interop tests against the real reference implementation
//! (yddeng/smux, in Go), in one test binary so that they run side by side:
//!
//! * [`tool`]: the `smux` tool: `smux probe` against a reference server and the
//!   reference's probe against `smux tunnel server`; the tunnel server behind a
//!   reference client (64 streams of 300 KB and more, checked byte for byte by the
//!   reference); the tunnel client in front of a reference server (64 connections,
//!   checked by checksum) and of one that probes every connection first; a reference
//!   client closing the connection mid-transfer;
//! * [`idle`]: idle for 112 s in both roles (the reference ends a session after 100 s
//!   without a PIN), for the tool and each adapter at once;
//! * [`ids`]: more than 65,536 sequential streams in both roles on each adapter, and
//!   what our end sees when the reference runs out of IDs.
//!
//! The idle test sleeps for two minutes; cargo runs test binaries one after another,
//! so the CPU-bound ID tests live here too and run meanwhile (libtest starts tests in
//! name order, so `idle::` goes first), and the whole interop suite costs about two
//! minutes instead of four. The other adapter scenarios are in
//! `smux-tests/tests/reference.rs` and `reference_memory.rs`; the Go programs and the
//! adapters' common shape in `smux_tests::reference`. Without Go these tests say
//! SKIPPED loudly and pass, unless `SMUX_REQUIRE_REFERENCE=1` (CI) makes them fail.

mod idle;
mod ids;
mod tool;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use smux_tests::reference::{Binaries, Peer};
use smux_tests::{pattern, pattern_sum, Checksum};

pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Longer than the reference's 100 s keepalive timeout plus its 10 s check period.
pub const IDLE: Duration = Duration::from_secs(112);

/// A `smux` child process; its log lines (stderr) go to a channel. Killed when dropped.
pub struct Tool {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Tool {
    /// Starts `smux args...` and waits for its "listening on ADDR" line.
    pub fn start(args: &[&str]) -> Tool {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smux"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start smux");
        let stderr = child.stderr.take().expect("piped stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[smux] {line}");
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Ok(a) = rest.split_whitespace().next().unwrap_or("").parse() {
                        let _ = tx.send(a);
                    }
                }
                smux_tests::lock(&lines).push(line);
            }
        });
        let addr: SocketAddr = match rx.recv_timeout(SECS(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("smux {args:?} did not report its address");
            }
        };
        Tool { child, addr, log }
    }

    /// Log lines containing `what`.
    pub fn count(&self, what: &str) -> usize {
        smux_tests::lock(&self.log)
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }

    /// Waits (at most `limit`) for a log line containing `what`.
    pub fn wait_for(&self, what: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while self.count(what) == 0 {
            assert!(Instant::now() < end, "smux never logged {what:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP echo server (a thread per connection) that counts its open connections.
pub fn echo_target() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let open = count.clone();
            open.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(SECS(60)));
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

/// Sends `len` bytes of pattern `seed` through a TCP connection to `addr` while
/// reading the echo; checks it by length and checksum.
pub fn tcp_round_trip(addr: SocketAddr, seed: u64, len: u64) -> Result<(), String> {
    let conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(SECS(60))).expect("timeout");
    conn.set_write_timeout(Some(SECS(60))).expect("timeout");
    let mut writer = conn.try_clone().expect("clone");
    let w = thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            pattern(seed, off, &mut buf[..n]);
            writer.write_all(&buf[..n])?;
            off += n as u64;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut reader = conn;
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    while sum.len() < len {
        let want = (len - sum.len()).min(buf.len() as u64) as usize;
        match reader.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("end-of-file after {} of {len} bytes", sum.len())),
            Ok(n) => sum.update(&buf[..n]),
            Err(e) => return Err(format!("read after {} bytes: {e}", sum.len())),
        }
    }
    w.join()
        .expect("writer")
        .map_err(|e| format!("write: {e}"))?;
    if sum.sum() != pattern_sum(seed, len) {
        return Err("echo differs".into());
    }
    Ok(())
}

/// Runs `refpeer -mode client` against `addr` and returns its verdict line and status.
pub fn refpeer_client(bins: &Binaries, addr: SocketAddr, extra: &[&str]) -> (String, bool) {
    let addr = addr.to_string();
    let mut args = vec!["-mode", "client", "-addr", &addr];
    args.extend_from_slice(extra);
    let mut client = Peer::spawn("refpeer client", &bins.refpeer, &args);
    let verdict = client.line_starting("", SECS(200));
    let ok = client.wait(SECS(10)).success();
    (verdict, ok)
}
