//! One pod under CFS bandwidth control, request by request: the reference the simulator's per-second CFS model is
//! built from ([`super::cfs_table`]) and checked against.
//!
//! Calls arrive as a Poisson stream and wait in one FCFS queue for the pod's `workers` threads; a running call
//! burns its CPU demand (exponential) at full core speed. The pod's cgroup may use `quota` ms of CPU per period;
//! when the running threads have spent it, none runs until the period ends (as the kernel throttles a cgroup).
//! A period in which the group had work counts as a period (cpu.stat's nr_periods), one in which the quota ran
//! out with work left as throttled (nr_throttled).

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Times closer than this (ms) are equal: runs reach 10^8 ms, where f64 steps are about 10^-8.
const EPS_MS: f64 = 1e-6;

/// What one run of the queue measured.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRun {
    /// Each call's time from arrival to completion, in ms, in completion order.
    pub latencies_ms: Vec<f64>,
    /// Each call's time from the start of its service (a worker took it) to completion, same order.
    pub service_ms: Vec<f64>,
    /// Periods the run spanned.
    pub periods: u64,
    /// Periods in which the group had work.
    pub active_periods: u64,
    pub throttled_periods: u64,
}

/// The queue's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodQueue {
    /// Calls per second.
    pub arrival_rate: f64,
    /// Mean CPU demand of a call at full core speed, in ms.
    pub mean_cpu_ms: f64,
    /// CPU ms the group may use per period (limit in cores × period).
    pub quota_ms: f64,
    pub period_ms: f64,
    /// Threads serving calls at once.
    pub workers: u32,
}

impl PodQueue {
    /// Runs `calls` calls from an empty pod at time 0 and returns what they saw.
    pub fn run(&self, calls: usize, seed: u64) -> QueueRun {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut exp = |mean: f64| -mean * (1.0 - rng.r#gen::<f64>()).ln();
        let gap_mean_ms = 1000.0 / self.arrival_rate;
        let mut next_arrival = exp(gap_mean_ms);
        let mut arrived = 0;
        let mut queue: VecDeque<(f64, f64)> = VecDeque::new(); // (arrival, demand)
        let mut running: Vec<(f64, f64, f64)> = Vec::new(); // (arrival, remaining demand, start)
        let mut latencies = Vec::with_capacity(calls);
        let mut service = Vec::with_capacity(calls);
        let (mut t, mut period_end, mut budget) = (0.0_f64, self.period_ms, self.quota_ms);
        let (mut active, mut throttled) = (0_u64, 0_u64);
        let (mut period_active, mut period_throttled) = (false, false);
        let mut close_period = |active_flag: &mut bool, throttled_flag: &mut bool| {
            active += *active_flag as u64;
            throttled += *throttled_flag as u64;
            *active_flag = false;
            *throttled_flag = false;
        };
        while latencies.len() < calls {
            while arrived < calls && next_arrival <= t {
                queue.push_back((next_arrival, exp(self.mean_cpu_ms)));
                arrived += 1;
                next_arrival += exp(gap_mean_ms);
            }
            while running.len() < self.workers as usize
                && let Some((arrival, demand)) = queue.pop_front()
            {
                running.push((arrival, demand, t));
            }
            let next = if arrived < calls { next_arrival } else { f64::INFINITY };
            if running.is_empty() {
                // Idle until the next arrival; the periods in between pass without work.
                t = next;
                while period_end <= t {
                    close_period(&mut period_active, &mut period_throttled);
                    period_end += self.period_ms;
                    budget = self.quota_ms;
                }
                continue;
            }
            period_active = true;
            if budget <= EPS_MS {
                // Throttled: nothing runs until the period ends (unless it ends now).
                period_throttled |= period_end - t > EPS_MS;
                t = period_end;
            } else {
                let m = running.len() as f64;
                let first_done = running.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
                let dt = first_done.min(budget / m).min(period_end - t).min(next - t).max(0.0);
                t += dt;
                budget -= dt * m;
                running.retain_mut(|call| {
                    call.1 -= dt;
                    if call.1 <= EPS_MS {
                        latencies.push(t - call.0);
                        service.push(t - call.2);
                        false
                    } else {
                        true
                    }
                });
            }
            if t >= period_end - EPS_MS {
                close_period(&mut period_active, &mut period_throttled);
                period_end += self.period_ms;
                budget = self.quota_ms;
            }
        }
        close_period(&mut period_active, &mut period_throttled);
        let periods = (t / self.period_ms).ceil().max(1.0) as u64;
        QueueRun {
            latencies_ms: latencies,
            service_ms: service,
            periods,
            active_periods: active,
            throttled_periods: throttled,
        }
    }
}

/// The `p`-th percentile (0-100) of `sorted` (ascending), nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<f64>) -> Vec<f64> {
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn without_throttling_it_is_an_mm1_queue() {
        // Quota = period with one worker: the limit is one full core, nothing throttles. M/M/1 at rho = 0.5 with
        // a 10 ms mean: mean sojourn 20 ms, median 20 ln 2.
        let q = PodQueue { arrival_rate: 50.0, mean_cpu_ms: 10.0, quota_ms: 100.0, period_ms: 100.0, workers: 1 };
        let run = q.run(200_000, 1);
        assert_eq!(run.throttled_periods, 0);
        let mean = run.latencies_ms.iter().sum::<f64>() / run.latencies_ms.len() as f64;
        assert!((mean / 20.0 - 1.0).abs() < 0.03, "mean sojourn {mean}");
        let median = percentile(&sorted(run.latencies_ms), 50.0);
        assert!((median / (20.0 * 2f64.ln()) - 1.0).abs() < 0.03, "median {median}");
    }

    #[test]
    fn a_lone_call_longer_than_the_quota_stalls_until_the_next_period() {
        // Calls of 50 ms mean at 200m (20 ms per 100 ms), 20 s apart: nearly each starts alone, with a full quota.
        let q = PodQueue { arrival_rate: 0.05, mean_cpu_ms: 50.0, quota_ms: 20.0, period_ms: 100.0, workers: 1 };
        let run = q.run(20_000, 2);
        let s = sorted(run.latencies_ms.clone());
        // Calls of at most 20 ms of CPU never stall (P(S <= 20) = 1 - e^-0.4 = 33 %): the 30th percentile is bare.
        assert!(percentile(&s, 30.0) < 20.0 && percentile(&s, 30.0) > 15.0, "{}", percentile(&s, 30.0));
        // Longer ones take at least one 80 ms stall, so the median (S = 34.7 ms) is past 80 ms.
        assert!(percentile(&s, 50.0) > 80.0, "{}", percentile(&s, 50.0));
        // Nearly every active period with a call over 20 ms is throttled; throttled <= active <= periods.
        assert!(run.throttled_periods > 0 && run.throttled_periods <= run.active_periods);
        assert!(run.active_periods <= run.periods);
    }

    #[test]
    fn more_load_throttles_more_periods() {
        let at = |rate: f64| {
            let q = PodQueue { arrival_rate: rate, mean_cpu_ms: 15.0, quota_ms: 30.0, period_ms: 100.0, workers: 1 };
            let run = q.run(20_000, 3);
            run.throttled_periods as f64 / run.periods as f64
        };
        let (low, high) = (at(4.0), at(16.0));
        assert!(high > 2.0 * low, "throttled share {low} at 4/s, {high} at 16/s");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let q = PodQueue { arrival_rate: 10.0, mean_cpu_ms: 15.0, quota_ms: 30.0, period_ms: 100.0, workers: 2 };
        assert_eq!(q.run(1000, 9), q.run(1000, 9));
    }
}
