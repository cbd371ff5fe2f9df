//! The emulated app as a [`ClusterBackend`]: the same policies drive it through the same interface as the
//! simulator.
//!
//! One backend second is one emulated second: `1 / time_scale` wall seconds. At each, the cluster's control plane
//! ticks (readiness, CPU accounting, metrics-server windows) and the second's replicas and CPU are kept. The load
//! columns of a metrics row come from the agents: their window of the wall second that holds the emulated second,
//! merged over agents, arrives about a second later, so rows are handed over as their window completes (in order,
//! one per emulated second) while decisions stay on time. Request rates are real rates (per wall second), so with
//! time compression a row's rates are those of the wall second it falls in, and a run's request totals in the
//! summary are the requests the uncompressed run would have made (the same as its simulator twin's).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load_agent::stats::Entry;
use tokio::runtime::Runtime;

use super::server::Emulator;
use crate::agents::merge::{Merger, SecondLoad};
use crate::agents::pool::{AgentPool, Plan, PoolEvent};
use crate::backend::{ClusterBackend, Observation, RunLatency, SecondMetrics, ServiceSecond};
use crate::matrix::CellConfig;

/// A second whose control-plane figures are known and whose load figures are awaited.
struct PendingRow {
    time_s: u64,
    services: Vec<ServiceSecond>,
}

pub struct EmulatedBackend {
    // Field order is drop order: agents stop before the app, and the runtime goes last.
    pool: AgentPool,
    emulator: Emulator,
    runtime: Arc<Runtime>,
    plan: Plan,
    grace_s: f64,
    time_scale: f64,
    origin: Option<Instant>,
    time_s: u64,
    duration_s: u64,
    pending: VecDeque<PendingRow>,
    merger: Merger,
    current: Option<SecondLoad>,
    /// The next agent window to merge.
    next_window: u64,
    slo_fraction: f64,
    failure: Option<String>,
    buffered: VecDeque<SecondMetrics>,
}

