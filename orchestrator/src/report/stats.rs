//! Aggregate statistics for few-run experiments, after Agarwal et al. 2021, "Deep RL at the edge of the
//! statistical precipice" (the rliable library): interquartile mean, stratified bootstrap confidence intervals,
//! probability of improvement and performance profiles.
//!
//! Scores are grouped in strata (tasks: the scenarios of an app), each holding one value per run (seed). A
//! bootstrap replicate resamples the runs of every stratum with replacement, independently, and keeps the strata
//! themselves fixed, so an aggregate over scenarios never mixes a cheap scenario's runs into an expensive one's.
//! Intervals are percentile intervals. Every estimate draws from its own seeded stream: the same inputs and seed
//! give the same interval, bit for bit, whatever order the estimates are computed in.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
}

impl Direction {
    /// The value oriented so that larger is better.
    fn orient(self, value: f64) -> f64 {
        match self {
            Direction::LowerIsBetter => -value,
            Direction::HigherIsBetter => value,
        }
    }
}

/// How intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Bootstrap replicates per interval.
    pub reps: usize,
    /// Coverage of the interval, e.g. 0.95.
    pub confidence: f64,
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig { reps: 2000, confidence: 0.95, seed: 0 }
    }
}

impl BootstrapConfig {
    /// A random stream of its own for the estimate labelled `stream` (e.g. "online-boutique/peak/hpa/pod_minutes").
    fn rng(&self, stream: &str) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(stream.as_bytes()))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// A point estimate and, when the data allow one, its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub point: f64,
    pub interval: Option<Interval>,
}

/// The interquartile mean: the mean of the middle 50 % of the values, as `scipy.stats.trim_mean(x, 0.25)` (which
/// rliable uses): `floor(n / 4)` values are cut from each end. `None` for no values.
pub fn iqm(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    iqm_of_sorted(&sorted)
}

fn iqm_of_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let cut = n / 4;
    let kept = &sorted[cut..n - cut];
    Some(kept.iter().sum::<f64>() / kept.len() as f64)
}

/// The IQM over every run of every stratum.
pub fn iqm_strata(strata: &[Vec<f64>]) -> Option<f64> {
    iqm(&strata.concat())
}

/// The `q`-quantile (0..=1) of sorted values, interpolating linearly between ranks (numpy's default).
pub fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let rank = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
}

/// A uniform index below `n`, drawn from 32 bits (strata hold far fewer than 2^32 runs): half the random
/// bytes of a 64-bit draw.
fn draw_index(rng: &mut ChaCha8Rng, n: usize) -> usize {
    rng.gen_range(0..n as u32) as usize
}

/// Resamples every stratum with replacement into `out` (same shape as `strata`).
fn resample(strata: &[Vec<f64>], rng: &mut ChaCha8Rng, out: &mut [Vec<f64>]) {
    for (stratum, target) in strata.iter().zip(out.iter_mut()) {
        target.clear();
        target.extend((0..stratum.len()).map(|_| stratum[draw_index(rng, stratum.len())]));
    }
}

/// True when some stratum has two runs or more, so that resampling can vary anything.
fn can_vary(strata: &[Vec<f64>]) -> bool {
    strata.iter().any(|s| s.len() >= 2)
}

fn percentile_interval(mut replicates: Vec<f64>, confidence: f64) -> Interval {
    replicates.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Interval { low: quantile_of_sorted(&replicates, tail), high: quantile_of_sorted(&replicates, 1.0 - tail) }
}

/// Percentile interval of `statistic` under stratified resampling of `strata`. `None` when no stratum has two
/// runs (every replicate would equal the point estimate).
pub fn stratified_interval(
    strata: &[Vec<f64>],
    config: &BootstrapConfig,
    stream: &str,
    mut statistic: impl FnMut(&[Vec<f64>]) -> f64,
) -> Option<Interval> {
    if !can_vary(strata) || config.reps == 0 {
        return None;
    }
    let mut rng = config.rng(stream);
    let mut sample: Vec<Vec<f64>> = strata.iter().map(|s| Vec::with_capacity(s.len())).collect();
    let replicates = (0..config.reps)
        .map(|_| {
            resample(strata, &mut rng, &mut sample);
            statistic(&sample)
        })
        .collect();
    Some(percentile_interval(replicates, config.confidence))
}

