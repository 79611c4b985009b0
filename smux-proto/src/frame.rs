//! The frame codec: a 7-byte header (`cmd`, `id`, `length`) and, for PSH, a payload.
//!
//! Byte 0 is the command, bytes 1-2 the stream ID (u16 little-endian), bytes 3-6 the
//! length field (u32 little-endian). The meaning of `length` depends on the command:
//! payload size for PSH, confirmed byte count for CFM, a challenge value for VRM, and 0
//! otherwise.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{NotSmux, ProtocolError};

/// Size of a frame header on the wire.
pub const HEADER_LEN: usize = 7;

/// Largest PSH payload the reference implementation accepts (64 KiB).
pub const MAX_FRAME_REFERENCE: u32 = 64 * 1024;

/// A frame command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Opens a stream.
    Syn = 0,
    /// Closes a stream (see the close handshake in [PROTOCOL.md](https://github.com/smux-rs/smux-rs/blob/main/docs/PROTOCOL.md)).
    Fin = 1,
    /// Carries `length` bytes of stream data.
    Psh = 2,
    /// Confirms that the receiver's application consumed `length` bytes.
    Cfm = 3,
    /// Verify request or answer: `id` and `length` carry the challenge or its answer.
    Vrm = 4,
    /// Keepalive.
    Pin = 5,
    /// Extension: raises a stream's window to `length` bytes.
    Wnd = 6,
    /// Extension: aborts a stream in both directions; `length` is the error code.
    Rst = 7,
    /// Extension: no new streams in either direction; `length` is the error code.
    Gwy = 8,
    /// Extension: a setting of the sender; `id` names it, `length` is its value.
    Set = 9,
}

impl Cmd {
    /// Maps a wire byte to a base-protocol command, `None` for any other value.
    pub fn from_u8(b: u8) -> Option<Cmd> {
        Some(match b {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Cfm,
            4 => Cmd::Vrm,
            5 => Cmd::Pin,
            _ => return None,
        })
    }

    /// Like [`Cmd::from_u8`], and also the extension commands when `extended`.
    pub fn from_u8_in(b: u8, extended: bool) -> Option<Cmd> {
        match b {
            6 if extended => Some(Cmd::Wnd),
            7 if extended => Some(Cmd::Rst),
            8 if extended => Some(Cmd::Gwy),
            9 if extended => Some(Cmd::Set),
            _ => Cmd::from_u8(b),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The command.
    pub cmd: Cmd,
    /// Stream ID, or the first challenge value for VRM.
    pub id: u16,
    /// Payload length (PSH), confirmed count (CFM), second challenge value (VRM), else 0.
    pub length: u32,
}

impl Header {
    /// Builds a header.
    pub const fn new(cmd: Cmd, id: u16, length: u32) -> Header {
        Header { cmd, id, length }
    }

    /// The header's 7 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let id = self.id.to_le_bytes();
        let len = self.length.to_le_bytes();
        [self.cmd as u8, id[0], id[1], len[0], len[1], len[2], len[3]]
    }

    /// Appends the header's wire bytes to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.to_bytes());
    }

    /// Parses 7 header bytes of the base protocol. Fails only on an unknown command.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        Header::parse_in(b, false)
    }

    /// Parses 7 header bytes, taking extension commands too when `extended`.
    pub fn parse_in(b: &[u8; HEADER_LEN], extended: bool) -> Result<Header, ProtocolError> {
        let cmd = Cmd::from_u8_in(b[0], extended).ok_or(ProtocolError::UnknownCommand(b[0]))?;
        Ok(Header {
            cmd,
            id: u16::from_le_bytes([b[1], b[2]]),
            length: u32::from_le_bytes([b[3], b[4], b[5], b[6]]),
        })
    }
}

/// A complete frame: a header and, for PSH, its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header; for PSH `header.length == payload.len()`.
    pub header: Header,
    /// The payload (empty for every command but PSH).
    pub payload: Bytes,
}

impl Frame {
    /// Appends the frame's wire bytes to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        self.header.encode(buf);
        buf.put_slice(&self.payload);
    }
}

/// Incremental frame decoder: feed it a buffer that grows as bytes arrive.
///
/// `decode` takes whole frames off the front of the buffer and leaves a partial frame
/// in place, so input may arrive in pieces of any size. Payloads are split off the
/// buffer without copying.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame: u32,
    /// True until the first header was judged: used to recognise non-smux peers.
    first: bool,
    /// Extension commands are valid (both ends agreed on extensions).
    extended: bool,
}

