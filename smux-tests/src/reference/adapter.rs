//! The three adapters behind one blocking shape, so that each interop scenario is
//! written once and run against smux-tokio, smux-smol and smux-blocking.
//!
//! Every call is bounded: reads and writes take a deadline and use the adapter's own
//! deadline API (`read_before`, `write_all_before`, whose partial counts the
//! scenarios check), accepts take a timeout. The async adapters are driven from plain
//! threads: a shared two-worker Tokio runtime runs the Tokio sessions' drivers and
//! each call blocks on it; smol's global executor runs the smol drivers and each call
//! is `smol::block_on`. Concurrency in a scenario is therefore one thread per task.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use smux_proto::{Config, EndReason, Stats};

/// Which adapter a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// smux-tokio.
    Tokio,
    /// smux-smol.
    Smol,
    /// smux-blocking.
    Blocking,
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Adapter::Tokio => "tokio",
            Adapter::Smol => "smol",
            Adapter::Blocking => "blocking",
        })
    }
}

/// The runtime that drives every Tokio session (and the [`relay`](super::relay)).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A write that stopped early: `written` bytes were accepted (and will be sent).
#[derive(Debug)]
pub struct Partial {
    /// Bytes accepted before the write stopped.
    pub written: usize,
    /// Why it stopped (kind `TimedOut` at the deadline).
    pub error: io::Error,
}

/// The reading half of a stream.
pub trait Rd: Send {
    /// Reads into `buf` before `deadline` (`TimedOut` after it); `Ok(0)` is end-of-file.
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize>;
}

/// The writing half of a stream.
pub trait Wr: Send {
    /// Writes all of `data` unless `deadline` passes or the stream fails first.
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), Partial>;
}

/// One stream, as two halves that two threads can use at once; dropping both closes
/// (releases) it.
pub struct Strm {
    /// Its ID on the wire.
    pub id: u16,
    /// Reading half.
    pub rd: Box<dyn Rd>,
    /// Writing half.
    pub wr: Box<dyn Wr>,
}

impl Strm {
    /// Reads exactly `buf.len()` bytes before `deadline`.
    pub fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        read_exact(&mut *self.rd, buf, deadline)
    }

    /// Writes all of `data` before `deadline`, as an `io::Result`.
    pub fn write_all(&mut self, data: &[u8], deadline: Instant) -> io::Result<()> {
        self.wr.write_all(data, deadline).map_err(|p| p.error)
    }
}

