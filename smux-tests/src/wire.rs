//! The wire protocol spoken by hand: a frame writer that can also write what the
//! protocol forbids, a frame parser, and loopback sockets with chosen buffer sizes.
//!
//! A header is 7 bytes: `cmd` (u8), stream `id` (u16 little-endian), `length` (u32
//! little-endian); a PSH header is followed by `length` payload bytes.
//!
//! The agreement two smux-rs ends reach on the extensions is spelled out here too, as a
//! raw peer has to speak it (the core keeps its wire values private):
//!
//! * an end with the extensions opens every stream with `SYN(1)` (a reference end ignores
//!   the flag);
//! * the dialer's offer, ASK, and the acceptor's, HELLO, are VRM frames with fixed values
//!   ([`ASK`], [`HELLO`]); the dialer sends ASK right after its first own frame, the
//!   acceptor sends HELLO once the first frame arrived or before its own first frame;
//! * each end learns the answer from the order of frames: the acceptor says yes on ASK
//!   or `SYN(1)`, no on the verify answer to HELLO, on `SYN(0)` or on a frame for a
//!   stream it opened, whichever comes first; the dialer says yes on HELLO or `SYN(1)`
//!   and no on the verify answer to ASK or on any other frame but a VRM;
//! * once an end knows both have them it sends `SET(1, window)`, its receive window
//!   ([`SET_RECV_WINDOW`]); the commands WND, RST, GWY and SET are valid only then;
//! * an answer to an end's own offer is never answered.
//!
//! On an extended stream `FIN(1)` is the last FIN.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Opens a stream.
pub const SYN: u8 = 0;
/// Closes a stream.
pub const FIN: u8 = 1;
/// Carries stream data.
pub const PSH: u8 = 2;
/// Confirms consumed bytes.
pub const CFM: u8 = 3;
/// Verify challenge or answer.
pub const VRM: u8 = 4;
/// Keepalive.
pub const PIN: u8 = 5;
/// Extension: raises a stream's window to `length`.
pub const WND: u8 = 6;
/// Extension: aborts a stream both ways; `length` is the error code.
pub const RST: u8 = 7;
/// Extension: no new streams either way; `length` is the error code.
pub const GWY: u8 = 8;
/// Extension: a setting of the sender; `id` is the key, `length` the value.
pub const SET: u8 = 9;
/// Header length.
pub const HEADER: usize = 7;

/// The second value of HELLO and ASK: `"SX"` in the top 16 bits, capability bit 1.
pub const CAPS: u32 = 0x5358_0001;
/// HELLO, the acceptor's offer: `VRM(0x5E71, CAPS)`.
pub const HELLO: (u16, u32) = (0x5E71, CAPS);
/// ASK, the dialer's offer: `VRM(0x5E72, CAPS)`.
pub const ASK: (u16, u32) = (0x5E72, CAPS);
/// The SET key of an end's receive window per stream.
pub const SET_RECV_WINDOW: u16 = 1;
/// The window a sender assumes until the peer's SET arrives (the reference's fixed
/// window), and the unconfirmed bytes every receiver accepts.
pub const ASSUMED_WINDOW: u32 = 512 * 1024;

/// True if `f` is HELLO.
pub fn is_hello(f: &Frame) -> bool {
    f.cmd == VRM && (f.id, f.length) == HELLO
}

/// True if `f` is ASK.
pub fn is_ask(f: &Frame) -> bool {
    f.cmd == VRM && (f.id, f.length) == ASK
}

/// True if `f` is the verify answer to the VRM challenge `(a, b)`.
pub fn is_answer_to(f: &Frame, challenge: (u16, u32)) -> bool {
    f.cmd == VRM && (f.id, f.length) == smux_proto::verify_code(challenge.0, challenge.1)
}

/// True if `f` is `SET(key, value)` with the receive window's key; returns the value.
pub fn set_window(f: &Frame) -> Option<u32> {
    (f.cmd == SET && f.id == SET_RECV_WINDOW).then_some(f.length)
}

/// The 7 bytes of a header, whatever the values (an undefined `cmd`, a `length` that
/// is a lie...).
pub fn header(cmd: u8, id: u16, length: u32) -> [u8; HEADER] {
    let i = id.to_le_bytes();
    let l = length.to_le_bytes();
    [cmd, i[0], i[1], l[0], l[1], l[2], l[3]]
}

/// A buffer of frames to write in one go.
#[derive(Debug, Clone, Default)]
pub struct Frames(Vec<u8>);

impl Frames {
    /// An empty buffer.
    pub fn new() -> Frames {
        Frames::default()
    }

