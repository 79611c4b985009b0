//! A delayed loopback link for the lfn scenario: a small TCP relay on 127.0.0.1 that
//! forwards each accepted connection to an upstream address, holding every chunk for
//! a one-way delay and pacing each direction to a bandwidth.
//!
//! Each direction is a reader thread and a writer thread around a queue. The reader
//! takes what the source socket has (at most [`CHUNK`] bytes), gives it the time the
//! link finishes serialising it (`max(now, link free) + len / rate`) plus the delay,
//! and queues it; the writer sleeps until that time and writes it out. The queue holds
//! at most [`Shape::capacity`] bytes (the round-trip bandwidth-delay product): at the
//! bound the reader stops reading, so the sender's TCP connection pushes back instead
//! of the link dropping anything. End-of-file travels like data (the writer shuts down
//! its side once everything before it was delivered), so half-close works through it.
//!
//! The relay terminates TCP on both sides: TCP's own flow control sees loopback, and
//! only application-level flow control (a multiplexer's stream windows and their
//! confirmations) pays the round trip. Raw TCP through the relay thus shows what the
//! link itself carries.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Largest chunk read from a socket at once (and so the pacing granularity).
pub const CHUNK: usize = 64 * 1024;

/// Smallest queue of a direction, whatever the bandwidth-delay product.
const MIN_CAPACITY: usize = 256 * 1024;

/// The link's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// One-way delay added to every chunk.
    pub delay: Duration,
    /// Bandwidth of each direction, bits per second.
    pub rate_bits: u64,
}

impl Shape {
    /// Round-trip time of an empty link.
    pub fn rtt(&self) -> Duration {
        2 * self.delay
    }

    /// Bandwidth of each direction in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.rate_bits as f64 / 8.0
    }

    /// Bytes a direction holds at most: the round-trip bandwidth-delay product, i.e.
    /// one one-way delay's worth on the wire plus as much again queued before the
    /// bottleneck, so a window of one round trip fills the link and a larger one only
    /// queues (and, past this, waits in the sender's socket).
    pub fn capacity(&self) -> usize {
        let bdp = self.bytes_per_sec() * self.rtt().as_secs_f64();
        (bdp as usize).max(MIN_CAPACITY)
    }

    /// Time the link takes to serialise `n` bytes.
    fn serialise(&self, n: usize) -> Duration {
        Duration::from_secs_f64(n as f64 / self.bytes_per_sec())
    }
}

/// A running relay; dropping it shuts every connection through it down.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    stop: AtomicBool,
    /// Every socket of the relay, to shut down when it is dropped (that wakes the
    /// threads blocked on them).
    sockets: Mutex<Vec<TcpStream>>,
    /// The queues, to wake their waiting threads when it is dropped.
    lines: Mutex<Vec<Arc<Line>>>,
}