impl Strm {
    /// Reads one `\n`-terminated line (returned without it) of at most 200 bytes.
    pub fn read_line(&mut self, deadline: Instant) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 200 {
            self.read_exact(&mut byte, deadline)?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

/// `secs` seconds from now.
pub fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Waits until `session` holds no stream (every close handshake finished); fails the
/// test after `limit`.
pub fn wait_no_streams(session: &dyn Sess, limit: Duration) {
    let end = Instant::now() + limit;
    while session.stats().streams > 0 {
        assert!(
            Instant::now() < end,
            "{} streams still held after {limit:?}",
            session.stats().streams
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads exactly `buf.len()` bytes from `rd` before `deadline`; end-of-file first is
/// `UnexpectedEof`.
pub fn read_exact(rd: &mut dyn Rd, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        match rd.read(buf, deadline)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

/// A session of any adapter.
pub trait Sess: Send + Sync {
    /// Opens a stream.
    fn open(&self) -> io::Result<Strm>;
    /// Accepts the next stream the peer opened, waiting at most `limit`.
    fn accept(&self, limit: Duration) -> io::Result<Strm>;
    /// The core's figures.
    fn stats(&self) -> Stats;
    /// Why the session ended, once it has.
    fn end_reason(&self) -> Option<EndReason>;
    /// Ends the session now.
    fn close(&self);
}

/// A listener of any adapter.
pub trait Lst: Send + Sync {
    /// The bound address.
    fn addr(&self) -> SocketAddr;
    /// Accepts the next connection as a session, waiting at most `limit`.
    fn accept(&self, limit: Duration) -> io::Result<Box<dyn Sess>>;
}

impl Adapter {
    /// All three.
    pub const ALL: [Adapter; 3] = [Adapter::Tokio, Adapter::Smol, Adapter::Blocking];

    /// Dials `addr` and starts a session (our end is the dialer).
    pub fn connect(self, addr: SocketAddr, config: Config) -> io::Result<Box<dyn Sess>> {
        match self {
            Adapter::Tokio => {
                let connect = smux_tokio::connect(addr, config);
                let s = tokio_call(Instant::now() + Duration::from_secs(10), connect)??;
                Ok(Box::new(TokioSess(s)))
            }
            Adapter::Smol => {
                let connect = smux_smol::connect(addr, config);
                let s = smol_call(Instant::now() + Duration::from_secs(10), connect)??;
                Ok(Box::new(SmolSess(s)))
            }
            Adapter::Blocking => Ok(Box::new(BlockingSess(smux_blocking::connect(
                addr, config,
            )?))),
        }
    }

    /// The adapter's probe (`is_smux_at`) against `addr`.
    pub fn probe(self, addr: SocketAddr, limit: Duration) -> io::Result<bool> {
        let guard = Instant::now() + limit + Duration::from_secs(5);
        match self {
            Adapter::Tokio => tokio_call(guard, smux_tokio::is_smux_at(addr, limit))?,
            Adapter::Smol => smol_call(guard, smux_smol::is_smux_at(addr, limit))?,
            Adapter::Blocking => smux_blocking::is_smux_at(addr, limit),
        }
    }

    /// Listens on a loopback port (our end accepts).
    pub fn listen(self, config: Config) -> io::Result<Box<dyn Lst>> {
        match self {
            Adapter::Tokio => {
                let _guard = runtime().enter();
                let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
                tcp.set_nonblocking(true)?;
                let tcp = tokio::net::TcpListener::from_std(tcp)?;
                let l = smux_tokio::Listener::from_tcp(tcp, config)?;
                Ok(Box::new(TokioLst(l)))
            }
            Adapter::Smol => Ok(Box::new(SmolLst(smux_smol::Listener::bind(
                "127.0.0.1:0",
                config,
            )?))),
            Adapter::Blocking => {
                // Non-blocking, so that accepting can be bounded by polling.
                let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
                tcp.set_nonblocking(true)?;
                Ok(Box::new(BlockingLst(smux_blocking::Listener::from_tcp(
                    tcp, config,
                )?)))
            }
        }
    }
}

/// The 16-bit ID a stream handle names on the wire.
fn wire_id(id: smux_proto::StreamId) -> u16 {
    id.number()
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: deadline passed"))
}

/// Runs `f` on the shared Tokio runtime from a plain thread, failing at `deadline`.
pub fn tokio_call<F: Future>(deadline: Instant, f: F) -> io::Result<F::Output> {
    let deadline = tokio::time::Instant::from_std(deadline);
    runtime()
        .block_on(async { tokio::time::timeout_at(deadline, f).await })
        .map_err(|_| timed_out("tokio call"))
}

/// Runs `f` with smol from a plain thread, failing at `deadline`.
pub fn smol_call<F: Future>(deadline: Instant, f: F) -> io::Result<F::Output> {
    use smol::future::FutureExt;
    smol::block_on(async {
        let f = async { Ok(f.await) };
        let t = async {
            smol::Timer::at(deadline).await;
            Err(timed_out("smol call"))
        };
        f.or(t).await
    })
}

// ----- Tokio ---------------------------------------------------------------------

struct TokioSess(smux_tokio::Session);
struct TokioLst(smux_tokio::Listener);

fn tokio_strm(s: smux_tokio::Stream) -> Strm {
    let id = wire_id(s.id());
    let (r, w) = s.into_split();
    Strm {
        id,
        rd: Box::new(TokioRd(r)),
        wr: Box::new(TokioWr(w)),
    }
}

struct TokioRd(smux_tokio::ReadHalf);
struct TokioWr(smux_tokio::WriteHalf);

impl Rd for TokioRd {
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let d = tokio::time::Instant::from_std(deadline);
        // The adapter's own deadline; the outer bound only guards against a hang.
        tokio_call(
            deadline + Duration::from_secs(5),
            self.0.read_before(buf, d),
        )?
    }
}

impl Wr for TokioWr {
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), Partial> {
        let d = tokio::time::Instant::from_std(deadline);
        let guard = deadline + Duration::from_secs(5);
        match tokio_call(guard, self.0.write_all_before(data, d)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(p)) => Err(Partial {
                written: p.written(),
                error: p.into_error(),
            }),
            Err(e) => panic!("write_all_before ignored its deadline: {e}"),
        }
    }
}

impl Sess for TokioSess {
    fn open(&self) -> io::Result<Strm> {
        tokio_call(Instant::now() + Duration::from_secs(10), self.0.open())?.map(tokio_strm)
    }
    fn accept(&self, limit: Duration) -> io::Result<Strm> {
        tokio_call(Instant::now() + limit, self.0.accept())?.map(tokio_strm)
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn end_reason(&self) -> Option<EndReason> {
        self.0.end_reason()
    }
    fn close(&self) {
        self.0.close()
    }
}

impl Lst for TokioLst {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("local address")
    }
    fn accept(&self, limit: Duration) -> io::Result<Box<dyn Sess>> {
        let (s, _) = tokio_call(Instant::now() + limit, self.0.accept())??;
        Ok(Box::new(TokioSess(s)))
    }
}

// ----- smol ----------------------------------------------------------------------

struct SmolSess(smux_smol::Session);
struct SmolLst(smux_smol::Listener);
struct SmolRd(smux_smol::ReadHalf);
struct SmolWr(smux_smol::WriteHalf);

fn smol_strm(s: smux_smol::Stream) -> Strm {
    let id = wire_id(s.id());
    let (r, w) = s.into_split();
    Strm {
        id,
        rd: Box::new(SmolRd(r)),
        wr: Box::new(SmolWr(w)),
    }
}

impl Rd for SmolRd {
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        smol_call(
            deadline + Duration::from_secs(5),
            self.0.read_before(buf, deadline),
        )?
    }
}

impl Wr for SmolWr {
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), Partial> {
        let guard = deadline + Duration::from_secs(5);
        match smol_call(guard, self.0.write_all_before(data, deadline)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(p)) => Err(Partial {
                written: p.written(),
                error: p.into_error(),
            }),
            Err(e) => panic!("write_all_before ignored its deadline: {e}"),
        }
    }
}

