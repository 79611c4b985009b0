//! The input formats of the two-ended targets: the ops both formats share, their
//! encodings (`pair` knows 10 of the 14 ops), and the setup byte of `ext`.

use crate::scenario::{Input, CONFIG_LEN};

/// Number of input bytes the [`ExtSetup`] byte takes (the probe values follow it when
/// there is a probe).
pub const EXT_SETUP_LEN: usize = 1;

/// The part of an [`ext`](fn@crate::ext) scenario that [`config_from`](crate::config_from)
/// does not cover.
///
/// Encoding: one byte; bits 0-1: `1` turns extensions off on the dialer, `2` on the
/// acceptor, anything else leaves both on; bits 2-3: [`ExtSetup::max_window`]; bit 4:
/// a probe follows (`v1: u16, v2: u32`); bit 5: the probed end (0 dialer, 1 acceptor);
/// bits 6-7: [`ExtSetup::acceptor_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtSetup {
    /// `Config::extensions` of the dialer (end 0) and the acceptor (end 1).
    pub extensions: [bool; 2],
    /// `max_window`: `window` times 1, 4 or 64, or the default 16 MiB (`% 4`).
    pub max_window: u8,
    /// A probe at the very start: the probed end and the challenge values.
    pub probe: Option<(u8, u16, u32)>,
    /// The acceptor's `window` (and `cfm_threshold`): the dialer's, times 4, a quarter
    /// of it, or times 16 (`% 4`; at most 256 frames, at least 1 byte), so that the
    /// ends' windows differ and each end's writes must follow the other's.
    pub acceptor_window: u8,
}

impl ExtSetup {
    /// Both ends with extensions on, windows that may grow 64-fold, no probe.
    pub const BOTH: ExtSetup = ExtSetup {
        extensions: [true, true],
        max_window: 2,
        probe: None,
        acceptor_window: 0,
    };

    /// The [`pair`](crate::pair) target's setup: extensions off on both ends (which the
    /// `ext` format cannot say), the configuration as [`config_from`](crate::config_from)
    /// made it.
    pub const BASE: ExtSetup = ExtSetup {
        extensions: [false, false],
        max_window: 3,
        probe: None,
        acceptor_window: 0,
    };

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let off = match self.extensions {
            [false, true] => 1,
            [true, false] => 2,
            [true, true] => 0,
            [false, false] => panic!("the ext format has extensions on at least one end"),
        };
        let mut b = off | (self.max_window & 3) << 2 | (self.acceptor_window & 3) << 6;
        if let Some((side, _, _)) = self.probe {
            b |= 0x10 | (side & 1) << 5;
        }
        out.push(b);
        if let Some((_, v1, v2)) = self.probe {
            out.extend_from_slice(&v1.to_le_bytes());
            out.extend_from_slice(&v2.to_le_bytes());
        }
    }

    pub(crate) fn decode(inp: &mut Input<'_>) -> ExtSetup {
        let b = inp.u8();
        let extensions = match b & 3 {
            1 => [false, true],
            2 => [true, false],
            _ => [true, true],
        };
        let probe = (b & 0x10 != 0).then(|| ((b >> 5) & 1, inp.u16(), inp.u32()));
        ExtSetup {
            extensions,
            max_window: (b >> 2) & 3,
            probe,
            acceptor_window: b >> 6,
        }
    }
}

/// How a two-ended scenario's ops are encoded.
///
/// One opcode byte: bit 0 is the side, `(b >> 1) % n` the op's code; then the op's
/// fields, little-endian. With [`Format::Ext`], `n` is 14 and the code is the variant's
/// number on [`Op`]; with [`Format::Pair`], `n` is 10 and the codes are, in order,
/// open, accept, read, read_chunk, write, close, ping, transmit, deliver, advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The [`pair`](crate::pair) target's format: no shutdown, reset, go-away or
    /// start-agreement.
    Pair,
    /// The [`ext`](fn@crate::ext) target's format: every op.
    Ext,
}

/// The [`Format::Ext`] code of each [`Format::Pair`] code.
const PAIR_CODES: [u8; 10] = [0, 1, 2, 3, 4, 5, 12, 9, 10, 11];

impl Format {
    /// The [`Format::Ext`] code of the op with `code` in this format.
    fn ext_code(self, code: u8) -> u8 {
        match self {
            Format::Pair => PAIR_CODES[usize::from(code) % PAIR_CODES.len()],
            Format::Ext => code % 14,
        }
    }

    /// The code in this format of the op with [`Format::Ext`] code `ext`, if it has one.
    fn code(self, ext: u8) -> Option<u8> {
        match self {
            Format::Pair => PAIR_CODES.iter().position(|&c| c == ext).map(|i| i as u8),
            Format::Ext => Some(ext),
        }
    }
}

