//! `smux bench`: the same scenarios over loopback TCP for raw TCP, smux-rs (on each
//! of its adapters) and the other Rust multiplexers, in one process run, repetitions
//! interleaved across systems, medians with their min-max in a table (and, with
//! `--svg`, a chart).
//!
//! # Method
//!
//! * One Tokio runtime with 2 workers drives both ends of every session (the idle
//!   scenario gives each end its own one-worker runtime, see below); sockets are
//!   127.0.0.1 with `TCP_NODELAY`. Raw TCP uses one connection per stream. Each run
//!   builds a fresh session and tears it down (its tasks are aborted). smux-smol runs
//!   the same harness on a smol executor of 2 threads instead (`exec.rs`), and so
//!   does tcp-smol: raw TCP on smol's sockets (async-net), one connection per
//!   stream, reached through the same futures-io to Tokio I/O wrapper, so that
//!   smux-smol has a physical limit of its own runtime's shape; smux-blocking has a
//!   harness of its own with a thread per busy stream (`blocking/`), which also runs
//!   tcp-threads: raw TCP on blocking std sockets, one connection per stream, in the
//!   same thread shapes, so that smux-blocking has a physical limit of its own kind
//!   (a round trip between two threads blocked on sockets costs more than between
//!   tasks on a runtime, more so when the threads are on different CPUs).
//! * bulk-N: N streams are opened and each exchanges one byte each way (so every
//!   system has announced it to the peer), then each loops `write_all` of 64 KiB; the
//!   reader counts bytes per stream. After the warm-up, the window's bytes give the
//!   aggregate MB/s (10^6 bytes) and the slowest and fastest stream.
//! * rr-N: N streams each send 64 bytes and wait for the 64-byte echo, in a loop;
//!   every round trip started in the window is a sample (p50, p99, req/s).
//! * churn-N: N loops each open a stream, send 1 KiB, read the 1 KiB echo, and close,
//!   in a loop; streams/s over all loops. churn-1 is sequential: one stream lifetime
//!   after another, so it measures the open/close path's latency. Plain `churn` is
//!   churn-4 (what it meant before it took a loop count).
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
//!   repetitions that finished, shown only if at least half did, with their min-max.
//! * Ratios to raw TCP and to smux-rs are turned so that above 1 is better: for
//!   latency and heap bytes, the reference's figure over the system's (`cell.rs`).

mod blocking;
mod cell;
mod exec;
mod relay;
mod report;
pub mod scenarios;
mod svg;
pub mod systems;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::args::duration;
use cell::Cell;
use relay::Shape;
use scenarios::{Outcome, Params, Scenario};
use systems::System;

/// Worker threads of the benchmark's Tokio runtime.
pub const WORKERS: usize = 2;

const BENCH_HELP: &str = "\
Scenarios (default: bulk-1,bulk-64,bulk-1024,rr-1,rr-64,churn-1,churn-4,idle,hol):
  bulk-N   N streams each writing 64 KiB chunks as fast as they can: MB/s
  rr-N     N streams each sending 64 bytes and waiting for the echo: latency, req/s
  churn-N  N loops each opening a stream, echoing 1 KiB, closing it: streams/s
           (churn-1: one after another; plain churn is churn-4)
  idle     10,000 open idle streams: heap bytes per stream at each end
  hol      8 streams next to one whose reader never reads: throughput kept
  lfn      one stream over a delayed, paced loopback relay (a long fat link); runs
           only when named: it takes seconds per run

Systems (default: all but tokio-yamux+peek and smux-rs-base; for lfn: tcp, smux-rs,
smux-rs-base, smux-smol, tcp-smol, smux-blocking, tcp-threads, yamux,
tokio-yamux+peek, async-smux):
  tcp               one TCP connection per stream: the physical limit
  smux-rs           smux-rs on Tokio (smux-tokio), extensions on
  smux-rs-base      smux-rs on Tokio with extensions off (the base protocol)
  smux-smol         smux-rs on smol (smux-smol; the whole run on a smol executor)
  tcp-smol          one TCP connection per stream on smol's sockets, run on the
                    smol executor as for smux-smol: its physical limit
  smux-blocking     smux-rs on std threads (smux-blocking; a thread per busy stream,
                    so bulk, rr and churn up to 64 streams or loops)
  tcp-threads       one TCP connection per stream on std threads and blocking
                    sockets, threads as for smux-blocking: its physical limit
  yamux, tokio-yamux, tokio-yamux+peek, async-smux   other Rust multiplexers

Examples:
  smux bench --quick
  smux bench --scenarios bulk-1,rr-1 --systems tcp,smux-rs,smux-smol --reps 5 --duration 2s
  smux bench --scenarios lfn --lfn-delay 50ms --lfn-rate 400
  smux bench --json run.json --svg run.svg";

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
    /// Also draw the results as an SVG chart in FILE: per scenario, each system's
    /// figure as a ratio to raw TCP (higher is better), hung and failed runs marked
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// A few seconds in all: short windows, 1 repetition, 1000 idle streams, 500ms
    /// timeout, 512 MB heap bound, 5ms lfn delay
    #[arg(long)]
    quick: bool,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::parse(s.trim()).ok_or_else(|| {
        format!("unknown scenario '{s}' (known: bulk-N, rr-N, churn-N, churn, idle, hol, lfn)")
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
    svg: Option<PathBuf>,
    /// A `--quick` run: its figures are a smoke test, and the chart says so.
    quick: bool,
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
            svg: self.svg,
            quick: self.quick,
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
                let outcome = if system.is_blocking() {
                    blocking::run(system, scenario, p)
                } else if scenario == Scenario::Idle {
                    scenarios::idle(system, p)
                } else {
                    let bounded = async {
                        match tokio::time::timeout(run_limit, scenarios::run(scenario, system, p))
                            .await
                        {
                            Ok(o) => o,
                            Err(_) => Outcome::Hung("run".into()),
                        }
                    };
                    if system.is_smol() {
                        // On smol's terms (see `exec`), this thread one of the
                        // executor's; Tokio only keeps the time.
                        let _tokio = rt.enter();
                        smol::block_on(systems::smol_executor().run(bounded))
                    } else {
                        rt.block_on(bounded)
                    }
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
    let table = report::render(opts, &cells);
    print!("{table}");
    std::io::stdout().flush().ok();
    if let Some(path) = &opts.json {
        std::fs::write(path, report::json(opts, &cells))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &opts.svg {
        let subtitle = format!(
            "{}loopback TCP, {WORKERS} Tokio workers, {} KiB writes; window {:?} after {:?} \
             warm-up; median of {} rep(s), whiskers from min to max",
            if opts.quick { "a --quick run: " } else { "" },
            scenarios::WRITE_SIZE / 1024,
            opts.params.duration,
            opts.params.warmup,
            opts.reps
        );
        std::fs::write(path, svg::chart(&cells, subtitle).render())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
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
