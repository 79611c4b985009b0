//! The results of one scenario on one system over all repetitions: medians, ranges,
//! and ratios turned so that higher is better.

use super::scenarios::{Metrics, Outcome, Scenario};
use super::systems::System;

/// All repetitions of one scenario on one system, and their summary.
pub struct Cell {
    pub scenario: Scenario,
    pub system: System,
    pub outcomes: Vec<Outcome>,
    /// Largest heap growth of a run, bytes.
    pub peak_heap: u64,
    /// Times the kernel entered TCP memory pressure during this cell's runs.
    pub tcp_pressure: u64,
}

impl Cell {
    /// The figures of the repetitions that finished.
    pub fn done(&self) -> Vec<&Metrics> {
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
    pub fn median(&self) -> Option<Metrics> {
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
            total_bytes: med(|m| m.total_bytes),
            hol_fraction: med(|m| m.hol_fraction),
            whole_mbps: med(|m| m.whole_mbps),
            link_fraction: med(|m| m.link_fraction),
            verified_bytes: med(|m| m.verified_bytes),
        })
    }

    /// Smallest and largest of a figure over the repetitions that finished, when
    /// more than one did.
    pub fn range(&self, f: fn(&Metrics) -> Option<f64>) -> Option<(f64, f64)> {
        let v: Vec<f64> = self.done().into_iter().filter_map(f).collect();
        if v.len() < 2 {
            return None;
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((lo, hi))
    }

    /// What to print when no repetition finished.
    pub fn failure(&self) -> String {
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

    /// Repetitions that did not finish.
    pub fn not_done(&self) -> usize {
        self.outcomes.len() - self.done().len()
    }
}

/// The figure ratios are taken on (and the chart draws).
pub fn primary(scenario: Scenario, m: &Metrics) -> Option<f64> {
    match scenario {
        Scenario::Bulk(_) => m.mbps,
        Scenario::Rr(1) => m.p50_us,
        Scenario::Rr(_) => m.rps,
        Scenario::Churn(_) => m.streams_per_s,
        Scenario::Idle => m
            .client_bytes
            .zip(m.server_bytes)
            .map(|(c, s)| c + s)
            .or(m.total_bytes),
        Scenario::Hol => m.hol_fraction,
        Scenario::Lfn => m.mbps,
    }
}

/// Whether a larger primary figure is better: not for rr-1 (latency) and idle (bytes).
pub fn higher_is_better(scenario: Scenario) -> bool {
    !matches!(scenario, Scenario::Rr(1) | Scenario::Idle)
}

/// `value` against `reference`, turned so that above 1 is better than the reference
/// whichever way the figure goes.
pub fn better_ratio(scenario: Scenario, value: f64, reference: f64) -> Option<f64> {
    let r = if higher_is_better(scenario) {
        value / reference
    } else {
        reference / value
    };
    (r.is_finite() && r >= 0.0).then_some(r)
}

impl Cell {
    /// The median primary figure and, over more than one finished repetition, its
    /// smallest and largest value.
    pub fn primary(&self) -> Option<(f64, Option<(f64, f64)>)> {
        let m = self.median()?;
        let v = primary(self.scenario, &m)?;
        let all: Vec<f64> = self
            .done()
            .into_iter()
            .filter_map(|m| primary(self.scenario, m))
            .collect();
        let range = (all.len() >= 2).then(|| {
            let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        });
        Some((v, range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_turned_so_that_higher_is_better() {
        // Twice the throughput of the reference: 2.
        assert_eq!(better_ratio(Scenario::Bulk(1), 200.0, 100.0), Some(2.0));
        // Twice the latency or the bytes of the reference: 0.5.
        assert_eq!(better_ratio(Scenario::Rr(1), 20.0, 10.0), Some(0.5));
        assert_eq!(better_ratio(Scenario::Idle, 300.0, 150.0), Some(0.5));
        // rr-N is measured in requests per second.
        assert_eq!(better_ratio(Scenario::Rr(64), 300.0, 150.0), Some(2.0));
        assert_eq!(better_ratio(Scenario::Bulk(1), 0.0, 100.0), Some(0.0));
        assert_eq!(better_ratio(Scenario::Rr(1), 0.0, 10.0), None);
    }

    #[test]
    fn medians_and_ranges() {
        let rep = |mbps| {
            Outcome::Done(Metrics {
                mbps: Some(mbps),
                ..Metrics::default()
            })
        };
        let cell = Cell {
            scenario: Scenario::Bulk(1),
            system: System::Tcp,
            outcomes: vec![rep(3.0), rep(1.0), Outcome::Hung("x".into()), rep(2.0)],
            peak_heap: 0,
            tcp_pressure: 0,
        };
        assert_eq!(cell.primary(), Some((2.0, Some((1.0, 3.0)))));
        assert_eq!(cell.not_done(), 1);
        let hung = Cell {
            outcomes: vec![
                Outcome::Hung("open".into()),
                rep(1.0),
                Outcome::Hung("x".into()),
            ],
            ..cell
        };
        assert!(hung.median().is_none(), "fewer than half finished");
        assert_eq!(hung.failure(), "hung (open)");
    }
}
