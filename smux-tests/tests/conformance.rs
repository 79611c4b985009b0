//! The conformance suite: one body per behaviour, run against each adapter.
//!
//! `cargo test -p smux-tests --test conformance`. Every body is a function generic
//! over [`Adapter`](smux_tests::conformance::Adapter) (the adapters behind one blocking
//! shape, `smux-tests/src/conformance/`); [`conformance!`] instantiates it as the tests
//! `<group>::<body>::tokio`, `::smol` and `::blocking`. Everything runs over loopback
//! TCP (127.0.0.1), and every test is bounded by a hang guard (`support::guard`) and
//! by the bounds of its own waits; no test asserts speed.
//!
//! The groups: `streams` (open and accept, data with checksums, head-of-line freedom,
//! keepalive), `extensions` (half-close, reset codes, go-away, `ready`), `deadlines`
//! (honest partial counts, read deadlines, cancelled calls, send-queue turns of calls
//! given up), `failures` (keepalive death, hostile close, transport loss, local ends,
//! protocol violations), `behaviour` (one body per row of the behaviour table of the
//! adapter spec, docs/ARCHITECTURE.md) and `ids` (stale handles, ID recycling and
//! exhaustion).

/// For each body `name` (a `fn name<A: Adapter>()` of the enclosing module), the tests
/// `name::tokio`, `name::smol` and `name::blocking`.
macro_rules! conformance {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            use smux_tests::conformance::{Adapter, Blocking, Smol, Tokio};

            fn run<A: Adapter>() {
                let test = format!("{}::{}", stringify!($body), A::NAME);
                crate::support::guard(&test, super::$body::<A>);
            }

            #[test]
            fn tokio() {
                run::<Tokio>()
            }

            #[test]
            fn smol() {
                run::<Smol>()
            }

            #[test]
            fn blocking() {
                run::<Blocking>()
            }
        }
    )*};
}

// The crate root is `tests/conformance.rs`: its modules live in `tests/conformance/`.
#[path = "conformance/support.rs"]
mod support;

#[path = "conformance/behaviour.rs"]
mod behaviour;
#[path = "conformance/deadlines.rs"]
mod deadlines;
#[path = "conformance/extensions.rs"]
mod extensions;
#[path = "conformance/failures.rs"]
mod failures;
#[path = "conformance/ids.rs"]
mod ids;
#[path = "conformance/streams.rs"]
mod streams;
