//! Helpers shared by the loopback tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use smux_tokio::{Config, Listener, Session};

/// Runs `fut`, failing the test if it takes longer than `secs` seconds.
pub async fn bounded<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs} s"),
    }
}

/// Defines, for each `async fn name(extensions: bool)` given, a module `name` with two
/// tests, `extensions_on` and `extensions_off`, that run it both ways.
#[allow(unused_macros)]
macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extensions_on() {
                super::$name(true).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extensions_off() {
                super::$name(false).await
            }
        }
    )*};
}

/// The default configuration with extensions on or off.
pub fn config(extensions: bool) -> Config {
    Config::default().with_extensions(extensions)
}

/// A connected pair of sessions over loopback TCP: (dialer, acceptor). If both
/// configurations have extensions on, waits until both ends agreed on them, so every
/// stream is extended; otherwise checks they did not.
pub async fn pair(client: Config, server: Config) -> (Session, Session) {
    let both = client.extensions() && server.extensions();
    let (c, s) = pair_raw(client, server).await;
    settle(&c).await;
    if both {
        // The acceptor turns extensions on when the dialer's ACK arrives.
        bounded(10, "negotiation", async {
            while !s.extensions_enabled() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
    assert_eq!(c.extensions_enabled(), both, "dialer's extensions");
    assert_eq!(s.extensions_enabled(), both, "acceptor's extensions");
    (c, s)
}

/// Like `pair`, but returns at once: with extensions on, the dialer's first stream
/// is a base stream and the negotiation runs alongside.
pub async fn pair_raw(client: Config, server: Config) -> (Session, Session) {
    let listener = Listener::bind("127.0.0.1:0", server).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (c, s) = tokio::join!(smux_tokio::connect(addr, client), listener.accept());
    (c.expect("connect"), s.expect("accept").0)
}

/// Settles the negotiation from the dialer: pings and waits until a second ping was
/// answered too (the acceptor's offer, if any, comes before that answer).
pub async fn settle(dialer: &Session) {
    bounded(10, "two pings", async {
        dialer.ping();
        for _ in 0..2 {
            while !dialer.ping() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .await;
}

/// xorshift64*: small deterministic randomness for tests.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// FNV-1a over `data`, continuing from `h` (start with `FNV_START`).
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;
pub fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
