//! What the bodies share: hang guards and background calls, session pairs, raw TCP
//! peers (with small socket buffers when a test needs the transport to back up), and
//! seeded data with checksums.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use smux_proto::{Config, Role};
use smux_tests::conformance::{Adapter, Listener, Session, Stream};
use smux_tests::wire::{Frame, Frames, Parser};
use smux_tests::{pattern, Checksum};

/// The hang guard of every test: generous, the machine is shared.
const GUARD: Duration = Duration::from_secs(180);

/// Runs a body under the hang guard; its panic is the test's.
pub fn guard(test: &str, body: fn()) {
    let task = Task::spawn(body);
    match task.rx.recv_timeout(GUARD) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => resume_unwind(panic),
        Err(_) => panic!("{test}: did not finish within {GUARD:?} (hang guard)"),
    }
}

/// A call running on its own thread.
pub struct Task<T> {
    rx: mpsc::Receiver<thread::Result<T>>,
    done: Option<thread::Result<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// Starts `f` on a new thread.
    pub fn spawn(f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        Task { rx, done: None }
    }

    /// True once the call has returned.
    pub fn is_finished(&mut self) -> bool {
        if self.done.is_none() {
            self.done = self.rx.try_recv().ok();
        }
        self.done.is_some()
    }

    /// Its result, if it returns within `limit` (a panic in it is re-raised).
    pub fn wait(&mut self, limit: Duration) -> Option<T> {
        let r = match self.done.take() {
            Some(r) => r,
            None => self.rx.recv_timeout(limit).ok()?,
        };
        Some(r.unwrap_or_else(|p| resume_unwind(p)))
    }

    /// Its result; fails the test if it takes longer than `secs` seconds.
    pub fn join(mut self, secs: u64, what: &str) -> T {
        match self.wait(Duration::from_secs(secs)) {
            Some(v) => v,
            None => panic!("{what}: did not return within {secs} s"),
        }
    }
}

/// Waits until `cond` holds; fails the test after `secs` seconds.
pub fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {secs} s");
        thread::sleep(Duration::from_millis(2));
    }
}

/// `ms` milliseconds.
pub fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// `secs` seconds from now.
pub fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// The default configuration with extensions on or off.
pub fn config(ext: bool) -> Config {
    Config::default().with_extensions(ext)
}

/// A 64 KiB window that does not grow (32 KiB confirm threshold, 16 KiB frames):
/// windows fill fast.
pub fn small(ext: bool) -> Config {
    config(ext)
        .with_window(64 * 1024)
        .with_max_window(64 * 1024)
        .with_cfm_threshold(32 * 1024)
        .with_max_frame(16 * 1024)
}

/// A dialler and an acceptor over loopback TCP, not waiting for the agreement.
pub fn pair_unsettled<A: Adapter>(client: Config, server: Config) -> (A::Session, A::Session) {
    let listener = A::bind(server).expect("bind");
    let addr = listener.local_addr();
    let accepted = Task::spawn(move || listener.accept());
    let c = A::connect(addr, client).expect("connect");
    let s = accepted.join(20, "accept a session").expect("accept");
    (c, s)
}

/// Like [`pair_unsettled`], and when both have extensions on, both agreed on them.
pub fn pair<A: Adapter>(client: Config, server: Config) -> (A::Session, A::Session) {
    let both = client.extensions() && server.extensions();
    let (c, s) = pair_unsettled::<A>(client, server);
    if both {
        assert!(c.ready().expect("dialer ready"), "dialer agreed");
        assert!(s.ready().expect("acceptor ready"), "acceptor agreed");
    }
    (c, s)
}

/// A connected loopback TCP pair: (dialler's end, acceptor's end).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (a, _) = l.accept().expect("accept");
    c.set_nodelay(true).expect("nodelay");
    a.set_nodelay(true).expect("nodelay");
    (c, a)
}

/// A loopback TCP pair whose send and receive buffers are small (the kernel rounds
/// them), so a peer that stops reading pushes back after little data: (ours, raw).
pub fn small_buffer_pair() -> (TcpStream, TcpStream) {
    use socket2::{Domain, Socket, Type};
    const SIZE: usize = 8 * 1024;
    let small = || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_recv_buffer_size(SIZE).expect("SO_RCVBUF");
        s.set_send_buffer_size(SIZE).expect("SO_SNDBUF");
        s
    };
    let (l, c) = (small(), small());
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    l.bind(&any.into()).expect("bind");
    l.listen(4).expect("listen");
    c.connect(&l.local_addr().expect("addr")).expect("connect");
    let (a, _) = l.accept().expect("accept");
    let (c, a): (TcpStream, TcpStream) = (c.into(), a.into());
    c.set_nodelay(true).expect("nodelay");
    (c, a)
}

