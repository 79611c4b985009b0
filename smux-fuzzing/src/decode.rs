//! The `decode` target: the frame decoder in one piece, in chunks and byte by byte.

use bytes::BytesMut;
use smux_proto::frame::{Cmd, Decoder, Frame, Header, HEADER_LEN};
use smux_proto::ProtocolError;

use crate::scenario::Input;

/// `max_frame` values [`decode`] picks from.
const DECODE_MAX_FRAMES: [u32; 8] = [0, 1, 7, 64, 1024, 65_536, 1 << 20, u32::MAX];

/// What one run of the decoder over some wire bytes produced.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<ProtocolError>,
    /// Bytes taken by the decoded frames.
    consumed: usize,
}

/// Runs a fresh decoder over `wire`, appending it to the buffer `sizes` bytes at a time
/// (cycled; a zero size calls the decoder without new bytes) and taking every complete
/// frame after each append. With `ext_after = Some(k)` the decoder is switched to
/// extended mode once `k` frames were taken, as a session does when the negotiation
/// completes between two frames.
fn decode_in_chunks(
    max_frame: u32,
    wire: &[u8],
    sizes: &[usize],
    ext_after: Option<usize>,
) -> Decoded {
    assert!(
        sizes.iter().any(|&n| n > 0),
        "chunk plan must make progress"
    );
    let extended_at = |i: usize| ext_after.is_some_and(|k| i >= k);
    let mut dec = Decoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        frames: Vec::new(),
        error: None,
        consumed: 0,
    };
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        let take = size.min(wire.len() - pos);
        buf.extend_from_slice(&wire[pos..pos + take]);
        pos += take;
        loop {
            if extended_at(out.frames.len()) {
                dec.set_extended();
            }
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_frame(&frame, max_frame, extended_at(out.frames.len()));
                    out.consumed += Decoder::frame_len(&frame.header);
                    out.frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        // The decoder consumes whole frames only and leaves the rest in place.
        assert_eq!(buf.len(), pos - out.consumed, "decoder lost or kept bytes");
        assert_eq!(
            &buf[..],
            &wire[out.consumed..pos],
            "decoder altered the buffer"
        );
        if out.error.is_some() || pos == wire.len() {
            break;
        }
    }
    let extended = extended_at(out.frames.len());
    let rest = &wire[out.consumed..];
    match out.error {
        None => {
            // Whatever is left must be a strict prefix of a frame.
            if let Some(raw) = rest.first_chunk::<HEADER_LEN>() {
                let header =
                    Header::parse_in(raw, extended).expect("the decoder accepted this header");
                assert!(
                    rest.len() < Decoder::frame_len(&header),
                    "complete frame left"
                );
            }
        }
        Some(ProtocolError::UnknownCommand(b)) => {
            assert_eq!(
                rest.first(),
                Some(&b),
                "UnknownCommand names the wrong byte"
            );
            assert_eq!(
                Cmd::from_u8_in(b, extended),
                None,
                "UnknownCommand for a command valid in this mode (extended: {extended})"
            );
        }
        Some(_) => {}
    }
    out
}

/// The shape every decoded frame must have; `extended` if the decoder took extension
/// commands when it decoded it.
fn check_frame(frame: &Frame, max_frame: u32, extended: bool) {
    let h = frame.header;
    assert!(
        extended || !is_extension(h.cmd),
        "extension command {:?} decoded in base mode",
        h.cmd
    );
    if h.cmd == Cmd::Psh {
        assert_eq!(
            h.length as usize,
            frame.payload.len(),
            "PSH length mismatch"
        );
        assert!(h.length <= max_frame, "PSH over max_frame accepted");
    } else {
        assert!(frame.payload.is_empty(), "payload on a {:?} frame", h.cmd);
    }
    assert_eq!(
        Header::parse_in(&h.to_bytes(), extended),
        Ok(h),
        "header does not round-trip"
    );
}