impl EmulatedBackend {
    /// A backend over a started emulator and a checked pool; the agents start at [`ClusterBackend::reset`].
    pub fn new(
        runtime: Arc<Runtime>,
        emulator: Emulator,
        pool: AgentPool,
        plan: Plan,
        config: &CellConfig,
    ) -> EmulatedBackend {
        let app = &config.app;
        let slo_names = slo_stats_names(config);
        let time_scale = plan.time_scale;
        EmulatedBackend {
            pool,
            emulator,
            runtime,
            grace_s: config.scenario.request_timeout_s + 2.0,
            time_scale,
            origin: None,
            time_s: 0,
            duration_s: (plan.scenario.duration_s() * time_scale).round() as u64,
            plan,
            pending: VecDeque::new(),
            merger: Merger::new(slo_names, app.slo.threshold_ms),
            current: None,
            next_window: 0,
            slo_fraction: app.slo.percentile / 100.0,
            failure: None,
            buffered: VecDeque::new(),
        }
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    pub fn pool_mut(&mut self) -> &mut AgentPool {
        &mut self.pool
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Why the cell failed, if it did (an agent lost with on_loss: fail, agents that refused to start, ...).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Run-level totals of what the agents measured.
    pub fn measured(&self) -> (&Entry, &Entry) {
        (&self.merger.run_total, &self.merger.run_slo)
    }

    /// The agent window (wall second since the start) holding emulated second `t`.
    fn window_of(&self, t: u64) -> u64 {
        ((t as f64 + 0.5) / self.time_scale).floor() as u64
    }

    fn log_events(&self) {
        for PoolEvent { warning, message } in self.pool.take_events() {
            if warning {
                tracing::warn!(%message, "agents");
            } else {
                tracing::info!(%message, "agents");
            }
        }
    }

    /// Hands over pending rows whose agent windows are complete (all of them when `last`).
    fn collect(&mut self, rows: &mut Vec<SecondMetrics>, last: bool) {
        while let Some(front) = self.pending.front() {
            let window = self.window_of(front.time_s);
            while self.next_window <= window {
                let index = self.next_window;
                if !last && !self.pool.window_complete(index) {
                    return;
                }
                let windows = self.pool.take_window(index);
                match self.merger.merge(index, &windows) {
                    Ok(merged) => self.current = Some(merged),
                    Err(e) => {
                        self.failure.get_or_insert(format!("an agent sent a window that does not decode: {e}"));
                        return;
                    }
                }
                self.next_window += 1;
            }
            let pending = self.pending.pop_front().expect("front exists");
            let row = self.row(pending);
            rows.push(row);
        }
        if last {
            // The tail the agents measured after the last row (the requests in flight at the end).
            for (index, windows) in self.pool.take_all() {
                if index >= self.next_window
                    && let Err(e) = self.merger.merge(index, &windows)
                {
                    self.failure.get_or_insert(format!("an agent sent a window that does not decode: {e}"));
                }
            }
        }
    }

    fn row(&self, pending: PendingRow) -> SecondMetrics {
        let load = self.current.as_ref().expect("merged before any row");
        let slo_requests = load.slo_requests as f64;
        // Failed requests count as slow; one both failed and slow is counted twice, capped at the requests.
        let bad = (load.slo_failures + load.slo_slow).min(load.slo_requests) as f64;
        SecondMetrics {
            time_s: pending.time_s,
            users: load.users as f64,
            offered_rps: load.requests as f64,
            achieved_rps: (load.requests - load.failures) as f64,
            failures: load.failures as f64,
            slo_p50_ms: load.slo_p50_ms,
            slo_p95_ms: load.slo_p95_ms,
            slo_p99_ms: load.slo_p99_ms,
            slo_violated: slo_requests > 0.0 && bad / slo_requests > 1.0 - self.slo_fraction,
            slo_requests,
            slo_bad_requests: bad,
            services: pending.services,
        }
    }
}

/// The stats names (method, name) the agents file the SLO route's requests under.
pub fn slo_stats_names(config: &CellConfig) -> Vec<(String, String)> {
    let app = &config.app;
    let slo_route = app.route_index(&app.slo.route).expect("validated SLO route");
    let mut slo_names = Vec::new();
    for user in &config.scenario.users {
        for request in user.on_start.iter().chain(user.tasks.iter().flat_map(|t| &t.requests)) {
            if app.route_for(&config.scenario, request.kind()) == Some(slo_route) {
                let method = match request.kind() {
                    load_agent::scenario::RequestKind::Http { method, .. } => method.to_string(),
                    load_agent::scenario::RequestKind::Redis { .. } => "REDIS".to_string(),
                };
                let key = (method, request.stats_name());
                if !slo_names.contains(&key) {
                    slo_names.push(key);
                }
            }
        }
    }
    slo_names
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

impl ClusterBackend for EmulatedBackend {
    /// Sets the replicas (warm pods, ready at once) and starts the agents at a common start a moment from now.
    fn reset(&mut self, replicas: &[u32]) {
        self.emulator.cluster.reset(replicas);
        self.time_s = 0;
        match self.pool.start(self.plan.clone(), self.grace_s) {
            Ok(origin) => {
                tracing::info!(
                    target_url = %self.emulator.target_url(),
                    control_url = %self.emulator.control_url(),
                    agents = ?self.pool.agent_names(),
                    time_scale = self.time_scale,
                    "load started"
                );
                self.origin = Some(origin);
            }
            Err(message) => self.failure = Some(message),
        }
    }

    fn observe(&self) -> Observation {
        self.emulator.cluster.observe()
    }

    fn scale(&mut self, service: usize, replicas: u32) {
        self.emulator.cluster.scale(service, replicas);
    }

    fn advance(&mut self) -> Option<SecondMetrics> {
        loop {
            if let Some(row) = self.buffered.pop_front() {
                return Some(row);
            }
            let mut rows = Vec::new();
            let running = self.tick(&mut rows);
            self.buffered.extend(rows);
            if !running {
                return self.buffered.pop_front();
            }
        }
    }

    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool {
        self.log_events();
        if self.failure.is_none()
            && let Some(failure) = self.pool.failure()
        {
            self.failure = Some(failure);
        }
        // Ctrl-C or a timeout reached this `orch cell`: end the load now, so the agents' runs are stopped and their
        // files collected within the cancel grace.
        if self.failure.is_none() && crate::cell_process::cancel_requested() {
            self.failure = Some("cancelled".into());
        }
        let Some(origin) = self.origin.filter(|_| self.failure.is_none()) else {
            self.collect(rows, true);
            self.log_events();
            return false;
        };
        if self.time_s < self.duration_s {
            sleep_until(origin + Duration::from_secs_f64((self.time_s + 1) as f64 / self.time_scale));
            // The second that ended, as the policy left it; then the control plane moves on.
            let services = self.emulator.cluster.second();
            self.pending.push_back(PendingRow { time_s: self.time_s, services });
            self.time_s += 1;
            self.emulator.cluster.tick(self.time_s);
            self.collect(rows, false);
            return true;
        }
        // The scenario has ended: the agents finish their requests in flight and close their last windows.
        self.pool.wait_done(Duration::from_secs_f64(self.grace_s + 10.0));
        self.collect(rows, true);
        self.log_events();
        false
    }

    fn run_latency(&self) -> RunLatency {
        let pick = |e: &Entry| {
            if e.requests == 0 { [f64::NAN; 3] } else { [0.50, 0.95, 0.99].map(|q| e.percentile_ms(q)) }
        };
        RunLatency { slo_route: pick(&self.merger.run_slo), overall: pick(&self.merger.run_total) }
    }
}
