//! CFS bandwidth control of one pod, period by period, as the kernel applies a CPU limit.
//!
//! A limit of L millicores gives the pod's cgroup a quota of L/1000 × period of CPU time per period (Kubernetes
//! sets the period to 100 ms: 20 ms at 200m). The pod runs at full core speed (as many threads at once as it has
//! runnable, up to its parallelism) until the quota of the period is spent, then none of its threads runs until
//! the next period starts. Work left over waits for the next period. A period in which the quota ran out with work
//! still waiting counts as throttled, as cAdvisor's `container_cpu_cfs_throttled_periods_total` does, and the wall
//! time from then to the end of the period is throttled time (per thread that was waiting, as cpu.stat reports it).

/// The quota and period of one pod's cgroup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CfsBandwidth {
    /// CPU time the pod may use per period, in ms (over all its threads).
    pub quota_ms: f64,
    pub period_ms: f64,
}

impl CfsBandwidth {
    /// The bandwidth a CPU limit in millicores gives, with the kernel's default period of 100 ms unless told.
    pub fn from_limit(limit_millicores: f64, period_ms: f64) -> CfsBandwidth {
        CfsBandwidth { quota_ms: limit_millicores / 1000.0 * period_ms, period_ms }
    }
}

/// What one period did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodOutcome {
    /// CPU time used in the period, in ms.
    pub used_ms: f64,
    /// The quota ran out with work still waiting.
    pub throttled: bool,
    /// Wall time from the moment the quota ran out to the end of the period, in ms (0 when not throttled).
    pub stalled_ms: f64,
    /// CPU work carried into the next period, in ms.
    pub carried_ms: f64,
}

/// Counters over many periods, named as cgroup's cpu.stat names them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CfsStats {
    pub nr_periods: u64,
    pub nr_throttled: u64,
    /// Sum of the stalls of throttled periods, in ms.
    pub throttled_ms: f64,
}

/// One pod's cgroup: its bandwidth and the work it has not yet been allowed to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CfsPod {
    pub bandwidth: CfsBandwidth,
    /// Threads that can run at once (at most the node's cores): how fast the quota is spent when work waits.
    pub parallelism: f64,
    backlog_ms: f64,
    pub stats: CfsStats,
}

impl CfsPod {
    pub fn new(bandwidth: CfsBandwidth, parallelism: f64) -> CfsPod {
        CfsPod { bandwidth, parallelism: parallelism.max(1.0), backlog_ms: 0.0, stats: CfsStats::default() }
    }

    /// CPU work waiting for a period, in ms.
    pub fn backlog_ms(&self) -> f64 {
        self.backlog_ms
    }

