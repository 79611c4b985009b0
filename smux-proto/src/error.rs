//! Error types. Each operation has its own enum; the reason a session ended is stored
//! once and reported by every later call.

use std::fmt;
use std::io;

/// A peer protocol recognised from the first bytes of a connection that does not speak
/// smux.
///
/// Recognition looks at the first 7 bytes at most (the size of a frame header), so
/// the verdict does not depend on how those bytes were split into reads: a known
/// prefix (`GET `, `HTTP/`, `SSH-`, a TLS record header) names its protocol as soon
/// as it has arrived; any other printable text is named once 7 bytes of it are in.
/// No smux header is printable (its first byte, the command, is below 9), so text is
/// never mistaken for smux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotSmux {
    /// An HTTP/1 request or response, or the HTTP/2 preface.
    Http,
    /// A TLS record (handshake or alert).
    Tls,
    /// An SSH banner.
    Ssh,
    /// Printable ASCII text of no protocol named above (a banner, an error message,
    /// HTML...): the first 7 bytes the peer sent.
    Text([u8; 7]),
}

/// The HTTP/1 methods and markers recognised, at most 7 bytes each so that a match
/// never depends on bytes past the first header.
const HTTP: [&[u8]; 10] = [
    b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS", b"PATCH ", b"CONNECT", b"HTTP/",
    b"PRI * H",
];

impl NotSmux {
    /// Recognises a foreign protocol from the first bytes a peer sent (all of them,
    /// or at least the first 7; later ones are not looked at).
    pub(crate) fn recognise(first: &[u8]) -> Option<NotSmux> {
        if HTTP.iter().any(|p| first.starts_with(p)) {
            return Some(NotSmux::Http);
        }
        // TLS record: content type 20..=23 (handshake is 22), then version major 3.
        if first.len() >= 2 && (20..=23).contains(&first[0]) && first[1] == 3 {
            return Some(NotSmux::Tls);
        }
        if first.starts_with(b"SSH-") {
            return Some(NotSmux::Ssh);
        }
        match first.first_chunk::<7>() {
            Some(head) if head.iter().all(|&b| is_text(b)) => Some(NotSmux::Text(*head)),
            _ => None,
        }
    }

    /// Whether more bytes could still make `first` (fewer than 7 bytes, none of them
    /// recognised yet) one of the protocols above: a verdict of "not recognised" has
    /// to wait for them.
    pub(crate) fn may_become(first: &[u8]) -> bool {
        first.len() < 7
            && (first.iter().all(|&b| is_text(b))
                || (first.len() == 1 && (20..=23).contains(&first[0])))
    }
}

/// Printable ASCII, space, tab, CR and LF: what text protocols and messages are made
/// of.
fn is_text(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\r' | b' '..=b'~')
}

impl fmt::Display for NotSmux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSmux::Http => f.write_str("HTTP"),
            NotSmux::Tls => f.write_str("TLS"),
            NotSmux::Ssh => f.write_str("SSH"),
            // Only printable ASCII gets here, so this is always valid UTF-8; `{:?}`
            // quotes it and escapes the line breaks.
            NotSmux::Text(head) => match std::str::from_utf8(head) {
                Ok(text) => write!(f, "text: {text:?}"),
                Err(_) => write!(f, "text: {head:?}"),
            },
        }
    }
}

