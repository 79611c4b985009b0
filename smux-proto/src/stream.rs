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
//!
//! An extended stream (opened with `SYN(1)` once both ends agreed on extensions) differs
//! in three ways: FIN means only "no more data from me", so `PeerFin` still writes and
//! the application may shut its own write side (`Shut`) and keep reading; a side that
//! sent FIN still confirms (and grows the window of) what it receives, so the handshake
//! ends with one more FIN, `FIN(1)`, that each side sends once it has seen the peer's
//! FIN and after which it sends nothing on the stream; and RST aborts both directions.
//! See `docs/PROTOCOL.md` for why a third FIN is needed before an ID can be reused.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The largest block that received bytes are copied into.
const TAIL_BLOCK: usize = 32 * 1024;

/// Received pieces smaller than this are always copied: a slice saves little and pins
/// a lot.
pub(crate) const SLICE_FROM: usize = 16 * 1024;

/// Drained buffer sets kept for reuse, so a busy session does not allocate (and fault
/// in fresh pages) every time a stream's buffer empties and fills again. Boxed because
/// they move in and out of streams, where an idle stream holds only a pointer.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    #[allow(clippy::vec_box)]
    free: Vec<Box<Buffers>>,
    /// Capacity held by `free`.
    bytes: usize,
    /// Full-size send chunks emptied by framing, oldest first, for reuse once their
    /// frames are written (at most `spare_max`).
    spare: VecDeque<BytesMut>,
    /// As many chunks as `max_buffered_out` fills: a busy session's send queue drains
    /// that many at a time (with 16 where 64 fit, bulk transfers missed the free ones
    /// and faulted in fresh memory again). They held queued bytes a moment before, so
    /// keeping them does not raise the peak.
    spare_max: usize,
    /// Whether a full-size chunk was handed out since the last `let_go_idle`.
    spare_used: bool,
}

impl Pool {
    /// A pool for a session that queues at most `max_buffered_out` bytes to send.
    pub(crate) fn new(max_buffered_out: usize) -> Pool {
        Pool {
            spare_max: max_buffered_out.div_ceil(SendBuf::CHUNK),
            ..Pool::default()
        }
    }

    /// Most capacity the pool keeps.
    const MAX_BYTES: usize = 2 * 1024 * 1024;
    /// Buffers larger than this are freed rather than kept.
    const KEEP: usize = 256 * 1024;
    /// Pooled buffers looked at for a free send allocation.
    const SEARCH: usize = 64;

    fn take(&mut self) -> Box<Buffers> {
        match self.free.pop() {
            Some(b) => {
                self.bytes -= b.capacity();
                b
            }
            None => Box::default(),
        }
    }

    /// An empty send chunk of `n` bytes or more. A full-size chunk is spare memory
    /// whose frames have all been written, the oldest first (their frames had the
    /// longest to go out): fresh memory of that size would be faulted in afresh, a page
    /// per 4 KiB, each time the allocator has handed it back to the system. A smaller
    /// one is a pooled buffer set's free send memory, or fresh. Says whether the chunk
    /// is full-size.
    fn send_chunk(&mut self, n: usize) -> (BytesMut, bool) {
        if n > SendBuf::CHUNK / 2 {
            self.spare_used = true;
            let free = self
                .spare
                .iter_mut()
                .position(|c| c.try_reclaim(SendBuf::CHUNK));
            let c = free.and_then(|i| self.spare.remove(i));
            return (
                c.unwrap_or_else(|| BytesMut::with_capacity(SendBuf::CHUNK)),
                true,
            );
        }
        for b in self.free.iter_mut().take(Self::SEARCH) {
            let before = b.capacity();
            if b.send.is_empty() && b.send.head.try_reclaim(n) {
                let c = std::mem::take(&mut b.send.head);
                self.bytes = self.bytes - before + b.capacity();
                return (c, std::mem::take(&mut b.send.head_full));
            }
        }
        (BytesMut::with_capacity(n), false)
    }

    /// Lets go of the spare send chunks if none was needed since the last call: an idle
    /// session does not keep the memory of its last burst.
    pub(crate) fn let_go_idle(&mut self) {
        if !std::mem::take(&mut self.spare_used) {
            self.spare = VecDeque::new();
        }
    }

    /// Keeps an emptied full-size send chunk for `send_chunk`.
    fn spare_send(&mut self, c: BytesMut) {
        if self.spare.len() >= self.spare_max {
            self.spare.pop_front();
        }
        self.spare.push_back(c);
    }