    /// Any header.
    pub fn raw(&mut self, cmd: u8, id: u16, length: u32) -> &mut Frames {
        self.0.extend_from_slice(&header(cmd, id, length));
        self
    }

    /// Raw bytes (a payload written apart from its header, a cut-off header...).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Frames {
        self.0.extend_from_slice(b);
        self
    }

    /// SYN for `id`.
    pub fn syn(&mut self, id: u16) -> &mut Frames {
        self.raw(SYN, id, 0)
    }

    /// FIN for `id`.
    pub fn fin(&mut self, id: u16) -> &mut Frames {
        self.raw(FIN, id, 0)
    }

    /// PSH of `payload` on `id`.
    pub fn psh(&mut self, id: u16, payload: &[u8]) -> &mut Frames {
        self.raw(PSH, id, payload.len() as u32).bytes(payload)
    }

    /// CFM of `n` bytes on `id`.
    pub fn cfm(&mut self, id: u16, n: u32) -> &mut Frames {
        self.raw(CFM, id, n)
    }

    /// VRM carrying `(a, b)`.
    pub fn vrm(&mut self, a: u16, b: u32) -> &mut Frames {
        self.raw(VRM, a, b)
    }

    /// PIN.
    pub fn pin(&mut self) -> &mut Frames {
        self.raw(PIN, 0, 0)
    }

    /// SYN(1) for `id`: asks for an extended stream (base once extensions are off).
    pub fn syn_ext(&mut self, id: u16) -> &mut Frames {
        self.raw(SYN, id, 1)
    }

    /// FIN(1) for `id`: an extended stream's last FIN.
    pub fn fin_last(&mut self, id: u16) -> &mut Frames {
        self.raw(FIN, id, 1)
    }

    /// WND raising `id`'s window to `window`.
    pub fn wnd(&mut self, id: u16, window: u32) -> &mut Frames {
        self.raw(WND, id, window)
    }

    /// RST of `id` with `code`.
    pub fn rst(&mut self, id: u16, code: u32) -> &mut Frames {
        self.raw(RST, id, code)
    }

    /// GWY with `code`.
    pub fn gwy(&mut self, code: u32) -> &mut Frames {
        self.raw(GWY, 0, code)
    }

    /// SET of `key` to `value` (extension).
    pub fn set(&mut self, key: u16, value: u32) -> &mut Frames {
        self.raw(SET, key, value)
    }

    /// SET of the receive window, as an end of ours sends it once both agreed.
    pub fn set_recv_window(&mut self, window: u32) -> &mut Frames {
        self.set(SET_RECV_WINDOW, window)
    }

    /// HELLO, as an acceptor of ours sends it.
    pub fn hello(&mut self) -> &mut Frames {
        self.vrm(HELLO.0, HELLO.1)
    }

    /// ASK, as a dialer of ours sends it.
    pub fn ask(&mut self) -> &mut Frames {
        self.vrm(ASK.0, ASK.1)
    }

    /// The verify answer to the VRM challenge `(a, b)`, as every end sends it (a
    /// reference end answers HELLO and ASK this way too).
    pub fn answer(&mut self, challenge: (u16, u32)) -> &mut Frames {
        let (a, b) = smux_proto::verify_code(challenge.0, challenge.1);
        self.vrm(a, b)
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets the frames, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One frame read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Command byte.
    pub cmd: u8,
    /// Stream ID (or first VRM value).
    pub id: u16,
    /// Length field.
    pub length: u32,
    /// PSH payload (empty for every other command).
    pub payload: Bytes,
}

/// Splits a byte stream into frames. Every command but PSH is taken as a bare header.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
}

impl Parser {
    /// An empty parser.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.buf.len() < HEADER {
            return None;
        }
        let b = &self.buf[..HEADER];
        let cmd = b[0];
        let id = u16::from_le_bytes([b[1], b[2]]);
        let length = u32::from_le_bytes([b[3], b[4], b[5], b[6]]);
        let plen = if cmd == PSH { length as usize } else { 0 };
        if self.buf.len() < HEADER + plen {
            return None;
        }
        self.buf.advance(HEADER);
        let payload = self.buf.split_to(plen).freeze();
        Some(Frame {
            cmd,
            id,
            length,
            payload,
        })
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn leftover(&self) -> usize {
        self.buf.len()
    }
}

