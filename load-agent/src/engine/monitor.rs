//! The generator watching itself: a saturated generator measures its own queueing, not the target's.

use std::time::{Duration, Instant};

use crate::protocol::GeneratorHealth;

/// CPU share of the runtime's cores above which a second counts as saturated.
const SATURATED_CPU_SHARE: f64 = 0.9;
/// Consecutive saturated seconds that mark a run suspect.
const SATURATED_SECONDS: u32 = 3;
/// Timer lateness (p99 over a second) that marks a run suspect on its own.
const LAG_LIMIT: Duration = Duration::from_millis(100);

pub struct Monitor {
    cores: usize,
    last_cpu: Duration,
    last_wall: Instant,
    lags: Vec<Duration>,
    saturated_run: u32,
    suspect: Option<String>,
}

fn process_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let to = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    to(usage.ru_utime) + to(usage.ru_stime)
}

impl Monitor {
    pub fn new(cores: usize) -> Monitor {
        Monitor {
            cores: cores.max(1),
            last_cpu: process_cpu_time(),
            last_wall: Instant::now(),
            lags: Vec::new(),
            saturated_run: 0,
            suspect: None,
        }
    }

    pub fn idle_health() -> GeneratorHealth {
        GeneratorHealth { cpu_pct: 0.0, timer_lag_p99_ms: 0.0, in_flight: 0, suspect: false, reason: None }
    }

    /// Records how late one timer tick fired.
    pub fn timer_lag(&mut self, lag: Duration) {
        self.lags.push(lag);
    }

    /// Closes one second at run time `elapsed_s` and returns the health over it.
    pub fn close_second(&mut self, elapsed_s: f64, in_flight: u64) -> GeneratorHealth {
        let cpu = process_cpu_time();
        let now = Instant::now();
        let wall = now.duration_since(self.last_wall).as_secs_f64().max(1e-3);
        let cpu_pct = 100.0 * (cpu - self.last_cpu).as_secs_f64() / wall;
        self.last_cpu = cpu;
        self.last_wall = now;
        self.lags.sort_unstable();
        let lag_p99 =
            self.lags.get((self.lags.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default();
        self.lags.clear();
        self.saturated_run =
            if cpu_pct >= 100.0 * SATURATED_CPU_SHARE * self.cores as f64 { self.saturated_run + 1 } else { 0 };
        if self.suspect.is_none() {
            if self.saturated_run >= SATURATED_SECONDS {
                self.suspect = Some(format!(
                    "generator saturated at {elapsed_s:.0} s: CPU {cpu_pct:.0} % of {} core(s)",
                    self.cores
                ));
            } else if lag_p99 > LAG_LIMIT {
                self.suspect =
                    Some(format!("timers {:.0} ms late at {elapsed_s:.0} s", lag_p99.as_secs_f64() * 1000.0));
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