impl Sess for SmolSess {
    fn open(&self) -> io::Result<Strm> {
        smol_call(Instant::now() + Duration::from_secs(10), self.0.open())?.map(smol_strm)
    }
    fn accept(&self, limit: Duration) -> io::Result<Strm> {
        smol_call(Instant::now() + limit, self.0.accept())?.map(smol_strm)
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn end_reason(&self) -> Option<EndReason> {
        self.0.end_reason()
    }
    fn close(&self) {
        self.0.close()
    }
}

impl Lst for SmolLst {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("local address")
    }
    fn accept(&self, limit: Duration) -> io::Result<Box<dyn Sess>> {
        let (s, _) = smol_call(Instant::now() + limit, self.0.accept())??;
        Ok(Box::new(SmolSess(s)))
    }
}

// ----- blocking ------------------------------------------------------------------

struct BlockingSess(smux_blocking::Session);
struct BlockingLst(smux_blocking::Listener);
struct BlockingHalf(smux_blocking::Stream);

fn blocking_strm(s: smux_blocking::Stream) -> Strm {
    let id = wire_id(s.id());
    let rd = s.try_clone().expect("clone");
    Strm {
        id,
        rd: Box::new(BlockingHalf(rd)),
        wr: Box::new(BlockingHalf(s)),
    }
}

impl Rd for BlockingHalf {
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.0.read_before(buf, deadline)
    }
}

impl Wr for BlockingHalf {
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), Partial> {
        self.0
            .write_all_before(data, deadline)
            .map_err(|p| Partial {
                written: p.written(),
                error: p.into_error(),
            })
    }
}

impl Sess for BlockingSess {
    fn open(&self) -> io::Result<Strm> {
        self.0.open().map(blocking_strm)
    }
    fn accept(&self, limit: Duration) -> io::Result<Strm> {
        self.0.accept_timeout(limit).map(blocking_strm)
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn end_reason(&self) -> Option<EndReason> {
        self.0.end_reason()
    }
    fn close(&self) {
        self.0.close()
    }
}

impl Lst for BlockingLst {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("local address")
    }
    fn accept(&self, limit: Duration) -> io::Result<Box<dyn Sess>> {
        let end = Instant::now() + limit;
        loop {
            match self.0.accept() {
                Ok((s, _)) => return Ok(Box::new(BlockingSess(s))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= end {
                        return Err(timed_out("accept"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
