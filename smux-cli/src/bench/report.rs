//! The results as a table (stdout) and as JSON.

use std::fmt::Write as _;

use super::cell::{better_ratio, primary, Cell};
use super::scenarios::{self, Metrics, Outcome, Scenario};
use super::systems::System;
use super::{peak_rss, Options, WORKERS};

/// A number with three significant digits or so (k for thousands).
pub fn fmt_num(v: f64) -> String {
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

/// A figure's median, with its min-max over the repetitions in parentheses when
/// there are several and they differ.
fn figure(c: &Cell, m: &Metrics, get: fn(&Metrics) -> Option<f64>) -> String {
    let Some(v) = get(m) else {
        return "?".into();
    };
    match c.range(get) {
        // Within half a percent, the range says nothing the median does not.
        Some((lo, hi)) if hi - lo > 0.005 * hi.abs() => {
            format!("{} ({}-{})", fmt_num(v), fmt_num(lo), fmt_num(hi))
        }
        _ => fmt_num(v),
    }
}

/// The figures of a cell: medians with their min-max.
fn describe(c: &Cell, m: &Metrics) -> String {
    let f = |get| figure(c, m, get);
    match c.scenario {
        Scenario::Bulk(1) => format!("{} MB/s", f(|m| m.mbps)),
        Scenario::Bulk(_) => format!(
            "{} MB/s; per stream {} to {}",
            f(|m| m.mbps),
            f(|m| m.slowest_mbps),
            f(|m| m.fastest_mbps)
        ),
        Scenario::Rr(_) => format!(
            "p50 {} us, p99 {} us, {} req/s",
            f(|m| m.p50_us),
            f(|m| m.p99_us),
            f(|m| m.rps)
        ),
        Scenario::Churn(_) => format!("{} streams/s", f(|m| m.streams_per_s)),
        Scenario::Idle if m.client_bytes.is_none() => {
            format!("{} B per stream, both ends together", f(|m| m.total_bytes))
        }
        Scenario::Idle => format!(
            "{} B + {} B per stream",
            f(|m| m.client_bytes),
            f(|m| m.server_bytes)
        ),
        Scenario::Hol => format!("{} kept; {} MB/s", f(|m| m.hol_fraction), f(|m| m.mbps)),
        Scenario::Lfn => format!(
            "{} MB/s = {}% of link; whole run {} MB/s",
            f(|m| m.mbps),
            f(|m| m.link_fraction.map(|x| x * 100.0)),
            f(|m| m.whole_mbps)
        ),
    }
}

/// The primary figure of `system` in `scenario` (its median), if it has one.
pub fn reference(cells: &[Cell], scenario: Scenario, system: System) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.scenario == scenario && c.system == system)
        .and_then(Cell::primary)
        .map(|(v, _)| v)
}

/// The results table.
pub fn render(opts: &Options, cells: &[Cell]) -> String {
    let p = &opts.params;
    let mut rows: Vec<[String; 5]> = Vec::new();
    rows.push([
        "scenario".into(),
        "system".into(),
        "result: median (min-max)".into(),
        "vs tcp".into(),
        "vs smux-rs".into(),
    ]);
    for c in cells {
        let (text, ratios) = match c.median() {
            Some(m) => {
                let mut text = describe(c, &m);
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
                let ratio = |r: Option<f64>| match v
                    .zip(r)
                    .and_then(|(v, r)| better_ratio(c.scenario, v, r))
                {
                    Some(x) => format!("{x:.2}"),
                    None => "-".into(),
                };
                (
                    text,
                    [
                        ratio(reference(cells, c.scenario, System::Tcp)),
                        ratio(reference(cells, c.scenario, System::SmuxRs)),
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
         window {:?} after {:?} warm-up; {} rep(s), each figure their median (min-max)",
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
        "\nratios (vs tcp, vs smux-rs): above 1 is better than that system, below 1 worse. \
         They compare MB/s (bulk, lfn), p50 latency (rr-1), req/s (rr-N), streams/s \
         (churn), heap bytes per stream (idle) and the fraction kept (hol); for latency \
         and bytes, where lower is better, the ratio is that system's figure over this \
         one's.\n",
    );
    let _ = writeln!(
        out,
        "churn-N: N concurrent loops, each opening a stream, echoing {} KiB and closing it \
         (churn-1 is sequential; plain `churn` is churn-{}); idle: {} streams, heap bytes per \
         stream on the opening + accepting end; hol: {} streams next to one never read, \
         throughput over the same run without it",
        scenarios::CHURN_SIZE / 1024,
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
        ("heap_bytes_per_stream_both_ends", m.total_bytes),
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

/// The results as JSON: settings, and each cell's median and repetitions.
pub fn json(opts: &Options, cells: &[Cell]) -> String {
    let p = &opts.params;
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(
        out,
        "  \"settings\": {{\"workers\": {WORKERS}, \"write_size\": {}, \"duration_s\": {}, \
         \"warmup_s\": {}, \"reps\": {}, \"idle_streams\": {}, \
         \"hol_streams\": {}, \"lfn_delay_s\": {}, \"lfn_rate_bits_per_s\": {}, \
         \"lfn_warmup_s\": {}, \"lfn_window_s\": {}}},",
        scenarios::WRITE_SIZE,
        p.duration.as_secs_f64(),
        p.warmup.as_secs_f64(),
        opts.reps,
        p.idle_streams,
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
        // The loop count in a field of its own too, so a reader need not parse names.
        let loops = match c.scenario {
            Scenario::Churn(n) => format!(", \"churn_loops\": {n}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "    {{\"scenario\": {}, \"system\": {}{loops}, \"status\": {}, \"median\": {}, \
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
