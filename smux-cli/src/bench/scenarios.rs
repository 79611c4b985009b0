//! The benchmark scenarios. Each run builds a fresh session, measures, and tears it
//! down; every wait is bounded, so a system that stops moving data is reported as
//! hung instead of hanging the tool.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, timeout_at};

use super::exec::{Scope, Spawner};
use super::relay::{Relay, Shape};
use super::systems::{self, Acceptor, BoxIo, ClientEnd, Opener, ServerEnd, System};
use crate::alloc;

/// Size of each write in the bulk scenarios.
pub const WRITE_SIZE: usize = 64 * 1024;
/// Read buffer of each bulk reader when there are more than 64 streams.
pub const SMALL_READ_SIZE: usize = 8 * 1024;
/// Request and response size of the rr scenarios.
pub const RR_SIZE: usize = 64;
/// Payload each way of one churn stream.
pub const CHURN_SIZE: usize = 1024;
/// Concurrent open/close loops of plain `churn` (churn-4), as before churn took a
/// loop count: older commands keep measuring the same thing.
pub const CHURN_LOOPS: usize = 4;
/// Streams that transfer next to the stalled one in the hol scenario.
pub const HOL_STREAMS: usize = 8;

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// That many streams writing one way as fast as they can.
    Bulk(usize),
    /// Request/response on that many streams at once.
    Rr(usize),
    /// That many loops each opening a stream, exchanging 1 KiB each way, closing it;
    /// churn-1 is sequential (one stream lifetime after another).
    Churn(usize),
    /// Idle open streams: heap bytes per stream.
    Idle,
    /// Throughput of 8 streams next to one that is never read, against without it.
    Hol,
    /// One stream's bulk transfer over a delayed, paced loopback link (a long fat
    /// link), its bytes checked at the reader.
    Lfn,
}

impl Scenario {
    /// Every scenario without a size (parsed by name).
    pub const NAMED: [Scenario; 3] = [Scenario::Idle, Scenario::Hol, Scenario::Lfn];

    /// The default scenarios, in table order. lfn is left out: it needs seconds per
    /// run on its own to let windows grow over a 100 ms round trip.
    pub const ALL: [Scenario; 9] = [
        Scenario::Bulk(1),
        Scenario::Bulk(64),
        Scenario::Bulk(1024),
        Scenario::Rr(1),
        Scenario::Rr(64),
        Scenario::Churn(1),
        Scenario::Churn(CHURN_LOOPS),
        Scenario::Idle,
        Scenario::Hol,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> String {
        match self {
            Scenario::Bulk(n) => format!("bulk-{n}"),
            Scenario::Rr(n) => format!("rr-{n}"),
            Scenario::Churn(n) => format!("churn-{n}"),
            Scenario::Idle => "idle".into(),
            Scenario::Hol => "hol".into(),
            Scenario::Lfn => "lfn".into(),
        }
    }

    /// The systems run when none are named.
    pub fn default_systems(self) -> &'static [System] {
        match self {
            // With smux-rs-base, the point of comparison.
            Scenario::Lfn => &LFN_SYSTEMS,
            _ => &System::DEFAULT,
        }
    }

    /// Parses a name: `bulk-N`, `rr-N`, `churn-N`, `churn` (churn-4), `idle`, `hol`,
    /// `lfn`.
    pub fn parse(s: &str) -> Option<Scenario> {
        let num = |rest: &str| {
            rest.parse::<usize>()
                .ok()
                .filter(|&n| (1..=60_000).contains(&n))
        };
        match Scenario::NAMED.into_iter().find(|n| n.name() == s) {
            Some(named) => Some(named),
            None if s == "churn" => Some(Scenario::Churn(CHURN_LOOPS)),
            None => {
                if let Some(rest) = s.strip_prefix("bulk-") {
                    num(rest).map(Scenario::Bulk)
                } else if let Some(rest) = s.strip_prefix("rr-") {
                    num(rest).map(Scenario::Rr)
                } else if let Some(rest) = s.strip_prefix("churn-") {
                    num(rest).map(Scenario::Churn)
                } else {
                    None
                }
            }
        }
    }
}

