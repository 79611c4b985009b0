//! Outgoing bytes: a list of segments ready for one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::Header;

/// Payloads shorter than this are copied next to their header, so small frames go out
/// as one segment; longer ones become their own segment without a copy.
const CHAIN_THRESHOLD: usize = 1024;

/// Bytes the session has handed over for the transport, in order.
///
/// The adapter owns one `Transmit` per session and reuses it: `Session::poll_transmit`
/// appends frames, the adapter writes [`Transmit::io_slices`] with one vectored write
/// and calls [`Transmit::advance`] with the count the transport took. Everything in
/// it counts as sent: the adapter must write all of it unless the transport fails.
#[derive(Debug, Default)]
pub struct Transmit {
    segments: VecDeque<Bytes>,
    staging: BytesMut,
    len: usize,
}

impl Transmit {
    /// An empty transmit buffer.
    pub fn new() -> Transmit {
        Transmit::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `out` with slices of the waiting bytes, in order; returns how many were
    /// filled. Pass them to `write_vectored`.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, seg) in out.iter_mut().zip(self.segments.iter()) {
            *slot = IoSlice::new(seg);
            n += 1;
        }
        n
    }

    /// The first contiguous run of waiting bytes (empty when none).
    pub fn chunk(&self) -> &[u8] {
        self.segments.front().map_or(&[], |b| b)
    }

    /// Drops the first `n` bytes, which the transport has taken.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advance past the end of the transmit buffer");
        self.len -= n;
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.segments.pop_front();
        }
    }

    /// Moves every waiting byte into `out` (a `Vec<u8>` or `BytesMut`), for in-memory
    /// links and tests.
    pub fn drain_into(&mut self, out: &mut impl BufMut) {
        for seg in self.segments.drain(..) {
            out.put_slice(&seg);
        }
        self.len = 0;
    }

    pub(crate) fn push_header(&mut self, header: Header) {
        header.encode(&mut self.staging);
        self.len += crate::frame::HEADER_LEN;
    }

    pub(crate) fn push_payload(&mut self, payload: Bytes) {
        self.len += payload.len();
        if payload.len() < CHAIN_THRESHOLD {
            self.staging.put_slice(&payload);
        } else {
            self.seal();
            self.segments.push_back(payload);
        }
    }

    /// Puts `a` then `b` (copied) ahead of every waiting byte.
    pub(crate) fn push_front_raw(&mut self, a: &[u8], b: &[u8]) {
        let mut seg = BytesMut::with_capacity(a.len() + b.len());
        seg.put_slice(a);
        seg.put_slice(b);
        if !seg.is_empty() {
            self.len += seg.len();
            self.segments.push_front(seg.freeze());
        }
    }

    /// Turns staged header bytes into a segment. Called before the adapter looks.
    pub(crate) fn seal(&mut self) {
        if !self.staging.is_empty() {
            if self.staging.capacity() - self.staging.len() < 64 {
                // Let the allocation be reclaimed once written segments are dropped.
                self.staging.reserve(4096);
            }
            self.segments.push_back(self.staging.split().freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Cmd;

    #[test]
    fn segments_keep_order_and_advance_across_them() {
        let mut t = Transmit::new();
        t.push_header(Header::new(Cmd::Psh, 1, 2000));
        t.push_payload(Bytes::from(vec![7u8; 2000]));
        t.push_header(Header::new(Cmd::Psh, 1, 3));
        t.push_payload(Bytes::from_static(b"abc"));
        t.seal();
        assert_eq!(t.len(), 7 + 2000 + 7 + 3);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(t.io_slices(&mut slices), 3);
        t.advance(5);
        assert_eq!(t.chunk().len(), 2);
        t.advance(2 + 1999);
        assert_eq!(t.chunk(), &[7]);
        let mut rest = Vec::new();
        t.drain_into(&mut rest);
        assert_eq!(rest.len(), 1 + 10);
        assert_eq!(&rest[rest.len() - 3..], b"abc");
        assert!(t.is_empty());
    }
}
