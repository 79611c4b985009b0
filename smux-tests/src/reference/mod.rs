//! Interop with the real reference implementation (yddeng/smux, in Go).
//!
//! The reference is not part of this repository: a snapshot of it sits beside the
//! checkout, in `../shared/reference/` (or wherever `SMUX_REFERENCE_DIR` points), with
//! the `refpeer` program and its `build.sh`. The interop tests build two programs on
//! top of it, once per test binary, into `target/smux-reference/`:
//!
//! * `refpeer`, through the snapshot's own `build.sh` (echo server, a server that
//!   probes every connection first, a checking client with an optional idle hold, and
//!   the reference's probe);
//! * `scenarios`, our own program (`smux-tests/reference/scenarios/main.go`), built
//!   the same way (the snapshot copied to a temporary directory, a module `replace`,
//!   `GOPROXY=off`: nothing is downloaded), for what `refpeer` cannot do: sequential
//!   streams, a peer that stops reading, a slow reader, late frames after a FIN,
//!   simultaneous closes and a connection closed mid-transfer.
//!
//! Both need Go 1.19 or newer. Without Go (or without the snapshot) [`binaries`]
//! prints a loud SKIPPED message and returns `None`, so each test returns early;
//! with `SMUX_REQUIRE_REFERENCE=1` (CI sets it) it fails the test instead.
//!
//! [`Peer`] runs one of those programs as a child process that is killed when dropped
//! (`scenarios` also exits by itself once the test process is gone); [`adapter`] gives
//! the three adapters one blocking shape, so each scenario is written once and
//! [`per_adapter!`](crate::per_adapter) makes a test of it per adapter; [`echo`] is our
//! end of the simple scenarios; [`relay`] sits between the two ends, reads every frame,
//! and can hold some back (FINs until both ends sent theirs, our CFMs until our FIN).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub mod adapter;
pub mod echo;
pub mod relay;

/// Instantiates `fn scenario(Adapter)` as one test per adapter (`scenario::tokio`,
/// `scenario::smol`, `scenario::blocking`), with the attributes given before the name
/// (`#[ignore = ".."]`) on each.
#[macro_export]
macro_rules! per_adapter {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            $(#[$attr])*
            fn tokio() {
                super::$name($crate::reference::adapter::Adapter::Tokio)
            }
            #[test]
            $(#[$attr])*
            fn smol() {
                super::$name($crate::reference::adapter::Adapter::Smol)
            }
            #[test]
            $(#[$attr])*
            fn blocking() {
                super::$name($crate::reference::adapter::Adapter::Blocking)
            }
        }
    )*};
}

/// The two programs, built.
#[derive(Debug)]
pub struct Binaries {
    /// The snapshot's `refpeer`.
    pub refpeer: PathBuf,
    /// Our `scenarios` program.
    pub scenarios: PathBuf,
    /// `go version`.
    pub go_version: String,
}

/// True if `SMUX_REQUIRE_REFERENCE=1`: a missing Go or snapshot fails the tests.
pub fn required() -> bool {
    std::env::var("SMUX_REQUIRE_REFERENCE").is_ok_and(|v| v == "1")
}

/// The workspace root (the directory holding `smux-tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("smux-tests sits in the workspace")
        .to_path_buf()
}

/// The reference snapshot's directory: `SMUX_REFERENCE_DIR`, or `../shared/reference`
/// beside the checkout.
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("SMUX_REFERENCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared/reference"),
    }
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target"),
    }
}

/// Writes straight to the process's standard error: unlike `eprintln!`, this is not
/// captured by the test harness, so it shows even when the test passes.
pub fn loud(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
    let _ = err.flush();
}