/// A session of `A` dialled to a raw TCP peer: (session, the peer).
pub fn dial_raw<A: Adapter>(config: Config) -> (A::Session, RawPeer) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let s = A::connect(l.local_addr().expect("addr"), config).expect("connect");
    let (raw, _) = l.accept().expect("accept");
    raw.set_nodelay(true).expect("nodelay");
    (s, RawPeer::new(raw))
}

/// A session of `A` over `ours` as the dialler, its peer raw.
pub fn raw_peer_of<A: Adapter>(
    ours: TcpStream,
    raw: TcpStream,
    config: Config,
) -> (A::Session, RawPeer) {
    let s = A::new_session(ours, config, Role::Dialer).expect("session");
    (s, RawPeer::new(raw))
}

/// A peer that speaks the wire protocol by hand.
pub struct RawPeer {
    /// Its socket.
    pub tcp: TcpStream,
    parser: Parser,
}

/// How a raw peer's reading ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A clean end-of-file.
    Eof,
    /// A read error (a reset connection).
    Error(io::ErrorKind),
}

impl RawPeer {
    /// Wraps a connected socket.
    pub fn new(tcp: TcpStream) -> RawPeer {
        RawPeer {
            tcp,
            parser: Parser::new(),
        }
    }

    /// Writes `frames`.
    pub fn send(&mut self, frames: &Frames) {
        self.tcp
            .write_all(frames.as_bytes())
            .expect("raw peer write");
    }

    /// The next frame; `Err` at end-of-file, on an error, or after `limit`.
    pub fn frame(&mut self, limit: Duration) -> Result<Frame, End> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(f) = self.parser.next_frame() {
                return Ok(f);
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "raw peer: no frame within {limit:?}");
            self.tcp.set_read_timeout(Some(left)).expect("timeout");
            match self.tcp.read(&mut buf) {
                Ok(0) => return Err(End::Eof),
                Ok(n) => self.parser.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(End::Error(e.kind())),
            }
        }
    }

    /// Frames until `want` matches one (returned with those before it).
    pub fn until(&mut self, secs: u64, want: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut seen = Vec::new();
        loop {
            match self.frame(Duration::from_secs(secs)) {
                Ok(f) => {
                    let hit = want(&f);
                    seen.push(f);
                    if hit {
                        return seen;
                    }
                }
                Err(end) => panic!("raw peer: connection ended ({end:?}) after {seen:?}"),
            }
        }
    }

    /// Every frame until the connection ends, and how it ended.
    pub fn read_to_end(&mut self, secs: u64) -> (Vec<Frame>, End) {
        let mut seen = Vec::new();
        loop {
            match self.frame(Duration::from_secs(secs)) {
                Ok(f) => seen.push(f),
                Err(end) => return (seen, end),
            }
        }
    }
}

/// Per stream number: the bytes of its PSH frames, as (count, checksum).
pub fn tally(frames: &[Frame]) -> std::collections::BTreeMap<u16, (u64, u64)> {
    let mut sums = std::collections::BTreeMap::<u16, Checksum>::new();
    for f in frames.iter().filter(|f| f.cmd == smux_tests::wire::PSH) {
        sums.entry(f.id).or_default().update(&f.payload);
    }
    sums.into_iter()
        .map(|(id, c)| (id, (c.len(), c.sum())))
        .collect()
}

/// Writes `len` bytes of pattern `seed` to `s`.
pub fn send_pattern<S: Stream>(s: &S, seed: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern(seed, off, &mut buf[..n]);
        s.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// Reads exactly `len` bytes from `s`; their checksum.
pub fn recv_sum<S: Stream>(s: &S, len: u64) -> io::Result<u64> {
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 32 * 1024];
    while c.len() < len {
        let want = (len - c.len()).min(buf.len() as u64) as usize;
        match s.read(&mut buf[..want])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => c.update(&buf[..n]),
        }
    }
    Ok(c.sum())
}

/// Reads `s` to end-of-file: (bytes, checksum).
pub fn recv_to_end<S: Stream>(s: &S) -> io::Result<(u64, u64)> {
    let mut c = Checksum::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match s.read(&mut buf)? {
            0 => return Ok((c.len(), c.sum())),
            n => c.update(&buf[..n]),
        }
    }
}
