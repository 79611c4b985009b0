//! `smux bench`: the same scenarios over loopback TCP for raw TCP, smux-rs and the
//! other Rust multiplexers, in one process run, repetitions interleaved across
//! systems, medians in a table.
//!
//! # Method
//!
//! * One Tokio runtime with 2 workers drives both ends of every session (the idle
//!   scenario gives each end its own one-worker runtime, see below); sockets are
//!   127.0.0.1 with `TCP_NODELAY`. Raw TCP uses one connection per stream. Each run
//!   builds a fresh session and tears it down (its tasks are aborted).
//! * bulk-N: N streams are opened and each exchanges one byte each way (so every
//!   system has announced it to the peer), then each loops `write_all` of 64 KiB; the
//!   reader counts bytes per stream. After the warm-up, the window's bytes give the
//!   aggregate MB/s (10^6 bytes) and the slowest and fastest stream.
//! * rr-N: N streams each send 64 bytes and wait for the 64-byte echo, in a loop;
//!   every round trip started in the window is a sample (p50, p99, req/s).
//! * churn: 4 loops each open a stream, send 1 KiB, read the 1 KiB echo, and close.
//! * idle: 10,000 streams opened (one byte each way, then left idle) on one session;
//!   the heap each end gained, over 10,000, measured by the counting global allocator
//!   with each end's runtime thread tagged.
//! * hol: 8 bulk streams measured alone, then again once a ninth stream whose reader
//!   never reads has filled whatever it can fill (its writes stop being accepted);
//!   the result is the second throughput over the first.
//! * lfn (only when named): one stream over a long fat link, a relay on loopback that
//!   delays every chunk by `--lfn-delay` each way and paces each direction to
//!   `--lfn-rate` (see `relay.rs`). A first stream makes two round trips (smux-rs
//!   negotiates its extensions then), the measured stream writes a pseudo-random
//!   pattern that the reader checks byte by byte. Warm-up and window are at least 10
//!   and 20 round trips; the result is the window's MB/s and its fraction of the link
//!   rate, with the whole-run figure (from the first write) next to it. After the
//!   window the writer shuts down and the run fails unless every byte written arrived
//!   intact, followed by end-of-file. smux-rs-base is smux-rs with extensions off.
//! * A run is bounded: a phase that makes no progress for `--timeout` is "hung", and a
//!   run whose process heap passes `--max-heap` is stopped ("failed").
//! * Repetitions are interleaved: every system runs repetition k of a scenario before
//!   any runs k+1, in an order rotated per repetition. A figure is the median of the
//!   repetitions that finished, shown only if at least half did.

mod blocking;
mod relay;
pub mod scenarios;
pub mod systems;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::args::duration;
use relay::Shape;
use scenarios::{Metrics, Outcome, Params, Scenario};
use systems::System;

/// Worker threads of the benchmark's Tokio runtime.
pub const WORKERS: usize = 2;

const BENCH_HELP: &str = "\
Scenarios (default: bulk-1,bulk-64,bulk-1024,rr-1,rr-64,churn,idle,hol):
  bulk-N   N streams each writing 64 KiB chunks as fast as they can: MB/s
  rr-N     N streams each sending 64 bytes and waiting for the echo: latency, req/s
  churn    4 loops opening a stream, echoing 1 KiB, closing it: streams/s
  idle     10,000 open idle streams: heap bytes per stream at each end
  hol      8 streams next to one whose reader never reads: throughput kept
  lfn      one stream over a delayed, paced loopback relay (a long fat link); runs
           only when named: it takes seconds per run

Systems (default: all but tokio-yamux+peek and smux-rs-base; for lfn: tcp, smux-rs,
smux-rs-base, yamux, tokio-yamux+peek, async-smux):
  tcp               one TCP connection per stream: the physical limit
  smux-rs           smux-rs on Tokio (smux-tokio), extensions on
  smux-rs-base      smux-rs on Tokio with extensions off (the base protocol)
  smux-blocking     smux-rs on std threads (smux-blocking; up to 64 streams)
  yamux, tokio-yamux, tokio-yamux+peek, async-smux   other Rust multiplexers