/// Settings shared by all runs.
#[derive(Debug, Clone)]
pub struct Params {
    /// Length of one measurement window.
    pub duration: Duration,
    /// Time a scenario runs before its window opens.
    pub warmup: Duration,
    /// Bound on each waiting phase (setup, open, accept, drain).
    pub phase_timeout: Duration,
    /// Streams of the idle scenario.
    pub idle_streams: usize,
    /// A run whose process heap grows past this many bytes is stopped.
    pub max_heap: usize,
    /// The delayed link of the lfn scenario.
    pub link: Shape,
}

impl Params {
    /// lfn's warm-up and measurement window: at least 10 and 20 round trips, since
    /// windows that grow need a few round trips per doubling.
    pub fn lfn_times(&self) -> (Duration, Duration) {
        let rtt = self.link.rtt();
        (self.warmup.max(10 * rtt), self.duration.max(20 * rtt))
    }

    /// lfn's bound on a waiting phase: the handshakes cross the link a few times.
    pub(super) fn lfn_phase_timeout(&self) -> Duration {
        self.phase_timeout + 4 * self.link.rtt()
    }
}

/// Figures of one run (those that apply to its scenario).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Aggregate throughput, MB/s (10^6 bytes).
    pub mbps: Option<f64>,
    /// Slowest stream, MB/s.
    pub slowest_mbps: Option<f64>,
    /// Fastest stream, MB/s.
    pub fastest_mbps: Option<f64>,
    /// Median round trip, microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile round trip, microseconds.
    pub p99_us: Option<f64>,
    /// Requests per second.
    pub rps: Option<f64>,
    /// Streams opened, used and closed per second.
    pub streams_per_s: Option<f64>,
    /// Heap bytes per idle stream on the opening end.
    pub client_bytes: Option<f64>,
    /// Heap bytes per idle stream on the accepting end.
    pub server_bytes: Option<f64>,
    /// Heap bytes per idle stream, both ends together (when the ends' heaps cannot
    /// be told apart).
    pub total_bytes: Option<f64>,
    /// hol: throughput with a stalled stream over throughput without.
    pub hol_fraction: Option<f64>,
    /// lfn: throughput from the stream's start to the end of the window, MB/s.
    pub whole_mbps: Option<f64>,
    /// lfn: throughput in the window over the link rate.
    pub link_fraction: Option<f64>,
    /// lfn: bytes that arrived, all of them checked against what was sent.
    pub verified_bytes: Option<f64>,
}

/// How one run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Measured.
    Done(Metrics),
    /// A phase did not finish in time (the phase named).
    Hung(String),
    /// An error.
    Failed(String),
    /// The scenario does not apply to the system.
    NotApplicable,
}

/// Why a run stopped early.
#[derive(Debug)]
pub(super) enum Stop {
    Hung(String),
    Failed(String),
}

impl From<Stop> for Outcome {
    fn from(s: Stop) -> Outcome {
        match s {
            Stop::Hung(w) => Outcome::Hung(w),
            Stop::Failed(e) => Outcome::Failed(e),
        }
    }
}

pub(super) type Res<T> = Result<T, Stop>;

pub(super) fn hung(what: impl Into<String>) -> Stop {
    Stop::Hung(what.into())
}

pub(super) fn failed(what: &str, e: io::Error) -> Stop {
    Stop::Failed(format!("{what}: {e}"))
}

/// Runs one scenario on one system (inside the shared runtime, except idle which
/// makes its own).
/// The run is stopped (and its session dropped) if the process heap grows past
/// `p.max_heap`.
pub async fn run(scenario: Scenario, system: System, p: &Params) -> Outcome {
    let scenario = async {
        match scenario {
            Scenario::Bulk(n) => bulk(system, n, p).await,
            Scenario::Rr(n) => rr(system, n, p).await,
            Scenario::Churn(n) => churn(system, n, p).await,
            Scenario::Hol => hol(system, p).await,
            Scenario::Lfn => lfn(system, p).await,
            Scenario::Idle => unreachable!("idle runs on its own runtimes"),
        }
    };
    // A plain thread watches the heap: the runtime's timers lag behind when its
    // workers are busy copying, and a system that buffers without bound grows by
    // gigabytes meanwhile.
    let over = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (over, done, limit) = (over.clone(), done.clone(), p.max_heap as isize);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if alloc::live_total() > limit {
                    over.notify_one();
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let watchdog = over.notified();
    let outcome = tokio::select! {
        result = scenario => match result {
            Ok(m) => Outcome::Done(m),
            Err(o) => o.into(),
        },
        () = watchdog => Outcome::Failed(format!(
            "heap over {:.1} GB, stopped",
            p.max_heap as f64 / 1e9
        )),
    };
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    outcome
}

/// A session and the tasks of one run; dropping it tears everything down.
struct Run {
    client: ClientEnd,
    server: ServerEnd,
    scope: Scope,
    /// The delayed link between the ends, if any (dropped after the ends).
    _relay: Option<Relay>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.scope.abort_all();
    }
}

