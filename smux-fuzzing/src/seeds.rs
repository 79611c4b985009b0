//! The seed corpus of every target, built from the input formats (`fuzz/corpus/`).

use smux_proto::frame::{Cmd, Header};

use crate::ops::{encode_ext, encode_pair, ExtSetup, Op};
use crate::scenario::CONFIG_LEN;
use crate::session::{encode_session, SessionOp};

/// The seed corpus: `(target, name, input)` for every target (`decode`, `session`,
/// `pair`, `ext`). `tests/fuzz_corpus.rs` writes them to `fuzz/corpus/<target>/<name>`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let frame = |cmd: Cmd, id: u16, length: u32, payload: &[u8]| {
        let mut v = Header::new(cmd, id, length).to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    };
    let mut all = Vec::new();
    for (cmd, len) in [
        (Cmd::Syn, 0),
        (Cmd::Psh, 5),
        (Cmd::Cfm, 5),
        (Cmd::Vrm, 0x1122_3344),
        (Cmd::Pin, 0),
        (Cmd::Fin, 0),
    ] {
        let payload: &[u8] = if cmd == Cmd::Psh { b"hello" } else { b"" };
        all.extend(frame(cmd, 7, len, payload));
    }

    let mut ext_all = all.clone();
    for (cmd, len) in [(Cmd::Wnd, 1 << 20), (Cmd::Rst, 3), (Cmd::Gwy, 0)] {
        ext_all.extend(frame(cmd, 7, len, b""));
    }

    // decode: mode (max_frame, extended), chunk plan, wire.
    let decode_seed = |sel: u8, plan: &[u8], wire: &[u8]| {
        let mut v = vec![sel, plan.len() as u8];
        v.extend_from_slice(plan);
        v.extend_from_slice(wire);
        v
    };
    let d = [
        ("all-commands-whole", decode_seed(5, &[], &all)),
        ("all-commands-chunks", decode_seed(5, &[3, 0, 10, 1], &all)),
        (
            "psh-too-large",
            decode_seed(2, &[4], &frame(Cmd::Psh, 1, 8, &[0; 8])),
        ),
        (
            "psh-partial",
            decode_seed(5, &[2], &frame(Cmd::Psh, 1, 100, &[1; 50])),
        ),
        (
            "unknown-command",
            decode_seed(5, &[1], &[9, 0, 0, 0, 0, 0, 0]),
        ),
        ("http", decode_seed(5, &[4, 3], b"GET / HTTP/1.1\r\n\r\n")),
        (
            "tls",
            decode_seed(5, &[1], &[0x16, 3, 1, 0, 0x40, 1, 0, 0, 0x3c]),
        ),
        ("ssh", decode_seed(5, &[2], b"SSH-2.0-OpenSSH_9.6\r\n")),
        (
            "http2-preface",
            decode_seed(5, &[7], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ),
        (
            "max-frame-zero",
            decode_seed(0, &[], &frame(Cmd::Psh, 1, 0, &[])),
        ),
        ("extended-all-commands", decode_seed(5 | 8, &[4], &ext_all)),
        (
            "extended-after-two-frames",
            decode_seed(5 | 8 | 2 << 4, &[6, 1], &ext_all),
        ),
        (
            "extension-before-the-switch",
            decode_seed(
                5 | 8 | 1 << 4,
                &[3],
                &[frame(Cmd::Rst, 1, 2, b""), frame(Cmd::Syn, 1, 0, b"")].concat(),
            ),
        ),
        (
            "extended-unknown",
            decode_seed(5 | 8, &[], &[9, 0, 0, 0, 0, 0, 0]),
        ),
    ];
    for (name, v) in d {
        out.push(("decode", name.to_string(), v));
    }

    // session: configuration, then ops.
    use SessionOp as S;
    let small = [3, 1, 2, 2, 1, 3, 0, 5];
    let default_like = [7, 1, 5, 7, 3, 5, 40, 9];
    let acceptor = [4, 1, 3, 3, 2, 4, 5, 0x83];
    let syn = |id: u16| S::Frame {
        cmd: 0,
        id,
        length: 0,
    };
    let psh = |id: u16, length: u32| S::Frame { cmd: 2, id, length };
    let s = [
        (
            "open-write-transmit",
            small,
            vec![
                S::Open,
                S::Write {
                    stream: 0,
                    len: 100,
                },
                S::Transmit { limit: 500 },
                S::Frame {
                    cmd: 0x83,
                    id: 0,
                    length: 300,
                },
                S::Transmit { limit: 60_000 },
                S::Events { n: 10 },
            ],
        ),
        (
            "peer-opens-and-pushes",
            small,
            vec![
                syn(9),
                psh(9, 100),
                S::Events { n: 5 },
                S::Accept,
                S::Read { stream: 0, len: 60 },
                S::ReadChunk {
                    stream: 0,
                    max: 1000,
                },
                S::Transmit { limit: 100 },
                S::Frame {
                    cmd: 1,
                    id: 9,
                    length: 0,
                },
                S::Read { stream: 0, len: 10 },
                S::Close { stream: 0 },
                S::Transmit { limit: 100 },
            ],
        ),
        (
            "window-overrun",
            small,
            vec![syn(1), psh(1, 1024), psh(1, 1024), S::Events { n: 9 }],
        ),
        (
            "backlog-refusal",
            small,
            vec![syn(1), syn(2), syn(3), syn(4), S::Transmit { limit: 0 }],
        ),
        (
            "keepalive",
            default_like,
            vec![
                S::Timer,
                S::Transmit { limit: 0 },
                S::Advance { ms: 60_000 },
                S::Frame {
                    cmd: 5,
                    id: 0,
                    length: 0,
                },
                S::Timer,
                S::Timer,
                S::Timer,
                S::Events { n: 3 },
            ],
        ),
        (
            "vrm-flood",
            small,
            (0..12)
                .map(|i| S::Frame {
                    cmd: 4,
                    id: i,
                    length: 77,
                })
                .chain([S::Ping, S::Transmit { limit: 0 }])
                .collect(),
        ),
        (
            "close-handshake",
            acceptor,
            vec![
                S::Open,
                S::Write {
                    stream: 0,
                    len: 2000,
                },
                S::Close { stream: 0 },
                S::Transmit { limit: 10 },
                S::Transmit { limit: 10_000 },
                S::Frame {
                    cmd: 0x81,
                    id: 0,
                    length: 0,
                },
                S::Open,
                S::Events { n: 9 },
            ],
        ),
        (
            "stall-input",
            [6, 1, 3, 7, 0, 5, 0, 5],
            vec![
                syn(5),
                syn(6),
                psh(5, 1024),
                psh(6, 1024),
                psh(5, 500),
                S::Accept,
                S::Read {
                    stream: 0,
                    len: 4000,
                },
                S::Feed(vec![]),
                S::Eof,
            ],
        ),
        (
            "http-peer",
            small,
            vec![S::Feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())],
        ),
        (
            "truncated-eof",
            small,
            vec![S::Feed(vec![2, 1, 0, 9, 0, 0, 0, 1, 2]), S::Eof],
        ),
    ];
    for (name, cfg, ops) in s {
        out.push(("session", name.to_string(), encode_session(cfg, &ops)));
    }

    // pair: configuration, then ops.
    use Op as P;
    let a = 0;
    let b = 1;
    let exchange = |side: u8| {
        vec![
            P::Open { side },
            P::Write {
                side,
                stream: 0,
                len: 700,
            },
            P::Transmit { side, limit: 1000 },
            P::Deliver {
                side: 1 - side,
                len: 5,
            },
            P::Deliver {
                side: 1 - side,
                len: 0,
            },
            P::Accept { side: 1 - side },
            P::Read {
                side: 1 - side,
                stream: 0,
                len: 1000,
            },
            P::Write {
                side: 1 - side,
                stream: 0,
                len: 50,
            },
            P::Transmit {
                side: 1 - side,
                limit: 0,
            },
            P::Deliver { side, len: 0 },
            P::Read {
                side,
                stream: 0,
                len: 9,
            },
        ]
    };
    let p = [
        ("exchange-a", small, exchange(a)),
        ("exchange-b", default_like, exchange(b)),
        (
            "close-and-reuse",
            small,
            vec![
                P::Open { side: a },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 0 },
                P::Accept { side: b },
                P::Close { side: a, stream: 0 },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 0 },
                P::Close { side: b, stream: 0 },
                P::Transmit { side: b, limit: 0 },
                P::Deliver { side: a, len: 0 },
                P::Open { side: a },
                P::Write {
                    side: a,
                    stream: 0,
                    len: 10,
                },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 3 },
            ],
        ),
        (
            "refused",
            [3, 1, 2, 0, 1, 3, 0, 5],
            vec![
                P::Open { side: b },
                P::Write {
                    side: b,
                    stream: 0,
                    len: 20,
                },
                P::Transmit { side: b, limit: 0 },
                P::Deliver { side: a, len: 0 },
                P::Transmit { side: a, limit: 0 },
                P::Deliver { side: b, len: 0 },
                P::Read {
                    side: b,
                    stream: 0,
                    len: 5,
                },
            ],
        ),
        (
            "many-streams-flow",
            [1, 1, 1, 6, 2, 2, 8, 5],
            (0..4)
                .flat_map(|i| {
                    [
                        P::Open { side: i % 2 },
                        P::Write {
                            side: i % 2,
                            stream: i,
                            len: 30,
                        },
                        P::Transmit {
                            side: i % 2,
                            limit: 7,
                        },
                        P::Deliver {
                            side: 1 - i % 2,
                            len: 13,
                        },
                    ]
                })
                .chain([
                    P::Ping { side: a },
                    P::Advance { ms: 5000 },
                    P::Transmit { side: a, limit: 0 },
                    P::Deliver { side: b, len: 0 },
                ])
                .collect(),
        ),
    ];
    for (name, cfg, ops) in p {
        out.push(("pair", name.to_string(), encode_pair(cfg, &ops)));
    }

    for (name, data) in ext_seeds() {
        out.push(("ext", name, data));
    }
    out
}