    fn put(&mut self, mut b: Box<Buffers>) {
        if b.tail.capacity() > Self::KEEP {
            b.tail = BytesMut::new();
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
    /// Extended streams only: the application shut its write side and still reads.
    Shut { fin: LocalFin, peer_fin: bool },
    /// The application released the stream.
    Closing { fin: LocalFin, peer_fin: bool },
}

impl State {
    /// Whether the peer's FIN (or RST) arrived.
    pub(crate) fn peer_fin(self) -> bool {
        match self {
            State::Open => false,
            State::PeerFin => true,
            State::Shut { peer_fin, .. } | State::Closing { peer_fin, .. } => peer_fin,
        }
    }

    /// Where our FIN is, `None` while we may still write.
    pub(crate) fn fin(self) -> Option<LocalFin> {
        match self {
            State::Open | State::PeerFin => None,
            State::Shut { fin, .. } | State::Closing { fin, .. } => Some(fin),
        }
    }

    /// Sets where our FIN is, in `Shut` and `Closing`.
    pub(crate) fn with_fin(self, f: LocalFin) -> State {
        match self {
            State::Shut { peer_fin, .. } => State::Shut { fin: f, peer_fin },
            State::Closing { peer_fin, .. } => State::Closing { fin: f, peer_fin },
            other => other,
        }
    }

    /// Whether a PSH from the peer is data for the application.
    pub(crate) fn takes_data(self) -> bool {
        matches!(
            self,
            State::Open
                | State::Shut {
                    peer_fin: false,
                    ..
                }
        )
    }
}

/// Data buffers, allocated while data flows and recycled when drained, so an idle
/// stream costs only its counters.
///
/// Received bytes are kept in order as a queue of chunks. A large piece of payload is
/// kept as a slice of the transport's read buffer, without a copy; small pieces are
/// copied into `tail`, since a slice pins its whole read allocation: a peer sending
/// small frames could otherwise make memory exceed the counted bytes by the ratio of
/// read size to frame size. Slices stay within a session-wide budget
/// (`Session::on_psh_piece`), so what they pin stays bounded.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    /// The oldest received bytes: slices of read buffers, and runs of small pieces
    /// (`tail` frozen when a slice had to follow it), with whether each is a slice.
    chunks: VecDeque<(Bytes, bool)>,
    /// Received bytes after `chunks`, copied.
    tail: BytesMut,
    /// Bytes of `chunks` that are slices of read buffers.
    sliced: usize,
    /// Bytes accepted by writes and not yet framed.
    pub(crate) send: SendBuf,
}

impl Buffers {
    /// Whether the buffers hold nothing and may be recycled.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.tail.is_empty() && self.send.is_empty()
    }

    fn capacity(&self) -> usize {
        self.tail.capacity() + self.send.head.capacity()
    }
}

/// Bytes accepted by a stream's writes and not yet framed. Frames are cut from `head`.
/// A write that does not fit in the room left goes into a new chunk rather than a
/// larger allocation: growing a buffer that holds bytes moves them all, and a stream
/// whose writes queue behind a busy socket would move its buffered bytes once per
/// doubling (more bytes than it queued, and fresh pages each time).
#[derive(Debug, Default)]
pub(crate) struct SendBuf {
    head: BytesMut,
    /// Whether `head` was a full-size chunk, to be kept for reuse once emptied.
    head_full: bool,
    /// Chunks after `head`, oldest first; empty unless writes outgrew it.
    more: VecDeque<BytesMut>,
    /// Bytes in `more`.
    more_len: usize,
}

impl SendBuf {
    /// The size chunks grow to by doubling: a frame of the reference implementation's
    /// largest, so a chunk's bytes leave in one frame.
    const CHUNK: usize = 64 * 1024;

    /// Bytes waiting to be framed.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.more_len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`, in pieces of at most `CHUNK` bytes: a piece that does not fit
    /// in the room left goes into a new chunk twice the size of the last (at most
    /// `CHUNK`), so a piece is never cut in two.
    pub(crate) fn push(&mut self, data: &[u8], pool: &mut Pool) {
        for piece in data.chunks(Self::CHUNK) {
            let n = piece.len();
            if let Some(last) = self.more.back_mut() {
                if last.capacity() - last.len() >= n {
                    last.extend_from_slice(piece);
                    self.more_len += n;
                    continue;
                }
            } else if self.head.capacity() - self.head.len() >= n {
                self.head.extend_from_slice(piece);
                continue;
            } else if self.head.is_empty() {
                // Its own memory first: likely free, as its frames left first.
                if !self.head.try_reclaim(n) {
                    let (c, full) = pool.send_chunk(n);
                    self.replace_head(c, full, pool);
                }
                self.head.extend_from_slice(piece);
                continue;
            }
            let last = self.more.back().unwrap_or(&self.head).capacity();
            let (mut c, _) = pool.send_chunk(n.max((last * 2).min(Self::CHUNK)));
            c.extend_from_slice(piece);
            self.more_len += n;
            self.more.push_back(c);
        }
    }

