//! Request statistics: HDR histograms per request name and aggregated, cumulative and per one-second window.
//!
//! Latencies are recorded in microseconds with 3 significant digits (0.1 % relative error), so percentiles stay
//! well within 1 % of the exact values. Snapshots carry serialized histograms, so several agents' results merge
//! without loss.

mod csv;
mod report;

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

pub use csv::{FAILURES_HEADER, HISTORY_HEADER, STATS_HEADER, write_failures_csv, write_history_csv, write_stats_csv};
pub use report::write_console_report;

/// Locust's percentile columns.
pub const PERCENTILES: [f64; 11] = [0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0];

/// Highest latency a histogram holds: one hour, in microseconds. Longer values are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Statistics of one request name (or of all requests, under the name "Aggregated").
#[derive(Debug, Clone)]
pub struct Entry {
    pub method: String,
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub total_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub content_bytes: u64,
    pub histogram: Histogram<u64>,
}

impl Entry {
    pub fn new(method: &str, name: &str) -> Entry {
        Entry {
            method: method.to_string(),
            name: name.to_string(),
            requests: 0,
            failures: 0,
            total_us: 0,
            min_us: 0,
            max_us: 0,
            content_bytes: 0,
            histogram: new_histogram(),
        }
    }

    /// Records one request; failed requests count in the latency figures too, as in Locust.
    pub fn record(&mut self, latency_us: u64, content_bytes: u64, failed: bool) {
        let latency_us = latency_us.clamp(1, MAX_LATENCY_US);
        self.min_us = if self.requests == 0 { latency_us } else { self.min_us.min(latency_us) };
        self.max_us = self.max_us.max(latency_us);
        self.requests += 1;
        self.failures += failed as u64;
        self.total_us += latency_us;
        self.content_bytes += content_bytes;
        self.histogram.record(latency_us).expect("clamped into the histogram's range");
    }

    pub fn merge(&mut self, other: &Entry) {
        if other.requests == 0 {
            return;
        }
        self.min_us = if self.requests == 0 { other.min_us } else { self.min_us.min(other.min_us) };
        self.max_us = self.max_us.max(other.max_us);
        self.requests += other.requests;
        self.failures += other.failures;
        self.total_us += other.total_us;
        self.content_bytes += other.content_bytes;
        self.histogram.add(&other.histogram).expect("histograms share bounds");
    }

    /// Latency at `quantile` (0..=1) in milliseconds; 0 when empty.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.total_us as f64 / self.requests as f64 / 1000.0 }
    }

    /// The histogram in HdrHistogram's V2 deflate format, base64-encoded.
    fn serialized_histogram(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&self.histogram, &mut bytes).expect("serializing into memory");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn to_snapshot(&self) -> EntrySnapshot {
        self.summary().with_histogram(self.serialized_histogram())
    }

    /// The figures and Locust's percentiles, without the histogram.
    pub fn summary(&self) -> Summary {
        let mut percentiles_us = [0; PERCENTILES.len()];
        if self.requests > 0 {
            for (slot, &q) in percentiles_us.iter_mut().zip(&PERCENTILES) {
                *slot = self.histogram.value_at_quantile(q);
            }
        }
        Summary {
            method: self.method.clone(),
            name: self.name.clone(),
            requests: self.requests,
            failures: self.failures,
            total_us: self.total_us,
            min_us: self.min_us,
            max_us: self.max_us,
            content_bytes: self.content_bytes,
            percentiles_us,
        }
    }
}

/// An entry's figures with Locust's percentiles precomputed: what CSV rows, reports and gauges print. A closed
/// window keeps these (and its histograms only serialized), so a long run's history costs hundreds of bytes per
/// name and second instead of a live histogram of ~190 KB.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub method: String,
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub total_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub content_bytes: u64,
    /// Latency at each of [`PERCENTILES`], in microseconds; zeros when empty.
    pub percentiles_us: [u64; PERCENTILES.len()],
}

impl Summary {
    /// Latency at `quantile`, which must be one of [`PERCENTILES`], in milliseconds; 0 when empty.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        let index = PERCENTILES.iter().position(|&q| q == quantile).expect("one of Locust's percentiles");
        self.percentiles_us[index] as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.total_us as f64 / self.requests as f64 / 1000.0 }
    }

    pub fn average_content_bytes(&self) -> u64 {
        self.content_bytes.checked_div(self.requests).unwrap_or(0)
    }

    fn with_histogram(self, histogram: String) -> EntrySnapshot {
        EntrySnapshot {
            method: self.method,
            name: self.name,
            requests: self.requests,
            failures: self.failures,
            total_us: self.total_us,
            min_us: self.min_us,
            max_us: self.max_us,
            content_bytes: self.content_bytes,
            histogram,
        }
    }
}

/// One name's figures in a closed window, its histogram serialized as on the wire.
#[derive(Debug, Clone)]
pub struct WindowEntry {
    pub summary: Summary,
    /// HdrHistogram V2 deflate, base64, as in [`EntrySnapshot::histogram`].
    pub histogram: String,
}

