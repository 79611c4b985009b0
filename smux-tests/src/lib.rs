//! Helpers shared by the cross-adapter, hostile-peer, fault and soak tests in `tests/`.
//!
//! * [`wire`]: a raw frame writer and parser, for hand-written peers that speak the
//!   protocol byte by byte (and break it on purpose);
//! * [`mem`]: a counting global allocator, so a test binary can check that its live
//!   heap stays within a bound derived from the session's configuration;
//! * [`reference`](mod@reference): the reference implementation (yddeng/smux, in Go) built and run
//!   as a peer, the three adapters behind one blocking shape, and a frame-reading relay;
//! * [`conformance`]: the three adapters behind one blocking shape for the
//!   conformance suite (`tests/conformance.rs`), one test body per behaviour run on each;
//! * [`Rng`], [`pattern`] and [`Checksum`]: seeded test data that can be regenerated
//!   at any offset and checked without keeping a copy;
//! * [`run`], [`within`], [`serial`]: a small Tokio runtime per test, hang guards, and
//!   a lock that runs the memory-measuring tests of one binary one at a time.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub mod conformance;
pub mod mem;
pub mod reference;
pub mod wire;

/// Runs the tests of one binary one at a time, so that the process-wide allocation
/// figures of [`mem`] belong to the test that reads them and the 2-core CI machine is
/// not oversubscribed. Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` to completion on a fresh multi-threaded Tokio runtime with two workers.
pub fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Awaits `f`, failing the test if it takes longer than `secs` seconds. A hang guard,
/// not a timing assertion: the bounds are generous.
pub async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs} s"),
    }
}

/// Where a test's random choices start: `SMUX_TEST_SEED` if set, otherwise a value
/// taken from the clock. It is printed so a failing run can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SMUX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: SMUX_TEST_SEED={seed}");
    seed
}

/// splitmix64: a small, seeded, reproducible generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
}

/// The splitmix64 finaliser.
pub fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic test data: byte `offset + i` of the stream named `seed`, for every
/// `i` in `buf`. Any range can be regenerated on its own, so a reader can check what
/// it received without a copy of what was sent.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let word = mix(seed ^ (pos / 8).wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        pos += n as u64;
    }
}

/// Test data as a vector: `len` bytes of [`pattern`] from offset 0.
pub fn pattern_vec(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    pattern(seed, 0, &mut v);
    v
}

/// A streaming checksum of a byte sequence: the same bytes give the same sum however
/// they were cut into pieces. Word-at-a-time, so it stays quick in debug builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksum {
    state: u64,
    pending: [u8; 8],
    npending: usize,
    len: u64,
}

impl Checksum {
    /// An empty checksum.
    pub fn new() -> Checksum {
        Checksum::default()
    }

    /// The checksum of `data` in one piece.
    pub fn of(data: &[u8]) -> Checksum {
        let mut c = Checksum::new();
        c.update(data);
        c
    }

    /// Adds `data` to the sequence.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let n = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + n].copy_from_slice(&data[..n]);
            self.npending += n;
            data = &data[n..];
            if self.npending < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.npending = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    fn word(&mut self, w: u64) {
        self.state = (self.state ^ w)
            .wrapping_mul(0x100_0000_01B3)
            .rotate_left(29)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
    }

    /// Bytes added so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sum of everything added so far (length included).
    pub fn sum(&self) -> u64 {
        let mut tail = [0u8; 8];
        tail[..self.npending].copy_from_slice(&self.pending[..self.npending]);
        mix(self.state ^ mix(u64::from_le_bytes(tail) ^ self.len.rotate_left(32)))
    }
}

/// The checksum of `len` bytes of [`pattern`] `seed`, computed in pieces.
pub fn pattern_sum(seed: u64, len: u64) -> u64 {
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern(seed, off, &mut buf[..n]);
        c.update(&buf[..n]);
        off += n as u64;
    }
    c.sum()
}

/// Polls `cond` every few milliseconds until it holds, failing the test after `secs`
/// seconds (a hang guard).
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    within(secs, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Locks `m`, ignoring poisoning (a panicking test thread already failed the test).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_does_not_depend_on_how_data_is_cut() {
        let data = pattern_vec(7, 1000);
        let whole = Checksum::of(&data).sum();
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let mut c = Checksum::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.range(0, 20).min(rest.len() as u64) as usize;
                c.update(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(c.sum(), whole);
        }
        assert_eq!(pattern_sum(7, 1000), whole);
        assert_ne!(Checksum::of(&data[..999]).sum(), whole);
    }

    #[test]
    fn pattern_regenerates_any_range() {
        let data = pattern_vec(3, 100);
        for off in 0..30 {
            let mut b = vec![0; 17];
            pattern(3, off, &mut b);
            assert_eq!(&b[..], &data[off as usize..off as usize + 17]);
        }
    }
}