    /// Takes up to `max` bytes from the front, from one chunk: a frame's payload.
    pub(crate) fn take(&mut self, max: usize, pool: &mut Pool) -> Bytes {
        let out = self.head.split_to(self.head.len().min(max)).freeze();
        if self.head.is_empty() {
            if let Some(next) = self.more.pop_front() {
                self.more_len -= next.len();
                let full = next.capacity() >= Self::CHUNK;
                self.replace_head(next, full, pool);
            }
        }
        out
    }

    /// Makes `c` the head, keeping a full-size head it replaces for reuse.
    fn replace_head(&mut self, c: BytesMut, full: bool, pool: &mut Pool) {
        let old = std::mem::replace(&mut self.head, c);
        if std::mem::replace(&mut self.head_full, full) {
            pool.spare_send(old);
        }
    }

    /// Drops every byte.
    pub(crate) fn clear(&mut self) {
        self.head.clear();
        self.more.clear();
        self.more_len = 0;
    }
}

/// Flags kept in one word.
pub(crate) mod flag {
    /// In the session's round-robin queue of streams with data to frame.
    pub(crate) const IN_READY: u16 = 1;
    /// In the session's queue of streams owing a CFM.
    pub(crate) const CFM_QUEUED: u16 = 2;
    /// A write returned `Blocked`; a `Writable` event is owed when room appears.
    pub(crate) const WRITE_BLOCKED: u16 = 4;
    /// A `Readable` event is queued and not yet polled.
    pub(crate) const READABLE_QUEUED: u16 = 8;
    /// Waiting in the session's list for send-queue room.
    pub(crate) const OUT_WAITER: u16 = 16;
    /// Its turn in the send queue came: it may write while others still wait.
    pub(crate) const GRANTED: u16 = 32;
    // 64: free (it marked a reader waiting on an empty buffer).
    /// An extended stream (both SYNs, or the only one, asked for extensions).
    pub(crate) const EXT: u16 = 128;
    /// Extended: our last FIN, `FIN(1)`, left; nothing more is sent on this stream.
    pub(crate) const FINAL_SENT: u16 = 256;
    /// Extended: the peer's last FIN arrived; nothing more will come on this stream.
    pub(crate) const PEER_FINAL: u16 = 512;
    /// Extended: the receive window grew and the peer has not been told yet.
    pub(crate) const WND_OWED: u16 = 1024;
    /// Extended: aborted by a RST, sent or received; data is discarded.
    pub(crate) const RESET: u16 = 2048;
    /// Extended: the peer released the stream before our writes ended (it sent
    /// `WND(0)`): writes fail as after a base FIN, and what was not sent is dropped.
    pub(crate) const STOPPED: u16 = 4096;
    /// Extended: our last FIN is queued (it is queued once; a second entry could
    /// outlive the stream and be taken for a new stream that reuses the ID).
    pub(crate) const FINAL_QUEUED: u16 = 8192;
    /// A shutdown waits for the agreement; an `Event::Writable` is owed when it settles.
    pub(crate) const SHUT_WAITING: u16 = 16384;
}

/// One stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) state: State,
    pub(crate) flags: u16,
    /// Bytes buffered for reading.
    pub(crate) recv_len: u32,
    /// Bytes we framed and the peer has not confirmed.
    pub(crate) in_flight: u32,
    /// Bytes received and not yet confirmed by a CFM we sent (includes `recv_len`).
    pub(crate) unacked: u32,
    /// Bytes the application consumed since the last CFM was sent.
    pub(crate) consumed: u32,
    /// Unconfirmed bytes we may have in flight (the peer's receive window).
    pub(crate) send_window: u32,
    /// Unconfirmed bytes the peer may send us (our receive window).
    pub(crate) recv_window: u32,
    /// Window tuning: when the current measurement began (session microseconds, wrapping)
    /// and the bytes consumed since.
    pub(crate) tune_at: u32,
    pub(crate) tune_bytes: u32,
    /// Tells this record from earlier ones with the same ID (queued frames carry it).
    /// 16 bits fit the record's padding; a stale frame would have to wait in the queue
    /// through 65,536 stream creations to be mistaken.
    pub(crate) gen: u16,
    pub(crate) bufs: Option<Box<Buffers>>,
}

