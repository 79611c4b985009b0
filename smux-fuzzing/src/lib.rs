//! The fuzzing harness of smux-proto: the entry points of the cargo-fuzz targets
//! (`fuzz/fuzz_targets/`) and of the tests that replay their corpus and recorded
//! findings (`tests/fuzz_replay.rs`). Not published; the input formats below change
//! whenever the checks grow (`fuzz/README.md` says how recorded inputs are kept).
//!
//! Each function reads arbitrary bytes as a scenario, runs it, and panics (through
//! `assert!`) only when an invariant of the protocol core is broken. A crash of a fuzz
//! target is therefore a bug, either in the core or in these checks; it never means
//! "the input was invalid".
//!
//! - [`decode`]: the frame [`Decoder`](smux_proto::frame::Decoder) run over the input
//!   in one piece and in chunks chosen by the input must produce the same frames and
//!   the same error, and re-encoding the frames must give back exactly the bytes they
//!   were decoded from.
//! - [`session`]: one [`Session`](smux_proto::Session) fed arbitrary bytes and frames
//!   mixed with arbitrary application calls. It never panics; it ends only with a
//!   protocol error or for a reason the scenario caused (keepalive silence,
//!   end-of-file, a transport error, a local close); its memory stays within the
//!   configured bounds at every step; what it sends is well-formed and respects the
//!   window; and at the end it still works.
//! - [`pair`]: two sessions of the base protocol joined by an in-memory link whose
//!   delivery the input controls. Every byte one end's writes accepted reaches the
//!   other end's reads, once, in order and on the right stream; no ID is reused before
//!   its close handshake; once the link is drained both ends agree and every stream
//!   closes.
//! - [`ext`](fn@ext): the same two-ended model with the extensions on (or on one end
//!   only), with half-close, reset and go-away: on top of what `pair` checks, each
//!   end's agreement follows from the frames it took and is the truth, the offers come
//!   once and in their place, every stream takes the session's mode on both ends, and
//!   no end sends a frame the other cannot decode.
//!
//! `pair` and `ext` run one model (the `pair` module): `pair` is its base-protocol
//! case, with fewer ops in its input format.
//!
//! The scenario encodings are described on [`SessionOp`], [`Op`], [`Format`],
//! [`ExtSetup`] and [`config_from`]; [`seeds`] builds the seed corpus from them.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod decode;
mod ops;
mod pair;
mod scenario;
mod seeds;
mod session;
mod wire;

pub use decode::decode;
pub use ops::{encode_ext, encode_pair, ExtSetup, Format, Op, EXT_SETUP_LEN};
pub use pair::{ext, pair};
pub use scenario::{config_from, CONFIG_LEN};
pub use seeds::seeds;
pub use session::{encode_session, session, SessionOp};

/// A fuzz target: its name (also its directory under `fuzz/corpus/`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, in the order `decode`, `session`, `pair`, `ext`.
pub const TARGETS: [Target; 4] = [
    ("decode", decode),
    ("session", session),
    ("pair", pair),
    ("ext", ext),
];

/// The function of the target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|t| t.1)
}
