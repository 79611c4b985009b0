//! The transport fails at a random point of a busy session: every pending operation on
//! every stream returns an error promptly, the driver task (Tokio, smol) or both
//! session threads (blocking) end, nothing panics.
//!
//! Faults: a connection reset (a proxy in the middle closes both sockets with
//! SO_LINGER 0), a graceful close by that proxy (FIN both ways, possibly inside a
//! frame), `shutdown(Both)` on our own socket, and a wrapper transport that makes a
//! read or a write fail after a random number of bytes. The busy session: streams
//! opened by both ends, each with a writer and a reader at both ends; on half of them
//! one end reads slowly, so writers are blocked on the window when the fault hits.
//!
//! Rounds alternate between extensions on (the dialling end settles the agreement
//! first with `ready()`, so the streams are extended) and off (base streams), so both
//! kinds of stream meet every fault: Tokio runs each fault in both settings, blocking
//! and smol alternate from fault to fault in opposite order.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smux_tests::{lock, run, seed, serial, within, Rng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How the transport fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The connection is reset (RST) by a proxy in the middle.
    Reset,
    /// The proxy closes both directions gracefully, possibly inside a frame.
    Close,
    /// `shutdown(Both)` on the dialling session's own socket.
    Shutdown,
    /// The dialling session's transport fails a read after some bytes.
    ReadError,
    /// The dialling session's transport fails a write after some bytes.
    WriteError,
}

const FAULTS: [Fault; 5] = [
    Fault::Reset,
    Fault::Close,
    Fault::Shutdown,
    Fault::ReadError,
    Fault::WriteError,
];

/// Hang guard for everything to end once the fault happened.
const END_BOUND: u64 = 15;

/// The configuration of a round: the defaults, with extensions on or off.
fn config(extensions: bool) -> smux_proto::Config {
    smux_proto::Config::default().with_extensions(extensions)
}

/// Checks what the dialling end's `ready()` returned: both ends agreed (the acceptor
/// settles on the dialer's ASK, before its HELLO goes back), unless the fault came
/// first and ended the session (the round then runs on a dead session).
fn check_agreed(ready: io::Result<bool>, acceptor_agreed: bool, fired: &Fired) {
    if lock(fired).is_none() {
        let agreed = ready.expect("ready() before the fault");
        assert!(agreed && acceptor_agreed, "the ends agreed");
    }
}

/// Shared by the fault injectors: when the fault fired.
type Fired = Arc<Mutex<Option<Instant>>>;

fn fire(f: &Fired) {
    lock(f).get_or_insert_with(Instant::now);
}

fn injected(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, "injected transport fault")
}

// ----- Tokio ---------------------------------------------------------------------------

/// A Tokio transport whose reads (or writes) fail after a byte budget.
struct FaultyIo {
    io: TcpStream,
    read_left: usize,
    write_left: usize,
    scratch: Vec<u8>,
    fired: Fired,
}

