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

impl LogHistogram {
    /// The `percentile` with each bucket's weight centred on its share of the cumulative weight and the latency
    /// interpolated (in ln) between neighbouring buckets' centres: a distribution added as quantile points (one
    /// per probability bin) then gives its quantile between the points, not the lower point's value.
    pub fn percentile_interpolated(&self, percentile: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let goal = self.total * percentile / 100.0;
        let ln_of = |index: usize| LN_MIN_MS + (index as f64 + 0.5) / BUCKETS_PER_LN;
        let mut seen = 0.0;
        let mut previous: Option<(f64, f64)> = None; // (cumulative centre, ln)
        for (index, &weight) in self.weights.iter().enumerate() {
            if weight <= 0.0 {
                continue;
            }
            let centre = seen + weight / 2.0;
            seen += weight;
            if centre >= goal {
                return Some(match previous {
                    Some((before, ln_before)) if centre > before => {
                        let share = (goal - before) / (centre - before);
                        (ln_before + share * (ln_of(index) - ln_before)).exp()
                    }
                    _ => ln_of(index).exp(),
                });
            }
            previous = Some((centre, ln_of(index)));
        }
        previous.map(|(_, ln)| ln.exp())
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

    #[test]
    fn interpolated_percentiles_fall_between_quantile_points() {
        // Two points of equal weight at 10 and 20 ms stand for the bins either side of the median: the median is
        // between them, not the lower one.
        let mut h = LogHistogram::default();
        h.add_ln(10f64.ln(), 1.0);
        h.add_ln(20f64.ln(), 1.0);
        assert!((h.percentile(50.0).unwrap() / 10.0 - 1.0).abs() < 0.01);
        let median = h.percentile_interpolated(50.0).unwrap();
        assert!((median / 200f64.sqrt() - 1.0).abs() < 0.01, "{median}");
        assert!((h.percentile_interpolated(10.0).unwrap() / 10.0 - 1.0).abs() < 0.01);
        assert!((h.percentile_interpolated(99.0).unwrap() / 20.0 - 1.0).abs() < 0.01);
        let mut many = LogHistogram::default();
        for ms in 1..=1000 {
            many.add_ln((ms as f64).ln(), 1.0);
        }
        assert!((many.percentile_interpolated(95.0).unwrap() / 950.0 - 1.0).abs() < 0.01);
    }
}