/// Strata prepared for resampling by counts: every value sorted once, each stratum held as the ranks of its
/// values in that order. A replicate is then a count per rank, so no replicate needs sorting.
struct Ranked {
    sorted: Vec<f64>,
    strata: Vec<Vec<usize>>,
}

impl Ranked {
    fn new(strata: &[Vec<f64>]) -> Ranked {
        let mut all: Vec<(f64, usize, usize)> = Vec::new();
        for (s, stratum) in strata.iter().enumerate() {
            all.extend(stratum.iter().enumerate().map(|(i, &v)| (v, s, i)));
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut ranks: Vec<Vec<usize>> = strata.iter().map(|s| vec![0; s.len()]).collect();
        for (rank, &(_, s, i)) in all.iter().enumerate() {
            ranks[s][i] = rank;
        }
        Ranked { sorted: all.into_iter().map(|(v, _, _)| v).collect(), strata: ranks }
    }

    /// Draws each stratum's runs with replacement, as counts per rank.
    fn resample_counts(&self, rng: &mut ChaCha8Rng, counts: &mut [u32]) {
        counts.fill(0);
        for ranks in &self.strata {
            for _ in 0..ranks.len() {
                counts[ranks[draw_index(rng, ranks.len())]] += 1;
            }
        }
    }
}

/// The IQM of a multiset given as counts over sorted values (scipy's cut of floor(n / 4) each end).
fn iqm_of_counts(sorted: &[f64], counts: &[u32], n: usize) -> f64 {
    let cut = n / 4;
    let keep = n - 2 * cut;
    let (mut skip, mut take, mut sum) = (cut, keep, 0.0);
    for (&value, &count) in sorted.iter().zip(counts) {
        let mut count = count as usize;
        let skipped = count.min(skip);
        skip -= skipped;
        count -= skipped;
        let taken = count.min(take);
        sum += taken as f64 * value;
        take -= taken;
        if take == 0 {
            break;
        }
    }
    sum / keep as f64
}

/// The IQM over all runs of all strata, with its stratified bootstrap interval.
pub fn iqm_estimate(strata: &[Vec<f64>], config: &BootstrapConfig, stream: &str) -> Option<Estimate> {
    let point = iqm_strata(strata)?;
    if !can_vary(strata) || config.reps == 0 {
        return Some(Estimate { point, interval: None });
    }
    let ranked = Ranked::new(strata);
    let n = ranked.sorted.len();
    let mut counts = vec![0u32; n];
    let mut rng = config.rng(stream);
    let replicates = (0..config.reps)
        .map(|_| {
            ranked.resample_counts(&mut rng, &mut counts);
            iqm_of_counts(&ranked.sorted, &counts, n)
        })
        .collect();
    Some(Estimate { point, interval: Some(percentile_interval(replicates, config.confidence)) })
}

/// P(X > Y) for one stratum, counting ties as one half: the Mann-Whitney U statistic of X over Y divided by
/// `|X|·|Y|`. Both oriented so that larger is better.
fn stratum_improvement(x: &[f64], y_sorted: &[f64]) -> f64 {
    let mut wins = 0.0;
    for &value in x {
        let below = y_sorted.partition_point(|&y| y < value);
        let not_above = y_sorted.partition_point(|&y| y <= value);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    wins / (x.len() * y_sorted.len()) as f64
}

/// Probability that a run of X is better than a run of Y, per stratum, averaged over the strata both have runs
/// in (rliable's average probability of improvement). `x[i]` and `y[i]` are the same stratum. `None` when no
/// stratum has runs on both sides.
pub fn probability_of_improvement(x: &[Vec<f64>], y: &[Vec<f64>], direction: Direction) -> Option<f64> {
    let mut total = 0.0;
    let mut strata = 0;
    let mut y_sorted = Vec::new();
    for (xs, ys) in x.iter().zip(y) {
        if xs.is_empty() || ys.is_empty() {
            continue;
        }
        let xs: Vec<f64> = xs.iter().map(|&v| direction.orient(v)).collect();
        y_sorted.clear();
        y_sorted.extend(ys.iter().map(|&v| direction.orient(v)));
        y_sorted.sort_unstable_by(f64::total_cmp);
        total += stratum_improvement(&xs, &y_sorted);
        strata += 1;
    }
    (strata > 0).then(|| total / strata as f64)
}

/// One stratum of X and of Y for resampling: values oriented (larger is better) and sorted.
struct PairedStratum {
    x: Vec<f64>,
    y: Vec<f64>,
}

/// P(X > Y) + ½ P(X = Y) for multisets given as counts over sorted values, in one merge pass.
fn improvement_of_counts(x: &[f64], x_counts: &[u32], y: &[f64], y_counts: &[u32]) -> f64 {
    let (mut below, mut j, mut wins) = (0u64, 0usize, 0.0);
    let (mut nx, mut ny) = (0u64, 0u64);
    for (&value, &count) in x.iter().zip(x_counts) {
        nx += count as u64;
        while j < y.len() && y[j] < value {
            below += y_counts[j] as u64;
            j += 1;
        }
        let equal: u64 =
            y[j..].iter().zip(&y_counts[j..]).take_while(|(v, _)| **v == value).map(|(_, &c)| c as u64).sum();
        wins += count as f64 * (below as f64 + 0.5 * equal as f64);
    }
    for &c in y_counts {
        ny += c as u64;
    }
    wins / (nx * ny) as f64
}

/// The probability of improvement of X over Y with its interval: X and Y resampled independently, each
/// stratified.
pub fn improvement_estimate(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    direction: Direction,
    config: &BootstrapConfig,
    stream: &str,
) -> Option<Estimate> {
    let point = probability_of_improvement(x, y, direction)?;
    if !(can_vary(x) || can_vary(y)) || config.reps == 0 {
        return Some(Estimate { point, interval: None });
    }
    let oriented_sorted = |values: &Vec<f64>| {
        let mut v: Vec<f64> = values.iter().map(|&v| direction.orient(v)).collect();
        v.sort_unstable_by(f64::total_cmp);
        v
    };
    let strata: Vec<PairedStratum> = x
        .iter()
        .zip(y)
        .filter(|(xs, ys)| !xs.is_empty() && !ys.is_empty())
        .map(|(xs, ys)| PairedStratum { x: oriented_sorted(xs), y: oriented_sorted(ys) })
        .collect();
    let mut rng = config.rng(stream);
    let mut x_counts: Vec<Vec<u32>> = strata.iter().map(|s| vec![0; s.x.len()]).collect();
    let mut y_counts: Vec<Vec<u32>> = strata.iter().map(|s| vec![0; s.y.len()]).collect();
    let draw = |counts: &mut [u32], rng: &mut ChaCha8Rng| {
        counts.fill(0);
        let n = counts.len();
        for _ in 0..n {
            counts[draw_index(rng, n)] += 1;
        }
    };
    let replicates = (0..config.reps)
        .map(|_| {
            let mut total = 0.0;
            for (i, stratum) in strata.iter().enumerate() {
                draw(&mut x_counts[i], &mut rng);
                draw(&mut y_counts[i], &mut rng);
                total += improvement_of_counts(&stratum.x, &x_counts[i], &stratum.y, &y_counts[i]);
            }
            total / strata.len() as f64
        })
        .collect();
    Some(Estimate { point, interval: Some(percentile_interval(replicates, config.confidence)) })
}

/// What the interval of a probability of improvement says about X against the baseline Y.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval lies above one half.
    Better,
    /// The whole interval lies below one half.
    Worse,
    /// The interval contains one half.
    NoSignificantDifference,
    /// A side has fewer than two runs in every stratum: no interval can be drawn.
    TooFewRuns,
}

impl Verdict {
    pub fn from_estimate(estimate: &Estimate) -> Verdict {
        match estimate.interval {
            None => Verdict::TooFewRuns,
            Some(interval) if interval.low > 0.5 => Verdict::Better,
            Some(interval) if interval.high < 0.5 => Verdict::Worse,
            Some(_) => Verdict::NoSignificantDifference,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::TooFewRuns => "too few seeds",
        }
    }
}

/// Decides a verdict only when both sides have at least two runs in some stratum; otherwise a bootstrap interval
/// of a single run per side would collapse to a point and claim a certainty the data do not have.
pub fn verdict(x: &[Vec<f64>], y: &[Vec<f64>], estimate: &Estimate) -> Verdict {
    if !(can_vary(x) && can_vary(y)) { Verdict::TooFewRuns } else { Verdict::from_estimate(estimate) }
}

/// A performance profile: for each threshold τ, the share of runs that reach it (value ≤ τ when lower is
/// better, > τ when higher is better), each stratum weighing the same.
pub fn performance_profile(strata: &[Vec<f64>], taus: &[f64], direction: Direction) -> Vec<f64> {
    let used: Vec<&Vec<f64>> = strata.iter().filter(|s| !s.is_empty()).collect();
    taus.iter()
        .map(|&tau| {
            if used.is_empty() {
                return 0.0;
            }
            let share = |s: &Vec<f64>| {
                let reached = s
                    .iter()
                    .filter(|&&v| match direction {
                        Direction::LowerIsBetter => v <= tau,
                        Direction::HigherIsBetter => v > tau,
                    })
                    .count();
                reached as f64 / s.len() as f64
            };
            used.iter().map(|s| share(s)).sum::<f64>() / used.len() as f64
        })
        .collect()
}

/// Pointwise stratified bootstrap intervals of a performance profile. `None` when no stratum has two runs.
pub fn performance_profile_bands(
    strata: &[Vec<f64>],
    taus: &[f64],
    direction: Direction,
    config: &BootstrapConfig,
    stream: &str,
) -> Option<Vec<Interval>> {
    if !can_vary(strata) || config.reps == 0 {
        return None;
    }
    let used: Vec<Vec<f64>> = strata
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut sorted = s.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            sorted
        })
        .collect();
    // Thresholds in ascending order, so that one sweep per stratum counts the runs reaching each.
    let mut order: Vec<usize> = (0..taus.len()).collect();
    order.sort_by(|&a, &b| taus[a].total_cmp(&taus[b]));
    let mut rng = config.rng(stream);
    let mut counts: Vec<Vec<u32>> = used.iter().map(|s| vec![0; s.len()]).collect();
    let mut per_tau: Vec<Vec<f64>> = vec![Vec::with_capacity(config.reps); taus.len()];
    let mut shares = vec![0.0; taus.len()];
    for _ in 0..config.reps {
        shares.fill(0.0);
        for (sorted, counts) in used.iter().zip(counts.iter_mut()) {
            counts.fill(0);
            let n = sorted.len();
            for _ in 0..n {
                counts[draw_index(&mut rng, n)] += 1;
            }
            // Runs at or below τ (lower is better) or above it (higher is better).
            let (mut k, mut at_or_below) = (0usize, 0u32);
            for &t in &order {
                let tau = taus[t];
                while k < n && sorted[k] <= tau {
                    at_or_below += counts[k];
                    k += 1;
                }
                let reached = match direction {
                    Direction::LowerIsBetter => at_or_below,
                    Direction::HigherIsBetter => n as u32 - at_or_below,
                };
                shares[t] += reached as f64 / n as f64;
            }
        }
        for (values, share) in per_tau.iter_mut().zip(&shares) {
            values.push(share / used.len() as f64);
        }
    }
    Some(per_tau.into_iter().map(|values| percentile_interval(values, config.confidence)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn iqm_cuts_a_quarter_from_each_end_like_scipy_trim_mean() {
        // n = 10: floor(2.5) = 2 cut from each end, mean of 3..=8.
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(iqm(&values), Some(5.5));
        // n = 8: 2 cut each end, mean of the middle four.
        assert_eq!(iqm(&[100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0]), Some(3.5));
        // n = 3: nothing is cut, so the IQM of three seeds is their mean.
        assert_eq!(iqm(&[1.0, 2.0, 6.0]), Some(3.0));
        // n = 5: one cut from each end; an outlier does not move it.
        assert_eq!(iqm(&[1.0, 2.0, 3.0, 4.0, 1000.0]), Some(3.0));
        assert_eq!(iqm(&[]), None);
        // Strata are flattened: the rliable example matrices (runs x tasks) give 1.5 and 2.
        assert_eq!(iqm_strata(&[vec![1.0, 2.0, 1.0, 2.0], vec![2.0, 2.0, 1.0, 1.0]]), Some(1.5));
        assert_eq!(iqm_strata(&[vec![1.0, 2.0, 3.0], vec![1.0, 2.0, 3.0]]), Some(2.0));
    }

    #[test]
    fn quantiles_interpolate_linearly_between_ranks() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_of_sorted(&sorted, 0.0), 1.0);
        assert_eq!(quantile_of_sorted(&sorted, 1.0), 4.0);
        assert_eq!(quantile_of_sorted(&sorted, 0.5), 2.5);
        assert!(close(quantile_of_sorted(&sorted, 0.025), 1.075, 1e-12));
    }

    #[test]
    fn probability_of_improvement_matches_mann_whitney_with_ties_as_halves() {
        // rliable's example: X (4 runs x 2 tasks) over Y (3 runs x 2 tasks), higher is better: 1/3.
        let x = [vec![1.0, 2.0, 1.0, 2.0], vec![2.0, 2.0, 1.0, 1.0]];
        let y = [vec![1.0, 2.0, 3.0], vec![1.0, 2.0, 3.0]];
        let p = probability_of_improvement(&x, &y, Direction::HigherIsBetter).unwrap();
        assert!(close(p, 1.0 / 3.0, 1e-12), "{p}");
        // Lower is better reverses the comparison; ties still count one half, so the two add up to one.
        let q = probability_of_improvement(&x, &y, Direction::LowerIsBetter).unwrap();
        assert!(close(p + q, 1.0, 1e-12), "{q}");
        // Identical samples: one half.
        assert_eq!(
            probability_of_improvement(&[vec![3.0, 4.0]], &[vec![3.0, 4.0]], Direction::LowerIsBetter),
            Some(0.5)
        );
        // Complete separation.
        assert_eq!(
            probability_of_improvement(&[vec![1.0, 2.0]], &[vec![5.0, 6.0]], Direction::LowerIsBetter),
            Some(1.0)
        );
        // A stratum missing on one side is left out of the average.
        assert_eq!(
            probability_of_improvement(&[vec![1.0], vec![]], &[vec![2.0], vec![0.0]], Direction::LowerIsBetter),
            Some(1.0)
        );
        assert_eq!(probability_of_improvement(&[vec![]], &[vec![1.0]], Direction::LowerIsBetter), None);
    }

    #[test]
    fn bootstrap_interval_of_two_values_is_their_range() {
        // Resampling {0, 1} twice gives a mean of 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4: the 2.5th and
        // 97.5th percentiles of the replicates are exactly 0 and 1 (each end holds ~25 % of them).
        let config = BootstrapConfig { reps: 4000, confidence: 0.95, seed: 7 };
        let estimate = iqm_estimate(&[vec![0.0, 1.0]], &config, "two").unwrap();
        assert_eq!(estimate.point, 0.5);
        assert_eq!(estimate.interval, Some(Interval { low: 0.0, high: 1.0 }));
    }

    #[test]
    fn bootstrap_interval_of_a_mean_matches_the_normal_theory_interval() {
        // 40 evenly spread values (IQM of n=40 keeps the middle 20); compare with a plain mean first: a
        // bootstrap of the mean of n values has standard error s·sqrt((n-1)/n)/sqrt(n).
        let values: Vec<f64> = (0..40).map(|i| i as f64).collect();
        let config = BootstrapConfig { reps: 20_000, confidence: 0.95, seed: 1 };
        let interval = stratified_interval(std::slice::from_ref(&values), &config, "mean", |s| {
            s[0].iter().sum::<f64>() / s[0].len() as f64
        })
        .unwrap();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let population_sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let half_width = 1.959_964 * population_sd / n.sqrt();
        assert!(close(interval.low, mean - half_width, 0.25), "{interval:?} vs {}", mean - half_width);
        assert!(close(interval.high, mean + half_width, 0.25), "{interval:?} vs {}", mean + half_width);
    }

    #[test]
    fn stratified_resampling_keeps_each_stratum_whole() {
        // Two strata of constant values: any stratified resample has four 0s and four 10s, so the IQM (middle
        // four of eight: two 0s and two 10s) is always 5 and the interval collapses. Pooled resampling would not.
        let strata = [vec![0.0; 4], vec![10.0; 4]];
        let config = BootstrapConfig { reps: 500, confidence: 0.95, seed: 3 };
        let estimate = iqm_estimate(&strata, &config, "strata").unwrap();
        assert_eq!(estimate.point, 5.0);
        assert_eq!(estimate.interval, Some(Interval { low: 5.0, high: 5.0 }));
    }

    #[test]
    fn intervals_are_reproducible_per_seed_and_stream() {
        // Spread-out values, so that interval ends fall between replicates and any change of stream shows.
        let spread =
            |n: usize, offset: f64| (0..n).map(|i| offset + (i as f64 * 1.37).sin() * 10.0).collect::<Vec<f64>>();
        let strata = [spread(12, 0.0), spread(9, 30.0)];
        let config = BootstrapConfig { reps: 1000, confidence: 0.95, seed: 42 };
        let a = iqm_estimate(&strata, &config, "s").unwrap();
        let b = iqm_estimate(&strata, &config, "s").unwrap();
        assert_eq!(a, b);
        let other_seed = iqm_estimate(&strata, &BootstrapConfig { seed: 43, ..config }, "s").unwrap();
        let other_stream = iqm_estimate(&strata, &config, "t").unwrap();
        assert_ne!(a.interval, other_seed.interval);
        assert_ne!(a.interval, other_stream.interval);
        let interval = a.interval.unwrap();
        assert!(interval.low <= a.point && a.point <= interval.high, "{a:?}");
    }

    #[test]
    fn a_single_run_per_stratum_gives_no_interval() {
        let config = BootstrapConfig::default();
        let estimate = iqm_estimate(&[vec![3.0], vec![4.0]], &config, "one").unwrap();
        assert_eq!(estimate.point, 3.5);
        assert_eq!(estimate.interval, None);
        let x = [vec![1.0]];
        let y = [vec![2.0]];
        let improvement = improvement_estimate(&x, &y, Direction::LowerIsBetter, &config, "one").unwrap();
        assert_eq!(improvement.point, 1.0);
        assert_eq!(verdict(&x, &y, &improvement), Verdict::TooFewRuns);
    }

    #[test]
    fn verdicts_follow_the_interval_of_the_probability_of_improvement() {
        let config = BootstrapConfig { reps: 2000, confidence: 0.95, seed: 5 };
        let cheap = [vec![10.0, 11.0, 12.0, 10.5, 11.5]];
        let dear = [vec![20.0, 21.0, 19.0, 22.0, 20.5]];
        let better = improvement_estimate(&cheap, &dear, Direction::LowerIsBetter, &config, "a").unwrap();
        assert_eq!(better.point, 1.0);
        assert_eq!(verdict(&cheap, &dear, &better), Verdict::Better);
        let worse = improvement_estimate(&dear, &cheap, Direction::LowerIsBetter, &config, "b").unwrap();
        assert_eq!(verdict(&dear, &cheap, &worse), Verdict::Worse);
        // Interleaved samples: the interval straddles one half.
        let a = [vec![1.0, 3.0, 5.0, 7.0, 9.0]];
        let b = [vec![2.0, 4.0, 6.0, 8.0, 10.0]];
        let mixed = improvement_estimate(&a, &b, Direction::LowerIsBetter, &config, "c").unwrap();
        assert!(close(mixed.point, 0.6, 1e-12), "{mixed:?}");
        assert!(mixed.interval.unwrap().contains(0.5), "{mixed:?}");
        assert_eq!(verdict(&a, &b, &mixed), Verdict::NoSignificantDifference);
    }

    /// Literal resampling, replicate by replicate, in the order the counting shortcuts draw.
    fn literal_replicates(
        strata: &[Vec<f64>],
        config: &BootstrapConfig,
        stream: &str,
        statistic: impl Fn(&[Vec<f64>]) -> f64,
    ) -> Interval {
        let mut rng = config.rng(stream);
        let mut sample: Vec<Vec<f64>> = strata.iter().map(|_| Vec::new()).collect();
        let replicates = (0..config.reps)
            .map(|_| {
                resample(strata, &mut rng, &mut sample);
                statistic(&sample)
            })
            .collect();
        percentile_interval(replicates, config.confidence)
    }

    #[test]
    fn counting_shortcuts_give_exactly_the_replicates_of_literal_resampling() {
        let config = BootstrapConfig { reps: 3000, confidence: 0.9, seed: 11 };
        let strata = [vec![5.0, 1.0, 4.0, 4.0, 9.5, 2.0], vec![20.0, 22.5, 21.0], vec![3.0, 3.0, 8.0, 1.0]];
        let fast = iqm_estimate(&strata, &config, "iqm").unwrap().interval.unwrap();
        let literal = literal_replicates(&strata, &config, "iqm", |s| iqm(&s.concat()).unwrap());
        // Equal up to the order of summation.
        let same = |a: Interval, b: Interval| (a.low - b.low).abs() < 1e-12 && (a.high - b.high).abs() < 1e-12;
        assert!(same(fast, literal), "{fast:?} vs {literal:?}");

        // Probability of improvement: per stratum, X's draws then Y's.
        let x = [vec![3.0, 1.0, 2.0, 2.0], vec![10.0, 12.0, 11.0]];
        let y = [vec![2.0, 4.0, 3.0], vec![11.0, 13.0, 9.0, 12.0]];
        let fast = improvement_estimate(&x, &y, Direction::LowerIsBetter, &config, "poi").unwrap().interval.unwrap();
        let mut rng = config.rng("poi");
        let replicates = (0..config.reps)
            .map(|_| {
                let mut total = 0.0;
                for (xs, ys) in x.iter().zip(&y) {
                    let mut xr = vec![Vec::new()];
                    let mut yr = vec![Vec::new()];
                    resample(std::slice::from_ref(xs), &mut rng, &mut xr);
                    resample(std::slice::from_ref(ys), &mut rng, &mut yr);
                    total += probability_of_improvement(&xr, &yr, Direction::LowerIsBetter).unwrap();
                }
                total / x.len() as f64
            })
            .collect();
        let literal = percentile_interval(replicates, config.confidence);
        assert!(same(fast, literal), "{fast:?} vs {literal:?}");

        // Profiles.
        let taus = [0.0, 2.5, 4.0, 9.0, 21.0, 30.0];
        let fast = performance_profile_bands(&strata, &taus, Direction::LowerIsBetter, &config, "pp").unwrap();
        let mut rng = config.rng("pp");
        let mut per_tau: Vec<Vec<f64>> = vec![Vec::new(); taus.len()];
        let mut sample: Vec<Vec<f64>> = strata.iter().map(|_| Vec::new()).collect();
        for _ in 0..config.reps {
            // The shortcut draws indices into each stratum sorted; so does this.
            let sorted: Vec<Vec<f64>> = strata
                .iter()
                .map(|s| {
                    let mut v = s.clone();
                    v.sort_by(f64::total_cmp);
                    v
                })
                .collect();
            resample(&sorted, &mut rng, &mut sample);
            for (values, share) in per_tau.iter_mut().zip(performance_profile(&sample, &taus, Direction::LowerIsBetter))
            {
                values.push(share);
            }
        }
        let literal: Vec<Interval> = per_tau.into_iter().map(|v| percentile_interval(v, config.confidence)).collect();
        assert!(fast.iter().zip(&literal).all(|(a, b)| same(*a, *b)), "{fast:?} vs {literal:?}");
    }

    #[test]
    fn performance_profiles_count_runs_reaching_each_threshold() {
        let strata = [vec![1.0, 2.0, 3.0, 4.0], vec![10.0, 20.0]];
        let taus = [0.0, 2.0, 10.0, 100.0];
        // Stratum 1 reaches 0, 2/4, 4/4, 4/4; stratum 2 reaches 0, 0, 1/2, 1: averaged per stratum.
        assert_eq!(performance_profile(&strata, &taus, Direction::LowerIsBetter), vec![0.0, 0.25, 0.75, 1.0]);
        // Higher is better counts values strictly above τ, as rliable does.
        assert_eq!(performance_profile(&strata, &taus, Direction::HigherIsBetter), vec![1.0, 0.75, 0.25, 0.0]);
        let config = BootstrapConfig { reps: 500, confidence: 0.95, seed: 9 };
        let bands = performance_profile_bands(&strata, &taus, Direction::LowerIsBetter, &config, "p").unwrap();
        assert_eq!(bands.len(), taus.len());
        assert_eq!(bands[0], Interval { low: 0.0, high: 0.0 });
        assert_eq!(bands[3], Interval { low: 1.0, high: 1.0 });
        assert!(bands[1].low < 0.25 && 0.25 < bands[1].high, "{:?}", bands[1]);
    }
}
