//! One second of load as all agents measured it: their windows of that second merged losslessly (the HDR
//! histograms added, not averaged), the SLO route's requests picked out by their stats names, and every window
//! folded once into run-level totals.

use load_agent::protocol::WindowSnapshot;
use load_agent::stats::{AGGREGATED, Entry};

/// The merged window of one second.
#[derive(Debug, Clone)]
pub struct MergedWindow {
    pub index: u64,
    pub users: u64,
    pub total: Entry,
    pub slo: Entry,
    /// Runs whose window went into it.
    pub runs: usize,
}

pub struct Merger {
    /// `(method, name)` of the stats entries that are requests to the SLO route.
    slo_names: Vec<(String, String)>,
    pub run_total: Entry,
    pub run_slo: Entry,
}

impl Merger {
    pub fn new(slo_names: Vec<(String, String)>) -> Merger {
        Merger { slo_names, run_total: Entry::new("", AGGREGATED), run_slo: Entry::new("", "slo") }
    }

    /// Merges the windows several runs closed for second `index` (each once), and folds them into the run totals.
    pub fn merge(&mut self, index: u64, windows: &[WindowSnapshot]) -> Result<MergedWindow, String> {
        let mut merged =
            MergedWindow { index, users: 0, total: Entry::new("", AGGREGATED), slo: Entry::new("", "slo"), runs: 0 };
        for window in windows {
            merged.users += window.users;
            merged.runs += 1;
            if window.total.requests > 0 {
                merged.total.merge(&window.total.to_entry()?);
            }
            for entry in &window.entries {
                let is_slo = self.slo_names.iter().any(|(m, n)| *m == entry.method && *n == entry.name);
                if is_slo && entry.requests > 0 {
                    merged.slo.merge(&entry.to_entry()?);
                }
            }
        }
        self.run_total.merge(&merged.total);
        self.run_slo.merge(&merged.slo);
        Ok(merged)
    }
}

/// Requests of `entry` slower than `threshold_ms` (by its histogram; failed requests are in it too).
pub fn slower_than(entry: &Entry, threshold_ms: f64) -> u64 {
    if entry.requests == 0 {
        return 0;
    }
    let threshold_us = (threshold_ms * 1000.0).max(0.0) as u64;
    let at_most = entry.histogram.count_between(0, threshold_us);
    entry.histogram.len().saturating_sub(at_most)
}

#[cfg(test)]
mod tests {
    use load_agent::stats::Collector;

    use super::*;

    fn window(collector: &mut Collector, users: u64) -> WindowSnapshot {
        let w = collector.close_window(users);
        WindowSnapshot {
            index: 0,
            start_unix_s: w.start_unix_s,
            users: w.users,
            entries: w.entries.iter().map(|e| e.to_snapshot()).collect(),
            total: w.total.to_snapshot(),
        }
    }

    #[test]
    fn windows_of_two_agents_merge_as_one_agent_would_have_measured() {
        let (mut a, mut b, mut both) = (Collector::new(0), Collector::new(0), Collector::new(0));
        for i in 0..3000u64 {
            let (name, latency) = if i % 4 == 0 { ("/", 900 + i) } else { ("/cart", 20_000 + i * 13) };
            let failed = (i % 101 == 0).then_some("HTTPError 503");
            let agent = if i % 2 == 0 { &mut a } else { &mut b };
            agent.record("GET", name, latency, 10, failed);
            both.record("GET", name, latency, 10, failed);
        }
        let mut merger = Merger::new(vec![("GET".into(), "/cart".into())]);
        let merged = merger.merge(7, &[window(&mut a, 5), window(&mut b, 6)]).unwrap();
        let reference = window(&mut both, 11);
        let reference_total = reference.total.to_entry().unwrap();
        assert_eq!(merged.users, 11);
        assert_eq!(merged.total.requests, 3000);
        assert_eq!(merged.total.histogram, reference_total.histogram);
        let reference_cart = reference.entries.iter().find(|e| e.name == "/cart").unwrap().to_entry().unwrap();
        assert_eq!(merged.slo.requests, 2250);
        assert_eq!(merged.slo.failures, reference_cart.failures);
        assert_eq!(merged.slo.histogram, reference_cart.histogram);
        assert_eq!(merger.run_slo.requests, 2250);
        // /cart latencies are 20..59 ms: all above 10 ms, about half above 40 ms.
        assert_eq!(slower_than(&merged.slo, 10.0), 2250);
        let above_40 = slower_than(&merged.slo, 40.0) as f64 / 2250.0;
        assert!((above_40 - 0.49).abs() < 0.02, "{above_40}");
    }
}
