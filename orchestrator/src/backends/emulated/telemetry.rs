//! Counters the emulator keeps on the hot path (atomics only): per edge and response code, the requests and a
//! latency histogram with Istio's buckets; per route, what clients sent and got back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Istio's default buckets for `istio_request_duration_milliseconds`, in ms (an implicit +Inf follows).
pub const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];
pub const BUCKETS: usize = DURATION_BUCKETS_MS.len() + 1;

/// The response codes the emulator answers with.
pub const CODES: [u16; 4] = [200, 302, 503, 504];

pub fn code_index(code: u16) -> usize {
    CODES.iter().position(|&c| c == code).expect("one of the emulator's codes")
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// One response code's figures on one edge.
pub struct CodeStats {
    /// Per bucket (not cumulative); the last is +Inf. Their sum is the request count.
    pub buckets: [AtomicU64; BUCKETS],
    pub sum_us: AtomicU64,
}

impl CodeStats {
    fn new() -> CodeStats {
        CodeStats { buckets: counters(), sum_us: AtomicU64::new(0) }
    }

    fn record(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = DURATION_BUCKETS_MS.partition_point(|&le| le < ms);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Cumulative bucket counts, as Prometheus histograms print them.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        })
    }
}

pub struct EdgeStats {
    pub codes: [CodeStats; CODES.len()],
}

/// What clients sent to one route and what it answered.
pub struct RouteStats {
    pub received: AtomicU64,
    pub answered: [AtomicU64; CODES.len()],
}

pub struct Telemetry {
    pub edges: Vec<EdgeStats>,
    pub routes: Vec<RouteStats>,
}

impl Telemetry {
    pub fn new(edges: usize, routes: usize) -> Telemetry {
        Telemetry {
            edges: (0..edges).map(|_| EdgeStats { codes: std::array::from_fn(|_| CodeStats::new()) }).collect(),
            routes: (0..routes).map(|_| RouteStats { received: AtomicU64::new(0), answered: counters() }).collect(),
        }
    }

    pub fn record_call(&self, edge: usize, code: u16, elapsed: Duration) {
        self.edges[edge].codes[code_index(code)].record(elapsed);
    }

    pub fn received(&self, route: usize) {
        self.routes[route].received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self, route: usize, code: u16) {
        self.routes[route].answered[code_index(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls that reached `edge`'s destination, every code (for rates).
    pub fn edge_requests(&self, edge: usize) -> u64 {
        self.edges[edge].codes.iter().map(CodeStats::requests).sum()
    }

    /// Per-bucket counts over every code of the edges into `destination` (for latency quantiles).
    pub fn destination_buckets(&self, edges: impl Iterator<Item = usize>) -> [u64; BUCKETS] {
        let mut out = [0; BUCKETS];
        for edge in edges {
            for code in &self.edges[edge].codes {
                for (slot, bucket) in out.iter_mut().zip(&code.buckets) {
                    *slot += bucket.load(Ordering::Relaxed);
                }
            }
        }
        out
    }
}

/// The `q` quantile (0..1) of per-bucket counts, interpolated linearly inside the bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations.
pub fn bucket_quantile(q: f64, counts: &[u64; BUCKETS]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &count) in counts.iter().enumerate() {
        let next = seen + count as f64;
        if next >= rank && count > 0 {
            let lower = if i == 0 { 0.0 } else { DURATION_BUCKETS_MS[i - 1] };
            // The +Inf bucket answers with the highest finite bound, as histogram_quantile does.
            let Some(&upper) = DURATION_BUCKETS_MS.get(i) else { return Some(lower) };
            return Some(lower + (upper - lower) * (rank - seen) / count as f64);
        }
        seen = next;
    }
    Some(DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_istio_buckets() {
        let t = Telemetry::new(1, 1);
        for ms in [0.2, 0.5, 3.0, 7.0, 7.5, 20_000.0, 5_000_000.0] {
            t.record_call(0, 200, Duration::from_secs_f64(ms / 1000.0));
        }
        let cumulative = t.edges[0].codes[0].cumulative();
        assert_eq!(cumulative[0], 2, "le=0.5 holds 0.2 and 0.5");
        assert_eq!(cumulative[2], 3, "le=5");
        assert_eq!(cumulative[3], 5, "le=10");
        assert_eq!(cumulative[13], 6, "le=30000");
        assert_eq!(cumulative[19], 7, "+Inf");
        assert_eq!(t.edge_requests(0), 7);
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let mut counts = [0u64; BUCKETS];
        counts[3] = 100; // (5, 10] ms
        assert_eq!(bucket_quantile(0.5, &counts), Some(7.5));
        assert_eq!(bucket_quantile(1.0, &counts), Some(10.0));
        assert_eq!(bucket_quantile(0.5, &[0; BUCKETS]), None);
    }
}