impl WindowEntry {
    fn close(entry: &Entry) -> WindowEntry {
        WindowEntry { summary: entry.summary(), histogram: entry.serialized_histogram() }
    }

    pub fn to_snapshot(&self) -> EntrySnapshot {
        self.summary.clone().with_histogram(self.histogram.clone())
    }
}

/// An [`Entry`] on the wire: the histogram in HdrHistogram's V2 deflate format, base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySnapshot {
    pub method: String,
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub total_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub content_bytes: u64,
    pub histogram: String,
}

impl EntrySnapshot {
    pub fn to_entry(&self) -> Result<Entry, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.histogram)
            .map_err(|e| format!("histogram of {:?}: bad base64: {e}", self.name))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram of {:?}: {e:?}", self.name))?;
        let mut histogram = new_histogram();
        histogram.add(&decoded).map_err(|e| format!("histogram of {:?}: {e:?}", self.name))?;
        Ok(Entry {
            method: self.method.clone(),
            name: self.name.clone(),
            requests: self.requests,
            failures: self.failures,
            total_us: self.total_us,
            min_us: self.min_us,
            max_us: self.max_us,
            content_bytes: self.content_bytes,
            histogram,
        })
    }
}

/// Failures grouped as Locust groups them: method, name, error text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FailureKey {
    pub method: String,
    pub name: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    #[serde(flatten)]
    pub key: FailureKey,
    pub occurrences: u64,
    pub first_seen_unix_s: u64,
    pub last_seen_unix_s: u64,
}

impl FailureCount {
    fn merge(&mut self, other: &FailureCount) {
        self.occurrences += other.occurrences;
        self.first_seen_unix_s = self.first_seen_unix_s.min(other.first_seen_unix_s);
        self.last_seen_unix_s = self.last_seen_unix_s.max(other.last_seen_unix_s);
    }
}

/// One closed one-second window: per-name and aggregated figures of requests that completed in it.
#[derive(Debug, Clone)]
pub struct Window {
    /// Unix time (seconds) at the window's start.
    pub start_unix_s: u64,
    pub users: u64,
    pub entries: Vec<WindowEntry>,
    pub total: WindowEntry,
    /// Cumulative totals at the window's end (Locust's "Total ..." history columns).
    pub cumulative_total: Summary,
}

/// Everything a run has measured so far, cumulative, in wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub entries: Vec<EntrySnapshot>,
    pub total: EntrySnapshot,
    pub failures: Vec<FailureCount>,
}

impl StatsSnapshot {
    /// Merges several agents' snapshots into one, losslessly (histograms are added, not averaged).
    pub fn merge(snapshots: &[StatsSnapshot]) -> Result<Collector, String> {
        let mut merged = Collector::new(0);
        for snapshot in snapshots {
            for entry in &snapshot.entries {
                let entry = entry.to_entry()?;
                merged
                    .entries
                    .entry((entry.name.clone(), entry.method.clone()))
                    .or_insert_with(|| Entry::new(&entry.method, &entry.name))
                    .merge(&entry);
            }
            merged.total.merge(&snapshot.total.to_entry()?);
            for failure in &snapshot.failures {
                match merged.failures.get_mut(&failure.key) {
                    Some(known) => known.merge(failure),
                    None => {
                        merged.failures.insert(failure.key.clone(), failure.clone());
                    }
                }
            }
        }
        Ok(merged)
    }
}

/// Collects request outcomes of one run: cumulative entries, the open window, closed-window history, failures.
#[derive(Debug, Clone)]
pub struct Collector {
    /// Keyed by (name, method) so CSV rows sort by name as Locust's do.
    entries: BTreeMap<(String, String), Entry>,
    total: Entry,
    window: BTreeMap<(String, String), Entry>,
    window_total: Entry,
    failures: BTreeMap<FailureKey, FailureCount>,
    history: Vec<Window>,
    /// Unix second the open window started at; failures are stamped with it.
    window_start_unix_s: u64,
}

/// The name Locust gives the all-requests row.
pub const AGGREGATED: &str = "Aggregated";

impl Collector {
    /// A collector whose first window starts at `start_unix_s`.
    pub fn new(start_unix_s: u64) -> Collector {
        Collector {
            entries: BTreeMap::new(),
            total: Entry::new("", AGGREGATED),
            window: BTreeMap::new(),
            window_total: Entry::new("", AGGREGATED),
            failures: BTreeMap::new(),
            history: Vec::new(),
            window_start_unix_s: start_unix_s,
        }
    }