/// Whether `cmd` exists only in the extended protocol.
pub(crate) fn is_extension(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Wnd | Cmd::Rst | Cmd::Gwy | Cmd::Set)
}

/// Checks that decoding in pieces gave what decoding in one piece gave (including the
/// error: a foreign protocol is named however its first bytes are split, see
/// `fuzz/regressions/decode/not-smux-options-split-at-7`).
fn assert_same_decoding(whole: &Decoded, split: &Decoded, how: &str) {
    assert_eq!(whole, split, "{how} input changed the decoder's result");
}

/// Fuzzes the frame decoder.
///
/// Input: byte 0 picks `max_frame` with its low 3 bits (0, 1, 7, 64, 1024, 64 Ki, 1 Mi
/// or `u32::MAX`); bit 3 turns on extended mode ([`Decoder::set_extended`]) once
/// `b >> 4` frames were decoded (0: from the start); byte 1 gives the number `k`
/// (`% 16`) of chunk sizes that follow, one byte each (cycled; 0 feeds nothing; no
/// sizes at all means one byte at a time); the rest is the wire.
///
/// Checks: decoding the wire in one piece and in the chosen chunks (and byte by byte)
/// yields the same frames, the same error and consumes the same bytes; every frame is
/// well-formed (PSH length = payload length ≤ `max_frame`, no payload otherwise,
/// extension commands only in extended mode); an `UnknownCommand` error names the
/// next byte, which is no command of the current mode; re-encoding the frames
/// reproduces the consumed bytes exactly; the decoder never drops or alters unconsumed
/// bytes and never leaves a complete frame behind. In extended mode, a base decoder
/// over the same wire must give the same frames up to the first extension command and
/// stop there with `UnknownCommand`.
pub fn decode(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let max_frame = DECODE_MAX_FRAMES[usize::from(mode & 7)];
    let ext_after = (mode & 8 != 0).then_some(usize::from(mode >> 4));
    let k = inp.u8() % 16;
    let mut sizes: Vec<usize> = (0..k).map(|_| usize::from(inp.u8())).collect();
    if sizes.iter().all(|&n| n == 0) {
        sizes.push(1);
    }
    let wire = inp.rest();
    let all = [wire.len().max(1)];

    let whole = decode_in_chunks(max_frame, wire, &all, ext_after);
    let chunked = decode_in_chunks(max_frame, wire, &sizes, ext_after);
    assert_same_decoding(&whole, &chunked, "chunked");
    if wire.len() <= 4096 {
        let bytewise = decode_in_chunks(max_frame, wire, &[1], ext_after);
        assert_same_decoding(&whole, &bytewise, "byte-by-byte");
    }

    let mut again = Vec::with_capacity(whole.consumed);
    for f in &whole.frames {
        f.encode(&mut again);
    }
    assert_eq!(&again[..], &wire[..whole.consumed], "re-encoding differs");

    if ext_after.is_some() {
        // The modes differ only in the extension commands.
        let base = decode_in_chunks(max_frame, wire, &all, None);
        match whole.frames.iter().position(|f| is_extension(f.header.cmd)) {
            None => assert_same_decoding(&whole, &base, "base-mode"),
            Some(k) => {
                let cmd = whole.frames[k].header.cmd;
                let consumed: usize = whole.frames[..k]
                    .iter()
                    .map(|f| Decoder::frame_len(&f.header))
                    .sum();
                let mut expected = Decoded {
                    frames: whole.frames[..k].to_vec(),
                    error: Some(ProtocolError::UnknownCommand(cmd as u8)),
                    consumed,
                };
                if k == 0 && matches!(base.error, Some(ProtocolError::NotSmux(_))) {
                    // As the first header, an extension command's byte may start text
                    // (9 is a tab), which a base decoder names as a foreign protocol.
                    expected.error = base.error;
                }
                assert_same_decoding(&expected, &base, "base-mode");
            }
        }
    }
}
