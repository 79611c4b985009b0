//! `smux bench --svg FILE`: the run as an SVG bar chart, written by hand.
//!
//! One group of bars per scenario, one colour per system (named in a legend). Each
//! bar is the system's primary figure as a ratio to raw TCP's, turned so that higher
//! is better (see `cell::better_ratio`), on a log scale around 1 (raw TCP), with a
//! whisker over its min-max across repetitions. A scenario without a raw TCP figure
//! (idle) is drawn against smux-rs and says so. Runs that hung, failed or do not
//! apply are marked as such at the baseline.

use std::fmt::Write as _;

use super::cell::{better_ratio, Cell};
use super::report::fmt_num;
use super::scenarios::{Outcome, Scenario};
use super::systems::System;

/// What one bar shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The median ratio (higher is better) and its min-max, if several repetitions.
    Ratio(f64, Option<(f64, f64)>),
    /// No repetition (or too few) finished: they hung.
    Hung,
    /// No repetition (or too few) finished: they failed.
    Failed,
    /// The scenario does not apply to the system.
    NotApplicable,
    /// Measured, but there is no reference figure to compare it with.
    NoReference,
}

/// One scenario's bars.
#[derive(Debug, Clone)]
pub struct Group {
    /// The scenario's name.
    pub label: String,
    /// The figure compared ("MB/s", "p50 latency"...).
    pub figure: &'static str,
    /// The system the ratios are against.
    pub baseline: &'static str,
    /// (index into the chart's systems, value), in system order.
    pub bars: Vec<(usize, Value)>,
}

/// A whole chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// A line under the title: the run's settings.
    pub subtitle: String,
    /// Names of the systems, in legend (and bar) order.
    pub systems: Vec<&'static str>,
    /// One group per scenario.
    pub groups: Vec<Group>,
}

/// Colours per system (the Okabe-Ito palette, told apart with most colour vision).
fn colour(system: &str) -> &'static str {
    match system {
        "tcp" => "#999999",
        "smux-rs" => "#0072B2",
        "smux-rs-base" => "#56B4E9",
        "smux-smol" => "#009E73",
        "smux-blocking" => "#CC79A7",
        // Past the palette's eight: raw TCP's kin in greys, lighter on threads,
        // darker on smol.
        "tcp-threads" => "#C8C8C8",
        "tcp-smol" => "#666666",
        "yamux" => "#E69F00",
        "tokio-yamux" => "#D55E00",
        "tokio-yamux+peek" => "#F0E442",
        _ => "#000000",
    }
}

/// The chart of a run's cells.
pub fn chart(cells: &[Cell], subtitle: String) -> Chart {
    let mut systems: Vec<System> = Vec::new();
    let mut scenarios: Vec<Scenario> = Vec::new();
    for c in cells {
        if !systems.contains(&c.system) {
            systems.push(c.system);
        }
        if !scenarios.contains(&c.scenario) {
            scenarios.push(c.scenario);
        }
    }
    let groups = scenarios
        .into_iter()
        .map(|sc| {
            let figure = |sys| super::report::reference(cells, sc, sys);
            let (baseline, reference) = match figure(System::Tcp) {
                Some(r) => (System::Tcp, Some(r)),
                None => (System::SmuxRs, figure(System::SmuxRs)),
            };
            let bars = cells
                .iter()
                .filter(|c| c.scenario == sc)
                .map(|c| {
                    let i = systems.iter().position(|&s| s == c.system).unwrap_or(0);
                    (i, value(c, reference))
                })
                .collect();
            Group {
                label: sc.name(),
                figure: figure_name(sc),
                baseline: baseline.name(),
                bars,
            }
        })
        .collect();
    Chart {
        subtitle,
        systems: systems.iter().map(|s| s.name()).collect(),
        groups,
    }
}

/// The name of a scenario's primary figure (see `cell::primary`).
fn figure_name(sc: Scenario) -> &'static str {
    match sc {
        Scenario::Bulk(_) | Scenario::Lfn => "MB/s",
        Scenario::Rr(1) => "p50 latency",
        Scenario::Rr(_) => "req/s",
        Scenario::Churn(_) => "streams/s",
        Scenario::Idle => "heap bytes",
        Scenario::Hol => "share kept",
    }
}

fn value(c: &Cell, reference: Option<f64>) -> Value {
    let Some((v, range)) = c.primary() else {
        let all = |f: fn(&Outcome) -> bool| c.outcomes.iter().all(f);
        return if all(|o| matches!(o, Outcome::NotApplicable)) {
            Value::NotApplicable
        } else if c.outcomes.iter().any(|o| matches!(o, Outcome::Hung(_))) {
            Value::Hung
        } else {
            Value::Failed
        };
    };
    let Some(r) = reference else {
        return Value::NoReference;
    };
    let Some(ratio) = better_ratio(c.scenario, v, r) else {
        return Value::NoReference;
    };
    let range = range.and_then(|(lo, hi)| {
        let (a, b) = (
            better_ratio(c.scenario, lo, r)?,
            better_ratio(c.scenario, hi, r)?,
        );
        Some((a.min(b), a.max(b)))
    });
    Value::Ratio(ratio, range)
}

