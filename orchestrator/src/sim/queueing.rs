//! Closed-form queueing and distribution helpers the simulator evaluates every tick.

/// Waiting time of an M/M/c queue: probability of waiting (Erlang C) and the rate of the exponential wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmcWait {
    /// Probability that an arrival waits at all.
    pub p_wait: f64,
    /// Mean wait in seconds.
    pub mean_s: f64,
    /// Variance of the wait in seconds².
    pub variance_s2: f64,
}

/// Highest utilization the stationary formulas are evaluated at; overload beyond it is carried by the backlog.
pub const MAX_STATIONARY_UTILIZATION: f64 = 0.98;

/// Wait in an M/M/c queue with `servers` servers each serving `mu` per second, offered `lambda` per second.
///
/// Utilization is capped at [`MAX_STATIONARY_UTILIZATION`]: within one second a queue cannot reach the
/// stationary state of a near-critical load, and sustained overload is modelled as a growing backlog instead.
pub fn mmc_wait(lambda: f64, mu: f64, servers: u32) -> MmcWait {
    if servers == 0 || lambda <= 0.0 || mu <= 0.0 {
        return MmcWait { p_wait: 0.0, mean_s: 0.0, variance_s2: 0.0 };
    }
    let c = servers as f64;
    let rho = (lambda / (c * mu)).min(MAX_STATIONARY_UTILIZATION);
    let offered = rho * c;
    // Erlang B by its stable recurrence, then Erlang C from it.
    let mut erlang_b = 1.0;
    for k in 1..=servers {
        erlang_b = offered * erlang_b / (k as f64 + offered * erlang_b);
    }
    let p_wait = erlang_b / (1.0 - rho * (1.0 - erlang_b));
    let drain_rate = c * mu * (1.0 - rho);
    MmcWait { p_wait, mean_s: p_wait / drain_rate, variance_s2: p_wait * (2.0 - p_wait) / (drain_rate * drain_rate) }
}

/// A log-normal distribution fitted to a mean and variance (method of moments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNormal {
    pub mu: f64,
    pub sigma: f64,
}

impl LogNormal {
    pub fn from_moments(mean: f64, variance: f64) -> LogNormal {
        let mean = mean.max(1e-9);
        let sigma2 = (1.0 + variance.max(0.0) / (mean * mean)).ln();
        LogNormal { mu: mean.ln() - 0.5 * sigma2, sigma: sigma2.sqrt() }
    }

    /// The value at standard-normal quantile `z`.
    pub fn at_z(&self, z: f64) -> f64 {
        (self.mu + self.sigma * z).exp()
    }

    /// Probability of exceeding `x`.
    pub fn exceedance(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        if self.sigma == 0.0 {
            return if x < self.mu.exp() { 1.0 } else { 0.0 };
        }
        let z = (x.ln() - self.mu) / self.sigma;
        // Beyond 9 standard deviations the tail is below 1e-19: skip the erfc.
        if z > 9.0 {
            return 0.0;
        }
        0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
    }
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, relative error below 1.2e-9).
#[allow(clippy::excessive_precision)] // the published coefficients, kept as printed
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile of {p}");
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    const LOW: f64 = 0.02425;
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mm1_matches_textbook() {
        // M/M/1 at rho = 0.5: P(wait) = 0.5, mean wait = rho / (mu - lambda) = 0.5 / 5 = 0.1 s.
        let w = mmc_wait(5.0, 10.0, 1);
        assert!((w.p_wait - 0.5).abs() < 1e-12);
        assert!((w.mean_s - 0.1).abs() < 1e-12);
    }

    #[test]
    fn erlang_c_matches_a_known_value() {
        // Offered load 2 Erlang on 3 servers: Erlang C = 4/9 ≈ 0.4444.
        let w = mmc_wait(2.0, 1.0, 3);
        assert!((w.p_wait - 4.0 / 9.0).abs() < 1e-12, "{}", w.p_wait);
    }

    #[test]
    fn more_servers_wait_less() {
        assert!(mmc_wait(15.0, 10.0, 2).mean_s > mmc_wait(15.0, 10.0, 4).mean_s);
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.01) + 2.326348).abs() < 1e-5);
    }

    #[test]
    fn lognormal_keeps_the_mean_and_orders_percentiles() {
        let d = LogNormal::from_moments(10.0, 25.0);
        let mean = (d.mu + 0.5 * d.sigma * d.sigma).exp();
        assert!((mean - 10.0).abs() < 1e-9);
        assert!(d.at_z(normal_quantile(0.99)) > d.at_z(normal_quantile(0.95)));
        assert!((d.exceedance(d.at_z(normal_quantile(0.95))) - 0.05).abs() < 1e-6);
    }
}