async fn setup(system: System, link: Option<Shape>) -> Res<Run> {
    let (cl, sl, relay) = systems::links_through(system, link).map_err(|e| failed("connect", e))?;
    let server = systems::server(system, sl).map_err(|e| failed("server", e))?;
    let client = systems::client(system, cl).map_err(|e| failed("client", e))?;
    Ok(Run {
        client,
        server,
        scope: Scope::new(if system.is_smol() {
            Spawner::Smol(systems::smol_executor())
        } else {
            Spawner::Tokio
        }),
        _relay: relay,
    })
}

async fn open(opener: &dyn Opener, p: &Params) -> Res<BoxIo> {
    match timeout(p.phase_timeout, opener.open()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(failed("open", e)),
        Err(_) => Err(hung("open")),
    }
}

/// Server side of bulk and hol: the first byte says whether the stream is read
/// ('B', counted in the next free slot) or left unread ('S', kept open).
/// Returns the count of streams being read so far.
fn serve_sinks(run: &Run, counters: Arc<Vec<AtomicU64>>) -> Arc<AtomicUsize> {
    let acceptor = run.server.acceptor.clone();
    let scope = run.scope.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let started = next.clone();
    // Keep the harness's own memory small next to the systems' when streams are many.
    let read_size = if counters.len() > 64 {
        SMALL_READ_SIZE
    } else {
        WRITE_SIZE
    };
    run.scope.spawn(async move {
        let parked = Arc::new(Mutex::new(Vec::new()));
        while let Ok(mut s) = acceptor.accept().await {
            let counters = counters.clone();
            let next = next.clone();
            let parked = parked.clone();
            scope.spawn(async move {
                let mut tag = [0u8; 1];
                if s.read_exact(&mut tag).await.is_err() || s.write_all(&tag).await.is_err() {
                    return;
                }
                if tag[0] == b'S' {
                    parked.lock().unwrap().push(s);
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(counter) = counters.get(i) else {
                    return;
                };
                let mut buf = vec![0u8; read_size];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    started
}

/// Waits until the server reads `n` streams.
async fn all_started(started: &AtomicUsize, n: usize, p: &Params) -> Res<()> {
    let deadline = Instant::now() + p.phase_timeout;
    loop {
        let k = started.load(Ordering::Relaxed);
        if k >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(hung(format!("{k} of {n} streams reached the reader")));
        }
        sleep(Duration::from_millis(1)).await;
    }
}

/// Opens `n` streams, each established end to end (our tag byte read and answered
/// by the reader), then starts them all: each writes until the run ends.
async fn start_writers(
    run: &Run,
    n: usize,
    tag: u8,
    p: &Params,
    written: Option<Arc<AtomicU64>>,
) -> Res<()> {
    let data: Arc<[u8]> = vec![0x5a; WRITE_SIZE].into();
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = open(&*run.client.opener, p).await?;
        let mut ack = [0u8; 1];
        let handshake = async {
            s.write_all(&[tag]).await?;
            s.read_exact(&mut ack).await
        };
        match timeout(p.phase_timeout, handshake).await {
            Ok(Ok(_)) => streams.push(s),
            Ok(Err(e)) => return Err(failed("first exchange", e)),
            Err(_) => return Err(hung(format!("first exchange on stream {}", streams.len()))),
        }
    }
    for mut s in streams {
        let data = data.clone();
        let written = written.clone();
        run.scope.spawn(async move {
            while s.write_all(&data).await.is_ok() {
                if let Some(w) = &written {
                    w.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
        });
    }
    Ok(())
}

fn snapshot(c: &[AtomicU64]) -> Vec<u64> {
    c.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

/// Measures the counters over one window: (aggregate, slowest, fastest) MB/s. A
/// window in which nothing moved is stretched (up to the phase timeout) until
/// something does, so a slow start is not mistaken for a hang.
async fn measure(counters: &[AtomicU64], p: &Params, stretch: bool) -> (f64, f64, f64) {
    sleep(p.warmup).await;
    let a = snapshot(counters);
    let t0 = Instant::now();
    sleep(p.duration).await;
    let mut b = snapshot(counters);
    while stretch && a == b && t0.elapsed() < p.duration + p.phase_timeout {
        sleep(Duration::from_millis(10)).await;
        b = snapshot(counters);
    }
    let secs = t0.elapsed().as_secs_f64();
    let rates: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (y - x) as f64 / secs / 1e6)
        .collect();
    let total = rates.iter().sum();
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let fastest = rates.iter().copied().fold(0.0, f64::max);
    (total, slowest, fastest)
}

async fn bulk(system: System, n: usize, p: &Params) -> Res<Metrics> {
    let run = setup(system, None).await?;
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let started = serve_sinks(&run, counters.clone());
    start_writers(&run, n, b'B', p, None).await?;
    all_started(&started, n, p).await?;
    let (total, slowest, fastest) = measure(&counters, p, true).await;
    if total == 0.0 {
        return Err(hung("no data moved"));
    }
    Ok(Metrics {
        mbps: Some(total),
        slowest_mbps: Some(slowest),
        fastest_mbps: Some(fastest),
        ..Metrics::default()
    })
}

async fn hol(system: System, p: &Params) -> Res<Metrics> {
    // Eight streams alone, then the same eight once a stream whose receiver never
    // reads has joined and filled whatever it can fill: one session, two windows.
    let run = setup(system, None).await?;
    let counters: Arc<Vec<AtomicU64>> =
        Arc::new((0..HOL_STREAMS).map(|_| AtomicU64::new(0)).collect());
    let started = serve_sinks(&run, counters.clone());
    start_writers(&run, HOL_STREAMS, b'B', p, None).await?;
    all_started(&started, HOL_STREAMS, p).await?;
    let alone = measure(&counters, p, true).await.0;
    if alone == 0.0 {
        return Err(hung("no data moved without a stalled stream"));
    }
    // A system whose streams all stall behind busy ones may not even open the
    // stalled stream: the eight are then measured as they are.
    let stalled = Arc::new(AtomicU64::new(0));
    match start_writers(&run, 1, b'S', p, Some(stalled.clone())).await {
        Ok(()) => {
            // Until its writes stop being accepted (bounded).
            let deadline = Instant::now() + p.phase_timeout;
            let mut last = (u64::MAX, Instant::now());
            while Instant::now() < deadline {
                sleep(Duration::from_millis(20)).await;
                let now = stalled.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() >= Duration::from_millis(100) {
                    break;
                }
            }
        }
        Err(Stop::Hung(_)) => {}
        Err(o) => return Err(o),
    }
    let with = measure(&counters, p, false).await.0;
    Ok(Metrics {
        hol_fraction: Some(with / alone),
        mbps: Some(with),
        ..Metrics::default()
    })
}

async fn rr(system: System, n: usize, p: &Params) -> Res<Metrics> {
    let run = setup(system, None).await?;
    let acceptor = run.server.acceptor.clone();
    let scope = run.scope.clone();
    run.scope.spawn(async move {
        while let Ok(mut s) = acceptor.accept().await {
            scope.spawn(async move {
                let mut buf = [0u8; RR_SIZE];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(open(&*run.client.opener, p).await?);
    }
    let start = Instant::now() + p.warmup;
    let end = start + p.duration;
    let mut handles = Vec::with_capacity(n);
    for mut s in streams {
        handles.push(run.scope.spawn(async move {
            let mut samples: Vec<u32> = Vec::new();
            let req = [7u8; RR_SIZE];
            let mut resp = [0u8; RR_SIZE];
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                if s.write_all(&req).await.is_err() || s.read_exact(&mut resp).await.is_err() {
                    break;
                }
                if t >= start {
                    samples.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                }
            }
            samples
        }));
    }
    let deadline = tokio::time::Instant::from_std(end) + p.phase_timeout;
    let mut all = Vec::new();
    let mut stuck = 0;
    for h in handles {
        match timeout_at(deadline, h).await {
            Ok(Ok(v)) => all.extend(v),
            _ => stuck += 1,
        }
    }
    if all.is_empty() {
        return Err(hung(if stuck > 0 {
            "requests never answered"
        } else {
            "no request completed"
        }));
    }
    all.sort_unstable();
    let pct = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
    Ok(Metrics {
        p50_us: Some(pct(0.50)),
        p99_us: Some(pct(0.99)),
        rps: Some(all.len() as f64 / p.duration.as_secs_f64()),
        ..Metrics::default()
    })
}

async fn churn(system: System, loops: usize, p: &Params) -> Res<Metrics> {
    let run = setup(system, None).await?;
    let acceptor = run.server.acceptor.clone();
    let scope = run.scope.clone();
    run.scope.spawn(async move {
        while let Ok(mut s) = acceptor.accept().await {
            scope.spawn(async move {
                let mut buf = [0u8; CHURN_SIZE];
                if s.read_exact(&mut buf).await.is_err() || s.write_all(&buf).await.is_err() {
                    return;
                }
                // Wait for the opener's close, then close too.
                let _ = s.read(&mut buf).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let start = Instant::now() + p.warmup;
    let end = start + p.duration;
    let failure = Arc::new(Mutex::new(None::<String>));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..loops {
        let opener = run.client.opener.clone();
        let failure = failure.clone();
        let stop = stop.clone();
        handles.push(run.scope.spawn(async move {
            let mut done = 0u64;
            let mut buf = [1u8; CHURN_SIZE];
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r: io::Result<()> = async {
                    let mut s = opener.open().await?;
                    s.write_all(&buf).await?;
                    s.read_exact(&mut buf).await?;
                    s.shutdown().await?;
                    Ok(())
                }
                .await;
                if let Err(e) = r {
                    *failure.lock().unwrap() = Some(e.to_string());
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                if t >= start {
                    done += 1;
                }
            }
            done
        }));
    }
    let deadline = tokio::time::Instant::from_std(end) + p.phase_timeout;
    let mut total = 0;
    let mut stuck = 0;
    for h in handles {
        match timeout_at(deadline, h).await {
            Ok(Ok(n)) => total += n,
            _ => stuck += 1,
        }
    }
    if let Some(e) = failure.lock().unwrap().take() {
        return Err(Stop::Failed(format!("churn: {e}")));
    }
    if stuck > 0 && total == 0 {
        return Err(hung("streams never completed"));
    }
    Ok(Metrics {
        streams_per_s: Some(total as f64 / p.duration.as_secs_f64()),
        ..Metrics::default()
    })
}

/// Systems of the lfn scenario when none are named: the physical limits (raw TCP on
/// Tokio, on smol and on threads), smux-rs with and without its extensions and on each
/// adapter, and the other multiplexers;
/// tokio-yamux with the workaround for its write-only stall, since a lone writer is
/// all this scenario has.
const LFN_SYSTEMS: [System; 10] = [
    System::Tcp,
    System::SmuxRs,
    System::SmuxRsBase,
    System::SmuxSmol,
    System::TcpSmol,
    System::SmuxBlocking,
    System::TcpThreads,
    System::Yamux,
    System::TokioYamuxPeek,
    System::AsyncSmux,
];

/// Period of the lfn data: a prime, so no write or read size lines up with it, and a
/// chunk lost, repeated or delivered out of place shows as a mismatch.
const PATTERN_PERIOD: usize = 1_000_003;

/// The lfn data: `PATTERN_PERIOD` pseudo-random bytes followed by their first
/// `WRITE_SIZE` again, so every offset in the period starts a contiguous write.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v: Vec<u8> = (0..PATTERN_PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        v.extend_from_within(..WRITE_SIZE);
        v
    })
}

/// The pattern's bytes from stream offset `offset`, `len` of them (at most a write).
pub(super) fn expected(offset: u64, len: usize) -> &'static [u8] {
    let o = (offset % PATTERN_PERIOD as u64) as usize;
    &pattern()[o..o + len]
}

/// What the lfn reader saw.
#[derive(Default)]
pub(super) struct LfnSink {
    /// Bytes read and found equal to what was sent.
    pub(super) read: AtomicU64,
    /// End-of-file seen after them.
    pub(super) finished: AtomicBool,
    /// Why reading stopped early.
    pub(super) error: Mutex<Option<String>>,
}

impl LfnSink {
    /// Checks the next `chunk` (read at stream offset `self.read`) against the
    /// pattern and counts it; the error says where it differs.
    pub(super) fn take(&self, chunk: &[u8]) -> Result<(), String> {
        let offset = self.read.load(Ordering::Acquire);
        let want = expected(offset, chunk.len());
        if chunk != want {
            let at = chunk.iter().zip(want).take_while(|(a, b)| a == b).count();
            return Err(format!(
                "byte {} differs from what was sent",
                offset + at as u64
            ));
        }
        self.read
            .store(offset + chunk.len() as u64, Ordering::Release);
        Ok(())
    }
}

/// Server side of lfn: a stream tagged 'H' echoes single bytes until end-of-file;
/// one tagged 'L' is read to end-of-file, every byte compared with the pattern.
fn serve_lfn(run: &Run, sink: Arc<LfnSink>) {
    let acceptor = run.server.acceptor.clone();
    let scope = run.scope.clone();
    run.scope.spawn(async move {
        while let Ok(mut s) = acceptor.accept().await {
            let sink = sink.clone();
            scope.spawn(async move {
                let mut tag = [0u8; 1];
                if s.read_exact(&mut tag).await.is_err() || s.write_all(&tag).await.is_err() {
                    return;
                }
                if tag[0] == b'H' {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).await.is_ok() && s.write_all(&b).await.is_ok() {}
                    return;
                }
                let mut buf = vec![0u8; WRITE_SIZE];
                let error = loop {
                    match s.read(&mut buf).await {
                        Ok(0) => {
                            sink.finished.store(true, Ordering::Release);
                            return;
                        }
                        Ok(n) => {
                            if let Err(e) = sink.take(&buf[..n]) {
                                break e;
                            }
                        }
                        Err(e) => {
                            let offset = sink.read.load(Ordering::Acquire);
                            break format!("read after {offset} bytes: {e}");
                        }
                    }
                };
                *sink.error.lock().unwrap() = Some(error);
            });
        }
    });
}

/// `f`, bounded by `limit`: an error is a failure, the timeout a hang.
async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Res<T> {
    match timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(what, e)),
        Err(_) => Err(hung(what)),
    }
}

/// The lfn scenario: one stream writes the pattern over the delayed link; the reader
/// checks every byte. The window's bytes give the steady-state MB/s; the bytes up to
/// the window's end over the time since the first write give the whole-run figure.
/// Then the writer shuts its side down and the run ends once the reader has every
/// byte written and end-of-file.
async fn lfn(system: System, p: &Params) -> Res<Metrics> {
    let limit = p.lfn_phase_timeout();
    let run = setup(system, Some(p.link)).await?;
    let sink = Arc::new(LfnSink::default());
    serve_lfn(&run, sink.clone());
    // Two round trips on a first stream before the measured one opens: smux-rs agrees
    // on its extensions during the session's first frames and extends only streams
    // opened after that. The acceptor's offer answers the first frame and precedes the
    // first echo; the dialer's answer then leaves before the second byte, so both ends
    // have them on once the second echo is back.
    let mut hello = within(limit, "open", run.client.opener.open()).await?;
    within(limit, "first stream's round trips", async {
        let mut b = [0u8; 1];
        for _ in 0..2 {
            hello.write_all(b"H").await?;
            hello.read_exact(&mut b).await?;
        }
        Ok(())
    })
    .await?;
    let mut s = within(limit, "open", run.client.opener.open()).await?;
    within(limit, "first exchange", async {
        s.write_all(b"L").await?;
        s.read_exact(&mut [0u8; 1]).await
    })
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        run.scope.spawn(async move {
            let mut offset = 0u64;
            while !stop.load(Ordering::Relaxed) {
                s.write_all(expected(offset, WRITE_SIZE)).await?;
                offset += WRITE_SIZE as u64;
            }
            s.shutdown().await?;
            // The stream is handed back so it lives until the reader is done.
            io::Result::Ok((offset, s))
        })
    };
    let t0 = Instant::now();
    let (warmup, window) = p.lfn_times();
    sleep(warmup).await;
    let (a, ta) = (sink.read.load(Ordering::Acquire), Instant::now());
    sleep(window).await;
    let (b, tb) = (sink.read.load(Ordering::Acquire), Instant::now());
    stop.store(true, Ordering::Relaxed);

    // Drain: wait for the writer's end and the reader's end-of-file while bytes keep
    // arriving; no progress for `limit` is a hang.
    let mut writer = Some(writer);
    let mut sent = None;
    let mut last = (b, Instant::now());
    loop {
        if let Some(e) = sink.error.lock().unwrap().take() {
            return Err(Stop::Failed(e));
        }
        if writer.as_ref().is_some_and(|w| w.is_finished()) {
            match writer.take().unwrap().await {
                Ok(Ok((n, stream))) => sent = Some((n, stream)),
                Ok(Err(e)) => return Err(failed("write", e)),
                Err(e) => return Err(Stop::Failed(format!("writer: {e}"))),
            }
        }
        let read = sink.read.load(Ordering::Acquire);
        if sent.is_some() && sink.finished.load(Ordering::Acquire) {
            break;
        }
        if read != last.0 {
            last = (read, Instant::now());
        } else if last.1.elapsed() >= limit {
            return Err(hung(format!(
                "{} after the window: {read} bytes read",
                if sent.is_some() {
                    "no end-of-file"
                } else {
                    "writer stuck"
                }
            )));
        }
        sleep(Duration::from_millis(5)).await;
    }
    let (sent, _stream) = sent.unwrap();
    let got = sink.read.load(Ordering::Acquire);
    if got != sent {
        return Err(Stop::Failed(format!(
            "{got} bytes arrived of {sent} written"
        )));
    }
    if b == a {
        return Err(hung("no data moved in the window"));
    }
    let steady = (b - a) as f64 / (tb - ta).as_secs_f64() / 1e6;
    Ok(Metrics {
        mbps: Some(steady),
        whole_mbps: Some(b as f64 / (tb - t0).as_secs_f64() / 1e6),
        link_fraction: Some(steady * 1e6 / p.link.bytes_per_sec()),
        verified_bytes: Some(got as f64),
        ..Metrics::default()
    })
}

/// The idle scenario: each end on its own single-worker runtime whose thread is
/// tagged for the counting allocator, so each end's heap is measured apart.
pub fn idle(system: System, p: &Params) -> Outcome {
    if system.is_raw() {
        return Outcome::NotApplicable;
    }
    match idle_inner(system, p) {
        Ok(m) => Outcome::Done(m),
        Err(o) => o.into(),
    }
}

fn tagged_runtime(tag: usize) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || alloc::set_thread_tag(tag))
        .build()
}

fn idle_inner(system: System, p: &Params) -> Res<Metrics> {
    const CLIENT: usize = 1;
    const SERVER: usize = 2;
    let n = p.idle_streams;
    let rt_c = tagged_runtime(CLIENT).map_err(|e| failed("runtime", e))?;
    let rt_s = tagged_runtime(SERVER).map_err(|e| failed("runtime", e))?;
    fn wait<T, E: std::fmt::Display>(
        rt: &tokio::runtime::Runtime,
        limit: Duration,
        h: impl std::future::Future<Output = Result<T, E>>,
    ) -> Res<T> {
        match rt.block_on(async { timeout(limit, h).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Stop::Failed(format!("setup: {e}"))),
            Err(_) => Err(hung("setup")),
        }
    }
    let (cl, sl) = systems::links(system).map_err(|e| failed("connect", e))?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Notify::new());

    // Server end: accepts, answers the one byte of each stream, keeps them all.
    let server = {
        let accepted = accepted.clone();
        let release = release.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
        rt_s.spawn(async move {
            let end = match systems::server(system, sl) {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut kept: Vec<BoxIo> = Vec::with_capacity(n);
            let _ = ready_tx.send(Ok(()));
            let acceptor: &dyn Acceptor = &*end.acceptor;
            let accept_all = async {
                while kept.len() < n {
                    let Ok(mut s) = acceptor.accept().await else {
                        break;
                    };
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_err() || s.write_all(&b).await.is_err() {
                        break;
                    }
                    kept.push(s);
                    accepted.store(kept.len(), Ordering::Release);
                }
            };
            tokio::select! {
                _ = accept_all => release.notified().await,
                _ = release.notified() => {}
            }
            drop(kept);
            drop(end);
        });
        ready_rx
    };
    wait(&rt_s, p.phase_timeout, server)?.map_err(|e| failed("server", e))?;

    // Client end: opens, exchanges one byte each way on each, keeps them all.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
    let client = {
        let go = go.clone();
        let release = release.clone();
        rt_c.spawn(async move {
            let end = match systems::client(system, cl) {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Err("client end".to_string());
                }
            };
            let mut kept: Vec<BoxIo> = Vec::with_capacity(n);
            let _ = ready_tx.send(Ok(()));
            go.notified().await;
            for _ in 0..n {
                let mut s = end.opener.open().await.map_err(|e| format!("open: {e}"))?;
                s.write_all(&[1]).await.map_err(|e| format!("write: {e}"))?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                kept.push(s);
            }
            release.notified().await;
            drop(kept);
            drop(end);
            Ok(())
        })
    };
    wait(&rt_c, p.phase_timeout, ready_rx)?.map_err(|e| failed("client", e))?;
    // Let the handshakes settle, then take the baselines.
    std::thread::sleep(Duration::from_millis(50));
    let base_c = alloc::live(CLIENT);
    let base_s = alloc::live(SERVER);
    go.notify_one();
    // Hung means no progress for a phase timeout, not slow progress.
    let mut deadline = Instant::now() + p.phase_timeout;
    let mut seen = 0;
    while accepted.load(Ordering::Acquire) < n {
        let now = accepted.load(Ordering::Acquire);
        if now > seen {
            seen = now;
            deadline = Instant::now() + p.phase_timeout;
        }
        if Instant::now() >= deadline || client.is_finished() {
            release.notify_waiters();
            release.notify_one();
            let got = accepted.load(Ordering::Acquire);
            if client.is_finished() {
                if let Ok(Err(e)) = rt_c.block_on(client) {
                    return Err(Stop::Failed(e));
                }
            }
            return Err(hung(format!("{got} of {n} streams accepted")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let per = |now: isize, base: isize| (now - base) as f64 / n as f64;
    let m = Metrics {
        client_bytes: Some(per(alloc::live(CLIENT), base_c)),
        server_bytes: Some(per(alloc::live(SERVER), base_s)),
        ..Metrics::default()
    };
    release.notify_waiters();
    rt_c.shutdown_timeout(Duration::from_secs(1));
    rt_s.shutdown_timeout(Duration::from_secs(1));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_takes_a_loop_count_and_plain_churn_is_four_loops() {
        assert_eq!(Scenario::parse("churn-1"), Some(Scenario::Churn(1)));
        assert_eq!(Scenario::parse("churn-16"), Some(Scenario::Churn(16)));
        // Older commands name plain churn; its rows say how many loops ran.
        assert_eq!(Scenario::parse("churn"), Some(Scenario::Churn(CHURN_LOOPS)));
        assert_eq!(Scenario::Churn(CHURN_LOOPS).name(), "churn-4");
        for bad in ["churn-0", "churn-", "churn-x", "churn-1x", "churn4"] {
            assert_eq!(Scenario::parse(bad), None, "{bad}");
        }
        // Every default scenario's name parses back to it.
        for sc in Scenario::ALL {
            assert_eq!(Scenario::parse(&sc.name()), Some(sc));
        }
        assert!(Scenario::ALL.contains(&Scenario::Churn(1)));
    }
}