Examples:
  smux bench --quick
  smux bench --scenarios bulk-1,rr-1 --systems tcp,smux-rs --reps 5 --duration 2s
  smux bench --scenarios lfn --lfn-delay 50ms --lfn-rate 400
  smux bench --json run.json";

/// Arguments of `smux bench`.
#[derive(clap::Args, Debug)]
#[command(after_help = BENCH_HELP)]
pub struct Args {
    /// Scenarios to run, comma-separated (see below)
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_scenario)]
    scenarios: Vec<Scenario>,
    /// Systems to run, comma-separated (see below)
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_system)]
    systems: Vec<System>,
    /// Measurement window per run [default: 500ms; --quick 60ms]
    #[arg(long, value_name = "D", value_parser = duration)]
    duration: Option<Duration>,
    /// Time before each window opens [default: 150ms; --quick 30ms]
    #[arg(long, value_name = "D", value_parser = duration)]
    warmup: Option<Duration>,
    /// Repetitions; each figure is the median, with the min-max [default: 3; --quick 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    reps: Option<u16>,
    /// Streams of the idle scenario [default: 10000; --quick 1000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=60_000))]
    idle_streams: Option<u32>,
    /// Bound on each waiting phase; past it a system is 'hung' [default: 2s; --quick 500ms]
    #[arg(long, value_name = "D", value_parser = duration)]
    timeout: Option<Duration>,
    /// Stop a run when the process heap passes this many MB [default: 1024; --quick 512]
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(16..=1 << 20))]
    max_heap: Option<u32>,
    /// lfn: one-way delay of the link [default: 50ms; --quick 5ms]
    #[arg(long, value_name = "D", value_parser = duration)]
    lfn_delay: Option<Duration>,
    /// lfn: bandwidth of each direction in Mbit/s [default: 1000]
    #[arg(long, value_name = "MBIT", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    lfn_rate: Option<u32>,
    /// Also write the results as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A few seconds in all: short windows, 1 repetition, 1000 idle streams, 500ms
    /// timeout, 512 MB heap bound, 5ms lfn delay
    #[arg(long)]
    quick: bool,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::parse(s.trim()).ok_or_else(|| {
        format!("unknown scenario '{s}' (known: bulk-N, rr-N, churn, idle, hol, lfn)")
    })
}

fn parse_system(s: &str) -> Result<System, String> {
    System::parse(s.trim()).ok_or_else(|| {
        let known: Vec<&str> = System::ALL.iter().map(|s| s.name()).collect();
        format!("unknown system '{s}' (known: {})", known.join(", "))
    })
}

/// lfn's default link rate, Mbit/s: the 1 Gbit/s of the core's simulated long-fat-link
/// test. Measured on the 2-core development machine, a run at this rate costs the
/// process about a quarter of one core (relay threads, both ends, the checking
/// reader), and raw TCP, smux-rs, yamux and async-smux all stayed at 100% of the link
/// in every repetition while the machine was otherwise quiet. Under heavy load from
/// other work every system dips, raw TCP through the relay included (then the tcp
/// row shows it); `--lfn-rate 400` leaves more headroom.
const LFN_RATE_MBIT: usize = 1000;

/// Parsed options.
#[derive(Debug)]
pub struct Options {
    scenarios: Vec<Scenario>,
    /// The systems named by `--systems`; each scenario's default otherwise.
    systems: Option<Vec<System>>,
    reps: usize,
    params: Params,
    json: Option<PathBuf>,
}

impl Options {
    /// The systems that run `scenario`.
    fn systems_for(&self, scenario: Scenario) -> Vec<System> {
        match &self.systems {
            Some(v) => v.clone(),
            None => scenario.default_systems().to_vec(),
        }
    }

