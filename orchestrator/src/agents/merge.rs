//! One second of load as all agents measured it: their windows of that second merged losslessly (the HDR
//! histograms added, not averaged), the SLO route's requests picked out by their stats names, and every window
//! folded once into run-level totals.
//!
//! A full-range histogram (1 µs to 1 h at 3 digits) is ~190 KB, so each entry's histogram is decoded once and the
//! first one of a second becomes that second's accumulator: no other histogram is allocated per poll.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{DeserializeError, Deserializer};
use load_agent::protocol::WindowSnapshot;
use load_agent::stats::{AGGREGATED, Entry, EntrySnapshot};

/// The load of one second, as a metrics row needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondLoad {
    pub index: u64,
    pub users: u64,
    pub requests: u64,
    pub failures: u64,
    pub slo_requests: u64,
    pub slo_failures: u64,
    /// SLO-route requests slower than the threshold (failed ones included, as their latency was recorded too).
    pub slo_slow: u64,
    pub slo_p50_ms: f64,
    pub slo_p95_ms: f64,
    pub slo_p99_ms: f64,
    /// Runs whose window went into it.
    pub runs: usize,
}

pub struct Merger {
    /// `(method, name)` of the stats entries that are requests to the SLO route.
    slo_names: Vec<(String, String)>,
    slo_threshold_ms: f64,
    deserializer: Deserializer,
    pub run_total: Entry,
    pub run_slo: Entry,
}

/// A stats entry whose histogram does not decode.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("histogram of {name:?}: bad base64: {error}")]
    Base64 { name: String, error: base64::DecodeError },
    #[error("histogram of {name:?}: {error:?}")]
    Deserialize { name: String, error: DeserializeError },
}

impl Merger {
    pub fn new(slo_names: Vec<(String, String)>, slo_threshold_ms: f64) -> Merger {
        Merger {
            slo_names,
            slo_threshold_ms,
            deserializer: Deserializer::new(),
            run_total: Entry::new("", AGGREGATED),
            run_slo: Entry::new("", "slo"),
        }
    }

    /// An entry on the wire as an [`Entry`], its histogram decoded once.
    fn decode(&mut self, snapshot: &EntrySnapshot) -> Result<Entry, HistogramError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&snapshot.histogram)
            .map_err(|error| HistogramError::Base64 { name: snapshot.name.clone(), error })?;
        let histogram: Histogram<u64> = self
            .deserializer
            .deserialize(&mut bytes.as_slice())
            .map_err(|error| HistogramError::Deserialize { name: snapshot.name.clone(), error })?;
        Ok(Entry {
            method: snapshot.method.clone(),
            name: snapshot.name.clone(),
            requests: snapshot.requests,
            failures: snapshot.failures,
            total_us: snapshot.total_us,
            min_us: snapshot.min_us,
            max_us: snapshot.max_us,
            content_bytes: snapshot.content_bytes,
            histogram,
        })
    }

    /// Merges the windows several runs closed for second `index` (each once), and folds them into the run totals.
    pub fn merge(&mut self, index: u64, windows: &[WindowSnapshot]) -> Result<SecondLoad, HistogramError> {
        let fold = |slot: &mut Option<Entry>, entry: Entry| match slot {
            None => *slot = Some(entry),
            Some(accumulated) => accumulated.merge(&entry),
        };
        let (mut total, mut slo) = (None, None);
        let mut load = SecondLoad { index, ..SecondLoad::default() };
        for window in windows {
            load.users += window.users;
            load.runs += 1;
            if window.total.requests > 0 {
                let entry = self.decode(&window.total)?;
                fold(&mut total, entry);
            }
            for entry in &window.entries {
                let is_slo = self.slo_names.iter().any(|(m, n)| *m == entry.method && *n == entry.name);
                if is_slo && entry.requests > 0 {
                    let entry = self.decode(entry)?;
                    fold(&mut slo, entry);
                }
            }
        }
        if let Some(total) = &total {
            load.requests = total.requests;
            load.failures = total.failures;
            self.run_total.merge(total);
        }
        if let Some(slo) = &slo {
            load.slo_requests = slo.requests;
            load.slo_failures = slo.failures;
            load.slo_slow = slower_than(slo, self.slo_threshold_ms);
            load.slo_p50_ms = slo.percentile_ms(0.50);
            load.slo_p95_ms = slo.percentile_ms(0.95);
            load.slo_p99_ms = slo.percentile_ms(0.99);
            self.run_slo.merge(slo);
        }
        Ok(load)
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
        let mut merger = Merger::new(vec![("GET".into(), "/cart".into())], 40.0);
        let load = merger.merge(7, &[window(&mut a, 5), window(&mut b, 6)]).unwrap();
        let reference = window(&mut both, 11);
        let reference_total = reference.total.to_entry().unwrap();
        let reference_cart = reference.entries.iter().find(|e| e.name == "/cart").unwrap().to_entry().unwrap();
        assert_eq!((load.index, load.users, load.runs), (7, 11, 2));
        assert_eq!((load.requests, load.failures), (3000, reference_total.failures));
        assert_eq!(merger.run_total.histogram, reference_total.histogram, "lossless");
        assert_eq!(merger.run_slo.histogram, reference_cart.histogram);
        assert_eq!((load.slo_requests, load.slo_failures), (2250, reference_cart.failures));
        assert_eq!(load.slo_p95_ms, reference_cart.percentile_ms(0.95));
        assert_eq!(load.slo_p50_ms, reference_cart.percentile_ms(0.50));
        // /cart latencies are 20..59 ms: about half above 40 ms, none above 60 ms.
        let above_40 = load.slo_slow as f64 / 2250.0;
        assert!((above_40 - 0.49).abs() < 0.02, "{above_40}");
        assert_eq!(slower_than(&reference_cart, 60.0), 0);
        assert_eq!(slower_than(&reference_cart, 10.0), 2250);
        // A second second adds to the run totals.
        let mut c = Collector::new(1);
        c.record("GET", "/cart", 5_000, 10, None);
        let second = merger.merge(8, &[window(&mut c, 1)]).unwrap();
        assert_eq!((second.requests, second.slo_slow), (1, 0));
        assert_eq!(merger.run_slo.requests, 2251);
        assert_eq!(merger.merge(9, &[]).unwrap(), SecondLoad { index: 9, ..SecondLoad::default() });
    }
}
