//! Fuzz target `session`: one session fed arbitrary bytes, frames and application calls.
//! The checks live in `smux_proto::fuzzing::session`, shared with the replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| smux_proto::fuzzing::session(data));