impl Decoder {
    /// A decoder that rejects PSH payloads longer than `max_frame` bytes.
    pub fn new(max_frame: u32) -> Decoder {
        Decoder {
            max_frame,
            first: true,
            extended: false,
        }
    }

    /// Accepts the extension commands from now on.
    pub fn set_extended(&mut self) {
        self.extended = true;
    }

    /// Peeks at the next header without consuming anything.
    ///
    /// `Ok(None)` means fewer than 7 bytes are buffered. Errors are protocol errors
    /// that end a session.
    pub fn peek_header(&mut self, buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let Some(raw) = buf.first_chunk::<HEADER_LEN>() else {
            if self.first {
                // Judge a foreign protocol as soon as its first bytes show it.
                if let Some(kind) = NotSmux::recognise(buf) {
                    return Err(ProtocolError::NotSmux(kind));
                }
            }
            return Ok(None);
        };
        let header = match Header::parse_in(raw, self.extended) {
            Ok(h) => h,
            Err(e) if self.first => {
                return Err(NotSmux::recognise(buf).map_or(e, ProtocolError::NotSmux));
            }
            Err(e) => return Err(e),
        };
        if header.cmd == Cmd::Psh && header.length > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                len: header.length,
                max: self.max_frame,
            });
        }
        Ok(Some(header))
    }

    /// Number of bytes the frame starting with `header` occupies on the wire.
    pub fn frame_len(header: &Header) -> usize {
        match header.cmd {
            Cmd::Psh => HEADER_LEN + header.length as usize,
            _ => HEADER_LEN,
        }
    }

    /// Takes the next complete frame off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(header) = self.peek_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < Self::frame_len(&header) {
            return Ok(None);
        }
        Ok(Some(self.take(buf, header)))
    }

    /// Consumes the header `peek_header` returned, and nothing of a PSH's payload: the
    /// returned frame has an empty payload.
    pub(crate) fn take_header(&mut self, buf: &mut BytesMut, header: Header) -> Frame {
        self.first = false;
        buf.advance(HEADER_LEN);
        Frame {
            header,
            payload: Bytes::new(),
        }
    }

    /// Consumes the frame whose header `peek_header` returned; the caller has checked
    /// that `buf` holds all of it.
    pub(crate) fn take(&mut self, buf: &mut BytesMut, header: Header) -> Frame {
        self.first = false;
        buf.advance(HEADER_LEN);
        let payload = if header.cmd == Cmd::Psh {
            buf.split_to(header.length as usize).freeze()
        } else {
            Bytes::new()
        };
        Frame { header, payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        let mut v = Vec::new();
        for cmd in [Cmd::Syn, Cmd::Fin, Cmd::Cfm, Cmd::Vrm, Cmd::Pin] {
            v.push(Frame {
                header: Header::new(cmd, 0xBEEF, if cmd == Cmd::Cfm { 77 } else { 0 }),
                payload: Bytes::new(),
            });
        }
        v.push(Frame {
            header: Header::new(Cmd::Psh, 0x0102, 5),
            payload: Bytes::from_static(b"hello"),
        });
        v.push(Frame {
            header: Header::new(Cmd::Psh, 65535, 0),
            payload: Bytes::new(),
        });
        v
    }

    #[test]
    fn header_layout_is_little_endian() {
        let h = Header::new(Cmd::Cfm, 0x1234, 0xA1B2C3D4);
        assert_eq!(h.to_bytes(), [3, 0x34, 0x12, 0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn command_values_match_the_reference() {
        let pairs = [
            (Cmd::Syn, 0),
            (Cmd::Fin, 1),
            (Cmd::Psh, 2),
            (Cmd::Cfm, 3),
            (Cmd::Vrm, 4),
            (Cmd::Pin, 5),
        ];
        for (cmd, b) in pairs {
            assert_eq!(cmd as u8, b);
            assert_eq!(Cmd::from_u8(b), Some(cmd));
        }
        for b in 6..=255u8 {
            assert_eq!(Cmd::from_u8(b), None);
        }
        for (cmd, b) in [(Cmd::Wnd, 6), (Cmd::Rst, 7), (Cmd::Gwy, 8)] {
            assert_eq!(cmd as u8, b);
            assert_eq!(Cmd::from_u8_in(b, true), Some(cmd));
            assert_eq!(Cmd::from_u8_in(b, false), None);
        }
        assert_eq!(Cmd::from_u8_in(9, true), Some(Cmd::Set));
        assert_eq!(Cmd::from_u8_in(9, false), None);
        assert_eq!(Cmd::from_u8_in(10, true), None);
    }

    #[test]
    fn every_frame_decodes_at_every_split_point() {
        for frame in all_frames() {
            let mut wire = BytesMut::new();
            frame.encode(&mut wire);
            for split in 0..=wire.len() {
                let mut dec = Decoder::new(MAX_FRAME_REFERENCE);
                let mut buf = BytesMut::from(&wire[..split]);
                if split < wire.len() {
                    assert_eq!(dec.decode(&mut buf).unwrap(), None, "split {split}");
                    assert_eq!(buf.len(), split, "a partial frame must stay buffered");
                    buf.extend_from_slice(&wire[split..]);
                }
                assert_eq!(dec.decode(&mut buf).unwrap(), Some(frame.clone()));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn many_frames_in_one_buffer_and_byte_by_byte() {
        let frames = all_frames();
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut dec = Decoder::new(MAX_FRAME_REFERENCE);
        let mut buf = wire.clone();
        for f in &frames {
            assert_eq!(dec.decode(&mut buf).unwrap().as_ref(), Some(f));
        }
        assert_eq!(dec.decode(&mut buf).unwrap(), None);

        let mut dec = Decoder::new(MAX_FRAME_REFERENCE);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn unknown_command_and_oversized_psh_are_errors() {
        let mut dec = Decoder::new(16);
        dec.first = false;
        let mut buf = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(dec.decode(&mut buf), Err(ProtocolError::UnknownCommand(9)));
        let mut buf = BytesMut::from(&Header::new(Cmd::Psh, 1, 17).to_bytes()[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { len: 17, max: 16 })
        );
        let mut buf = BytesMut::from(&Header::new(Cmd::Psh, 1, 16).to_bytes()[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }

    #[test]
    fn foreign_protocols_are_named() {
        for (input, kind) in [
            (&b"GET / HTTP/1.1\r\n"[..], NotSmux::Http),
            (&b"HTTP/1.1 200 OK\r\n"[..], NotSmux::Http),
            (
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00][..],
                NotSmux::Tls,
            ),
            (&b"SSH-2.0-OpenSSH"[..], NotSmux::Ssh),
            (&b"PRI * HTTP/2.0"[..], NotSmux::Http),
            (&b"OPTIONS"[..], NotSmux::Http),
            (&b"CONNECT"[..], NotSmux::Http),
            (&b"<html><body>"[..], NotSmux::Text(*b"<html><")),
            (&b"220 mail ESMTP\r\n"[..], NotSmux::Text(*b"220 mai")),
            (&b"{\"error\": 1}"[..], NotSmux::Text(*b"{\"error")),
        ] {
            let mut dec = Decoder::new(MAX_FRAME_REFERENCE);
            let mut buf = BytesMut::from(input);
            assert_eq!(dec.decode(&mut buf), Err(ProtocolError::NotSmux(kind)));
        }
    }

    /// The verdict on a foreign peer is the same however its first bytes are split
    /// into reads, and no verdict comes before the bytes that decide it.
    #[test]
    fn foreign_verdicts_do_not_depend_on_the_split() {
        let inputs: [&[u8]; 8] = [
            b"HTTP/1.1 400 Bad Request\r\n",
            b"GET / HTTP/1.1\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"<html>\n<head>",
            b"* OK IMAP4rev1 ready\r\n",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01],
            b"<html\0\0\0\0",
            b"Hi\x01\x02\x03\x04\x05\x06",
        ];
        for input in inputs {
            let whole = Decoder::new(MAX_FRAME_REFERENCE)
                .decode(&mut BytesMut::from(input))
                .unwrap_err();
            for split in 0..input.len() {
                let mut dec = Decoder::new(MAX_FRAME_REFERENCE);
                let mut buf = BytesMut::from(&input[..split]);
                let early = dec.decode(&mut buf);
                let verdict = match early {
                    Err(e) => e,
                    Ok(None) => {
                        buf.extend_from_slice(&input[split..]);
                        dec.decode(&mut buf).unwrap_err()
                    }
                    Ok(Some(f)) => panic!("{input:?} decoded as {f:?}"),
                };
                assert_eq!(verdict, whole, "{input:?} split at {split}");
            }
        }
        // Text is named only once 7 bytes are in: 6 may still be anything.
        let mut dec = Decoder::new(MAX_FRAME_REFERENCE);
        assert_eq!(dec.decode(&mut BytesMut::from(&b"<html>"[..])), Ok(None));
    }
}
