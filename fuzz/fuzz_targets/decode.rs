//! Fuzz target `decode`: the frame decoder: one-shot vs chunked decoding, re-encoding.
//! The checks live in `smux_fuzzing::decode` (the `smux-fuzzing` crate), shared with the
//! replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| smux_fuzzing::decode(data));