    /// Every system that runs some scenario, in first-seen order.
    fn all_systems(&self) -> Vec<System> {
        let mut out: Vec<System> = Vec::new();
        for &sc in &self.scenarios {
            for s in self.systems_for(sc) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }
}

/// Dedups a list, keeping the first of each.
fn dedup<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

impl Args {
    fn options(self) -> Options {
        let (d, w, r, i, t, h, ld) = if self.quick {
            (60, 30, 1, 1000, 500, 512, 5)
        } else {
            (500, 150, 3, 10_000, 2000, 1024, 50)
        };
        let ms = Duration::from_millis;
        let scenarios = if self.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            dedup(&self.scenarios)
        };
        let systems = (!self.systems.is_empty()).then(|| dedup(&self.systems));
        Options {
            scenarios,
            systems,
            reps: self.reps.map_or(r, usize::from),
            params: Params {
                duration: self.duration.unwrap_or(ms(d)),
                warmup: self.warmup.unwrap_or(ms(w)),
                phase_timeout: self.timeout.unwrap_or(ms(t)),
                idle_streams: self.idle_streams.map_or(i, |n| n as usize),
                max_heap: (self.max_heap.map_or(h, |n| n as usize)) << 20,
                link: Shape {
                    delay: self.lfn_delay.unwrap_or(ms(ld)),
                    rate_bits: self.lfn_rate.map_or(LFN_RATE_MBIT as u64, u64::from) * 1_000_000,
                },
            },
            json: self.json,
        }
    }
}

