//! A route's latency distribution in one second, and the percentiles of the requests sampled from it.
//!
//! The smooth (legacy) model fits a log-normal to the summed moments of a route's calls. The CFS model knows each
//! call's quantiles ([`super::cfs_table`]); a route of one call keeps them (its distribution is far from
//! log-normal: most calls run bare, some take a stall of most of a period), a route of several calls uses the
//! log-normal of their summed moments. Both are a curve of ln(latency) against the standard-normal quantile z:
//! straight for a log-normal, through the knots (p10 to p99) otherwise.

use rand::Rng;
use rand_distr::StandardNormal;

use super::queueing::{LogNormal, normal_quantile};

/// Knots of the curve, as probabilities: those of [`super::cfs_table::QUANTILES`].
pub const KNOTS: usize = 7;
pub const KNOT_PROBABILITIES: [f64; KNOTS] = [0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99];

/// ln(latency in ms) as a piecewise-linear function of z through the knots, extended by its end segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyCurve {
    z: [f64; KNOTS],
    ln_ms: [f64; KNOTS],
}

impl LatencyCurve {
    /// Through the quantiles at the knots (each positive; made non-decreasing).
    pub fn through(quantiles_ms: [f64; KNOTS], knot_z: [f64; KNOTS]) -> LatencyCurve {
        let mut ln_ms = quantiles_ms.map(|q| q.max(1e-6).ln());
        for i in 1..KNOTS {
            ln_ms[i] = ln_ms[i].max(ln_ms[i - 1]);
        }
        LatencyCurve { z: knot_z, ln_ms }
    }

    /// The segment (its lower knot) that holds `x` along `along`, the ends extended.
    fn segment(along: &[f64; KNOTS], x: f64) -> usize {
        along[1..KNOTS - 1].iter().take_while(|&&knot| knot < x).count()
    }

    pub fn ln_at_z(&self, z: f64) -> f64 {
        let i = Self::segment(&self.z, z);
        let slope = (self.ln_ms[i + 1] - self.ln_ms[i]) / (self.z[i + 1] - self.z[i]);
        self.ln_ms[i] + slope * (z - self.z[i])
    }

    /// Probability of exceeding `x` ms.
    pub fn exceedance(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        let ln_x = x.ln();
        let i = Self::segment(&self.ln_ms, ln_x);
        let rise = self.ln_ms[i + 1] - self.ln_ms[i];
        let z = if rise <= 0.0 {
            // A flat segment: every request of it has the same latency.
            if ln_x < self.ln_ms[i] { f64::NEG_INFINITY } else { f64::INFINITY }
        } else {
            self.z[i] + (ln_x - self.ln_ms[i]) * (self.z[i + 1] - self.z[i]) / rise
        };
        upper_tail(z)
    }
}

/// P(Z > z) for a standard normal Z.
fn upper_tail(z: f64) -> f64 {
    if z > 9.0 { 0.0 } else { 0.5 * libm::erfc(z / std::f64::consts::SQRT_2) }
}

/// A route's latency distribution in one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RouteLatency {
    LogNormal(LogNormal),
    Curve(LatencyCurve),
}

impl RouteLatency {
    pub fn ln_at_z(&self, z: f64) -> f64 {
        match self {
            RouteLatency::LogNormal(d) => d.mu + d.sigma * z,
            RouteLatency::Curve(c) => c.ln_at_z(z),
        }
    }

    pub fn at_z(&self, z: f64) -> f64 {
        match self {
            RouteLatency::LogNormal(d) => d.at_z(z),
            RouteLatency::Curve(c) => c.ln_at_z(z).exp(),
        }
    }

    pub fn exceedance(&self, x: f64) -> f64 {
        match self {
            RouteLatency::LogNormal(d) => d.exceedance(x),
            RouteLatency::Curve(c) => c.exceedance(x),
        }
    }
}

