//! Every adapter logs the same warning when a session's input stays held back at
//! `max_buffered_in` for `STALL_NOTICE` (the application stopped reading a stream that
//! holds the unread data): one warning per stalled session, from each adapter's own
//! I/O side, naming the bound. Its own test binary: it installs a global log
//! subscriber that captures what the adapters' threads log.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use smux_proto::{Config, STALL_NOTICE};
use smux_tests::conformance::{Adapter, Blocking, Listener, Session, Smol, Stream, Tokio};

/// What the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The lines that warn of a stall, logged by the crate `target`.
fn stall_lines(log: &str, target: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(target) && l.contains("max_buffered_in"))
        .count()
}

/// A client writes more than the server's bound on a stream the server accepts and
/// never reads; both sessions stay open until `until`.
fn stall<A: Adapter>(until: Instant) {
    let bound = 128 * 1024;
    let server = Config::default().with_max_buffered_in(bound);
    let listener = A::bind(server).expect("bind");
    let addr = listener.local_addr();
    let accepting = thread::spawn(move || listener.accept().expect("accept"));
    let client = A::connect(addr, Config::default()).expect("connect");
    let server = accepting.join().expect("accepting thread");
    let stream = client.open().expect("open");
    // Within the stream's window: the write returns, the server holds input back.
    stream.write_all(&vec![7u8; 2 * bound]).expect("write");
    let held = server.accept().expect("accept the stream");
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stats().buffered_in <= bound, "the bound held");
    drop((held, stream));
}

#[test]
fn every_adapter_warns_once_of_input_held_back_at_the_bound() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    // Past the notice time and a good margin; each adapter on its own thread.
    let until = Instant::now() + STALL_NOTICE + Duration::from_secs(3);
    let runs = [
        thread::spawn(move || stall::<Tokio>(until)),
        thread::spawn(move || stall::<Smol>(until)),
        thread::spawn(move || stall::<Blocking>(until)),
    ];
    for run in runs {
        run.join().expect("adapter run");
    }
    let log = captured.text();
    for target in ["smux_tokio", "smux_smol", "smux_blocking"] {
        assert_eq!(stall_lines(&log, target), 1, "{target} warns once:\n{log}");
    }
}