impl AsyncRead for FaultyIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.read_left == 0 {
            fire(&this.fired);
            return Poll::Ready(Err(injected(io::ErrorKind::ConnectionReset)));
        }
        let max = buf.remaining().min(this.read_left);
        this.scratch.resize(max, 0);
        let mut sub = ReadBuf::new(&mut this.scratch[..max]);
        match Pin::new(&mut this.io).poll_read(cx, &mut sub) {
            Poll::Ready(Ok(())) => {
                let n = sub.filled().len();
                buf.put_slice(&this.scratch[..n]);
                this.read_left -= n;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for FaultyIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_left == 0 {
            fire(&this.fired);
            return Poll::Ready(Err(injected(io::ErrorKind::BrokenPipe)));
        }
        let n = data.len().min(this.write_left);
        let r = Pin::new(&mut this.io).poll_write(cx, &data[..n]);
        if let Poll::Ready(Ok(k)) = r {
            this.write_left -= k;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Forwards bytes between `a` and `b` until `fault_at` bytes have passed (in both
/// directions together), then resets or closes both connections.
async fn proxy(a: TcpStream, b: TcpStream, fault_at: u64, reset: bool, fired: Fired) {
    if reset {
        for s in [&a, &b] {
            socket2::SockRef::from(s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
        }
    }
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let passed = Arc::new(Mutex::new(0u64));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    async fn pump(
        mut r: tokio::net::tcp::OwnedReadHalf,
        mut w: tokio::net::tcp::OwnedWriteHalf,
        passed: Arc<Mutex<u64>>,
        fault_at: u64,
        stop_tx: Arc<tokio::sync::watch::Sender<bool>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        fired: Fired,
    ) -> (
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = tokio::select! {
                r = r.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = stop.changed() => break,
            };
            let (n, last) = {
                let mut p = lock(&passed);
                let room = fault_at.saturating_sub(*p);
                let k = (n as u64).min(room) as usize;
                *p += k as u64;
                (k, k < n || *p >= fault_at)
            };
            let write = w.write_all(&buf[..n]);
            let ok = tokio::select! {
                r = write => r.is_ok(),
                _ = stop.changed() => false,
            };
            if !ok || last {
                break;
            }
        }
        fire(&fired);
        let _ = stop_tx.send(true);
        (r, w)
    }
    let up = tokio::spawn(pump(
        ar,
        bw,
        passed.clone(),
        fault_at,
        stop_tx.clone(),
        stop_rx.clone(),
        fired.clone(),
    ));
    let down = tokio::spawn(pump(br, aw, passed, fault_at, stop_tx, stop_rx, fired));
    let (ar, bw) = up.await.expect("proxy");
    let (br, aw) = down.await.expect("proxy");
    let (a, b) = (
        ar.reunite(aw).expect("same socket"),
        br.reunite(bw).expect("same socket"),
    );
    if reset {
        // Dropping the sockets with SO_LINGER 0 (whole, not as halves: a dropped
        // write half would send FIN first) resets both connections.
        return;
    }
    // Graceful: FIN both ways, then read until both peers close too.
    let drain = |mut s: TcpStream| async move {
        let _ = s.shutdown().await;
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::join!(drain(a), drain(b));
}

/// How one stream task ended: `Err(kind)` is the expected outcome; `Ok(())` means a
/// read saw end-of-file, which no stream should (none is closed during the run).
type TaskEnd = Result<(), io::ErrorKind>;

/// Test data every writer sends from.
fn chunk() -> Arc<Vec<u8>> {
    Arc::new(smux_tests::pattern_vec(42, 16 * 1024))
}

/// A writer and a reader on `st`; with `lazy` the reader takes 1 KiB every 20 ms until
/// the fault fired, so the other end's writer soon waits on the window. (After the
/// fault it reads at full speed: data that arrived stays readable after the session
/// ended, and a slow reader would take seconds to get through it.)
fn tokio_stream_tasks(
    st: smux_tokio::Stream,
    lazy: bool,
    fired: Fired,
    data: Arc<Vec<u8>>,
    seed: u64,
    out: &mut Vec<tokio::task::JoinHandle<TaskEnd>>,
) {
    let (mut r, mut w) = st.into_split();
    out.push(tokio::spawn(async move {
        let mut rng = Rng::new(seed);
        loop {
            let n = rng.range(1, data.len() as u64 + 1) as usize;
            w.write_all(&data[..n]).await.map_err(|e| e.kind())?;
        }
    }));
    out.push(tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let want = if lazy && lock(&fired).is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                1024
            } else {
                buf.len()
            };
            if r.read(&mut buf[..want]).await.map_err(|e| e.kind())? == 0 {
                return Ok(());
            }
        }
    }));
}

/// Accepts streams until the session ends; returns the tasks started on them.
fn tokio_acceptor(
    s: smux_tokio::Session,
    fired: Fired,
    data: Arc<Vec<u8>>,
    seed: u64,
) -> tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<TaskEnd>>> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        let mut i = 0u64;
        while let Ok(st) = s.accept().await {
            tokio_stream_tasks(
                st,
                i % 2 == 0,
                fired.clone(),
                data.clone(),
                seed ^ i,
                &mut tasks,
            );
            i += 1;
        }
        tasks
    })
}