impl Stream {
    /// A stream that accepts `recv_window` unconfirmed bytes and sends `send_window`.
    pub(crate) fn new(recv_window: u32, send_window: u32, gen: u16) -> Stream {
        Stream {
            state: State::Open,
            flags: 0,
            recv_len: 0,
            in_flight: 0,
            unacked: 0,
            consumed: 0,
            send_window,
            recv_window,
            tune_at: 0,
            tune_bytes: 0,
            gen,
            bufs: None,
        }
    }

    /// Sets where our FIN is (see [`State::with_fin`]).
    pub(crate) fn set_fin(&mut self, f: LocalFin) {
        self.state = self.state.with_fin(f);
    }

    pub(crate) fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u16, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// Whether the application may still write: open, or (extended) only the peer
    /// finished, and not reset.
    pub(crate) fn writes_open(&self) -> bool {
        let open = match self.state {
            State::Open => true,
            State::PeerFin => self.has(flag::EXT),
            State::Shut { .. } | State::Closing { .. } => false,
        };
        open && !self.has(flag::RESET)
    }

    /// Whether a PSH from the peer is data for the application (not reset, and the
    /// peer has not finished).
    pub(crate) fn takes_data(&self) -> bool {
        self.state.takes_data() && !self.has(flag::RESET)
    }