/// A violation of the protocol by the peer. Every one ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer does not speak smux: its first bytes are another protocol.
    NotSmux(NotSmux),
    /// A header carried a command byte this protocol does not define.
    UnknownCommand(u8),
    /// A PSH frame announced more payload than the configured maximum frame size.
    FrameTooLarge {
        /// Announced payload length.
        len: u32,
        /// Configured maximum (`Config::max_frame`).
        max: u32,
    },
    /// The peer sent more unconfirmed bytes on a stream than the window allows.
    WindowExceeded {
        /// The stream.
        id: u16,
        /// Unconfirmed bytes after the offending frame.
        unconfirmed: u64,
        /// Configured window (`Config::window`).
        window: u32,
    },
    /// The connection ended in the middle of a frame.
    TruncatedFrame {
        /// Bytes of the unfinished frame that had arrived.
        have: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::NotSmux(p) => write!(f, "peer does not speak smux (it sent {p})"),
            ProtocolError::UnknownCommand(c) => write!(f, "unknown frame command {c}"),
            ProtocolError::FrameTooLarge { len, max } => {
                write!(f, "PSH frame of {len} bytes exceeds the maximum of {max}")
            }
            ProtocolError::WindowExceeded {
                id,
                unconfirmed,
                window,
            } => write!(
                f,
                "peer overran the window of stream {id}: {unconfirmed} unconfirmed bytes, window {window}"
            ),
            ProtocolError::TruncatedFrame { have } => {
                write!(f, "connection ended inside a frame ({have} bytes of it arrived)")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The application closed the session.
    Local,
    /// The transport reached end-of-file at a frame boundary.
    PeerClosed,
    /// Nothing arrived from the peer for `Config::keepalive_timeout`.
    KeepaliveTimeout,
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The transport failed with this error.
    Transport(TransportError),
    /// A go-away ran its course: every stream finished and the session closed cleanly.
    Drained,
}

impl EndReason {
    /// Whether the session ended as sessions normally do: closed by this end or by
    /// the peer, or drained after a go-away. The other reasons are failures (keepalive
    /// silence, a transport error, a protocol error); the adapters log those at a
    /// higher level.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            EndReason::Local | EndReason::PeerClosed | EndReason::Drained
        )
    }

    /// The `io::ErrorKind` that best describes this reason, for adapters that report
    /// stream failures as `io::Error`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            EndReason::Local => io::ErrorKind::NotConnected,
            EndReason::PeerClosed => io::ErrorKind::ConnectionAborted,
            EndReason::KeepaliveTimeout => io::ErrorKind::TimedOut,
            EndReason::Protocol(_) => io::ErrorKind::InvalidData,
            EndReason::Transport(e) => e.kind(),
            EndReason::Drained => io::ErrorKind::NotConnected,
        }
    }

    /// An `io::Error` carrying this reason.
    pub fn to_io_error(&self) -> io::Error {
        io::Error::new(self.io_kind(), SessionEnded(self.clone()))
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Local => f.write_str("session closed locally"),
            EndReason::PeerClosed => f.write_str("peer closed the connection"),
            EndReason::KeepaliveTimeout => f.write_str("keepalive timeout: peer went silent"),
            EndReason::Protocol(e) => write!(f, "protocol error: {e}"),
            EndReason::Transport(e) => write!(f, "transport error: {e}"),
            EndReason::Drained => f.write_str("session drained after a go-away"),
        }
    }
}

/// The transport's failure that ended a session: the `io::Error` itself, shared so the
/// reason can be cloned to every caller, and its source in the errors they get.
#[derive(Debug, Clone)]
pub struct TransportError(std::sync::Arc<io::Error>);

impl TransportError {
    /// The error's kind.
    pub fn kind(&self) -> io::ErrorKind {
        self.0.kind()
    }

    /// The transport's error.
    pub fn io_error(&self) -> &io::Error {
        &self.0
    }
}

impl From<io::Error> for TransportError {
    fn from(e: io::Error) -> TransportError {
        TransportError(std::sync::Arc::new(e))
    }
}

impl PartialEq for TransportError {
    fn eq(&self, other: &TransportError) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
            || (self.kind() == other.kind() && self.0.to_string() == other.0.to_string())
    }
}

impl Eq for TransportError {}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The error every operation returns once the session has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnded(pub EndReason);

impl fmt::Display for SessionEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session ended: {}", self.0)
    }
}

impl std::error::Error for SessionEnded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            EndReason::Transport(e) => Some(e),
            EndReason::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// A write with a deadline that did not complete: carries the exact number of bytes
/// the session accepted before it stopped.
///
/// Those `written` bytes will reach the peer (unless the session ends, or the peer
/// gives an extended stream up); the rest of the data was not sent at all. To send
/// everything exactly once, resend `data[written..]`. [`PartialWrite::error`] says why
/// it stopped: an error of kind [`io::ErrorKind::TimedOut`] when the deadline passed,
/// otherwise the stream's or session's failure. Turned into an `io::Error` it keeps
/// the same kind, and the count stays reachable by downcasting its inner error.
#[derive(Debug)]
pub struct PartialWrite {
    written: usize,
    error: io::Error,
}

