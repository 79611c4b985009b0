//! One stream's state: its life cycle, its buffers and its flow-control counters.
//!
//! Life cycle (base protocol, full close):
//!
//! | state | reads | writes | leaves on |
//! |---|---|---|---|
//! | `Open` | data | accepted within window | peer FIN → `PeerFin`; app close → `Closing` |
//! | `PeerFin` | buffered data, then EOF | fail | app close → `Closing { peer_fin: true }` |
//! | `Closing` | fail (app released it) | fail | removed once our FIN is sent and the peer's FIN arrived |
//!
//! Our FIN always follows every byte this stream accepted, so it waits behind them
//! (`LocalFin::Waiting`) before it is queued and then sent. The ID is freed only on
//! removal, so a new stream can never receive the old one's bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Drained buffer sets kept for reuse, so a busy session does not allocate (and fault
/// in fresh pages) every time a stream's buffer empties and fills again. Boxed because
/// they move in and out of streams, where an idle stream holds only a pointer.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    #[allow(clippy::vec_box)]
    free: Vec<Box<Buffers>>,
    /// Capacity held by `free`.
    bytes: usize,
}

impl Pool {
    /// Most capacity the pool keeps.
    const MAX_BYTES: usize = 2 * 1024 * 1024;
    /// Buffers larger than this are freed rather than kept.
    const KEEP: usize = 256 * 1024;

    fn take(&mut self) -> Box<Buffers> {
        match self.free.pop() {
            Some(b) => {
                self.bytes -= b.capacity();
                b
            }
            None => Box::default(),
        }
    }

    fn put(&mut self, mut b: Box<Buffers>) {
        if b.recv.capacity() > Self::KEEP {
            b.recv = BytesMut::new();
        }
        if b.send.capacity() > Self::KEEP {
            b.send = BytesMut::new();
        }
        if self.bytes + b.capacity() <= Self::MAX_BYTES && self.free.len() < 1024 {
            self.bytes += b.capacity();
            self.free.push(b);
        }
    }
}

/// Where our FIN is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalFin {
    /// Waiting for the stream's accepted data to be framed.
    Waiting,
    /// In the control queue.
    Queued,
    /// Handed to the transport.
    Sent,
}

/// The stream's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Both directions open.
    Open,
    /// The peer's FIN arrived; the application still holds the stream.
    PeerFin,
    /// The application released the stream.
    Closing { fin: LocalFin, peer_fin: bool },
}

/// Data buffers, allocated while data flows and recycled when drained, so an idle
/// stream costs only its counters.
///
/// Received payloads are copied into `recv` rather than kept as slices of the
/// transport's read buffer: a slice would pin its whole read allocation, so a peer
/// could make memory exceed the counted bytes by the ratio of read size to frame size,
/// and the adapter could never reuse its read buffer in place.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    /// Received bytes not yet read.
    recv: BytesMut,
    /// Bytes accepted by writes and not yet framed.
    pub(crate) send: BytesMut,
}

impl Buffers {
    /// Whether the buffers hold nothing and may be recycled.
    pub(crate) fn is_empty(&self) -> bool {
        self.recv.is_empty() && self.send.is_empty()
    }

    fn capacity(&self) -> usize {
        self.recv.capacity() + self.send.capacity()
    }
}

/// Flags kept in one byte.
pub(crate) mod flag {
    /// In the session's round-robin queue of streams with data to frame.
    pub(crate) const IN_READY: u8 = 1;
    /// In the session's queue of streams owing a CFM.
    pub(crate) const CFM_QUEUED: u8 = 2;
    /// A write returned `Blocked`; a `Writable` event is owed when room appears.
    pub(crate) const WRITE_BLOCKED: u8 = 4;
    /// A `Readable` event is queued and not yet polled.
    pub(crate) const READABLE_QUEUED: u8 = 8;
    /// Waiting in the session's list for send-queue room.
    pub(crate) const OUT_WAITER: u8 = 16;
    /// Its turn in the send queue came: it may write while others still wait.
    pub(crate) const GRANTED: u8 = 32;
}