/// The built programs, or `None` (after a loud SKIPPED message) when Go or the
/// snapshot is missing and `SMUX_REQUIRE_REFERENCE=1` is not set.
///
/// # Panics
///
/// When Go or the snapshot is missing and the reference is required, or when a build
/// fails (that is never a reason to skip).
pub fn binaries() -> Option<&'static Binaries> {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    static TOLD: std::sync::Once = std::sync::Once::new();
    match BUILT.get_or_init(build) {
        Ok(b) => Some(b),
        Err(why) if required() => {
            panic!("SMUX_REQUIRE_REFERENCE=1 but the reference cannot be used: {why}")
        }
        Err(why) => {
            TOLD.call_once(|| {
                loud(&format!(
                    "\n************************************************************\n\
                     * SKIPPED: interop tests against the reference (yddeng/smux)\n\
                     * {why}\n\
                     * Install Go (Debian: apt-get install golang-go) to run them;\n\
                     * SMUX_REQUIRE_REFERENCE=1 makes this a failure.\n\
                     ************************************************************"
                ))
            });
            None
        }
    }
}

/// Builds both programs; `Err` only when Go or the snapshot is missing.
fn build() -> Result<Binaries, String> {
    let reference = reference_dir();
    if !reference.join("build.sh").is_file() || !reference.join("smux").is_dir() {
        return Err(format!(
            "no reference snapshot at {} (set SMUX_REFERENCE_DIR)",
            reference.display()
        ));
    }
    let go_version = match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => return Err("`go` is not on PATH".into()),
    };
    let out = target_dir().join("smux-reference");
    std::fs::create_dir_all(&out).expect("create target/smux-reference");
    // One build cache for every build: rebuilding after the first is quick.
    let env = [
        ("GOCACHE", out.join("gocache")),
        ("GOPATH", out.join("gopath")),
    ];
    let started = Instant::now();
    // Built once per test process: the process ID keeps concurrent builds apart.
    let unique = std::process::id();

    let refpeer = out.join("refpeer");
    let tmp = out.join(format!("refpeer.{unique}"));
    let mut cmd = Command::new(reference.join("build.sh"));
    cmd.arg(&tmp).envs(env.clone());
    run(cmd, "refpeer (../shared/reference/build.sh)");
    std::fs::rename(&tmp, &refpeer).expect("move refpeer into place");

    let scenarios = out.join("scenarios");
    let tmp = out.join(format!("scenarios.{unique}"));
    build_scenarios(&reference, &out.join(format!("work.{unique}")), &tmp, &env);
    std::fs::rename(&tmp, &scenarios).expect("move scenarios into place");

    loud(&format!(
        "reference interop: built refpeer and scenarios with {go_version} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Binaries {
        refpeer,
        scenarios,
        go_version,
    })
}

/// Builds `smux-tests/reference/scenarios` into `binary` as `build.sh` builds refpeer:
/// in `work`, the snapshot copied beside the program with a `go.mod` of its own, the
/// program's module replacing the reference's path with that copy, no network.
fn build_scenarios(reference: &Path, work: &Path, binary: &Path, env: &[(&str, PathBuf); 2]) {
    let _ = std::fs::remove_dir_all(work);
    copy_tree(&reference.join("smux"), &work.join("smux"));
    std::fs::write(
        work.join("smux/go.mod"),
        "module github.com/yddeng/smux\n\ngo 1.19\n",
    )
    .expect("write go.mod");
    let program = work.join("scenarios");
    std::fs::create_dir_all(&program).expect("create work dir");
    let source = workspace_root().join("smux-tests/reference/scenarios/main.go");
    std::fs::copy(&source, program.join("main.go")).expect("copy scenarios/main.go");
    std::fs::write(
        program.join("go.mod"),
        "module scenarios\n\ngo 1.19\n\nrequire github.com/yddeng/smux v0.0.0\n\n\
         replace github.com/yddeng/smux => ../smux\n",
    )
    .expect("write go.mod");
    let mut cmd = Command::new("go");
    cmd.args(["build", "-o"])
        .arg(binary)
        .arg(".")
        .current_dir(&program)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .envs(env.iter().cloned());
    run(cmd, "scenarios (smux-tests/reference/scenarios)");
    let _ = std::fs::remove_dir_all(work);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read the reference snapshot") {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy a file");
        }
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("building {what}: {e}"));
    assert!(
        out.status.success(),
        "building {what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port that was free a moment ago (for `refpeer`, which cannot report
/// the port it got). Another test may take it first: see [`Peer::refpeer_server`].
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
}