    /// Records one completed request. `error` is the failure text, `None` on success.
    pub fn record(&mut self, method: &str, name: &str, latency_us: u64, content_bytes: u64, error: Option<&str>) {
        let failed = error.is_some();
        let key = (name.to_string(), method.to_string());
        self.entries.entry(key.clone()).or_insert_with(|| Entry::new(method, name)).record(
            latency_us,
            content_bytes,
            failed,
        );
        self.window.entry(key).or_insert_with(|| Entry::new(method, name)).record(latency_us, content_bytes, failed);
        self.total.record(latency_us, content_bytes, failed);
        self.window_total.record(latency_us, content_bytes, failed);
        if let Some(error) = error {
            let now = self.window_start_unix_s;
            let key = FailureKey { method: method.to_string(), name: name.to_string(), error: error.to_string() };
            let count = self.failures.entry(key.clone()).or_insert(FailureCount {
                key,
                occurrences: 0,
                first_seen_unix_s: now,
                last_seen_unix_s: now,
            });
            count.occurrences += 1;
            count.last_seen_unix_s = now;
        }
    }

    /// Closes the open window (requests completed since it opened) with `users` running, keeps it in the history
    /// and returns it; the next window starts one second later.
    pub fn close_window(&mut self, users: u64) -> &Window {
        let entries = std::mem::take(&mut self.window).values().map(WindowEntry::close).collect();
        let total = WindowEntry::close(&std::mem::replace(&mut self.window_total, Entry::new("", AGGREGATED)));
        let start_unix_s = self.window_start_unix_s;
        self.window_start_unix_s += 1;
        self.history.push(Window { start_unix_s, users, entries, total, cumulative_total: self.total.summary() });
        self.history.last().expect("just pushed")
    }

    pub fn history(&self) -> &[Window] {
        &self.history
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn total(&self) -> &Entry {
        &self.total
    }

    pub fn failures(&self) -> impl Iterator<Item = &FailureCount> {
        self.failures.values()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            entries: self.entries.values().map(Entry::to_snapshot).collect(),
            total: self.total.to_snapshot(),
            failures: self.failures.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_tenth_of_a_percent() {
        let mut entry = Entry::new("GET", "/");
        let mut exact: Vec<u64> = (1..=100_000u64).map(|i| i * 37 % 250_000 + 100).collect();
        for &v in &exact {
            entry.record(v, 0, false);
        }
        exact.sort_unstable();
        for q in PERCENTILES {
            let index = ((q * exact.len() as f64).ceil() as usize).clamp(1, exact.len()) - 1;
            let truth = exact[index] as f64 / 1000.0;
            let got = entry.percentile_ms(q);
            assert!((got / truth - 1.0).abs() < 0.001, "q {q}: {got} vs {truth}");
        }
    }

    #[test]
    fn snapshots_merge_losslessly() {
        let mut a = Collector::new(0);
        let mut b = Collector::new(0);
        let mut both = Collector::new(0);
        for i in 0..5000u64 {
            let (target, latency) = if i % 3 == 0 { (&mut a, i * 7 + 50) } else { (&mut b, i * 11 + 90) };
            let error = (i % 97 == 0).then_some("HTTPError 500");
            target.record("GET", "/cart", latency, 10, error);
            both.record("GET", "/cart", latency, 10, error);
        }
        let merged = StatsSnapshot::merge(&[a.snapshot(), b.snapshot()]).unwrap();
        assert_eq!(merged.total().requests, 5000);
        assert_eq!(merged.total().failures, both.total().failures);
        assert_eq!(merged.total().histogram, both.total().histogram);
        assert_eq!(merged.failures().collect::<Vec<_>>(), both.failures().collect::<Vec<_>>());
        assert_eq!(merged.total().min_us, both.total().min_us);
    }

    #[test]
    fn windows_hold_only_their_own_requests() {
        let mut c = Collector::new(100);
        c.record("GET", "/a", 1000, 0, None);
        c.record("GET", "/b", 3000, 0, None);
        assert_eq!(c.close_window(2).total.summary.requests, 2);
        c.record("GET", "/a", 5000, 0, Some("timeout"));
        let w = c.close_window(2);
        assert_eq!(w.start_unix_s, 101);
        assert_eq!(w.total.summary.requests, 1);
        assert_eq!(w.total.summary.failures, 1);
        assert_eq!(w.cumulative_total.requests, 3);
        assert_eq!(c.history().len(), 2);
    }

    #[test]
    fn a_closed_window_keeps_its_histogram_serialized_and_exact() {
        let mut c = Collector::new(0);
        let mut live = Entry::new("GET", "/a");
        for i in 1..=5_000u64 {
            let latency = i * 97 % 40_000 + 50;
            c.record("GET", "/a", latency, 10, None);
            live.record(latency, 10, false);
        }
        let w = c.close_window(1).clone();
        let window_entry = &w.entries[0];
        assert_eq!(window_entry.summary, live.summary());
        let decoded = window_entry.to_snapshot().to_entry().unwrap();
        assert_eq!(decoded.histogram, live.histogram, "the serialized histogram is lossless");
        assert_eq!(w.cumulative_total.percentiles_us, live.summary().percentiles_us);
        assert!(window_entry.histogram.len() < 4_096, "{} bytes serialized", window_entry.histogram.len());
    }
}