/// Figures of one round.
#[derive(Debug, Default)]
struct Round {
    /// Streams opened by the test that were extended.
    extended: usize,
    tasks: usize,
    errors: std::collections::BTreeMap<String, usize>,
    tasks_end: Duration,
    slowest_end: Duration,
}

impl Round {
    fn record(&mut self, end: TaskEnd) {
        self.tasks += 1;
        match end {
            Err(kind) => *self.errors.entry(format!("{kind:?}")).or_default() += 1,
            Ok(()) => panic!("a stream read end-of-file though no stream was closed"),
        }
    }
}

async fn tokio_round(fault: Fault, ext: bool, rng: &mut Rng) {
    let data = chunk();
    let fired: Fired = Arc::default();
    let at = rng.range(64 * 1024, 4 * 1024 * 1024);
    let config = config(ext);
    let (a_sock, b_sock) = smux_tests::wire::loopback(None).await.expect("loopback");
    let (a_sock, b_sock) = match fault {
        Fault::Reset | Fault::Close => {
            let (p_b, b) = smux_tests::wire::loopback(None).await.expect("loopback");
            tokio::spawn(proxy(b_sock, p_b, at, fault == Fault::Reset, fired.clone()));
            (a_sock, b)
        }
        _ => (a_sock, b_sock),
    };
    let a = match fault {
        Fault::Shutdown => {
            let ctl = socket2::SockRef::from(&a_sock).try_clone().expect("dup");
            let after = Duration::from_millis(rng.range(20, 300));
            let f = fired.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = ctl.shutdown(std::net::Shutdown::Both);
                fire(&f);
            });
            smux_tokio::Session::new(a_sock, config.clone(), smux_tokio::Role::Dialer)
                .expect("session")
        }
        Fault::ReadError | Fault::WriteError => {
            let io = FaultyIo {
                io: a_sock,
                read_left: if fault == Fault::ReadError {
                    at as usize
                } else {
                    usize::MAX
                },
                write_left: if fault == Fault::WriteError {
                    at as usize
                } else {
                    usize::MAX
                },
                scratch: Vec::new(),
                fired: fired.clone(),
            };
            smux_tokio::Session::new(io, config.clone(), smux_tokio::Role::Dialer).expect("session")
        }
        _ => smux_tokio::Session::new(a_sock, config.clone(), smux_tokio::Role::Dialer)
            .expect("session"),
    };
    let b = smux_tokio::Session::new(b_sock, config, smux_tokio::Role::Acceptor).expect("session");
    if ext {
        let ready = within(10, "the agreement", a.ready()).await;
        check_agreed(ready, b.extensions_enabled(), &fired);
    }
    let seed = rng.next_u64();
    let acc_a = tokio_acceptor(a.clone(), fired.clone(), data.clone(), seed ^ 1);
    let acc_b = tokio_acceptor(b.clone(), fired.clone(), data.clone(), seed ^ 2);
    let mut tasks = Vec::new();
    let mut extended = 0;
    for (i, s) in [&a, &a, &b].iter().cycle().take(18).enumerate() {
        match s.open().await {
            Ok(st) => {
                extended += usize::from(st.is_extended());
                tokio_stream_tasks(
                    st,
                    i % 3 == 1,
                    fired.clone(),
                    data.clone(),
                    seed ^ i as u64,
                    &mut tasks,
                )
            }
            Err(_) => break,
        }
    }
    within(30, "the fault fires", async {
        while lock(&fired).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let t0 = lock(&fired).expect("fired");
    let mut round = Round {
        extended,
        ..Round::default()
    };
    within(END_BOUND, "every stream task ends", async {
        tasks.extend(acc_a.await.expect("acceptor task"));
        tasks.extend(acc_b.await.expect("acceptor task"));
        for t in tasks {
            round.record(t.await.expect("no stream task panics"));
        }
    })
    .await;
    round.tasks_end = t0.elapsed();
    let ra = within(END_BOUND, "dialler's driver ends", a.closed()).await;
    let rb = within(END_BOUND, "acceptor's driver ends", b.closed()).await;
    round.slowest_end = t0.elapsed();
    assert!(a.open().await.is_err() && b.open().await.is_err());
    eprintln!(
        "tokio {fault:?} at {at} bytes, extensions {ext} ({} extended streams): {} stream tasks ended with errors {:?}; dialler {ra:?}; acceptor {rb:?}; tasks ended {:?} and drivers {:?} after the fault",
        round.extended, round.tasks, round.errors, round.tasks_end, round.slowest_end
    );
    assert!(round.tasks >= 4, "the session was busy");
}

#[test]
fn tokio_sessions_fail_cleanly_at_random_points() {
    let _g = serial();
    let mut rng = Rng::new(seed("tokio faults"));
    for fault in FAULTS {
        for ext in [true, false] {
            run(tokio_round(fault, ext, &mut rng));
        }
    }
}

// ----- blocking --------------------------------------------------------------------

/// A blocking read half whose reads fail after a byte budget.
struct FaultyRead {
    io: std::net::TcpStream,
    left: usize,
    fired: Fired,
}

impl Read for FaultyRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            fire(&self.fired);
            return Err(injected(io::ErrorKind::ConnectionReset));
        }
        let max = buf.len().min(self.left);
        let n = self.io.read(&mut buf[..max])?;
        self.left -= n;
        Ok(n)
    }
}

