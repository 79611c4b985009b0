//! Fuzz target `session`: one session fed arbitrary bytes, frames and application calls.
//! The checks live in `smux_fuzzing::session` (the `smux-fuzzing` crate), shared with the
//! replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| smux_fuzzing::session(data));