    /// Bytes accepted by writes and not yet framed.
    pub(crate) fn send_len(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.send.len())
    }

    /// Room for more writes under the window.
    pub(crate) fn send_room(&self) -> usize {
        (self.send_window as usize).saturating_sub(self.in_flight as usize + self.send_len())
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

    /// Buffers a piece of received payload; returns true if it was kept as a slice
    /// (only when `may_slice` and the piece is large).
    pub(crate) fn push_recv(&mut self, piece: Bytes, may_slice: bool, pool: &mut Pool) -> bool {
        let slice = may_slice && piece.len() >= SLICE_FROM;
        if !slice {
            self.push_copy(&piece, pool);
            return false;
        }
        self.recv_len += piece.len() as u32;
        let b = self.bufs_mut(pool);
        if !b.tail.is_empty() {
            b.chunks.push_back((b.tail.split().freeze(), false));
        }
        b.sliced += piece.len();
        b.chunks.push_back((piece, true));
        true
    }

    /// Buffers a copy of a piece of received payload.
    pub(crate) fn push_copy(&mut self, piece: &[u8], pool: &mut Pool) {
        self.recv_len += piece.len() as u32;
        // Blocks grow with what the stream holds, so a stream holding a few bytes
        // costs a few bytes.
        let block = (self.recv_len as usize).clamp(64, TAIL_BLOCK);
        let b = self.bufs_mut(pool);
        // Copied into blocks, each filled before the next: growing the tail would
        // double an allocation that also holds the bytes already read from its front,
        // and a new block per piece would strand the rest of the last one.
        let mut rest = piece;
        while !rest.is_empty() {
            let room = b.tail.capacity() - b.tail.len();
            if room == 0 {
                // A tail read to the end is used again when nothing else holds
                // its memory (small frames, one after another, allocate nothing).
                if b.tail.is_empty() && b.tail.try_reclaim(block) {
                    continue;
                }
                if !b.tail.is_empty() {
                    b.chunks.push_back((b.tail.split().freeze(), false));
                }
                b.tail = BytesMut::with_capacity(block);
                continue;
            }
            let k = room.min(rest.len());
            b.tail.extend_from_slice(&rest[..k]);
            rest = &rest[k..];
        }
    }

    /// Bytes held as slices of read buffers.
    pub(crate) fn sliced(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.sliced)
    }

    /// Copies buffered bytes into `out`; returns the count.
    pub(crate) fn read_into(&mut self, out: &mut [u8], pool: &mut Pool) -> usize {
        let Some(b) = self.bufs.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while n < out.len() {
            let Some((chunk, slice)) = b.chunks.front_mut() else {
                break;
            };
            let k = chunk.len().min(out.len() - n);
            chunk.copy_to_slice(&mut out[n..n + k]);
            n += k;
            if *slice {
                b.sliced -= k;
            }
            if chunk.is_empty() {
                // Let go of the read buffer a slice pointed into.
                b.chunks.pop_front();
            }
        }
        let k = b.tail.len().min(out.len() - n);
        b.tail.copy_to_slice(&mut out[n..n + k]);
        n += k;
        self.recv_len -= n as u32;
        self.release_bufs(pool);
        n
    }

    /// Takes up to `max` buffered bytes as one chunk (without a copy).
    pub(crate) fn read_chunk(&mut self, max: usize, pool: &mut Pool) -> Bytes {
        let Some(b) = self.bufs.as_mut() else {
            return Bytes::new();
        };
        let out = match b.chunks.front_mut() {
            Some((chunk, slice)) => {
                let out = chunk.split_to(chunk.len().min(max));
                if *slice {
                    b.sliced -= out.len();
                }
                if chunk.is_empty() {
                    b.chunks.pop_front();
                }
                out
            }
            None => b.tail.split_to(b.tail.len().min(max)).freeze(),
        };
        self.recv_len -= out.len() as u32;
        self.release_bufs(pool);
        out
    }

    /// Drops every byte accepted by writes and not yet framed; returns the count.
    pub(crate) fn discard_send(&mut self, pool: &mut Pool) -> usize {
        let n = self.send_len();
        if let Some(b) = self.bufs.as_mut() {
            b.send.clear();
        }
        self.release_bufs(pool);
        n
    }

    /// Drops every buffered received byte; returns the count.
    pub(crate) fn discard_recv(&mut self, pool: &mut Pool) -> usize {
        let n = self.recv_len as usize;
        if let Some(b) = self.bufs.as_mut() {
            b.chunks.clear();
            b.tail.clear();
            b.sliced = 0;
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
            std::mem::size_of::<Stream>() <= 48,
            "{}",
            std::mem::size_of::<Stream>()
        );
    }

    /// A send chunk whose frames are still queued is not reused; once they are gone,
    /// its memory is, rather than fresh memory.
    #[test]
    fn a_send_chunk_is_reused_once_its_frames_went_out() {
        let mut pool = Pool::new(1 << 20);
        let mut send = SendBuf::default();
        send.push(&[1u8; SendBuf::CHUNK], &mut pool);
        let start = send.head.as_ptr();
        send.push(&[2u8; 100], &mut pool);
        let frame = send.take(usize::MAX, &mut pool);
        assert_eq!(frame.len(), SendBuf::CHUNK);
        let second = send.head.as_ptr();
        assert_eq!(pool.spare.len(), 1, "the emptied first chunk");
        let small = send.take(usize::MAX, &mut pool);
        assert_eq!(&small[..], &[2u8; 100][..]);
        // Both chunks are held by their frames: fresh memory.
        send.push(&[3u8; SendBuf::CHUNK], &mut pool);
        let third = send.head.as_ptr();
        assert!(third != start && third != second);
        let other = send.take(usize::MAX, &mut pool);
        // The head's own memory comes first once its frames are gone...
        drop(small);
        drop(other);
        send.push(&[4u8; SendBuf::CHUNK], &mut pool);
        assert_eq!(send.head.as_ptr(), third);
        let other = send.take(usize::MAX, &mut pool);
        // ...then the spare chunk's.
        drop(frame);
        send.push(&[5u8; SendBuf::CHUNK], &mut pool);
        assert_eq!(send.head.as_ptr(), start, "the same memory, reclaimed");
        drop(other);
        // Spare memory stays while it is used, and goes once a period passes without.
        drop(send.take(usize::MAX, &mut pool));
        assert_eq!(pool.spare.len(), 2);
        pool.let_go_idle();
        assert_eq!(pool.spare.len(), 2, "used since the last call");
        pool.let_go_idle();
        assert!(pool.spare.is_empty());
        // A pooled buffer set's send memory is found too, and the pool counts it.
        let mut pool = Pool::new(1 << 20);
        let mut b = Box::<Buffers>::default();
        b.send.push(&[6u8; 1000], &mut pool);
        let at = b.send.head.as_ptr();
        drop(b.send.take(usize::MAX, &mut pool));
        pool.put(b);
        let (chunk, full) = pool.send_chunk(1000);
        assert_eq!((chunk.as_ptr(), full), (at, false));
        let held: usize = pool.free.iter().map(|b| b.capacity()).sum();
        assert_eq!(pool.bytes, held);
    }

    /// Buffered bytes never move: a write that does not fit goes into a new chunk,
    /// chunks grow by doubling, and bytes come out in order, each frame from one chunk.
    #[test]
    fn send_bytes_stay_where_they_were_written() {
        let mut pool = Pool::new(1 << 20);
        let mut send = SendBuf::default();
        let mut written = Vec::new();
        let mut starts = Vec::new();
        for i in 0..40u32 {
            let data: Vec<u8> = (0..1000 + i * 97).map(|j| (i * 7 + j) as u8).collect();
            send.push(&data, &mut pool);
            written.extend_from_slice(&data);
            starts.push(send.head.as_ptr());
        }
        assert_eq!(send.len(), written.len());
        assert!(
            starts.iter().all(|&p| p == starts[0]),
            "the first chunk moved"
        );
        let sizes: Vec<usize> = send.more.iter().map(|c| c.capacity()).collect();
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
        assert!(sizes.iter().all(|&c| c <= SendBuf::CHUNK), "{sizes:?}");
        let mut read = Vec::new();
        while !send.is_empty() {
            let before = send.len();
            let frame = send.take(5000, &mut pool);
            assert!(!frame.is_empty() && frame.len() <= 5000);
            assert_eq!(send.len(), before - frame.len());
            read.extend_from_slice(&frame);
        }
        assert_eq!(read, written);
        assert!(send.more.is_empty());
        // A write larger than a chunk fills whole chunks, behind the rest.
        send.push(b"x", &mut pool);
        send.push(&vec![9u8; 3 * SendBuf::CHUNK - 1], &mut pool);
        assert_eq!(&send.take(usize::MAX, &mut pool)[..], b"x");
        for n in [SendBuf::CHUNK, SendBuf::CHUNK, SendBuf::CHUNK - 1] {
            assert_eq!(send.take(usize::MAX, &mut pool).len(), n);
        }
        assert!(send.is_empty());
    }

    #[test]
    fn received_bytes_are_read_in_order_and_buffers_recycled() {
        let mut pool = Pool::new(1 << 20);
        let mut s = Stream::new(1 << 20, 1 << 20, 0);
        s.push_recv(Bytes::from_static(b"ab"), true, &mut pool);
        s.push_recv(Bytes::from_static(b"cd"), true, &mut pool);
        s.push_recv(Bytes::from(vec![9u8; 20_000]), true, &mut pool);
        s.push_recv(Bytes::from_static(b"ef"), true, &mut pool);
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
        s.push_recv(Bytes::from_static(b"x"), true, &mut pool);
        assert!(pool.free.is_empty(), "and come out of it again");
    }

    #[test]
    fn large_pieces_are_kept_without_a_copy_and_read_in_order() {
        let mut pool = Pool::new(1 << 20);
        let mut s = Stream::new(1 << 20, 1 << 20, 0);
        let big = Bytes::from(vec![3u8; 64 * 1024]);
        assert!(s.push_recv(big.clone(), true, &mut pool));
        // Small pieces are copied; a large one behind them is a slice again.
        assert!(!s.push_recv(Bytes::from_static(b"small"), true, &mut pool));
        let big2 = Bytes::from(vec![4u8; 32 * 1024]);
        assert!(s.push_recv(big2.clone(), true, &mut pool));
        assert!(!s.push_recv(Bytes::from_static(b"end"), true, &mut pool));
        assert_eq!(s.sliced(), 96 * 1024);
        let first = s.read_chunk(usize::MAX, &mut pool);
        assert_eq!(first.as_ptr(), big.as_ptr(), "kept as a slice");
        assert_eq!(
            s.read_chunk(usize::MAX, &mut pool),
            Bytes::from_static(b"small")
        );
        let mut out = vec![0u8; 40 * 1024];
        assert_eq!(s.read_into(&mut out, &mut pool), 32 * 1024 + 3);
        assert!(out[..32 * 1024].iter().all(|b| *b == 4));
        assert_eq!(&out[32 * 1024..32 * 1024 + 3], b"end");
        assert_eq!(s.sliced(), 0);
        assert!(s.bufs.is_none(), "drained buffers go back to the pool");
        // No slice budget left: copied, so nothing stays pinned.
        assert!(!s.push_recv(big.clone(), false, &mut pool));
        assert_ne!(s.read_chunk(usize::MAX, &mut pool).as_ptr(), big.as_ptr());
    }
}
