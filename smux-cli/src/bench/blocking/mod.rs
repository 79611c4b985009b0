//! The blocking harness: std sockets and threads, a thread per busy stream, for
//! smux-rs's blocking adapter (`smux-blocking`) and for raw TCP on blocking sockets
//! with one connection per stream (`tcp-threads`, its physical limit), the same code
//! for both (`ends.rs`). bulk, rr and churn run with up to 64 streams or loops; hol
//! and lfn too; idle only for smux-blocking (no thread per idle stream). A
//! smux-blocking session runs its own two threads per end; the harness adds one
//! thread per busy stream. Teardown closes both ends (the session, or every socket
//! of raw TCP and its listener), which fails every blocked call at once.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use smux_blocking::Config;

use super::relay::{Relay, Shape};
use super::scenarios::{
    failed, hung, Metrics, Outcome, Params, Res, Scenario, Stop, CHURN_SIZE, HOL_STREAMS, RR_SIZE,
    WRITE_SIZE,
};
use super::systems::System;
use ends::{Conn, End, Tcp};

mod ends;
mod idle;
mod lfn;

/// Most streams (each with a thread) the blocking harness runs.
const MAX_STREAMS: usize = 64;

/// Runs one scenario on `system` (smux-blocking or tcp-threads).
pub fn run(system: System, scenario: Scenario, p: &Params) -> Outcome {
    let r = match scenario {
        Scenario::Bulk(n) if n <= MAX_STREAMS => bulk(system, n, p),
        Scenario::Rr(n) if n <= MAX_STREAMS => rr(system, n, p),
        Scenario::Churn(n) if n <= MAX_STREAMS => churn(system, n, p),
        Scenario::Hol => hol(system, p),
        // As for `tcp`: raw TCP has no session whose heap per stream means anything
        // (its cost is in the kernel), and a thread per idle connection is not this
        // harness's shape.
        Scenario::Idle if system.is_raw() => return Outcome::NotApplicable,
        Scenario::Idle => idle::idle(system, p),
        Scenario::Lfn => lfn::lfn(system, p),
        // A thread per busy stream: over 64 the harness would measure threads.
        Scenario::Bulk(_) | Scenario::Rr(_) | Scenario::Churn(_) => return Outcome::NotApplicable,
    };
    match r {
        Ok(m) => Outcome::Done(m),
        Err(o) => o.into(),
    }
}

/// Both ends of one run and the threads of the run.
struct Pair {
    client: End,
    server: End,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The delayed link between the ends, if any (dropped after the ends).
    _relay: Option<Relay>,
}

impl Pair {
    fn new(system: System, p: &Params) -> Res<Pair> {
        Pair::through(system, None, p.phase_timeout)
    }

