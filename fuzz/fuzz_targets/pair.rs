//! Fuzz target `pair`: two sessions of the base protocol over an in-memory link: what
//! one end wrote is what the other read.
//! The checks live in `smux_fuzzing::pair` (the `smux-fuzzing` crate), shared with the
//! replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| smux_fuzzing::pair(data));
