//! Metrics rows of a backend whose load comes from agents (emulated, Kubernetes): the control-plane half of a
//! second is known when it ends, its load half when the agents' window holding it has arrived from every agent,
//! about a second later. Seconds wait here until then and leave in order, one row each.

use std::collections::VecDeque;

use load_agent::stats::Entry;

use super::merge::{HistogramError, Merger, SecondLoad};
use super::pool::{AgentPool, PoolEvent};
use crate::cell::CellConfig;
use crate::cell::{RunLatency, SecondMetrics, ServiceSecond};

/// An agent's window that does not decode; the cell fails with it.
#[derive(Debug, thiserror::Error)]
#[error("an agent sent a window that does not decode: {0}")]
pub struct UndecodableWindow(HistogramError);

/// A second whose control-plane figures are known and whose load figures are awaited.
struct PendingRow {
    time_s: u64,
    services: Vec<ServiceSecond>,
}

pub struct AgentRows {
    /// Backend seconds per agent window (wall second): the emulated app's compression, 1 on a real cluster.
    time_scale: f64,
    pending: VecDeque<PendingRow>,
    merger: Merger,
    current: Option<SecondLoad>,
    /// The next agent window to merge.
    next_window: u64,
    slo_fraction: f64,
}

impl AgentRows {
    pub fn new(config: &CellConfig, time_scale: f64) -> AgentRows {
        let app = &config.app;
        AgentRows {
            time_scale,
            pending: VecDeque::new(),
            merger: Merger::new(slo_stats_names(config), app.slo.threshold_ms),
            current: None,
            next_window: 0,
            slo_fraction: app.slo.percentile / 100.0,
        }
    }

    /// Second `time_s` has ended with these control-plane figures; its load is awaited.
    pub fn push(&mut self, time_s: u64, services: Vec<ServiceSecond>) {
        self.pending.push_back(PendingRow { time_s, services });
    }

    /// Run-level totals of what the agents measured: (all requests, the SLO route's).
    pub fn measured(&self) -> (&Entry, &Entry) {
        (&self.merger.run_total, &self.merger.run_slo)
    }

    pub fn run_latency(&self) -> RunLatency {
        let pick = |e: &Entry| {
            if e.requests == 0 { [f64::NAN; 3] } else { [0.50, 0.95, 0.99].map(|q| e.percentile_ms(q)) }
        };
        RunLatency { slo_route: pick(&self.merger.run_slo), overall: pick(&self.merger.run_total) }
    }

    /// The agent window (wall second since the start) holding backend second `t`.
    fn window_of(&self, t: u64) -> u64 {
        ((t as f64 + 0.5) / self.time_scale).floor() as u64
    }

    /// Hands over pending rows whose agent windows are complete (all of them when `last`, with the tail the agents
    /// measured after the last row merged into the run totals). An error is a window that does not decode.
    pub fn collect(
        &mut self,
        pool: &AgentPool,
        rows: &mut Vec<SecondMetrics>,
        last: bool,
    ) -> Result<(), UndecodableWindow> {
        let undecodable = UndecodableWindow;
        while let Some(front) = self.pending.front() {
            let window = self.window_of(front.time_s);
            while self.next_window <= window {
                let index = self.next_window;
                if !last && !pool.window_complete(index) {
                    return Ok(());
                }
                let windows = pool.take_window(index);
                self.current = Some(self.merger.merge(index, &windows).map_err(undecodable)?);
                self.next_window += 1;
            }
            let pending = self.pending.pop_front().expect("front exists");
            rows.push(self.row(pending));
        }
        let mut result = Ok(());
        if last {
            // The requests in flight at the end.
            for (index, windows) in pool.take_all() {
                if index >= self.next_window
                    && let Err(e) = self.merger.merge(index, &windows)
                {
                    result = result.and(Err(undecodable(e)));
                }
            }
        }
        result
    }

    fn row(&self, pending: PendingRow) -> SecondMetrics {
        let load = self.current.clone().unwrap_or_default();
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

/// Writes what the pool noticed (losses, takeovers, late starts) to the cell's log.
pub fn log_pool_events(pool: &AgentPool) {
    for PoolEvent { warning, message } in pool.take_events() {
        if warning {
            tracing::warn!(%message, "agents");
        } else {
            tracing::info!(%message, "agents");
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
