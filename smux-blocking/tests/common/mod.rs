//! Helpers shared by the integration tests: loopback session pairs, a seeded
//! generator, a checksum and a watchdog that bounds every test in time.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use smux_blocking::{Config, Role, Session};

/// Runs `f` on its own thread and fails the test if it takes longer than `limit`.
pub fn bounded<T, F>(limit: Duration, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            t.join().expect("test thread");
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the test thread sent nothing and did not panic"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}

/// A connected pair of loopback TCP sockets: (dialler's end, acceptor's end).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    c.set_nodelay(true).expect("nodelay");
    s.set_nodelay(true).expect("nodelay");
    (c, s)
}

/// Generates two tests from `fn name(ext: bool)`: `name::ext_on` runs it with the
/// protocol extensions on, `name::ext_off` with them off, so every behaviour is
/// checked in both modes.
#[macro_export]
macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            #[test]
            fn ext_on() {
                super::$name(true)
            }

            #[test]
            fn ext_off() {
                super::$name(false)
            }
        }
    };
}

/// The default configuration with the extensions on or off.
pub fn config(ext: bool) -> Config {
    Config::default().with_extensions(ext)
}

/// A pair of sessions over loopback TCP: (dialler, acceptor). If both configurations
/// have the extensions on, they are agreed on before this returns (so every stream
/// opened afterwards is extended).
pub fn pair_with(client: Config, server: Config) -> (Session, Session) {
    let both = client.extensions() && server.extensions();
    let (c, s) = tcp_pair();
    let c = Session::new(c, client, Role::Dialer).expect("client session");
    let s = Session::new(s, server, Role::Acceptor).expect("server session");
    if both {
        negotiate(&c, &s);
    }
    (c, s)
}

/// A pair of sessions with the default configuration, extensions on or off.
pub fn pair(ext: bool) -> (Session, Session) {
    pair_with(config(ext), config(ext))
}

/// Makes the dialler `c` send a first frame (a ping) so the acceptor offers the
/// extensions, and waits until both ends have agreed. Panics after 10 s.
pub fn negotiate(c: &Session, s: &Session) {
    c.ping();
    wait_until(Duration::from_secs(10), "extensions agreed", || {
        c.extensions_enabled() && s.extensions_enabled()
    });
}

/// Polls `cond` every millisecond until it holds; panics after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// splitmix64: a small seeded generator for test data.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// FNV-1a, fed incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Deterministic bytes of a stream: position `k` of the stream seeded with `seed`.
/// Generated 8 bytes at a time so both ends can produce any range cheaply.
pub fn data_at(seed: u64, start: u64, out: &mut [u8]) {
    let mut word = 0u64;
    for (i, b) in out.iter_mut().enumerate() {
        let k = start + i as u64;
        if i == 0 || k % 8 == 0 {
            word = Rng(seed ^ (k / 8).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64();
        }
        *b = (word >> ((k % 8) * 8)) as u8;
    }
}