impl PartialWrite {
    /// A write that stopped after `written` bytes, with `error`.
    pub fn new(written: usize, error: io::Error) -> PartialWrite {
        PartialWrite { written, error }
    }

    /// A write whose deadline passed after `written` bytes.
    pub fn timed_out(written: usize) -> PartialWrite {
        PartialWrite::new(
            written,
            io::Error::new(io::ErrorKind::TimedOut, "smux write deadline passed"),
        )
    }

    /// Bytes accepted before the write stopped (0 up to the length of the data).
    pub fn written(&self) -> usize {
        self.written
    }

    /// Why the write stopped.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// True if the deadline passed (as opposed to a stream or session failure).
    pub fn is_timeout(&self) -> bool {
        self.error.kind() == io::ErrorKind::TimedOut
    }

    /// The error, dropping the count.
    pub fn into_error(self) -> io::Error {
        self.error
    }
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} bytes were written",
            self.error, self.written
        )
    }
}

impl std::error::Error for PartialWrite {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<PartialWrite> for io::Error {
    fn from(e: PartialWrite) -> io::Error {
        io::Error::new(e.error.kind(), e)
    }
}

/// The error a read with a deadline returns when the deadline passed (nothing was
/// read).
pub fn read_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "smux read deadline passed")
}

/// The error code of a stream reset that `err` reports, if it reports one: reads and
/// writes on a stream the peer aborted (`Session::reset` on its end) fail with
/// [`ReadError::Reset`] or [`WriteError::Reset`], which adapters turn into an
/// `io::Error` of kind `ConnectionReset`. Looks through wrapping errors (an adapter's
/// partial-write error, for one) by their `source`. `None` for every other error.
pub fn reset_code(err: &io::Error) -> Option<u32> {
    let mut cur: &(dyn std::error::Error + 'static) = err.get_ref()?;
    loop {
        if let Some(ReadError::Reset(code)) = cur.downcast_ref::<ReadError>() {
            return Some(*code);
        }
        if let Some(WriteError::Reset(code)) = cur.downcast_ref::<WriteError>() {
            return Some(*code);
        }
        cur = match cur.downcast_ref::<io::Error>() {
            Some(inner) => inner.get_ref()?,
            None => cur.source()?,
        };
    }
}

/// Why `Session::open` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// All 65,536 stream IDs are in use (open, or closing and awaiting the peer's FIN).
    IdsExhausted,
    /// A go-away was sent or received: no new streams.
    GoingAway,
    /// The session has ended.
    SessionEnded(EndReason),
}

/// Why a stream write accepted nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// No room now: the stream's window or the session's send queue is full. Nothing
    /// was accepted; a `Writable` event follows when there is room.
    Blocked,
    /// The application already closed this stream, or shut its write side.
    Closed,
    /// The peer closed the stream (its FIN arrived): nothing more can be sent.
    PeerClosed,
    /// The stream was aborted by the peer's RST with this error code (extension).
    Reset(u32),
    /// Half-close (shutting only the write side down) needs the extensions on both
    /// ends, and this stream keeps the base protocol: the peer is a reference
    /// implementation or has them off. Nothing was sent; the stream is intact. A base
    /// FIN would end both directions and hide the rest of the peer's data behind a
    /// clean end-of-file, so read to the end first and then close the stream.
    HalfCloseUnsupported,
    /// No stream with this ID is known to the application.
    UnknownStream,
    /// The session has ended.
    SessionEnded(EndReason),
}

/// Why a stream read returned no data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// No data buffered yet; a `Readable` event follows when some arrives.
    Blocked,
    /// The application already closed this stream.
    Closed,
    /// The stream was aborted by the peer's RST with this error code (extension).
    Reset(u32),
    /// No stream with this ID is known to the application.
    UnknownStream,
    /// The session has ended.
    SessionEnded(EndReason),
}

macro_rules! display_and_io {
    ($t:ident, $($pat:pat => ($kind:expr, $($fmt:tt)+)),* $(,)?) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($pat => write!(f, $($fmt)+),)*
                    Self::SessionEnded(r) => write!(f, "session ended: {r}"),
                }
            }
        }
        impl std::error::Error for $t {}
        impl From<$t> for io::Error {
            #[allow(unused_variables)]
            fn from(e: $t) -> io::Error {
                match e {
                    $($pat => io::Error::new($kind, e),)*
                    $t::SessionEnded(r) => r.to_io_error(),
                }
            }
        }
    };
}