/// One stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) state: State,
    pub(crate) flags: u8,
    /// Bytes buffered for reading.
    pub(crate) recv_len: u32,
    /// Bytes we framed and the peer has not confirmed.
    pub(crate) in_flight: u32,
    /// Bytes received and not yet confirmed by a CFM we sent (includes `recv_len`).
    pub(crate) unacked: u32,
    /// Bytes the application consumed since the last CFM was sent.
    pub(crate) consumed: u32,
    pub(crate) bufs: Option<Box<Buffers>>,
}

impl Stream {
    pub(crate) fn new() -> Stream {
        Stream {
            state: State::Open,
            flags: 0,
            recv_len: 0,
            in_flight: 0,
            unacked: 0,
            consumed: 0,
            bufs: None,
        }
    }

    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// Bytes accepted by writes and not yet framed.
    pub(crate) fn send_len(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.send.len())
    }

    /// Room for more writes under the window.
    pub(crate) fn send_room(&self, window: u32) -> usize {
        (window as usize).saturating_sub(self.in_flight as usize + self.send_len())
    }

    pub(crate) fn bufs_mut(&mut self, pool: &mut Pool) -> &mut Buffers {
        self.bufs.get_or_insert_with(|| pool.take())
    }

    /// Returns drained buffers to the pool.
    pub(crate) fn release_bufs(&mut self, pool: &mut Pool) {
        if self.bufs.as_ref().is_some_and(|b| b.is_empty()) {
            pool.put(self.bufs.take().expect("checked above"));
        }
    }

    /// Buffers a received payload.
    pub(crate) fn push_recv(&mut self, payload: &[u8], pool: &mut Pool) {
        self.recv_len += payload.len() as u32;
        self.bufs_mut(pool).recv.extend_from_slice(payload);
    }

    /// Copies buffered bytes into `out`; returns the count.
    pub(crate) fn read_into(&mut self, out: &mut [u8], pool: &mut Pool) -> usize {
        let Some(b) = self.bufs.as_mut() else {
            return 0;
        };
        let n = b.recv.len().min(out.len());
        out[..n].copy_from_slice(&b.recv[..n]);
        b.recv.advance(n);
        self.recv_len -= n as u32;
        self.release_bufs(pool);
        n
    }

    /// Takes up to `max` buffered bytes as one chunk.
    pub(crate) fn read_chunk(&mut self, max: usize, pool: &mut Pool) -> Bytes {
        let Some(b) = self.bufs.as_mut() else {
            return Bytes::new();
        };
        let n = b.recv.len().min(max);
        let out = b.recv.split_to(n).freeze();
        self.recv_len -= n as u32;
        self.release_bufs(pool);
        out
    }

    /// Drops every buffered received byte; returns the count.
    pub(crate) fn discard_recv(&mut self, pool: &mut Pool) -> usize {
        let n = self.recv_len as usize;
        if let Some(b) = self.bufs.as_mut() {
            b.recv.clear();
        }
        self.recv_len = 0;
        self.release_bufs(pool);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_stream_is_small() {
        assert!(
            std::mem::size_of::<Stream>() <= 32,
            "{}",
            std::mem::size_of::<Stream>()
        );
    }

    #[test]
    fn received_bytes_are_read_in_order_and_buffers_recycled() {
        let mut pool = Pool::default();
        let mut s = Stream::new();
        s.push_recv(b"ab", &mut pool);
        s.push_recv(b"cd", &mut pool);
        s.push_recv(&[9u8; 20_000], &mut pool);
        s.push_recv(b"ef", &mut pool);
        assert_eq!(s.recv_len as usize, 20_006);
        let mut out = [0u8; 3];
        assert_eq!(s.read_into(&mut out, &mut pool), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(s.read_chunk(1, &mut pool), Bytes::from_static(b"d"));
        assert_eq!(
            s.read_chunk(20_000, &mut pool),
            Bytes::from(vec![9u8; 20_000])
        );
        let mut rest = [0u8; 10];
        assert_eq!(s.read_into(&mut rest, &mut pool), 2);
        assert_eq!(&rest[..2], b"ef");
        assert!(s.bufs.is_none(), "drained buffers go back to the pool");
        assert_eq!(pool.free.len(), 1);
        s.push_recv(b"x", &mut pool);
        assert!(pool.free.is_empty(), "and come out of it again");
    }
}