/// The standard-normal quantile of the p-quantile of `n` requests drawn from a distribution: the order statistic
/// U(k) of n uniforms is close to normal around p with variance p(1 - p)/n, so one normal draw stands for n
/// requests. With no requests the distribution's own quantile is returned.
pub fn sampled_z(rng: &mut impl Rng, p: f64, n: f64) -> f64 {
    if n < 1.0 {
        return normal_quantile(p);
    }
    let spread = (p * (1.0 - p) / n).sqrt();
    let draw: f64 = rng.sample(StandardNormal);
    let lowest = 0.5 / n;
    normal_quantile((p + spread * draw).clamp(lowest, 1.0 - lowest))
}

/// How many of `n` requests exceed a threshold each does with probability `share` (binomial, normal beyond 30).
pub fn sampled_count(rng: &mut impl Rng, n: f64, share: f64) -> f64 {
    let share = share.clamp(0.0, 1.0);
    if n <= 0.0 || share == 0.0 || share == 1.0 {
        return n * share;
    }
    if n < 30.0 {
        let whole = n.round() as u32;
        return (0..whole).filter(|_| rng.r#gen::<f64>() < share).count() as f64;
    }
    let draw: f64 = rng.sample(StandardNormal);
    (n * share + (n * share * (1.0 - share)).sqrt() * draw).round().clamp(0.0, n)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn knots() -> [f64; KNOTS] {
        KNOT_PROBABILITIES.map(normal_quantile)
    }

    #[test]
    fn the_curve_passes_its_knots_and_inverts() {
        let curve = LatencyCurve::through([2.0, 5.0, 10.0, 12.0, 15.0, 100.0, 200.0], knots());
        let d = RouteLatency::Curve(curve);
        assert!((d.at_z(0.0) - 10.0).abs() < 1e-9);
        assert!((d.at_z(normal_quantile(0.1)) - 2.0).abs() < 1e-9);
        assert!((d.exceedance(15.0) - 0.1).abs() < 1e-9);
        assert!((d.exceedance(5.0) - 0.75).abs() < 1e-9);
        assert!((d.at_z(normal_quantile(0.95)) - 100.0).abs() < 1e-9);
        assert!((d.at_z(normal_quantile(0.99)) - 200.0).abs() < 1e-9);
        assert!((d.exceedance(100.0) - 0.05).abs() < 1e-9);
        assert!((d.exceedance(10.0) - 0.5).abs() < 1e-9);
        assert!(d.exceedance(1000.0) < 0.01 && d.exceedance(1.0) > 0.5);
    }

    #[test]
    fn a_lognormal_is_a_straight_curve() {
        let ln = LogNormal::from_moments(20.0, 100.0);
        let curve = LatencyCurve::through(knots().map(|z| ln.at_z(z)), knots());
        for z in [-1.0, 0.5, 2.0, 3.0] {
            assert!((curve.ln_at_z(z) - (ln.mu + ln.sigma * z)).abs() < 1e-9);
        }
    }

    #[test]
    fn sampled_percentiles_spread_less_with_more_requests() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let spread = |rng: &mut ChaCha8Rng, n: f64| {
            let draws: Vec<f64> = (0..2000).map(|_| sampled_z(rng, 0.95, n)).collect();
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            (draws.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / draws.len() as f64).sqrt()
        };
        let (few, many) = (spread(&mut rng, 20.0), spread(&mut rng, 2000.0));
        assert!(few > 5.0 * many, "spread of z at 20 requests {few}, at 2000 {many}");
        assert_eq!(sampled_z(&mut rng, 0.95, 0.0), normal_quantile(0.95));
    }

    #[test]
    fn sampled_counts_stay_within_the_requests() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (n, share) in [(10.0, 0.3), (1000.0, 0.05), (50.0, 0.0), (50.0, 1.0)] {
            let count = sampled_count(&mut rng, n, share);
            assert!((0.0..=n).contains(&count), "{count} of {n}");
        }
        let total: f64 = (0..1000).map(|_| sampled_count(&mut rng, 100.0, 0.1)).sum();
        assert!((total / 1000.0 - 10.0).abs() < 0.5, "mean count {}", total / 1000.0);
    }
}