display_and_io!(OpenError,
    OpenError::IdsExhausted => (io::ErrorKind::Other, "all 65536 stream IDs are in use; close streams or open another session"),
    OpenError::GoingAway => (io::ErrorKind::ConnectionRefused, "session is going away: no new streams"),
);
display_and_io!(WriteError,
    WriteError::Blocked => (io::ErrorKind::WouldBlock, "stream window or send queue is full"),
    WriteError::Closed => (io::ErrorKind::NotConnected, "stream was closed or shut down locally"),
    WriteError::PeerClosed => (io::ErrorKind::BrokenPipe, "peer closed the stream"),
    WriteError::Reset(code) => (io::ErrorKind::ConnectionReset, "stream reset by the peer (code {code})"),
    WriteError::HalfCloseUnsupported => (io::ErrorKind::Unsupported, "half-close needs extensions on both ends; this peer speaks the base protocol (a reference implementation, or extensions off), where a FIN ends both directions: read to the end, then close the stream"),
    WriteError::UnknownStream => (io::ErrorKind::NotFound, "unknown stream"),
);
display_and_io!(ReadError,
    ReadError::Blocked => (io::ErrorKind::WouldBlock, "no data buffered yet"),
    ReadError::Closed => (io::ErrorKind::NotConnected, "stream was closed locally"),
    ReadError::Reset(code) => (io::ErrorKind::ConnectionReset, "stream reset by the peer (code {code})"),
    ReadError::UnknownStream => (io::ErrorKind::NotFound, "unknown stream"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_closing_and_draining_are_clean_ends() {
        let failures = [
            EndReason::KeepaliveTimeout,
            EndReason::Protocol(ProtocolError::UnknownCommand(200)),
            EndReason::Transport(io::Error::other("gone").into()),
        ];
        assert!(failures.iter().all(|r| !r.is_clean()));
        let clean = [EndReason::Local, EndReason::PeerClosed, EndReason::Drained];
        assert!(clean.iter().all(EndReason::is_clean));
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn text_is_recognised_and_quoted() {
        let e = ProtocolError::NotSmux(NotSmux::recognise(b"<html>\n<body>").unwrap());
        assert_eq!(e, ProtocolError::NotSmux(NotSmux::Text(*b"<html>\n")));
        assert_eq!(
            e.to_string(),
            r#"peer does not speak smux (it sent text: "<html>\n")"#
        );
        assert_eq!(
            NotSmux::recognise(b"220 smtp.example ESMTP"),
            Some(NotSmux::Text(*b"220 smt"))
        );
        assert_eq!(NotSmux::recognise(b"SSH-2.0-x"), Some(NotSmux::Ssh));
        // Fewer than 7 bytes of text: not yet, but they may still become text.
        assert_eq!(NotSmux::recognise(b"<html>"), None);
        assert!(NotSmux::may_become(b"<html>"));
        // Not text, and no protocol starts like this.
        assert_eq!(NotSmux::recognise(b"<html\0x"), None);
        assert!(!NotSmux::may_become(b"<h\0"));
        assert!(NotSmux::may_become(&[22]));
        assert!(!NotSmux::may_become(&[22, 4]));
        // Every smux header starts with a command below 9: never text.
        for cmd in 0..=8u8 {
            assert_eq!(
                NotSmux::recognise(&[cmd, b'a', b'b', b'c', b'd', b'e', b'f']),
                None
            );
        }
    }

    #[test]
    fn reset_codes_are_found_through_wrappers() {
        let read: io::Error = ReadError::Reset(7).into();
        assert_eq!(read.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_code(&read), Some(7));
        let write: io::Error = WriteError::Reset(9).into();
        let wrapped = io::Error::new(io::ErrorKind::TimedOut, Wrapper(write));
        assert_eq!(reset_code(&wrapped), Some(9));
        assert_eq!(reset_code(&WriteError::PeerClosed.into()), None);
        assert_eq!(reset_code(&io::Error::other("x")), None);
    }
}
