//! A loopback TCP relay between our end and a reference end. It reads every frame
//! going through and changes none, nor their order; it only decides when to forward.
//!
//! * **Late frames.** It counts the PSH frames the reference sends on a stream after
//!   its own FIN for that stream whose payload starts with the flood byte `0xAA` (the
//!   `scenarios` program's `F` command writes only that byte), until either end opens
//!   that ID again: proof that the reference did send data after its FIN.
//! * **Confirmations with the FIN** ([`Options::cfm_with_fin`]). Our CFMs for a stream
//!   wait (at most [`HOLD`]) until our FIN for it, and then reach the reference in the
//!   same write: the reference learns that its window reopened in the same instant as
//!   it learns that the stream is closed, which is when a `Write` in progress goes on
//!   sending after its FIN.
//! * **Crossing FINs** ([`Options::cross_fins`]). A FIN is forwarded only once the other
//!   end has sent its own FIN for that stream too (at most [`HOLD`]): neither end
//!   receives the other's FIN before sending its own, so every close is simultaneous.
//!
//! Each direction has a reader that records every frame as soon as it arrives and a
//! forwarder that writes them on, so a direction that holds a frame back never stops
//! the other from seeing what it waits for.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::adapter::runtime;
use crate::lock;
use crate::wire::{CFM, FIN, HEADER, PSH, SYN};

/// The longest a frame is held back.
pub const HOLD: Duration = Duration::from_secs(3);

/// Which side of the relay the reference is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceIs {
    /// The relay connects to the reference (it is the server).
    Target,
    /// The reference connects to the relay (it is the dialer).
    Client,
}

/// What the relay does besides forwarding.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Where the reference is.
    pub reference: ReferenceIs,
    /// Forward each FIN only once the other end sent its own for that stream.
    pub cross_fins: bool,
    /// Hold our CFMs for a stream until our FIN for it.
    pub cfm_with_fin: bool,
}

/// What the relay saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// PSH frames of flood data the reference sent on a stream after its FIN.
    pub late_psh: AtomicU64,
    /// Their payload bytes.
    pub late_bytes: AtomicU64,
    /// FINs forwarded (with `cross_fins`) only after the other end's FIN for the same
    /// stream had arrived.
    pub crossed_fins: AtomicU64,
    /// Held frames forwarded after [`HOLD`], without what they waited for.
    pub gave_up: AtomicU64,
}

/// Per direction and stream ID: FINs read so far.
type FinCounts = [Mutex<HashMap<u16, u64>>; 2];