/// Entry point of `smux bench`.
pub fn main(args: Args) -> ExitCode {
    let opts = args.options();
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// All repetitions of one scenario on one system, and their summary.
struct Cell {
    scenario: Scenario,
    system: System,
    outcomes: Vec<Outcome>,
    peak_heap: u64,
    /// Times the kernel entered TCP memory pressure during this cell's runs.
    tcp_pressure: u64,
}

impl Cell {
    fn done(&self) -> Vec<&Metrics> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Done(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Median of each figure over the repetitions that finished (none unless at
    /// least half of them did).
    fn median(&self) -> Option<Metrics> {
        let done = self.done();
        if done.is_empty() || done.len() * 2 < self.outcomes.len() {
            return None;
        }
        let med = |f: fn(&Metrics) -> Option<f64>| {
            let mut v: Vec<f64> = done.iter().filter_map(|m| f(m)).collect();
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            let n = v.len();
            Some(if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            })
        };
        Some(Metrics {
            mbps: med(|m| m.mbps),
            slowest_mbps: med(|m| m.slowest_mbps),
            fastest_mbps: med(|m| m.fastest_mbps),
            p50_us: med(|m| m.p50_us),
            p99_us: med(|m| m.p99_us),
            rps: med(|m| m.rps),
            streams_per_s: med(|m| m.streams_per_s),
            client_bytes: med(|m| m.client_bytes),
            server_bytes: med(|m| m.server_bytes),
            hol_fraction: med(|m| m.hol_fraction),
            whole_mbps: med(|m| m.whole_mbps),
            link_fraction: med(|m| m.link_fraction),
            verified_bytes: med(|m| m.verified_bytes),
        })
    }

    /// Smallest and largest of a figure over the repetitions that finished, when
    /// more than one did.
    fn range(&self, f: fn(&Metrics) -> Option<f64>) -> Option<(f64, f64)> {
        let v: Vec<f64> = self.done().into_iter().filter_map(f).collect();
        if v.len() < 2 {
            return None;
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((lo, hi))
    }

    /// What to print when no repetition finished.
    fn failure(&self) -> String {
        self.outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::Hung(w) => Some(format!("hung ({w})")),
                Outcome::Failed(e) => Some(format!("failed: {e}")),
                Outcome::NotApplicable => Some("n/a".to_string()),
                Outcome::Done(_) => None,
            })
            .unwrap_or_default()
    }

    fn not_done(&self) -> usize {
        self.outcomes.len() - self.done().len()
    }
}

/// The figure ratios are taken on.
fn primary(scenario: Scenario, m: &Metrics) -> Option<f64> {
    match scenario {
        Scenario::Bulk(_) => m.mbps,
        Scenario::Rr(1) => m.p50_us,
        Scenario::Rr(_) => m.rps,
        Scenario::Churn => m.streams_per_s,
        Scenario::Idle => Some(m.client_bytes? + m.server_bytes?),
        Scenario::Hol => m.hol_fraction,
        Scenario::Lfn => m.mbps,
    }
}

fn run(opts: &Options) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let p = &opts.params;
    let mut cells: Vec<Cell> = Vec::new();
    // Each scenario's cells, a range of `cells`.
    let mut groups = Vec::new();
    for &scenario in &opts.scenarios {
        let start = cells.len();
        for system in opts.systems_for(scenario) {
            cells.push(Cell {
                scenario,
                system,
                outcomes: Vec::new(),
                peak_heap: 0,
                tcp_pressure: 0,
            });
        }
        groups.push((scenario, start, cells.len() - start));
    }
    let total = cells.len() * opts.reps;
    let mut progress = Progress::new(total);
    let (lfn_warmup, lfn_window) = p.lfn_times();
    for rep in 0..opts.reps {
        for &(scenario, start, nsys) in &groups {
            let run_limit = if scenario == Scenario::Lfn {
                2 * (lfn_warmup + lfn_window) + 6 * p.lfn_phase_timeout()
            } else {
                3 * p.warmup + 3 * p.duration + 6 * p.phase_timeout
            };
            // Rotate the order each repetition so no system always runs first.
            for k in 0..nsys {
                let cell = &mut cells[start + (k + rep) % nsys];
                let system = cell.system;
                progress.step(&format!(
                    "rep {}/{} {} {}",
                    rep + 1,
                    opts.reps,
                    scenario.name(),
                    system.name()
                ));
                let heap_before = crate::alloc::live_total();
                let pressure_before = tcp_memory_pressures();
                crate::alloc::reset_peak();
                let outcome = if system == System::SmuxBlocking {
                    blocking::run(scenario, p)
                } else if scenario == Scenario::Idle {
                    scenarios::idle(system, p)
                } else {
                    rt.block_on(async {
                        match tokio::time::timeout(run_limit, scenarios::run(scenario, system, p))
                            .await
                        {
                            Ok(o) => o,
                            Err(_) => Outcome::Hung("run".into()),
                        }
                    })
                };
                let growth = (crate::alloc::peak() - heap_before).max(0) as u64;
                cell.tcp_pressure += tcp_memory_pressures().saturating_sub(pressure_before);
                cell.peak_heap = cell.peak_heap.max(growth);
                // Let aborted tasks and closing sessions wind down and give their memory
                // back before the next run (bounded: a leak only costs the wait).
                rt.block_on(async {
                    let deadline = Instant::now() + p.phase_timeout / 2;
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if crate::alloc::live_total() < heap_before + (8 << 20)
                            || Instant::now() >= deadline
                        {
                            break;
                        }
                    }
                });
                cell.outcomes.push(outcome);
            }
        }
    }
    progress.finish();
    let table = render(opts, &cells);
    print!("{table}");
    std::io::stdout().flush().ok();
    if let Some(path) = &opts.json {
        std::fs::write(path, json(opts, &cells))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn fmt_num(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn describe(scenario: Scenario, m: &Metrics, range: Option<(f64, f64)>) -> String {
    let f = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "?".into());
    match scenario {
        Scenario::Bulk(1) => format!("{} MB/s", f(m.mbps)),
        Scenario::Bulk(_) => format!(
            "{} MB/s, per stream {}..{}",
            f(m.mbps),
            f(m.slowest_mbps),
            f(m.fastest_mbps)
        ),
        Scenario::Rr(_) => format!(
            "p50 {} us, p99 {} us, {} req/s",
            f(m.p50_us),
            f(m.p99_us),
            f(m.rps)
        ),
        Scenario::Churn => format!("{} streams/s", f(m.streams_per_s)),
        Scenario::Idle => format!(
            "{} B + {} B per stream",
            f(m.client_bytes),
            f(m.server_bytes)
        ),
        Scenario::Hol => format!("{} ({} MB/s)", f(m.hol_fraction), f(m.mbps)),
        Scenario::Lfn => {
            let range = range
                .map(|(lo, hi)| format!(" ({}-{})", fmt_num(lo), fmt_num(hi)))
                .unwrap_or_default();
            format!(
                "{} MB/s{range} = {:.0}% of link, whole run {} MB/s",
                f(m.mbps),
                m.link_fraction.unwrap_or(f64::NAN) * 100.0,
                f(m.whole_mbps)
            )
        }
    }
}

fn render(opts: &Options, cells: &[Cell]) -> String {
    let p = &opts.params;
    let mut rows: Vec<[String; 5]> = Vec::new();
    rows.push([
        "scenario".into(),
        "system".into(),
        "result (median)".into(),
        "vs tcp".into(),
        "vs smux-rs".into(),
    ]);
    let reference = |scenario: Scenario, system: System| {
        cells
            .iter()
            .find(|c| c.scenario == scenario && c.system == system)
            .and_then(Cell::median)
            .and_then(|m| primary(scenario, &m))
    };
    for c in cells {
        let (text, ratios) = match c.median() {
            Some(m) => {
                let mut text = describe(c.scenario, &m, c.range(|m| m.mbps));
                if c.not_done() > 0 {
                    let _ = write!(
                        text,
                        " [{} of {} reps: {}]",
                        c.not_done(),
                        c.outcomes.len(),
                        c.failure()
                    );
                }
                if c.tcp_pressure > 0 {
                    text.push_str(" [kernel TCP memory pressure]");
                }
                let v = primary(c.scenario, &m);
                let ratio = |r: Option<f64>| match (v, r) {
                    (Some(v), Some(r)) if r > 0.0 => format!("{:.2}", v / r),
                    _ => "-".into(),
                };
                (
                    text,
                    [
                        ratio(reference(c.scenario, System::Tcp)),
                        ratio(reference(c.scenario, System::SmuxRs)),
                    ],
                )
            }
            None if !c.done().is_empty() => (
                format!(
                    "{} [{} of {} reps finished]",
                    c.failure(),
                    c.done().len(),
                    c.outcomes.len()
                ),
                ["-".into(), "-".into()],
            ),
            None => (c.failure(), ["-".into(), "-".into()]),
        };
        let [a, b] = ratios;
        rows.push([c.scenario.name(), c.system.name().into(), text, a, b]);
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, s) in widths.iter_mut().zip(r) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "smux bench: loopback TCP, {WORKERS} Tokio workers, {} KiB writes, TCP_NODELAY; \
         window {:?} after {:?} warm-up; median of {} rep(s)",
        scenarios::WRITE_SIZE / 1024,
        p.duration,
        p.warmup,
        opts.reps
    );
    let mut last = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i > 1 && r[0] != last {
            out.push('\n');
        }
        last = r[0].clone();
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        );
    }
    out.push_str(
        "\nratios: this system's figure over the reference's: MB/s (bulk, lfn), p50 (rr-1, \
         lower is better), req/s (rr-N), streams/s (churn), client+server bytes (idle, lower is \
         better), fraction (hol)\n",
    );
    let _ = writeln!(
        out,
        "churn: {} concurrent loops; idle: {} streams, heap bytes per stream on the opening + \
         accepting end; hol: {} streams next to one never read, throughput over the same run \
         without it",
        scenarios::CHURN_LOOPS,
        p.idle_streams,
        scenarios::HOL_STREAMS
    );
    if opts.scenarios.contains(&Scenario::Lfn) {
        let (w, d) = p.lfn_times();
        let _ = writeln!(
            out,
            "lfn: one stream through a loopback relay adding {:?} each way (RTT {:?}) at {} \
             Mbit/s ({} MB/s) each way, holding at most {:.1} MB per direction (the \
             round-trip bandwidth-delay product); {w:?} warm-up, {d:?} window; MB/s in the \
             window (min-max over reps), its fraction of the link rate, and the whole run \
             from the first write; every byte checked at the reader",
            p.link.delay,
            p.link.rtt(),
            p.link.rate_bits / 1_000_000,
            fmt_num(p.link.bytes_per_sec() / 1e6),
            p.link.capacity() as f64 / 1e6
        );
    }
    out.push_str("peak heap growth during a run (both ends), worst run per system:");
    for s in opts.all_systems() {
        let (peak, worst) = cells
            .iter()
            .filter(|c| c.system == s)
            .map(|c| (c.peak_heap, c.scenario.name()))
            .max()
            .unwrap_or_default();
        let _ = write!(out, " {} {:.1} MB ({worst});", s.name(), peak as f64 / 1e6);
    }
    out.pop();
    out.push('\n');
    if let Some(rss) = peak_rss() {
        let _ = writeln!(out, "peak RSS of the whole run: {:.0} MB", rss as f64 / 1e6);
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_metrics(m: &Metrics) -> String {
    let fields = [
        ("mb_per_s", m.mbps),
        ("slowest_stream_mb_per_s", m.slowest_mbps),
        ("fastest_stream_mb_per_s", m.fastest_mbps),
        ("p50_us", m.p50_us),
        ("p99_us", m.p99_us),
        ("req_per_s", m.rps),
        ("streams_per_s", m.streams_per_s),
        ("client_heap_bytes_per_stream", m.client_bytes),
        ("server_heap_bytes_per_stream", m.server_bytes),
        ("hol_fraction", m.hol_fraction),
        ("whole_run_mb_per_s", m.whole_mbps),
        ("link_fraction", m.link_fraction),
        ("verified_bytes", m.verified_bytes),
    ];
    let body: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| v.filter(|v| v.is_finite()).map(|v| format!("\"{k}\": {v}")))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn json_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Done(m) => format!("{{\"status\": \"ok\", \"metrics\": {}}}", json_metrics(m)),
        Outcome::Hung(w) => format!("{{\"status\": \"hung\", \"detail\": {}}}", json_str(w)),
        Outcome::Failed(e) => format!("{{\"status\": \"failed\", \"detail\": {}}}", json_str(e)),
        Outcome::NotApplicable => "{\"status\": \"n/a\"}".into(),
    }
}

