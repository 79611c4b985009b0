//! Fuzz target `ext`: two sessions negotiating the extensions (or falling back) over an
//! in-memory link, with half-close, reset and go-away mixed into the stream traffic.
//! The checks live in `smux_fuzzing::ext` (the `smux-fuzzing` crate), shared with the
//! replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| smux_fuzzing::ext(data));