/// One step of a two-ended scenario. `side` 0 is the dialer, 1 the acceptor. A
/// `stream` byte picks one of the streams that side's application holds
/// (`stream % count`; nothing happens when it holds none). The number before each
/// variant is its [`Format::Ext`] code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// 0: [`Session::open`](smux_proto::Session::open).
    Open {
        /// The side.
        side: u8,
    },
    /// 1: [`Session::accept`](smux_proto::Session::accept).
    Accept {
        /// The side.
        side: u8,
    },
    /// 2: [`Session::read`](smux_proto::Session::read) into a buffer of `len` bytes
    /// (`stream: u8, len: u16`).
    Read {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// Buffer size.
        len: u16,
    },
    /// 3: [`Session::read_chunk`](smux_proto::Session::read_chunk)
    /// (`stream: u8, max: u16`).
    ReadChunk {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// Largest chunk.
        max: u16,
    },
    /// 4: [`Session::write`](smux_proto::Session::write) of `len * 3` bytes
    /// (`stream: u8, len: u16`).
    Write {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// A third of the write's size.
        len: u16,
    },
    /// 5: [`Session::close`](smux_proto::Session::close) (`stream: u8`).
    Close {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
    },
    /// 6: [`Session::shutdown`](smux_proto::Session::shutdown) (`stream: u8`).
    Shutdown {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
    },
    /// 7: [`Session::reset`](smux_proto::Session::reset) (`stream: u8, code: u32`).
    Reset {
        /// The side.
        side: u8,
        /// Stream selector.
        stream: u8,
        /// The error code.
        code: u32,
    },
    /// 8: [`Session::go_away`](smux_proto::Session::go_away) (`code: u8`).
    GoAway {
        /// The side.
        side: u8,
        /// The error code.
        code: u8,
    },
    /// 9: [`Session::poll_transmit`](smux_proto::Session::poll_transmit) onto the
    /// link, with a data limit (`limit: u16`; 0 means no limit, as a zero limit emits
    /// nothing).
    Transmit {
        /// The sending side.
        side: u8,
        /// The limit.
        limit: u16,
    },
    /// 10: `len` bytes (0 = all) move off the link into `side`, then `handle_input`
    /// (`len: u16`).
    Deliver {
        /// The receiving side.
        side: u8,
        /// Bytes to move.
        len: u16,
    },
    /// 11: time passes by `ms * 4` milliseconds on both ends, then timers run
    /// (`ms: u16`; the side bit is ignored).
    Advance {
        /// A quarter of the step, in milliseconds.
        ms: u16,
    },
    /// 12: [`Session::ping`](smux_proto::Session::ping).
    Ping {
        /// The side.
        side: u8,
    },
    /// 13: [`Session::start_agreement`](smux_proto::Session::start_agreement).
    StartAgreement {
        /// The side.
        side: u8,
    },
}

impl Op {
    /// Appends the op's encoding in `format` to `out`. Panics on an op the format
    /// does not have.
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        let (ext, side) = match *self {
            Op::Open { side } => (0, side),
            Op::Accept { side } => (1, side),
            Op::Read { side, .. } => (2, side),
            Op::ReadChunk { side, .. } => (3, side),
            Op::Write { side, .. } => (4, side),
            Op::Close { side, .. } => (5, side),
            Op::Shutdown { side, .. } => (6, side),
            Op::Reset { side, .. } => (7, side),
            Op::GoAway { side, .. } => (8, side),
            Op::Transmit { side, .. } => (9, side),
            Op::Deliver { side, .. } => (10, side),
            Op::Advance { .. } => (11, 0),
            Op::Ping { side } => (12, side),
            Op::StartAgreement { side } => (13, side),
        };
        let code = format
            .code(ext)
            .unwrap_or_else(|| panic!("{self:?} has no encoding in {format:?}"));
        out.push(code << 1 | (side & 1));
        match *self {
            Op::Read { stream, len, .. } | Op::Write { stream, len, .. } => {
                out.push(stream);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Op::ReadChunk { stream, max, .. } => {
                out.push(stream);
                out.extend_from_slice(&max.to_le_bytes());
            }
            Op::Close { stream, .. } | Op::Shutdown { stream, .. } => out.push(stream),
            Op::Reset { stream, code, .. } => {
                out.push(stream);
                out.extend_from_slice(&code.to_le_bytes());
            }
            Op::GoAway { code, .. } => out.push(code),
            Op::Transmit { limit: n, .. } | Op::Deliver { len: n, .. } | Op::Advance { ms: n } => {
                out.extend_from_slice(&n.to_le_bytes())
            }
            Op::Open { .. } | Op::Accept { .. } | Op::Ping { .. } | Op::StartAgreement { .. } => {}
        }
    }

    pub(crate) fn decode(format: Format, inp: &mut Input<'_>) -> Op {
        let b = inp.u8();
        let side = b & 1;
        match format.ext_code(b >> 1) {
            0 => Op::Open { side },
            1 => Op::Accept { side },
            2 => Op::Read {
                side,
                stream: inp.u8(),
                len: inp.u16(),
            },
            3 => Op::ReadChunk {
                side,
                stream: inp.u8(),
                max: inp.u16(),
            },
            4 => Op::Write {
                side,
                stream: inp.u8(),
                len: inp.u16(),
            },
            5 => Op::Close {
                side,
                stream: inp.u8(),
            },
            6 => Op::Shutdown {
                side,
                stream: inp.u8(),
            },
            7 => Op::Reset {
                side,
                stream: inp.u8(),
                code: inp.u32(),
            },
            8 => Op::GoAway {
                side,
                code: inp.u8(),
            },
            9 => Op::Transmit {
                side,
                limit: inp.u16(),
            },
            10 => Op::Deliver {
                side,
                len: inp.u16(),
            },
            11 => Op::Advance { ms: inp.u16() },
            12 => Op::Ping { side },
            _ => Op::StartAgreement { side },
        }
    }
}

/// Encodes a whole [`pair`](crate::pair) scenario: configuration bytes, then ops.
pub fn encode_pair(config: [u8; CONFIG_LEN], ops: &[Op]) -> Vec<u8> {
    let mut out = config.to_vec();
    for op in ops {
        op.encode(Format::Pair, &mut out);
    }
    out
}

/// Encodes a whole [`ext`](fn@crate::ext) scenario: configuration bytes, setup, then
/// ops.
pub fn encode_ext(config: [u8; CONFIG_LEN], setup: ExtSetup, ops: &[Op]) -> Vec<u8> {
    let mut out = config.to_vec();
    setup.encode(&mut out);
    for op in ops {
        op.encode(Format::Ext, &mut out);
    }
    out
}
