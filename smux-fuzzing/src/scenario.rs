//! What every scenario is made of: the input reader, the data pattern that writers send
//! and readers check, the session configuration and the transmit limit of an op.

use std::time::Duration;

use smux_proto::Config;

/// Reads scenario values off the front of the fuzzer's input. Once the input is
/// exhausted every value reads as zero, so any byte string is a valid scenario.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer if the input ends first).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub(crate) fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A deterministic byte pattern: byte `off` of the data stream `serial`. Writers send
/// it and readers check it, so a byte delivered twice, lost, reordered or delivered on
/// the wrong stream shows up without keeping copies of the data.
pub(crate) fn pattern(serial: u64, off: u64) -> u8 {
    let mut x = serial
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(off.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 56) as u8
}

/// Fills `out` with bytes `off..` of the data stream `serial`.
pub(crate) fn fill_pattern(serial: u64, off: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = pattern(serial, off + i as u64);
    }
}

/// Number of input bytes [`config_from`] reads.
pub const CONFIG_LEN: usize = 8;

const WINDOWS: [u32; 8] = [1, 7, 100, 1024, 4096, 65_536, 300_000, 512 * 1024];
const FRAMES: [u32; 6] = [1, 3, 100, 1024, 20_000, 65_536];
const BACKLOGS: [usize; 8] = [0, 1, 2, 3, 5, 8, 64, 1024];
const OUT_BOUNDS: [usize; 6] = [1, 10, 1000, 4096, 70_000, 4 << 20];

/// Builds a valid session configuration from [`CONFIG_LEN`] input bytes, favouring
/// small bounds so that a short scenario can reach them:
///
/// | byte | setting |
/// |---|---|
/// | 0 | `window`: one of 1, 7, 100, 1024, 4096, 64 Ki, 300 000, 512 Ki (`b % 8`), at most 64 frames |
/// | 1 | `cfm_threshold`: `window >> (b % 8)`, at least 1 |
/// | 2 | `max_frame`: one of 1, 3, 100, 1024, 20 000, 64 Ki (`b % 6`) |
/// | 3 | `accept_backlog`: one of 0, 1, 2, 3, 5, 8, 64, 1024 (`b % 8`) |
/// | 4 | `max_buffered_in`: `max_frame * (1 + b % 4) + 37 * (b >> 2)` |
/// | 5 | `max_buffered_out`: one of 1, 10, 1000, 4096, 70 000, 4 Mi (`b % 6`) |
/// | 6 | `max_pending_answers`: `1 + b % 4`; `keepalive_interval`: `1 + (b >> 2) % 16` s |
/// | 7 | `keepalive_timeout`: `keepalive_interval * (2 + b % 10)`; bit 7: the role ([`session`](crate::session()) only) |
pub fn config_from(b: [u8; CONFIG_LEN]) -> Config {
    let max_frame = FRAMES[usize::from(b[2]) % FRAMES.len()];
    // A window of more than 64 frames adds run time, not behaviour.
    let window = WINDOWS[usize::from(b[0]) % WINDOWS.len()].min(64 * max_frame);
    let keepalive_interval = Duration::from_secs(1 + u64::from(b[6] >> 2) % 16);
    let config = Config::default()
        .with_window(window)
        .with_cfm_threshold((window >> (b[1] % 8)).max(1))
        .with_max_frame(max_frame)
        .with_keepalive_interval(keepalive_interval)
        .with_keepalive_timeout(keepalive_interval * (2 + u32::from(b[7] % 10)))
        .with_accept_backlog(BACKLOGS[usize::from(b[3]) % BACKLOGS.len()])
        .with_max_buffered_in(
            max_frame as usize * (1 + usize::from(b[4] % 4)) + 37 * usize::from(b[4] >> 2),
        )
        .with_max_buffered_out(OUT_BOUNDS[usize::from(b[5]) % OUT_BOUNDS.len()])
        .with_max_pending_answers(1 + usize::from(b[6] % 4))
        // The `ext` target turns them on per end; the others check the base protocol.
        .with_extensions(false);
    debug_assert_eq!(config.validate(), Ok(()));
    config
}

/// The transmit limit of an [`Op::Transmit`](crate::Op::Transmit): 0 stands for no
/// limit (the seeds' way to say "everything").
pub(crate) fn op_limit(limit: u16) -> usize {
    match limit {
        0 => usize::MAX,
        n => n.into(),
    }
}