fn json(opts: &Options, cells: &[Cell]) -> String {
    let p = &opts.params;
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(
        out,
        "  \"settings\": {{\"workers\": {WORKERS}, \"write_size\": {}, \"duration_s\": {}, \
         \"warmup_s\": {}, \"reps\": {}, \"idle_streams\": {}, \"churn_loops\": {}, \
         \"hol_streams\": {}, \"lfn_delay_s\": {}, \"lfn_rate_bits_per_s\": {}, \
         \"lfn_warmup_s\": {}, \"lfn_window_s\": {}}},",
        scenarios::WRITE_SIZE,
        p.duration.as_secs_f64(),
        p.warmup.as_secs_f64(),
        opts.reps,
        p.idle_streams,
        scenarios::CHURN_LOOPS,
        scenarios::HOL_STREAMS,
        p.link.delay.as_secs_f64(),
        p.link.rate_bits,
        p.lfn_times().0.as_secs_f64(),
        p.lfn_times().1.as_secs_f64()
    );
    let _ = writeln!(out, "  \"results\": [");
    for (i, c) in cells.iter().enumerate() {
        let median = c
            .median()
            .map(|m| json_metrics(&m))
            .unwrap_or_else(|| "null".into());
        let status = if c.median().is_some() {
            "ok".to_string()
        } else {
            c.failure()
        };
        let reps: Vec<String> = c.outcomes.iter().map(json_outcome).collect();
        let _ = writeln!(
            out,
            "    {{\"scenario\": {}, \"system\": {}, \"status\": {}, \"median\": {}, \
             \"peak_heap_bytes\": {}, \"reps\": [{}]}}{}",
            json_str(&c.scenario.name()),
            json_str(c.system.name()),
            json_str(&status),
            median,
            c.peak_heap,
            reps.join(", "),
            if i + 1 < cells.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

/// Progress on stderr: an indicatif bar when stderr is a terminal, one plain line per
/// run otherwise (logs, CI).
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            // A fixed template: the fallback only matters if the template were wrong.
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} {elapsed:>4} (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Progress {
            total,
            done: 0,
            start: Instant::now(),
            bar,
        }
    }

    /// Announces the next run.
    fn step(&mut self, what: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done as u64);
                bar.set_message(what.to_string());
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "[{}/{} {:.1}s] {what}",
                    self.done + 1,
                    self.total,
                    self.start.elapsed().as_secs_f64()
                );
                let _ = err.flush();
            }
        }
        self.done += 1;
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "smux bench: {} runs in {:.1}s",
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }
}

/// How often the kernel has entered TCP memory pressure (`tcp_mem`), Linux only:
/// many raw TCP connections with full buffers get there, and then crawl.
fn tcp_memory_pressures() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let found = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "TCPMemoryPressures");
        return found.and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    }
    0
}

/// Peak RSS of this process in bytes (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