/// A reference program running as a child process; killed when dropped.
pub struct Peer {
    name: String,
    child: Child,
    /// Kept open: `scenarios -watch-stdin` exits when it closes (the test is gone).
    _stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `program args...`; `name` prefixes its output in the test's log.
    pub fn spawn(name: &str, program: &Path, args: &[&str]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            // The reference allocates a 512 KiB buffer for every stream; with Go's
            // default collector the 70,000-stream scenarios spend two thirds of their
            // time collecting. Collect only near a memory limit instead.
            .env("GOGC", "off")
            .env("GOMEMLIMIT", "256MiB")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag} stderr] {line}");
            }
        });
        Peer {
            name: name.to_string(),
            _stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Starts our `scenarios` program with `args` (and `-watch-stdin`).
    pub fn scenarios(name: &str, bins: &Binaries, args: &[&str]) -> Peer {
        let mut all = vec!["-watch-stdin"];
        all.extend_from_slice(args);
        Peer::spawn(name, &bins.scenarios, &all)
    }

    /// Starts `scenarios -mode server` and returns it with its address.
    pub fn scenarios_server(name: &str, bins: &Binaries, args: &[&str]) -> (Peer, SocketAddr) {
        let mut all = vec!["-mode", "server"];
        all.extend_from_slice(args);
        let peer = Peer::scenarios(name, bins, &all);
        let line = peer.line_starting("listening ", Duration::from_secs(20));
        let addr = line["listening ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: bad address in {line:?}: {e}"));
        (peer, addr)
    }

    /// Starts `refpeer -mode MODE` on a free port and waits until it listens. A port
    /// another test took between our look and refpeer's bind makes refpeer exit at
    /// once (while the other test's listener answers our connect): then it starts
    /// again on another port.
    pub fn refpeer_server(name: &str, bins: &Binaries, mode: &str) -> (Peer, SocketAddr) {
        for _ in 0..5 {
            let addr = free_port();
            if let Some(peer) = Peer::refpeer_server_on(name, bins, mode, addr) {
                return (peer, addr);
            }
            eprintln!("[{name}] could not listen on {addr}; trying another port");
        }
        panic!("{name}: could not listen on 5 free ports in a row");
    }

    /// Starts `refpeer -mode MODE` on `addr`; `None` if it could not listen there.
    pub fn refpeer_server_on(
        name: &str,
        bins: &Binaries,
        mode: &str,
        addr: SocketAddr,
    ) -> Option<Peer> {
        let args = ["-mode", mode, "-addr", &addr.to_string()];
        let mut peer = Peer::spawn(name, &bins.refpeer, &args);
        peer.listens_on(addr, Duration::from_secs(20))
            .then_some(peer)
    }

    /// Waits until something accepts TCP connections on `addr` while this program
    /// runs, then a moment more: false if the program exited (it could not bind).
    fn listens_on(&mut self, addr: SocketAddr, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut running = || self.child.try_wait().expect("try_wait").is_none();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if !running() {
                return false;
            }
            assert!(
                Instant::now() < end,
                "{}: nothing listens on {addr} after {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A program that failed to bind exits within milliseconds of starting.
        std::thread::sleep(Duration::from_millis(200));
        running()
    }

    /// The next line the program prints, waiting at most `limit`.
    pub fn line(&self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(l) => l,
            Err(e) => panic!("{}: no output line within {limit:?} ({e})", self.name),
        }
    }

    /// The next line that starts with `prefix`, skipping others, waiting at most `limit`.
    pub fn line_starting(&self, prefix: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!(
                    "{}: no line starting with {prefix:?} within {limit:?} ({e})",
                    self.name
                ),
            };
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Waits at most `limit` for the program to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < end,
                "{}: still running after {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process ID (to read its figures in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// FNV-1a, 64 bits (the `scenarios` program's slow reader reports it).
pub fn fnv1a(state: u64, data: &[u8]) -> u64 {
    data.iter().fold(state, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// FNV-1a's starting value.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;