/// A blocking write half whose writes fail after a byte budget.
struct FaultyWrite {
    io: std::net::TcpStream,
    left: usize,
    fired: Fired,
}

impl Write for FaultyWrite {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            fire(&self.fired);
            return Err(injected(io::ErrorKind::BrokenPipe));
        }
        let n = data.len().min(self.left);
        let k = self.io.write(&data[..n])?;
        self.left -= k;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

/// A writer thread and a reader thread on `st` (see [`tokio_stream_tasks`]).
fn blocking_stream_threads(
    st: smux_blocking::Stream,
    lazy: bool,
    fired: Fired,
    data: Arc<Vec<u8>>,
    seed: u64,
    out: &mut Vec<std::thread::JoinHandle<TaskEnd>>,
) {
    let w = st.try_clone().expect("clone");
    out.push(std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        loop {
            let n = rng.range(1, data.len() as u64 + 1) as usize;
            (&w).write_all(&data[..n]).map_err(|e| e.kind())?;
        }
    }));
    out.push(std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let want = if lazy && lock(&fired).is_none() {
                std::thread::sleep(Duration::from_millis(20));
                1024
            } else {
                buf.len()
            };
            if (&st).read(&mut buf[..want]).map_err(|e| e.kind())? == 0 {
                return Ok(());
            }
        }
    }));
}

fn blocking_acceptor(
    s: smux_blocking::Session,
    fired: Fired,
    data: Arc<Vec<u8>>,
    seed: u64,
) -> std::thread::JoinHandle<Vec<std::thread::JoinHandle<TaskEnd>>> {
    std::thread::spawn(move || {
        let mut threads = Vec::new();
        let mut i = 0u64;
        while let Ok(st) = s.accept() {
            blocking_stream_threads(
                st,
                i % 2 == 0,
                fired.clone(),
                data.clone(),
                seed ^ i,
                &mut threads,
            );
            i += 1;
        }
        threads
    })
}

/// Runs `f` on a thread and fails the test if it does not return within `secs`.
fn bounded<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: did not finish within {secs} s"),
    }
}