    /// One period in which `arriving_ms` of CPU work arrives at its start (the period is the unit of accounting;
    /// work arriving within it is served in the same period as long as the quota lasts).
    pub fn period(&mut self, arriving_ms: f64) -> PeriodOutcome {
        let CfsBandwidth { quota_ms, period_ms } = self.bandwidth;
        let work = self.backlog_ms + arriving_ms.max(0.0);
        // Without a limit, or with a quota no smaller than what the threads can use in a period, nothing
        // throttles: work beyond what the threads can run waits as queueing does.
        let threads_can_use = self.parallelism * period_ms;
        let limited = quota_ms > 0.0 && quota_ms < threads_can_use;
        let usable = if limited { quota_ms } else { threads_can_use };
        let used = work.min(usable);
        let carried = work - used;
        let throttled = limited && carried > 0.0;
        let stalled = if throttled { period_ms - quota_ms / self.parallelism } else { 0.0 };
        self.backlog_ms = carried;
        self.stats.nr_periods += 1;
        if throttled {
            self.stats.nr_throttled += 1;
            self.stats.throttled_ms += stalled;
        }
        PeriodOutcome { used_ms: used, throttled, stalled_ms: stalled, carried_ms: carried }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(limit_millicores: f64, parallelism: f64) -> CfsPod {
        CfsPod::new(CfsBandwidth::from_limit(limit_millicores, 100.0), parallelism)
    }

    #[test]
    fn a_limit_is_a_quota_per_period() {
        assert_eq!(CfsBandwidth::from_limit(200.0, 100.0).quota_ms, 20.0);
        assert_eq!(CfsBandwidth::from_limit(1500.0, 100.0).quota_ms, 150.0);
        assert_eq!(CfsBandwidth::from_limit(500.0, 20.0).quota_ms, 10.0);
    }

    #[test]
    fn demand_up_to_the_quota_runs_unthrottled_at_full_speed() {
        let mut p = pod(200.0, 1.0);
        for demand in [0.0, 5.0, 19.999, 20.0] {
            let out = p.period(demand);
            assert!(!out.throttled, "{demand} ms of work in a 20 ms quota");
            assert_eq!((out.used_ms, out.stalled_ms, out.carried_ms), (demand, 0.0, 0.0));
        }
        assert_eq!(p.stats, CfsStats { nr_periods: 4, nr_throttled: 0, throttled_ms: 0.0 });
    }

    #[test]
    fn demand_above_the_quota_stalls_until_the_period_ends_and_carries_the_rest() {
        // 200m, one thread: 30 ms of work runs 20 ms, then waits 80 ms for the next period with 10 ms left.
        let mut p = pod(200.0, 1.0);
        let out = p.period(30.0);
        assert_eq!(out, PeriodOutcome { used_ms: 20.0, throttled: true, stalled_ms: 80.0, carried_ms: 10.0 });
        // The carried 10 ms fit the next quota with the 5 ms that arrive: no throttling.
        let out = p.period(5.0);
        assert_eq!(out, PeriodOutcome { used_ms: 15.0, throttled: false, stalled_ms: 0.0, carried_ms: 0.0 });
        assert_eq!(p.stats, CfsStats { nr_periods: 2, nr_throttled: 1, throttled_ms: 80.0 });
    }

    #[test]
    fn parallel_threads_spend_the_quota_sooner_and_stall_longer() {
        // 200m with 2 threads: the 20 ms quota is gone after 10 ms of wall time, then a 90 ms stall.
        let mut p = pod(200.0, 2.0);
        let out = p.period(25.0);
        assert!(out.throttled);
        assert_eq!((out.used_ms, out.stalled_ms, out.carried_ms), (20.0, 90.0, 5.0));
    }

    #[test]
    fn a_sustained_overload_throttles_every_period_and_the_backlog_grows() {
        // 30 ms of work a period against a 20 ms quota: 10 ms more waits after each period.
        let mut p = pod(200.0, 1.0);
        for n in 1..=5 {
            let out = p.period(30.0);
            assert!(out.throttled);
            assert_eq!(out.carried_ms, 10.0 * n as f64);
        }
        assert_eq!(p.stats.nr_throttled, 5);
        assert_eq!(p.stats.throttled_ms, 400.0);
    }

    #[test]
    fn a_quota_above_what_the_threads_can_use_never_throttles() {
        // 1500m with one thread: at most 100 ms of CPU a period can run; more work waits, but that is queueing,
        // not throttling.
        let mut p = pod(1500.0, 1.0);
        let out = p.period(120.0);
        assert!(!out.throttled);
        assert_eq!((out.used_ms, out.carried_ms), (100.0, 20.0));
        assert_eq!(p.stats.nr_throttled, 0);
    }

    #[test]
    fn a_quota_equal_to_what_the_threads_can_use_never_throttles() {
        let mut p = pod(1000.0, 1.0);
        let out = p.period(130.0);
        assert!(!out.throttled);
        assert_eq!((out.used_ms, out.carried_ms), (100.0, 30.0));
    }

    #[test]
    fn no_limit_means_no_quota() {
        let mut p = CfsPod::new(CfsBandwidth::from_limit(0.0, 100.0), 2.0);
        let out = p.period(150.0);
        assert!(!out.throttled);
        assert_eq!((out.used_ms, out.carried_ms), (150.0, 0.0));
        assert_eq!(p.backlog_ms(), 0.0);
    }
}
