//! The generator watching itself: a saturated generator measures its own queueing, not the target's.
//!
//! Every second: the process's CPU use (getrusage deltas), the p99 lateness of a 10 ms ticker, the requests in
//! flight. A run becomes suspect, for good, when the CPU stays at 90 % or more of the cores the runtime may use
//! for 3 seconds in a row, or when timers run over 100 ms late.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::protocol::GeneratorHealth;

/// CPU share of the usable cores above which a second counts as saturated.
const SATURATED_CPU_SHARE: f64 = 0.9;
/// Consecutive saturated seconds that mark a run suspect.
const SATURATED_SECONDS: u32 = 3;
/// Timer lateness (p99 over a second) that marks a run suspect on its own.
const LAG_LIMIT: Duration = Duration::from_millis(100);
/// The lag probe's period.
const PROBE_PERIOD: Duration = Duration::from_millis(10);

/// A 10 ms ticker on the run's runtime, noting how late each tick fires.
pub struct LagProbe {
    samples: Arc<Mutex<Vec<Duration>>>,
    task: JoinHandle<()>,
}

impl LagProbe {
    pub fn spawn() -> LagProbe {
        let samples = Arc::new(Mutex::new(Vec::with_capacity(128)));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut due = Instant::now() + PROBE_PERIOD;
            loop {
                tokio::time::sleep_until(due.into()).await;
                let now = Instant::now();
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(now.saturating_duration_since(due));
                due += PROBE_PERIOD;
                if due < now {
                    // Ticks missed while the runtime was busy count once (their lateness is in the sample above).
                    due = now + PROBE_PERIOD;
                }
            }
        });
        LagProbe { samples, task }
    }

    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cores the current runtime may use: its worker threads, at most the CPUs this process may run on.
pub fn runtime_cores() -> usize {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    workers.min(available).max(1)
}

fn process_cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let to = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.clamp(0, 999_999) as u32) * 1000);
    to(usage.ru_utime) + to(usage.ru_stime)
}

pub struct Monitor {
    cores: usize,
    last_cpu: Duration,
    last_wall: Instant,
    probe: Option<LagProbe>,
    saturated_run: u32,
    suspect: Option<String>,
}

impl Monitor {
    /// Starts watching (with a lag probe on the current runtime).
    pub fn start(cores: usize) -> Monitor {
        Monitor {
            cores: cores.max(1),
            last_cpu: process_cpu_time(),
            last_wall: Instant::now(),
            probe: Some(LagProbe::spawn()),
            saturated_run: 0,
            suspect: None,
        }
    }

    pub fn idle_health() -> GeneratorHealth {
        GeneratorHealth { cpu_pct: 0.0, timer_lag_p99_ms: 0.0, in_flight: 0, suspect: false, reason: None }
    }

    /// Closes one second ending at run time `elapsed_s` and returns the health over it.
    pub fn close_second(&mut self, elapsed_s: f64, in_flight: u64) -> GeneratorHealth {
        let mut lags = self.probe.as_ref().map(LagProbe::take).unwrap_or_default();
        let cpu = process_cpu_time();
        let now = Instant::now();
        let wall = now.duration_since(self.last_wall).as_secs_f64().max(1e-3);
        let cpu_pct = 100.0 * cpu.saturating_sub(self.last_cpu).as_secs_f64() / wall;
        self.last_cpu = cpu;
        self.last_wall = now;
        self.judge(elapsed_s, cpu_pct, in_flight, &mut lags)
    }

    /// Stops the lag probe (the run is over).
    pub fn stop(&mut self) {
        self.probe = None;
    }

    fn judge(&mut self, elapsed_s: f64, cpu_pct: f64, in_flight: u64, lags: &mut [Duration]) -> GeneratorHealth {
        lags.sort_unstable();
        let lag_p99 = lags.get((lags.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default();
        self.saturated_run =
            if cpu_pct >= 100.0 * SATURATED_CPU_SHARE * self.cores as f64 { self.saturated_run + 1 } else { 0 };
        if self.suspect.is_none() {
            let cores = if self.cores == 1 { "1 core".to_string() } else { format!("{} cores", self.cores) };
            if self.saturated_run >= SATURATED_SECONDS {
                self.suspect = Some(format!("generator saturated at {elapsed_s:.0} s: CPU {cpu_pct:.0} % of {cores}"));
            } else if lag_p99 > LAG_LIMIT {
                self.suspect = Some(format!(
                    "generator timers late at {elapsed_s:.0} s: p99 lag {:.0} ms (CPU {cpu_pct:.0} % of {cores})",
                    lag_p99.as_secs_f64() * 1000.0
                ));
            }
        }
        GeneratorHealth {
            cpu_pct,
            timer_lag_p99_ms: lag_p99.as_secs_f64() * 1000.0,
            in_flight,
            suspect: self.suspect.is_some(),
            reason: self.suspect.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(cores: usize) -> Monitor {
        Monitor {
            cores,
            last_cpu: process_cpu_time(),
            last_wall: Instant::now(),
            probe: None,
            saturated_run: 0,
            suspect: None,
        }
    }

    #[test]
    fn three_saturated_seconds_make_a_run_suspect_for_good() {
        let mut m = monitor(1);
        assert!(!m.judge(1.0, 95.0, 0, &mut []).suspect);
        assert!(!m.judge(2.0, 85.0, 0, &mut []).suspect, "the run of saturated seconds restarts");
        assert!(!m.judge(3.0, 99.0, 0, &mut []).suspect);
        assert!(!m.judge(4.0, 99.0, 0, &mut []).suspect);
        let health = m.judge(5.0, 99.4, 7, &mut []);
        assert!(health.suspect);
        assert_eq!(health.reason.as_deref(), Some("generator saturated at 5 s: CPU 99 % of 1 core"));
        assert_eq!(health.in_flight, 7);
        let later = m.judge(6.0, 10.0, 0, &mut []);
        assert!(later.suspect && later.reason == health.reason, "suspect is sticky: {later:?}");
        // Two cores: 100 % of one core is not saturation.
        let mut m = monitor(2);
        for second in 1..=5 {
            assert!(!m.judge(second as f64, 100.0, 0, &mut []).suspect);
        }
    }

    #[test]
    fn cpu_time_is_measured() {
        // Spins until the process has used 50 ms of CPU (however loaded the machine), then checks the figure
        // against that CPU time over the wall time it took.
        let began = Instant::now();
        let mut m = monitor(1);
        let cpu_at_start = process_cpu_time();
        let mut x = 0u64;
        while process_cpu_time().saturating_sub(cpu_at_start) < Duration::from_millis(50) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let used_at_least = 100.0 * 0.050 / began.elapsed().as_secs_f64();
        let health = m.close_second(1.0, 0);
        assert!(health.cpu_pct >= 0.95 * used_at_least, "{health:?}, expected at least {used_at_least:.1} %");
    }

    #[test]
    fn late_timers_make_a_run_suspect() {
        let mut m = monitor(2);
        let mut lags = vec![Duration::from_millis(1); 99];
        lags.push(Duration::from_millis(150));
        assert!(!m.judge(1.0, 10.0, 0, &mut lags).suspect, "one late tick in 100 is not p99");
        let mut lags = vec![Duration::from_millis(120); 10];
        let health = m.judge(2.0, 10.0, 0, &mut lags);
        assert!(health.suspect);
        assert!((health.timer_lag_p99_ms - 120.0).abs() < 1e-6);
        assert_eq!(
            health.reason.as_deref(),
            Some("generator timers late at 2 s: p99 lag 120 ms (CPU 10 % of 2 cores)")
        );
    }
}