// Layout, in pixels.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 64.0;
const PLOT_H: f64 = 300.0;
const BAR_W: f64 = 12.0;
const BAR_GAP: f64 = 2.0;
const GROUP_PAD: f64 = 18.0;
const LEGEND_ROW: f64 = 18.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    /// The log scale's bounds, whole decades around every ratio and 1.
    fn decades(&self) -> (i32, i32) {
        let (mut lo, mut hi) = (0i32, 0i32);
        for (_, v) in self.groups.iter().flat_map(|g| &g.bars) {
            if let Value::Ratio(r, range) = v {
                let (a, b) = range.unwrap_or((*r, *r));
                lo = lo.min(a.min(*r).log10().floor() as i32);
                hi = hi.max(b.max(*r).log10().ceil() as i32);
            }
        }
        // At least one decade each way; at most 10^-3 .. 10^4 (beyond is clipped).
        (lo.clamp(-3, -1), hi.clamp(1, 4))
    }

    /// The SVG document.
    pub fn render(&self) -> String {
        let (lo, hi) = self.decades();
        let group_w = |g: &Group| g.bars.len() as f64 * (BAR_W + BAR_GAP) + GROUP_PAD;
        let plot_w: f64 = self.groups.iter().map(group_w).sum::<f64>().max(200.0);
        let width = LEFT + plot_w + RIGHT;
        let legend_y = TOP + PLOT_H + 44.0;
        let per_row = ((width - LEFT) / 150.0).floor().max(1.0) as usize;
        let rows = self.systems.len().div_ceil(per_row);
        let height = legend_y + rows as f64 * LEGEND_ROW + 12.0;
        let y = |r: f64| {
            let l = r.log10().clamp(lo as f64, hi as f64);
            TOP + (hi as f64 - l) / (hi - lo) as f64 * PLOT_H
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"##
        );
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">smux bench: each system against raw TCP (higher is better)</text>"##
        );
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="40" fill="#444">{}</text>"##,
            esc(&self.subtitle)
        );
        // Decade grid and labels; the baseline (1 = raw TCP) drawn stronger.
        for d in lo..=hi {
            let yy = y(10f64.powi(d));
            let (stroke, w) = if d == 0 { ("#333", 1.5) } else { ("#ddd", 1.0) };
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}" stroke-width="{w}"/>"##,
                LEFT + plot_w
            );
            let label = if d >= 0 {
                format!("{}", 10f64.powi(d))
            } else {
                format!("{:.*}", (-d) as usize, 10f64.powi(d))
            };
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                LEFT - 6.0,
                yy + 4.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#444">ratio to raw TCP, log scale (1 = raw TCP)</text>"##,
            TOP + PLOT_H / 2.0
        );
        let base = y(1.0);
        let mut x = LEFT + GROUP_PAD / 2.0;
        for g in &self.groups {
            let start = x;
            for (i, v) in &g.bars {
                let name = self.systems.get(*i).copied().unwrap_or("?");
                bar(&mut s, x, base, v, name, &y);
                x += BAR_W + BAR_GAP;
            }
            let mid = (start + x - BAR_GAP) / 2.0;
            let _ = writeln!(
                s,
                r##"<text x="{mid:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"##,
                TOP + PLOT_H + 16.0,
                esc(&g.label)
            );
            let against = if g.baseline == "tcp" {
                String::new()
            } else {
                format!(", vs {} (no tcp)", g.baseline)
            };
            let _ = writeln!(
                s,
                r##"<text x="{mid:.1}" y="{:.1}" text-anchor="middle" font-size="9" fill="#444">{}{}</text>"##,
                TOP + PLOT_H + 28.0,
                esc(g.figure),
                esc(&against)
            );
            x += GROUP_PAD;
        }
        for (k, name) in self.systems.iter().enumerate() {
            let lx = LEFT + (k % per_row) as f64 * 150.0;
            let ly = legend_y + (k / per_row) as f64 * LEGEND_ROW;
            let _ = writeln!(
                s,
                r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"##,
                ly - 10.0,
                colour(name),
                lx + 17.0,
                esc(name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// One bar at `x` (its left edge): a ratio from the baseline up or down, with its
/// whisker and value, or a marker for a run without one.
fn bar(s: &mut String, x: f64, base: f64, v: &Value, system: &str, y: &dyn Fn(f64) -> f64) {
    let cx = x + BAR_W / 2.0;
    let fill = colour(system);
    match v {
        Value::Ratio(r, range) => {
            let top = y(*r).min(base);
            let h = (y(*r) - base).abs().max(1.0);
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{top:.1}" width="{BAR_W}" height="{h:.1}" fill="{fill}"><title>{}: {}</title></rect>"##,
                esc(system),
                fmt_num(*r)
            );
            if let Some((a, b)) = range {
                let (ya, yb) = (y(*a), y(*b));
                let _ = writeln!(
                    s,
                    r##"<path d="M{cx:.1} {ya:.1}V{yb:.1}M{:.1} {ya:.1}h6M{:.1} {yb:.1}h6" stroke="#222" fill="none"/>"##,
                    cx - 3.0,
                    cx - 3.0
                );
            }
            // The value beyond the bar's end (and beyond the whisker); above the
            // baseline instead when a bar reaches the bottom of the plot.
            let end = range.map_or(*r, |(a, b)| if *r >= 1.0 { b } else { a });
            let (ty, anchor) = if *r >= 1.0 {
                (y(end) - 4.0, "start")
            } else if y(end) + 40.0 < TOP + PLOT_H {
                (y(end) + 10.0, "end")
            } else {
                (base - 4.0, "start")
            };
            let _ = writeln!(
                s,
                r##"<text transform="translate({:.1} {ty:.1}) rotate(-90)" font-size="9" text-anchor="{anchor}">{}</text>"##,
                cx + 3.0,
                fmt_num(*r)
            );
        }
        other => {
            let (label, colour) = match other {
                Value::Hung => ("hung", "#B00020"),
                Value::Failed => ("failed", "#B00020"),
                Value::NotApplicable => ("n/a", "#777"),
                _ => ("?", "#777"),
            };
            if matches!(other, Value::Hung | Value::Failed) {
                // A crossed box on the baseline, in the system's colour.
                let _ = writeln!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{BAR_W}" height="{BAR_W}" fill="none" stroke="{fill}" stroke-width="2"/><path d="M{x:.1} {:.1}l{BAR_W} {BAR_W}m0 -{BAR_W}l-{BAR_W} {BAR_W}" stroke="{colour}"/>"##,
                    base - BAR_W / 2.0,
                    base - BAR_W / 2.0
                );
            }
            let _ = writeln!(
                s,
                r##"<text transform="translate({:.1} {:.1}) rotate(-90)" font-size="9" fill="{colour}">{label}<title>{}: {label}</title></text>"##,
                cx + 3.0,
                base - BAR_W,
                esc(system)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Chart {
        Chart {
            subtitle: "a & b".into(),
            systems: vec!["tcp", "smux-rs", "yamux", "smux-blocking"],
            groups: vec![
                Group {
                    label: "bulk-1".into(),
                    figure: "MB/s",
                    baseline: "tcp",
                    bars: vec![
                        (0, Value::Ratio(1.0, None)),
                        (1, Value::Ratio(0.8, Some((0.7, 0.9)))),
                        (2, Value::Hung),
                        (3, Value::NotApplicable),
                    ],
                },
                Group {
                    label: "idle".into(),
                    figure: "heap bytes",
                    baseline: "smux-rs",
                    bars: vec![(1, Value::Ratio(1.0, None)), (2, Value::Failed)],
                },
            ],
        }
    }

    #[test]
    fn marks_every_bar_and_names_every_system() {
        let svg = sample().render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for name in ["tcp", "smux-rs", "yamux", "smux-blocking", "bulk-1", "idle"] {
            assert!(svg.contains(&format!(">{name}<")), "{name}");
        }
        assert!(svg.contains(">hung<") && svg.contains(">failed<") && svg.contains(">n/a<"));
        assert!(svg.contains("heap bytes, vs smux-rs (no tcp)"));
        assert!(svg.contains("a &amp; b"), "text is escaped");
        // Tags balance (a cheap well-formedness check).
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn higher_ratios_are_drawn_higher() {
        let c = sample();
        let (lo, hi) = c.decades();
        assert_eq!((lo, hi), (-1, 1));
        let mut big = c.clone();
        big.groups[0].bars[1].1 = Value::Ratio(2500.0, None);
        assert_eq!(big.decades(), (-1, 4));
        // The bar of 0.8 hangs below the baseline: its top is the baseline.
        let svg = c.render();
        let rect = svg
            .lines()
            .find(|l| l.contains("<title>smux-rs: 0.80</title>"))
            .unwrap();
        let y_of = |line: &str| -> f64 {
            line.split("y=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let base_line = svg
            .lines()
            .find(|l| l.contains(r##"stroke="#333""##))
            .unwrap();
        let base = base_line
            .split("y1=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(y_of(rect), base.parse::<f64>().unwrap());
    }
}