/// A running relay; stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on a loopback port and relays each connection to `target`.
    pub fn start(target: SocketAddr, options: Options) -> Relay {
        let _guard = runtime().enter();
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        std.set_nonblocking(true).expect("non-blocking listener");
        let listener = TcpListener::from_std(std).expect("relay listener");
        let addr = listener.local_addr().expect("relay address");
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let task = runtime().spawn(async move {
            while let Ok((a, _)) = listener.accept().await {
                let Ok(b) = TcpStream::connect(target).await else {
                    continue;
                };
                let _ = (a.set_nodelay(true), b.set_nodelay(true));
                let (ar, aw) = a.into_split();
                let (br, bw) = b.into_split();
                // Direction 0 goes from the client to the target, 1 back.
                let from_reference = usize::from(options.reference == ReferenceIs::Target);
                let fins: Arc<FinCounts> = Arc::default();
                let after_fin: Arc<Mutex<HashSet<u16>>> = Arc::default();
                for (dir, r, w) in [(0usize, ar, bw), (1, br, aw)] {
                    let pump = Pump {
                        dir,
                        from_reference: dir == from_reference,
                        options,
                        fins: fins.clone(),
                        seen: s.clone(),
                        after_fin: after_fin.clone(),
                    };
                    tokio::spawn(pump.run(r, w));
                }
            }
        });
        Relay { addr, seen, task }
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn seen(&self) -> &Seen {
        &self.seen
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction of one relayed connection.
struct Pump {
    dir: usize,
    from_reference: bool,
    options: Options,
    fins: Arc<FinCounts>,
    seen: Arc<Seen>,
    /// Streams the reference sent its FIN for and nobody opened again since: their
    /// flood PSH frames are late.
    after_fin: Arc<Mutex<HashSet<u16>>>,
}

/// A frame on its way, with the FINs read for its stream in its direction so far
/// (for a FIN: including itself).
struct Frame {
    bytes: Vec<u8>,
    cmd: u8,
    id: u16,
    fins: u64,
}

impl Pump {
    async fn run(self, mut r: OwnedReadHalf, w: OwnedWriteHalf) {
        let (tx, rx) = mpsc::unbounded_channel::<Frame>();
        let this = Arc::new(self);
        let forwarder = tokio::spawn(this.clone().forward(rx, w));
        let mut buf = Vec::with_capacity(1 << 20);
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let Some(len) = frame_len(&buf[at..]) {
                if tx.send(this.inspect(&buf[at..at + len])).is_err() {
                    return;
                }
                at += len;
            }
            buf.drain(..at);
        }
        if !buf.is_empty() {
            // A partial frame at the end: pass it on as it is.
            let bytes = std::mem::take(&mut buf);
            let _ = tx.send(Frame {
                bytes,
                cmd: u8::MAX,
                id: 0,
                fins: 0,
            });
        }
        drop(tx);
        let _ = forwarder.await;
    }

    /// Writes the frames on, in order, all that are ready in one write; holds some.
    async fn forward(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Frame>,
        mut w: OwnedWriteHalf,
    ) {
        let mut out = Vec::new();
        while let Some(mut f) = rx.recv().await {
            loop {
                let mut ok = self.may_go(&f);
                if !ok {
                    // Nothing waits behind a held frame that did not have to.
                    if !out.is_empty() && w.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    ok = self.hold(&f).await;
                }
                if ok && f.cmd == FIN && self.options.cross_fins {
                    self.seen.crossed_fins.fetch_add(1, Ordering::Relaxed);
                }
                out.extend_from_slice(&f.bytes);
                match rx.try_recv() {
                    Ok(next) => f = next,
                    Err(_) => break,
                }
            }
            if w.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        // The connection ended on this side: pass that on.
        let _ = w.shutdown().await;
    }

    /// Records what `bytes` (one whole frame) means.
    fn inspect(&self, bytes: &[u8]) -> Frame {
        let cmd = bytes[0];
        let id = u16::from_le_bytes([bytes[1], bytes[2]]);
        let fins = {
            let mut mine = lock(&self.fins[self.dir]);
            let k = mine.entry(id).or_insert(0);
            *k += u64::from(cmd == FIN);
            *k
        };
        match cmd {
            FIN if self.from_reference => {
                lock(&self.after_fin).insert(id);
            }
            SYN => {
                // A new stream with this ID: its data is not late, whatever it is.
                lock(&self.after_fin).remove(&id);
            }
            PSH if self.from_reference
                && bytes.get(HEADER) == Some(&0xAA)
                && lock(&self.after_fin).contains(&id) =>
            {
                self.seen.late_psh.fetch_add(1, Ordering::Relaxed);
                self.seen
                    .late_bytes
                    .fetch_add((bytes.len() - HEADER) as u64, Ordering::Relaxed);
            }
            _ => {}
        }
        Frame {
            bytes: bytes.to_vec(),
            cmd,
            id,
            fins,
        }
    }

    /// What `f` waits for, if anything: a FIN count of one direction for its stream.
    fn waits_for(&self, f: &Frame) -> Option<(&Mutex<HashMap<u16, u64>>, u64)> {
        match f.cmd {
            FIN if self.options.cross_fins => Some((&self.fins[1 - self.dir], f.fins)),
            CFM if self.options.cfm_with_fin && !self.from_reference => {
                Some((&self.fins[self.dir], f.fins + 1))
            }
            _ => None,
        }
    }

    fn may_go(&self, f: &Frame) -> bool {
        self.waits_for(f)
            .is_none_or(|(counts, need)| lock(counts).get(&f.id).copied().unwrap_or(0) >= need)
    }

    /// Waits, at most [`HOLD`], until `f` may go; false if it gave up.
    async fn hold(&self, f: &Frame) -> bool {
        let end = Instant::now() + HOLD;
        while !self.may_go(f) {
            if Instant::now() >= end {
                self.seen.gave_up.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // What it waited for was counted just before being queued: let that arrive
        // too, so that both leave in one write.
        tokio::task::yield_now().await;
        true
    }
}

/// The length of the complete frame at the start of `buf`, if there is one.
fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER {
        return None;
    }
    let len = if buf[0] == PSH {
        HEADER + u32::from_le_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize
    } else {
        HEADER
    };
    (buf.len() >= len).then_some(len)
}