/// The seed corpus of [`ext`](fn@crate::ext): `(name, input)`.
fn ext_seeds() -> Vec<(String, Vec<u8>)> {
    use Op as X;
    let (d, a) = (0, 1);
    let small = [3, 1, 2, 2, 1, 3, 0, 5];
    let roomy = [4, 1, 3, 6, 3, 4, 8, 5];
    let refusing = [3, 1, 2, 0, 1, 3, 0, 5];
    // Both ways until nothing moves (enough rounds for a handshake).
    let pump = |rounds: usize| {
        (0..rounds).flat_map(|_| {
            [
                X::Transmit { side: d, limit: 0 },
                X::Deliver { side: a, len: 0 },
                X::Transmit { side: a, limit: 0 },
                X::Deliver { side: d, len: 0 },
            ]
        })
    };
    // The dialer's SYN(1) is the first frame and ASK follows it; the acceptor answers
    // with HELLO ahead of the answer to ASK: both know after one round trip.
    let negotiate = || -> Vec<Op> {
        [
            X::Open { side: d },
            X::Write {
                side: d,
                stream: 0,
                len: 1,
            },
        ]
        .into_iter()
        .chain(pump(2))
        .chain([X::Accept { side: a }])
        .collect()
    };
    let half_close = |side: u8| -> Vec<Op> {
        let other = 1 - side;
        negotiate()
            .into_iter()
            .chain([
                X::Open { side },
                X::Write {
                    side,
                    stream: 1,
                    len: 300,
                },
                X::Shutdown { side, stream: 1 },
            ])
            .chain(pump(1))
            .chain([
                X::Accept { side: other },
                X::Read {
                    side: other,
                    stream: 1,
                    len: 2000,
                },
                X::Read {
                    side: other,
                    stream: 1,
                    len: 10,
                },
                X::Write {
                    side: other,
                    stream: 1,
                    len: 200,
                },
                X::Close {
                    side: other,
                    stream: 1,
                },
            ])
            .chain(pump(2))
            .chain([
                X::ReadChunk {
                    side,
                    stream: 1,
                    max: 5000,
                },
                X::Read {
                    side,
                    stream: 1,
                    len: 9,
                },
                X::Close { side, stream: 1 },
            ])
            .chain(pump(2))
            .collect()
    };
    // After the negotiation, `opener` opens an extended stream (held second on both ends).
    let extended = |opener: u8| -> Vec<Op> {
        negotiate()
            .into_iter()
            .chain([
                X::Open { side: opener },
                X::Write {
                    side: opener,
                    stream: 1,
                    len: 1,
                },
            ])
            .chain(pump(1))
            .chain([X::Accept { side: 1 - opener }])
            .collect()
    };
    let reset = |side: u8, code: u32| -> Vec<Op> {
        let other = 1 - side;
        extended(other)
            .into_iter()
            .chain([
                X::Write {
                    side: other,
                    stream: 1,
                    len: 100,
                },
                X::Write {
                    side,
                    stream: 1,
                    len: 100,
                },
                X::Transmit {
                    side: other,
                    limit: 0,
                },
                X::Reset {
                    side,
                    stream: 1,
                    code,
                },
            ])
            .chain(pump(1))
            .chain([
                X::Read {
                    side: other,
                    stream: 1,
                    len: 100,
                },
                X::Write {
                    side: other,
                    stream: 1,
                    len: 1,
                },
                X::Close {
                    side: other,
                    stream: 1,
                },
            ])
            .chain(pump(2))
            .chain([X::Open { side }])
            .chain(pump(1))
            .collect()
    };
    let go_away = |side: u8| -> Vec<Op> {
        let other = 1 - side;
        negotiate()
            .into_iter()
            .chain([
                X::Open { side: other },
                X::GoAway { side, code: 7 },
                X::Write {
                    side,
                    stream: 0,
                    len: 50,
                },
            ])
            .chain(pump(1))
            .chain([
                X::Open { side: other },
                X::Open { side },
                X::Read {
                    side: other,
                    stream: 0,
                    len: 200,
                },
                X::Close {
                    side: other,
                    stream: 0,
                },
                X::Close { side, stream: 0 },
            ])
            .chain(pump(3))
            .collect()
    };
    let growth = extended(d)
        .into_iter()
        .chain((0..12).flat_map(|_| {
            [
                X::Write {
                    side: d,
                    stream: 1,
                    len: 2000,
                },
                X::Transmit { side: d, limit: 0 },
                X::Deliver { side: a, len: 0 },
                X::ReadChunk {
                    side: a,
                    stream: 1,
                    max: 60_000,
                },
                X::Transmit { side: a, limit: 0 },
                X::Deliver { side: d, len: 0 },
            ]
        }))
        .collect();
    let mut many_ids: Vec<Op> = negotiate();
    for _ in 0..3 {
        many_ids.extend([
            X::Open { side: a },
            X::Write {
                side: a,
                stream: 1,
                len: 3,
            },
            X::Close { side: a, stream: 1 },
        ]);
        many_ids.extend(pump(1));
        many_ids.extend([
            X::Accept { side: d },
            X::Read {
                side: d,
                stream: 1,
                len: 100,
            },
            X::Close { side: d, stream: 1 },
        ]);
        many_ids.extend(pump(2));
    }
    let probed = |side: u8| ExtSetup {
        probe: Some((side, 0x1234, 0x5678_9ABC)),
        ..ExtSetup::BOTH
    };
    let off = |side: usize| {
        let mut extensions = [true, true];
        extensions[side] = false;
        ExtSetup {
            extensions,
            ..ExtSetup::BOTH
        }
    };
    let fixed = ExtSetup {
        max_window: 0,
        ..ExtSetup::BOTH
    };
    let big = ExtSetup {
        max_window: 3,
        ..ExtSetup::BOTH
    };
    // Before the agreement: `side` opens and writes, shuts down (it waits: `Blocked`),
    // opens a second stream and resets it, opens a third and closes it; then one round
    // trip settles the agreement, the waiting shutdown goes ahead (or fails on a base
    // stream), and the deferred reset and stop leave.
    let before_agreement = |side: u8| -> Vec<Op> {
        let other = 1 - side;
        [
            X::Open { side },
            X::Write {
                side,
                stream: 0,
                len: 100,
            },
            X::Shutdown { side, stream: 0 },
            X::Open { side },
            X::Write {
                side,
                stream: 1,
                len: 50,
            },
            X::Reset {
                side,
                stream: 1,
                code: 42,
            },
            X::Open { side },
            X::Close { side, stream: 1 },
            X::Transmit { side, limit: 0 },
            X::Deliver {
                side: other,
                len: 0,
            },
            X::Transmit {
                side: other,
                limit: 0,
            },
            X::Deliver { side, len: 0 },
            X::Shutdown { side, stream: 0 },
        ]
        .into_iter()
        .chain(pump(1))
        .chain([
            X::Accept { side: other },
            X::Accept { side: other },
            X::Accept { side: other },
            X::Read {
                side: other,
                stream: 0,
                len: 400,
            },
        ])
        .chain(pump(2))
        .collect()
    };
    // The application asks `side` for the agreement before any stream; then the other
    // end opens one.
    let started = |side: u8| -> Vec<Op> {
        let other = 1 - side;
        [X::StartAgreement { side }]
            .into_iter()
            .chain(pump(2))
            .chain([
                X::Open { side: other },
                X::Write {
                    side: other,
                    stream: 0,
                    len: 10,
                },
                X::Shutdown {
                    side: other,
                    stream: 0,
                },
            ])
            .chain(pump(1))
            .chain([X::Accept { side }])
            .collect()
    };
    // Much data both ways on one stream, for ends whose windows differ: each end's
    // writes follow the peer's window (assumed, then from its SET).
    let windows: Vec<Op> = [X::Open { side: a }]
        .into_iter()
        .chain((0..6).flat_map(|_| {
            [
                X::Write {
                    side: a,
                    stream: 0,
                    len: 30_000,
                },
                X::Transmit { side: a, limit: 0 },
                X::Deliver { side: d, len: 0 },
                X::Accept { side: d },
                X::Write {
                    side: d,
                    stream: 0,
                    len: 30_000,
                },
                X::ReadChunk {
                    side: d,
                    stream: 0,
                    max: 60_000,
                },
                X::Transmit { side: d, limit: 0 },
                X::Deliver { side: a, len: 0 },
                X::ReadChunk {
                    side: a,
                    stream: 0,
                    max: 60_000,
                },
            ]
        }))
        .collect();
    let acceptor_window = |acceptor_window: u8| ExtSetup {
        acceptor_window,
        ..ExtSetup::BOTH
    };
    let s: Vec<(&str, [u8; CONFIG_LEN], ExtSetup, Vec<Op>)> = vec![
        ("negotiate", small, ExtSetup::BOTH, negotiate()),
        ("half-close-dialer", roomy, ExtSetup::BOTH, half_close(d)),
        ("half-close-acceptor", small, fixed, half_close(a)),
        (
            "reset-by-dialer",
            small,
            ExtSetup::BOTH,
            reset(d, 0xDEAD_BEEF),
        ),
        ("reset-by-acceptor", roomy, ExtSetup::BOTH, reset(a, 0)),
        ("go-away-dialer", small, ExtSetup::BOTH, go_away(d)),
        ("go-away-acceptor", roomy, ExtSetup::BOTH, go_away(a)),
        ("window-growth", [4, 1, 3, 6, 3, 5, 8, 5], big, growth),
        ("id-reuse", small, ExtSetup::BOTH, many_ids),
        ("refused", refusing, ExtSetup::BOTH, reset(d, 5)),
        ("probe-dialer", roomy, probed(d), half_close(d)),
        ("probe-acceptor", small, probed(a), half_close(a)),
        ("dialer-off", small, off(0), half_close(d)),
        ("acceptor-off", roomy, off(1), reset(a, 9)),
        ("acceptor-off-go-away", small, off(1), go_away(a)),
        (
            "before-agreement-dialer",
            roomy,
            ExtSetup::BOTH,
            before_agreement(d),
        ),
        (
            "before-agreement-acceptor",
            small,
            ExtSetup::BOTH,
            before_agreement(a),
        ),
        (
            "before-agreement-acceptor-off",
            roomy,
            off(1),
            before_agreement(d),
        ),
        (
            "before-agreement-dialer-off",
            small,
            off(0),
            before_agreement(a),
        ),
        ("start-agreement-dialer", small, ExtSetup::BOTH, started(d)),
        (
            "start-agreement-acceptor",
            roomy,
            ExtSetup::BOTH,
            started(a),
        ),
        ("start-agreement-acceptor-off", small, off(1), started(d)),
        (
            "windows-acceptor-larger",
            [7, 2, 5, 6, 3, 5, 8, 5],
            acceptor_window(3),
            windows.clone(),
        ),
        (
            "windows-acceptor-smaller",
            [5, 2, 5, 6, 3, 5, 8, 5],
            acceptor_window(2),
            windows.clone(),
        ),
        (
            "windows-acceptor-off",
            [6, 2, 5, 6, 3, 5, 8, 5],
            ExtSetup {
                extensions: [true, false],
                ..acceptor_window(1)
            },
            windows,
        ),
    ];
    s.into_iter()
        .map(|(name, cfg, setup, ops)| (name.to_string(), encode_ext(cfg, setup, &ops)))
        .collect()
}