fn blocking_round(fault: Fault, ext: bool, rng: &mut Rng, rt: &tokio::runtime::Runtime) {
    use smux_blocking::{Parts, Role, Session};
    let data = chunk();
    let fired: Fired = Arc::default();
    let at = rng.range(64 * 1024, 4 * 1024 * 1024);
    // Sockets are made (and, for the proxy kinds, joined by the proxy) on the Tokio
    // runtime, then handed to the blocking sessions as std sockets.
    let (a_sock, b_sock) = rt.block_on(async {
        let (a, b) = smux_tests::wire::loopback(None).await.expect("loopback");
        let (a, b) = match fault {
            Fault::Reset | Fault::Close => {
                let (p_b, b2) = smux_tests::wire::loopback(None).await.expect("loopback");
                tokio::spawn(proxy(b, p_b, at, fault == Fault::Reset, fired.clone()));
                (a, b2)
            }
            _ => (a, b),
        };
        (a.into_std().expect("std"), b.into_std().expect("std"))
    });
    let config = config(ext);
    let a = match fault {
        Fault::Shutdown => {
            let ctl = a_sock.try_clone().expect("clone");
            let after = Duration::from_millis(rng.range(20, 300));
            let f = fired.clone();
            std::thread::spawn(move || {
                std::thread::sleep(after);
                let _ = ctl.shutdown(std::net::Shutdown::Both);
                fire(&f);
            });
            Session::new(a_sock, config.clone(), Role::Dialer)
        }
        Fault::ReadError | Fault::WriteError => {
            a_sock.set_nonblocking(false).expect("blocking");
            let ctl = a_sock.try_clone().expect("clone");
            let r = FaultyRead {
                io: a_sock.try_clone().expect("clone"),
                left: if fault == Fault::ReadError {
                    at as usize
                } else {
                    usize::MAX
                },
                fired: fired.clone(),
            };
            let w = FaultyWrite {
                io: a_sock,
                left: if fault == Fault::WriteError {
                    at as usize
                } else {
                    usize::MAX
                },
                fired: fired.clone(),
            };
            let parts = Parts::new(r, w).with_closer(move || {
                let _ = ctl.shutdown(std::net::Shutdown::Both);
            });
            Session::new(parts, config.clone(), Role::Dialer)
        }
        _ => Session::new(a_sock, config.clone(), Role::Dialer),
    }
    .expect("session");
    let b = Session::new(b_sock, config, Role::Acceptor).expect("session");
    if ext {
        let a2 = a.clone();
        let ready = bounded(10, "the agreement", move || a2.ready());
        check_agreed(ready, b.extensions_enabled(), &fired);
    }
    let seed = rng.next_u64();
    let acc_a = blocking_acceptor(a.clone(), fired.clone(), data.clone(), seed ^ 1);
    let acc_b = blocking_acceptor(b.clone(), fired.clone(), data.clone(), seed ^ 2);
    let mut threads = Vec::new();
    let mut extended = 0;
    for (i, s) in [&a, &a, &b].iter().cycle().take(9).enumerate() {
        match s.open() {
            Ok(st) => {
                extended += usize::from(st.is_extended());
                blocking_stream_threads(
                    st,
                    i % 3 == 1,
                    fired.clone(),
                    data.clone(),
                    seed ^ i as u64,
                    &mut threads,
                )
            }
            Err(_) => break,
        }
    }
    let f = fired.clone();
    bounded(30, "the fault fires", move || {
        while lock(&f).is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let t0 = lock(&fired).expect("fired");
    let (a2, b2) = (a.clone(), b.clone());
    let (round, (ra, rb)) = bounded(
        END_BOUND,
        "every stream thread and both sessions end",
        move || {
            threads.extend(acc_a.join().expect("acceptor thread"));
            threads.extend(acc_b.join().expect("acceptor thread"));
            let mut round = Round {
                extended,
                ..Round::default()
            };
            for t in threads {
                round.record(t.join().expect("no stream thread panics"));
            }
            round.tasks_end = t0.elapsed();
            // Waits until both sessions ended and their threads exited.
            let ends = (a2.closed(), b2.closed());
            round.slowest_end = t0.elapsed();
            (round, ends)
        },
    );
    assert!(a.open().is_err() && b.open().is_err());
    eprintln!(
        "blocking {fault:?} at {at} bytes, extensions {ext} ({} extended streams): {} stream threads ended with errors {:?}; dialler {ra:?}; acceptor {rb:?}; threads ended {:?} and sessions {:?} after the fault",
        round.extended, round.tasks, round.errors, round.tasks_end, round.slowest_end
    );
}

#[test]
fn blocking_sessions_fail_cleanly_at_random_points() {
    let _g = serial();
    let mut rng = Rng::new(seed("blocking faults"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for (i, fault) in FAULTS.into_iter().enumerate() {
        blocking_round(fault, i % 2 == 0, &mut rng, &rt);
    }
}

// ----- smol ----------------------------------------------------------------------------

/// A futures-io transport (what smol uses) whose reads or writes fail after a budget.
struct FaultyFio {
    io: smol::Async<std::net::TcpStream>,
    read_left: usize,
    write_left: usize,
    fired: Fired,
}

impl smol::io::AsyncRead for FaultyFio {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.read_left == 0 {
            fire(&this.fired);
            return Poll::Ready(Err(injected(io::ErrorKind::ConnectionReset)));
        }
        let max = buf.len().min(this.read_left);
        let r = Pin::new(&mut this.io).poll_read(cx, &mut buf[..max]);
        if let Poll::Ready(Ok(n)) = r {
            this.read_left -= n;
        }
        r
    }
}

impl smol::io::AsyncWrite for FaultyFio {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_left == 0 {
            fire(&this.fired);
            return Poll::Ready(Err(injected(io::ErrorKind::BrokenPipe)));
        }
        let n = data.len().min(this.write_left);
        let r = Pin::new(&mut this.io).poll_write(cx, &data[..n]);
        if let Poll::Ready(Ok(k)) = r {
            this.write_left -= k;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// A writer task and a reader task on `st` (see [`tokio_stream_tasks`]).
fn smol_stream_tasks(
    st: smux_smol::Stream,
    lazy: bool,
    fired: Fired,
    data: Arc<Vec<u8>>,
    seed: u64,
    out: &mut Vec<smol::Task<TaskEnd>>,
) {
    use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut r, mut w) = st.into_split();
    out.push(smol::spawn(async move {
        let mut rng = Rng::new(seed);
        loop {
            let n = rng.range(1, data.len() as u64 + 1) as usize;
            w.write_all(&data[..n]).await.map_err(|e| e.kind())?;
        }
    }));
    out.push(smol::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let want = if lazy && lock(&fired).is_none() {
                smol::Timer::after(Duration::from_millis(20)).await;
                1024
            } else {
                buf.len()
            };
            if r.read(&mut buf[..want]).await.map_err(|e| e.kind())? == 0 {
                return Ok(());
            }
        }
    }));
}

fn smol_acceptor(
    s: smux_smol::Session,
    fired: Fired,
    data: Arc<Vec<u8>>,
    seed: u64,
) -> smol::Task<Vec<smol::Task<TaskEnd>>> {
    smol::spawn(async move {
        let mut tasks = Vec::new();
        let mut i = 0u64;
        while let Ok(st) = s.accept().await {
            smol_stream_tasks(
                st,
                i % 2 == 0,
                fired.clone(),
                data.clone(),
                seed ^ i,
                &mut tasks,
            );
            i += 1;
        }
        tasks
    })
}

/// Awaits `f` on smol, failing the test after `secs` (a hang guard).
async fn smol_within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    smol::future::or(async { Some(f.await) }, async {
        smol::Timer::after(Duration::from_secs(secs)).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("{what}: did not finish within {secs} s"))
}

fn smol_round(fault: Fault, ext: bool, rng: &mut Rng, rt: &tokio::runtime::Runtime) {
    use smux_smol::{Role, Session};
    let data = chunk();
    let fired: Fired = Arc::default();
    let at = rng.range(64 * 1024, 4 * 1024 * 1024);
    let (a_sock, b_sock) = rt.block_on(async {
        let (a, b) = smux_tests::wire::loopback(None).await.expect("loopback");
        let (a, b) = match fault {
            Fault::Reset | Fault::Close => {
                let (p_b, b2) = smux_tests::wire::loopback(None).await.expect("loopback");
                tokio::spawn(proxy(b, p_b, at, fault == Fault::Reset, fired.clone()));
                (a, b2)
            }
            _ => (a, b),
        };
        (a.into_std().expect("std"), b.into_std().expect("std"))
    });
    let shutdown_after = Duration::from_millis(rng.range(20, 300));
    let seed = rng.next_u64();
    smol::block_on(async {
        let config = config(ext);
        let wrap = |s: std::net::TcpStream| smol::Async::new(s).expect("async socket");
        let b_io = FaultyFio {
            io: wrap(b_sock),
            read_left: usize::MAX,
            write_left: usize::MAX,
            fired: fired.clone(),
        };
        if fault == Fault::Shutdown {
            let ctl = a_sock.try_clone().expect("clone");
            let f = fired.clone();
            std::thread::spawn(move || {
                std::thread::sleep(shutdown_after);
                let _ = ctl.shutdown(std::net::Shutdown::Both);
                fire(&f);
            });
        }
        let a_io = FaultyFio {
            io: wrap(a_sock),
            read_left: if fault == Fault::ReadError {
                at as usize
            } else {
                usize::MAX
            },
            write_left: if fault == Fault::WriteError {
                at as usize
            } else {
                usize::MAX
            },
            fired: fired.clone(),
        };
        let (a, a_driver) =
            Session::with_driver(a_io, config.clone(), Role::Dialer).expect("session");
        let (b, b_driver) = Session::with_driver(b_io, config, Role::Acceptor).expect("session");
        let (a_driver, b_driver) = (smol::spawn(a_driver), smol::spawn(b_driver));
        if ext {
            let ready = smol_within(10, "the agreement", a.ready()).await;
            check_agreed(ready, b.extensions_enabled(), &fired);
        }
        let acc_a = smol_acceptor(a.clone(), fired.clone(), data.clone(), seed ^ 1);
        let acc_b = smol_acceptor(b.clone(), fired.clone(), data.clone(), seed ^ 2);
        let mut tasks = Vec::new();
        let mut extended = 0;
        for (i, s) in [&a, &a, &b].iter().cycle().take(12).enumerate() {
            match s.open().await {
                Ok(st) => {
                    extended += usize::from(st.is_extended());
                    smol_stream_tasks(
                        st,
                        i % 3 == 1,
                        fired.clone(),
                        data.clone(),
                        seed ^ i as u64,
                        &mut tasks,
                    )
                }
                Err(_) => break,
            }
        }
        smol_within(30, "the fault fires", async {
            while lock(&fired).is_none() {
                smol::Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        let t0 = lock(&fired).expect("fired");
        let mut round = Round {
            extended,
            ..Round::default()
        };
        smol_within(END_BOUND, "every stream task ends", async {
            tasks.extend(acc_a.await);
            tasks.extend(acc_b.await);
            for t in tasks {
                round.record(t.await);
            }
        })
        .await;
        round.tasks_end = t0.elapsed();
        let ra = smol_within(END_BOUND, "dialler's driver ends", a_driver).await;
        let rb = smol_within(END_BOUND, "acceptor's driver ends", b_driver).await;
        round.slowest_end = t0.elapsed();
        assert!(a.open().await.is_err() && b.open().await.is_err());
        eprintln!(
            "smol {fault:?} at {at} bytes, extensions {ext} ({} extended streams): {} stream tasks ended with errors {:?}; dialler {ra:?}; acceptor {rb:?}; tasks ended {:?} and drivers {:?} after the fault",
            round.extended, round.tasks, round.errors, round.tasks_end, round.slowest_end
        );
    });
}

#[test]
fn smol_sessions_fail_cleanly_at_random_points() {
    let _g = serial();
    let mut rng = Rng::new(seed("smol faults"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for (i, fault) in FAULTS.into_iter().enumerate() {
        smol_round(fault, i % 2 == 1, &mut rng, &rt);
    }
}
