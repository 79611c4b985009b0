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

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads shorter than this are copied into the stream's own buffer instead of being
/// kept as a slice of the transport's read buffer, so a trickle of tiny frames can
/// neither pin large read buffers nor cost a chunk record each.
pub(crate) const COPY_BELOW: usize = 16 * 1024;

/// Drained buffer sets kept for reuse. Boxed because they move in and out of streams,
/// where an idle stream holds only a pointer.
#[allow(clippy::vec_box)]
pub(crate) type Pool = Vec<Box<Buffers>>;

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
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    /// Received payloads, oldest first; small payloads are merged into `tail`.
    chunks: VecDeque<Bytes>,
    /// Received bytes after the last chunk.
    tail: BytesMut,
    /// Bytes accepted by writes and not yet framed.
    pub(crate) send: BytesMut,
}

impl Buffers {
    /// Whether the buffers hold nothing and may be recycled.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.tail.is_empty() && self.send.is_empty()
    }

    /// Prepares a drained buffer set for reuse, dropping large allocations.
    pub(crate) fn recycle(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.chunks.capacity() > 16 {
            self.chunks = VecDeque::new();
        }
        if self.tail.capacity() > KEEP {
            self.tail = BytesMut::new();
        }
        if self.send.capacity() > KEEP {
            self.send = BytesMut::new();
        }
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
        self.bufs
            .get_or_insert_with(|| pool.pop().unwrap_or_default())
    }

    /// Returns drained buffers to the pool.
    pub(crate) fn release_bufs(&mut self, pool: &mut Pool) {
        const POOL_MAX: usize = 64;
        if self.bufs.as_ref().is_some_and(|b| b.is_empty()) {
            let mut b = self.bufs.take().expect("checked above");
            if pool.len() < POOL_MAX {
                b.recycle();
                pool.push(b);
            }
        }
    }

    /// Buffers a received payload.
    pub(crate) fn push_recv(&mut self, payload: Bytes, pool: &mut Pool) {
        self.recv_len += payload.len() as u32;
        let b = self.bufs_mut(pool);
        if payload.len() < COPY_BELOW {
            b.tail.extend_from_slice(&payload);
        } else {
            if !b.tail.is_empty() {
                let t = b.tail.split().freeze();
                b.chunks.push_back(t);
            }
            b.chunks.push_back(payload);
        }
    }

    /// Copies buffered bytes into `out`; returns the count.
    pub(crate) fn read_into(&mut self, out: &mut [u8], pool: &mut Pool) -> usize {
        let Some(b) = self.bufs.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while n < out.len() {
            let src: &mut dyn Buf = match b.chunks.front_mut() {
                Some(c) => c,
                None if !b.tail.is_empty() => &mut b.tail,
                None => break,
            };
            let k = src.remaining().min(out.len() - n);
            src.copy_to_slice(&mut out[n..n + k]);
            n += k;
            if b.chunks.front().is_some_and(|c| c.is_empty()) {
                b.chunks.pop_front();
            }
        }
        self.recv_len -= n as u32;
        self.release_bufs(pool);
        n
    }

    /// Takes up to `max` buffered bytes as one chunk without copying large payloads.
    pub(crate) fn read_chunk(&mut self, max: usize, pool: &mut Pool) -> Bytes {
        let Some(b) = self.bufs.as_mut() else {
            return Bytes::new();
        };
        let out = match b.chunks.front_mut() {
            Some(c) if c.len() <= max => b.chunks.pop_front().expect("front exists"),
            Some(c) => c.split_to(max),
            None => {
                let k = b.tail.len().min(max);
                b.tail.split_to(k).freeze()
            }
        };
        self.recv_len -= out.len() as u32;
        self.release_bufs(pool);
        out
    }

    /// Drops every buffered received byte; returns the count.
    pub(crate) fn discard_recv(&mut self, pool: &mut Pool) -> usize {
        let n = self.recv_len as usize;
        if let Some(b) = self.bufs.as_mut() {
            b.chunks.clear();
            b.tail.clear();
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
    fn small_payloads_merge_and_large_ones_are_kept_whole() {
        let mut pool = Vec::new();
        let mut s = Stream::new();
        s.push_recv(Bytes::from_static(b"ab"), &mut pool);
        s.push_recv(Bytes::from_static(b"cd"), &mut pool);
        let big = Bytes::from(vec![9u8; COPY_BELOW]);
        s.push_recv(big.clone(), &mut pool);
        s.push_recv(Bytes::from_static(b"ef"), &mut pool);
        assert_eq!(s.bufs.as_ref().unwrap().chunks.len(), 2);
        assert_eq!(s.recv_len as usize, 6 + COPY_BELOW);
        let mut out = [0u8; 3];
        assert_eq!(s.read_into(&mut out, &mut pool), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(s.read_chunk(1, &mut pool), Bytes::from_static(b"d"));
        let chunk = s.read_chunk(usize::MAX, &mut pool);
        assert_eq!(
            chunk.as_ptr(),
            big.as_ptr(),
            "large payloads are not copied"
        );
        let mut rest = [0u8; 10];
        assert_eq!(s.read_into(&mut rest, &mut pool), 2);
        assert_eq!(&rest[..2], b"ef");
        assert!(s.bufs.is_none(), "drained buffers go back to the pool");
        assert_eq!(pool.len(), 1);
    }
}
