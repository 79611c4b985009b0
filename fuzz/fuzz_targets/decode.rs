//! Fuzz target `decode`: the frame decoder: one-shot vs chunked decoding, re-encoding.
//! The checks live in `smux_proto::fuzzing::decode`, shared with the replay tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| smux_proto::fuzzing::decode(data));