impl Relay {
    /// Listens on 127.0.0.1 and forwards each connection to `upstream` through a link
    /// of `shape`.
    pub fn start(upstream: SocketAddr, shape: Shape) -> io::Result<Relay> {
        if shape.rate_bits == 0 {
            return Err(io::Error::other("link rate must be positive"));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
            lines: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        thread::Builder::new()
            .name("lfn-relay".into())
            .spawn(move || {
                while let Ok((down, _)) = listener.accept() {
                    if sh.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(e) = connect(&sh, down, upstream, shape) {
                        tracing::debug!("lfn relay: {e}");
                    }
                }
            })?;
        Ok(Relay { addr, shared })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        for line in self.shared.lines.lock().unwrap().drain(..) {
            line.close();
        }
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Connects `down` (an accepted client) to `upstream` and starts both directions.
fn connect(
    shared: &Arc<Shared>,
    down: TcpStream,
    upstream: SocketAddr,
    shape: Shape,
) -> io::Result<()> {
    let up = TcpStream::connect(upstream)?;
    for s in [&down, &up] {
        s.set_nodelay(true)?;
    }
    {
        let mut sockets = shared.sockets.lock().unwrap();
        sockets.push(down.try_clone()?);
        sockets.push(up.try_clone()?);
    }
    let down2 = down.try_clone()?;
    let up2 = up.try_clone()?;
    direction(shared, down, up, shape)?;
    direction(shared, up2, down2, shape)?;
    Ok(())
}

/// Chunks read and not yet written, each with the time it is due at the far end;
/// `None` is end-of-file.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<(Instant, Option<Vec<u8>>)>,
    bytes: usize,
    closed: bool,
}

/// One direction's queue.
#[derive(Default)]
struct Line {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Line {
    fn close(&self) {
        self.queue.lock().unwrap().closed = true;
        self.changed.notify_all();
    }
}

/// Starts the threads that carry `src`'s bytes to `dst`.
fn direction(
    shared: &Arc<Shared>,
    mut src: TcpStream,
    mut dst: TcpStream,
    shape: Shape,
) -> io::Result<()> {
    let line = Arc::new(Line::default());
    shared.lines.lock().unwrap().push(line.clone());
    let cap = shape.capacity();
    let reader = {
        let line = line.clone();
        move || {
            let mut buf = vec![0u8; CHUNK];
            let mut link_free = Instant::now();
            loop {
                {
                    let mut q = line.queue.lock().unwrap();
                    while q.bytes >= cap && !q.closed {
                        q = line.changed.wait(q).unwrap();
                    }
                    if q.closed {
                        return;
                    }
                }
                // An error (the peer reset, or the relay is stopping) ends the
                // direction like end-of-file.
                let n = src.read(&mut buf).unwrap_or(0);
                let now = Instant::now();
                link_free = link_free.max(now) + shape.serialise(n);
                let due = link_free + shape.delay;
                let mut q = line.queue.lock().unwrap();
                if n == 0 {
                    q.chunks.push_back((due, None));
                    line.changed.notify_all();
                    return;
                }
                q.chunks.push_back((due, Some(buf[..n].to_vec())));
                q.bytes += n;
                line.changed.notify_all();
            }
        }
    };
    let writer = move || loop {
        // Only this thread pops, so the front seen here is still the front after
        // the sleep.
        let due = {
            let mut q = line.queue.lock().unwrap();
            loop {
                if q.closed {
                    return;
                }
                if let Some((due, _)) = q.chunks.front() {
                    break *due;
                }
                q = line.changed.wait(q).unwrap();
            }
        };
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let chunk = {
            let mut q = line.queue.lock().unwrap();
            match q.chunks.pop_front() {
                Some((_, c)) => c,
                None => return,
            }
        };
        let Some(chunk) = chunk else {
            let _ = dst.shutdown(Shutdown::Write);
            return;
        };
        let ok = dst.write_all(&chunk).is_ok();
        let mut q = line.queue.lock().unwrap();
        q.bytes -= chunk.len();
        if !ok {
            // The far end is gone: stop reading too.
            q.closed = true;
        }
        drop(q);
        line.changed.notify_all();
        if !ok {
            return;
        }
    };
    thread::Builder::new()
        .name("lfn-read".into())
        .spawn(reader)?;
    thread::Builder::new()
        .name("lfn-write".into())
        .spawn(writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes pushed through the relay one way come out complete, in order, no
    /// earlier than the delay, and end-of-file follows them (half-close passes).
    #[test]
    fn relay_delays_and_keeps_every_byte() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let shape = Shape {
            delay: Duration::from_millis(20),
            rate_bits: 200_000_000,
        };
        let relay = Relay::start(server.local_addr().unwrap(), shape).unwrap();
        let mut client = TcpStream::connect(relay.addr()).unwrap();
        let (mut far, _) = server.accept().unwrap();
        far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // More than the relay holds, so the reader must stop and resume.
        let total = 3 * shape.capacity() + 12_345;
        let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
        let sent = Instant::now();
        let writer = {
            let data = data.clone();
            thread::spawn(move || {
                client.write_all(&data).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                client
            })
        };
        let mut first = [0u8; 1];
        far.read_exact(&mut first).unwrap();
        assert!(sent.elapsed() >= shape.delay, "{:?}", sent.elapsed());
        let mut got = vec![first[0]];
        far.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
        // The other direction still works after this one finished.
        let mut client = writer.join().unwrap();
        far.write_all(b"back").unwrap();
        let mut back = [0u8; 4];
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"back");
        drop(relay);
        // Dropped: the connection through it ends.
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }
}