    /// The ends of `system`, talking through a relay of `shape` if one is given;
    /// `limit` bounds each raw TCP connect.
    fn through(system: System, shape: Option<Shape>, limit: Duration) -> Res<Pair> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| failed("listen", e))?;
        let local = listener.local_addr().map_err(|e| failed("listen", e))?;
        let relay = shape
            .map(|s| Relay::start(local, s))
            .transpose()
            .map_err(|e| failed("relay", e))?;
        let addr = relay.as_ref().map_or(local, Relay::addr);
        let (client, server) = if system.is_raw() {
            let tcp = Tcp::new(listener, addr, limit);
            (End::Tcp(tcp.clone()), End::Tcp(tcp))
        } else {
            let listener = smux_blocking::Listener::from_tcp(listener, Config::default())
                .map_err(|e| failed("listen", e))?;
            let client = smux_blocking::connect(addr, Config::default())
                .map_err(|e| failed("connect", e))?;
            let (server, _) = listener.accept().map_err(|e| failed("accept", e))?;
            (End::Smux(client), End::Smux(server))
        };
        Ok(Pair {
            client,
            server,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            _relay: relay,
        })
    }

    fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let h = thread::spawn(f);
        let mut v = self.threads.lock().unwrap();
        v.retain(|t| !t.is_finished());
        v.push(h);
    }

    /// Opens a stream whose reads and writes wait at most `limit`.
    fn open(&self, limit: Duration) -> Res<Conn> {
        let s = self.client.open().map_err(|e| failed("open", e))?;
        s.set_read_timeout(Some(limit))
            .and_then(|()| s.set_write_timeout(Some(limit)))
            .map_err(|e| failed("open", e))?;
        Ok(s)
    }

    /// The streams the server end accepts, handed over by a thread of the pair's
    /// (so it gets joined) until the end closes.
    fn accepted(&self) -> mpsc::Receiver<Conn> {
        let server = self.server.clone();
        let (tx, rx) = mpsc::channel();
        self.spawn(move || {
            while let Ok(s) = server.accept() {
                if tx.send(s).is_err() {
                    break;
                }
            }
        });
        rx
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.client.close();
        self.server.close();
        // Closing fails every blocked call, so the threads end promptly; wait a
        // bounded time for them so the next run starts on a quiet machine.
        let deadline = Instant::now() + Duration::from_secs(2);
        for t in self.threads.lock().unwrap().drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Server side of bulk and hol: tag 'S' streams are kept unread, others counted.
fn serve_sinks(pair: &Pair, counters: Arc<Vec<AtomicU64>>) -> Arc<AtomicUsize> {
    let started = Arc::new(AtomicUsize::new(0));
    let next = started.clone();
    let rx = pair.accepted();
    let parked = Arc::new(Mutex::new(Vec::new()));
    let threads = Arc::new(Mutex::new(Vec::<JoinHandle<()>>::new()));
    let stop = pair.stop.clone();
    pair.spawn(move || {
        while let Ok(mut s) = rx.recv() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let counters = counters.clone();
            let next = next.clone();
            let parked = parked.clone();
            threads.lock().unwrap().push(thread::spawn(move || {
                let mut tag = [0u8; 1];
                if s.read_exact(&mut tag).is_err() || s.write_all(&tag).is_err() {
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
                let mut buf = vec![0u8; WRITE_SIZE];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        for t in threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    });
    started
}

fn start_writers(
    pair: &Pair,
    n: usize,
    tag: u8,
    p: &Params,
    written: Option<Arc<AtomicU64>>,
) -> Res<()> {
    let data: Arc<[u8]> = vec![0x5a; WRITE_SIZE].into();
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = pair.open(p.phase_timeout)?;
        let mut ack = [0u8; 1];
        if let Err(e) = s.write_all(&[tag]).and_then(|()| s.read_exact(&mut ack)) {
            return Err(
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
                    hung(format!("first exchange on stream {i}"))
                } else {
                    failed("first exchange", e)
                },
            );
        }
        streams.push(s);
    }
    for mut s in streams {
        let data = data.clone();
        let stop = pair.stop.clone();
        let written = written.clone();
        pair.spawn(move || {
            while !stop.load(Ordering::Relaxed) && s.write_all(&data).is_ok() {
                if let Some(w) = &written {
                    w.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
        });
    }
    Ok(())
}

fn all_started(started: &AtomicUsize, n: usize, p: &Params) -> Res<()> {
    let deadline = Instant::now() + p.phase_timeout;
    loop {
        let k = started.load(Ordering::Relaxed);
        if k >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(hung(format!("{k} of {n} streams reached the reader")));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn measure(counters: &[AtomicU64], p: &Params, stretch: bool) -> (f64, f64, f64) {
    let snap = || -> Vec<u64> { counters.iter().map(|c| c.load(Ordering::Relaxed)).collect() };
    thread::sleep(p.warmup);
    let a = snap();
    let t0 = Instant::now();
    thread::sleep(p.duration);
    let mut b = snap();
    while stretch && a == b && t0.elapsed() < p.duration + p.phase_timeout {
        thread::sleep(Duration::from_millis(10));
        b = snap();
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

fn counters(n: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new((0..n).map(|_| AtomicU64::new(0)).collect())
}

fn bulk(system: System, n: usize, p: &Params) -> Res<Metrics> {
    let pair = Pair::new(system, p)?;
    let c = counters(n);
    let started = serve_sinks(&pair, c.clone());
    start_writers(&pair, n, b'B', p, None)?;
    all_started(&started, n, p)?;
    let (total, slowest, fastest) = measure(&c, p, true);
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

fn hol(system: System, p: &Params) -> Res<Metrics> {
    // As in the async harness: one session (or, for raw TCP, a connection per
    // stream), eight streams alone, then with a stream whose receiver never reads.
    let pair = Pair::new(system, p)?;
    let c = counters(HOL_STREAMS);
    let started = serve_sinks(&pair, c.clone());
    start_writers(&pair, HOL_STREAMS, b'B', p, None)?;
    all_started(&started, HOL_STREAMS, p)?;
    let alone = measure(&c, p, true).0;
    if alone == 0.0 {
        return Err(hung("no data moved without a stalled stream"));
    }
    let stalled = Arc::new(AtomicU64::new(0));
    match start_writers(&pair, 1, b'S', p, Some(stalled.clone())) {
        Ok(()) => {
            // Until its writes stop being accepted (bounded).
            let deadline = Instant::now() + p.phase_timeout;
            let mut last = (u64::MAX, Instant::now());
            while Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
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
    let with = measure(&c, p, false).0;
    Ok(Metrics {
        hol_fraction: Some(with / alone),
        mbps: Some(with),
        ..Metrics::default()
    })
}

fn rr(system: System, n: usize, p: &Params) -> Res<Metrics> {
    let pair = Pair::new(system, p)?;
    let rx = pair.accepted();
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(pair.open(p.phase_timeout)?);
    }
    // One echo thread per stream, started as the streams arrive.
    for _ in 0..n {
        let mut s = rx
            .recv_timeout(p.phase_timeout)
            .map_err(|_| hung("accept"))?;
        pair.spawn(move || {
            let mut buf = [0u8; RR_SIZE];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        });
    }
    let start = Instant::now() + p.warmup;
    let end = start + p.duration;
    let (tx, rx) = mpsc::channel::<Vec<u32>>();
    for mut s in streams {
        let tx = tx.clone();
        pair.spawn(move || {
            let mut samples = Vec::new();
            let req = [7u8; RR_SIZE];
            let mut resp = [0u8; RR_SIZE];
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                if s.write_all(&req).is_err() || s.read_exact(&mut resp).is_err() {
                    break;
                }
                if t >= start {
                    samples.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                }
            }
            let _ = tx.send(samples);
        });
    }
    drop(tx);
    let deadline = end + p.phase_timeout;
    let mut all = Vec::new();
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => all.extend(v),
            Err(_) => break,
        }
    }
    if all.is_empty() {
        return Err(hung("no request completed"));
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

fn churn(system: System, loops: usize, p: &Params) -> Res<Metrics> {
    let pair = Pair::new(system, p)?;
    // A pool of server threads, as many as the client's loops.
    let rx = Arc::new(Mutex::new(pair.accepted()));
    for _ in 0..loops {
        let rx = rx.clone();
        pair.spawn(move || loop {
            let next = rx.lock().unwrap().recv();
            let Ok(mut s) = next else { break };
            let mut buf = [0u8; CHURN_SIZE];
            if s.read_exact(&mut buf).is_err() || s.write_all(&buf).is_err() {
                continue;
            }
            let _ = s.read(&mut buf);
            s.close();
        });
    }
    let start = Instant::now() + p.warmup;
    let end = start + p.duration;
    let (tx, done) = mpsc::channel::<Result<u64, String>>();
    for _ in 0..loops {
        let client = pair.client.clone();
        let tx = tx.clone();
        let limit = p.phase_timeout;
        pair.spawn(move || {
            let mut count = 0u64;
            let mut buf = [1u8; CHURN_SIZE];
            while Instant::now() < end {
                let t = Instant::now();
                let r = (|| -> io::Result<()> {
                    let mut s = client.open()?;
                    s.set_read_timeout(Some(limit))?;
                    s.write_all(&buf)?;
                    s.read_exact(&mut buf)?;
                    s.close();
                    Ok(())
                })();
                if let Err(e) = r {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
                if t >= start {
                    count += 1;
                }
            }
            let _ = tx.send(Ok(count));
        });
    }
    drop(tx);
    let deadline = end + p.phase_timeout;
    let mut total = 0;
    for _ in 0..loops {
        let left = deadline.saturating_duration_since(Instant::now());
        match done.recv_timeout(left) {
            Ok(Ok(c)) => total += c,
            Ok(Err(e)) => return Err(Stop::Failed(format!("churn: {e}"))),
            Err(_) => return Err(hung("streams never completed")),
        }
    }
    Ok(Metrics {
        streams_per_s: Some(total as f64 / p.duration.as_secs_f64()),
        ..Metrics::default()
    })
}
