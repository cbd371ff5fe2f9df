//! A weighted histogram on a log scale, for latencies aggregated over a whole run.
//!
//! Each simulated second contributes its latency distribution as a few weighted quantile points; buckets are 1 %
//! wide, so run-level percentiles carry at most 1 % quantization on top of the model.

/// Buckets per natural-log unit: e^(1/100) ≈ 1.01.
const BUCKETS_PER_LN: f64 = 100.0;
/// Smallest latency resolved: 1 µs (in ms); smaller values land in the first bucket.
const LN_MIN_MS: f64 = -6.907_755_278_982_137; // ln(0.001)
/// Largest: e^(LN_MIN + BUCKETS/100) ≈ 2.2e4 s.
const BUCKETS: usize = 1700;

#[derive(Debug, Clone)]
pub struct LogHistogram {
    weights: Vec<f64>,
    total: f64,
}

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram { weights: vec![0.0; BUCKETS], total: 0.0 }
    }
}

impl LogHistogram {
    /// Adds `weight` observations of a latency whose natural log (of milliseconds) is `ln_ms`.
    pub fn add_ln(&mut self, ln_ms: f64, weight: f64) {
        let index = ((ln_ms - LN_MIN_MS) * BUCKETS_PER_LN).clamp(0.0, (BUCKETS - 1) as f64) as usize;
        self.weights[index] += weight;
        self.total += weight;
    }

    /// The latency in ms below which `percentile` % of the weight lies (bucket midpoint); `None` when empty.
    pub fn percentile(&self, percentile: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let goal = self.total * percentile / 100.0;
        let mut seen = 0.0;
        for (index, weight) in self.weights.iter().enumerate() {
            seen += weight;
            if seen >= goal && *weight > 0.0 {
                return Some((LN_MIN_MS + (index as f64 + 0.5) / BUCKETS_PER_LN).exp());
            }
        }
        self.weights.iter().rposition(|w| *w > 0.0).map(|i| (LN_MIN_MS + (i as f64 + 0.5) / BUCKETS_PER_LN).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = LogHistogram::default();
        for ms in 1..=1000 {
            h.add_ln((ms as f64).ln(), 1.0);
        }
        let p95 = h.percentile(95.0).unwrap();
        assert!((p95 / 950.0 - 1.0).abs() < 0.01, "{p95}");
        let p50 = h.percentile(50.0).unwrap();
        assert!((p50 / 500.0 - 1.0).abs() < 0.01, "{p50}");
        assert_eq!(LogHistogram::default().percentile(50.0), None);
    }
}