/// A connected loopback TCP pair `(dialler's end, acceptor's end)`. With `buffers`,
/// both sockets get that send and receive buffer size (the kernel may round it), so a
/// peer that stops reading pushes back after little data.
pub async fn loopback(buffers: Option<u32>) -> io::Result<(TcpStream, TcpStream)> {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let ls = TcpSocket::new_v4()?;
    let cs = TcpSocket::new_v4()?;
    if let Some(n) = buffers {
        for s in [&ls, &cs] {
            s.set_recv_buffer_size(n)?;
            s.set_send_buffer_size(n)?;
        }
    }
    ls.bind(addr)?;
    let listener: TcpListener = ls.listen(16)?;
    let (c, a) = tokio::join!(cs.connect(listener.local_addr()?), listener.accept());
    let (c, (a, _)) = (c?, a?);
    c.set_nodelay(true)?;
    a.set_nodelay(true)?;
    Ok((c, a))
}

/// Shared state a raw peer's reader task updates frame by frame.
pub type Shared<S> = std::sync::Arc<std::sync::Mutex<S>>;

/// Reads from `r` until `parser` holds a whole frame and returns it; `None` at
/// end-of-file or on an error. Bytes past that frame stay in `parser`.
pub async fn read_frame(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    parser: &mut Parser,
) -> Option<Frame> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = parser.next_frame() {
            return Some(f);
        }
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => parser.push(&buf[..n]),
        }
    }
}

/// Spawns a task that reads `r` until end-of-file or an error, hands every frame to
/// `on_frame` under `state`'s lock, and returns the count of bytes left over that did
/// not form a whole frame. While `gate` is false it does not read at all (a peer
/// that stopped reading: its TCP receive window fills).
pub fn spawn_reader<S, F>(
    r: tokio::net::tcp::OwnedReadHalf,
    state: Shared<S>,
    gate: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    on_frame: F,
) -> tokio::task::JoinHandle<usize>
where
    S: Send + 'static,
    F: FnMut(&mut S, Frame) + Send + 'static,
{
    spawn_reader_from(r, Parser::new(), state, gate, on_frame)
}

/// [`spawn_reader`] that starts with the bytes already in `parser` (a peer that read
/// part of the stream itself first, e.g. to negotiate by hand).
pub fn spawn_reader_from<S, F>(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut parser: Parser,
    state: Shared<S>,
    gate: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    mut on_frame: F,
) -> tokio::task::JoinHandle<usize>
where
    S: Send + 'static,
    F: FnMut(&mut S, Frame) + Send + 'static,
{
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            {
                let mut st = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while let Some(f) = parser.next_frame() {
                    on_frame(&mut st, f);
                }
            }
            if let Some(g) = &gate {
                while !g.load(Ordering::Acquire) {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return parser.leftover(),
                Ok(n) => parser.push(&buf[..n]),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smux_proto::{Agreement, Config, Role, Session, Transmit};
    use std::time::Instant;

    /// Feeds `frames` to a fresh session of `role` and returns its agreement and the
    /// frames it sends back.
    fn feed(role: Role, frames: &Frames) -> (Agreement, Vec<Frame>) {
        let now = Instant::now();
        let mut s = Session::new(Config::default(), role, now).expect("session");
        s.handle_input(now, &mut BytesMut::from(frames.as_bytes()));
        let mut tx = Transmit::new();
        s.poll_transmit(now, &mut tx, usize::MAX);
        let mut wire = Vec::new();
        tx.drain_into(&mut wire);
        let mut p = Parser::new();
        p.push(&wire);
        let sent = std::iter::from_fn(|| p.next_frame()).collect();
        (s.agreement(), sent)
    }

    /// The values spelled out here are the ones our ends use: an exact offer settles the
    /// agreement and is followed by the SET of the window; one bit off is only answered.
    #[test]
    fn offers_match_the_core() {
        for (role, offer) in [(Role::Acceptor, ASK), (Role::Dialer, HELLO)] {
            let (agreement, sent) = feed(role, Frames::new().vrm(offer.0, offer.1));
            assert_eq!(agreement, Agreement::Extended, "{role:?}");
            let window = Config::default().window();
            assert!(
                sent.iter().any(|f| set_window(f) == Some(window)),
                "{sent:?}"
            );
            assert!(sent.iter().any(|f| is_answer_to(f, offer)), "{sent:?}");
            let ours = if role == Role::Acceptor { HELLO } else { ASK };
            assert!(sent.iter().any(|f| (f.id, f.length) == ours), "{sent:?}");
            let (agreement, sent) = feed(role, Frames::new().vrm(offer.0, offer.1 ^ 1));
            assert_eq!(agreement, Agreement::Pending, "{role:?}");
            assert!(sent.iter().all(|f| f.cmd != SET), "{sent:?}");
        }
    }
}
