//! Small helpers with no protocol meaning.

use std::hash::{BuildHasherDefault, Hasher};

/// A 64-bit mixing function (splitmix64's finaliser): spreads every input bit.
pub(crate) const fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hasher for tables keyed by stream: keys are 16-bit IDs (with a 16-bit generation
/// in a `StreamId`), so SipHash's DoS resistance buys nothing (the key space is small
/// and fully enumerable) and costs time on every frame and every wake-up.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = mix64(self.0 ^ u64::from(*b));
        }
    }
    fn write_u16(&mut self, n: u16) {
        // Multiplicative hashing puts the entropy in the top bits, which the table's
        // control bytes use; what came before (a `StreamId`'s number, ahead of its
        // generation) is folded in.
        self.0 = (self.0.rotate_left(16) ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A small generator of values the peer cannot predict (our ping challenges). Seeded
/// from the standard library's per-process random hash keys, so the core still does
/// no I/O of its own and needs no dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x736d_7578u32);
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}
