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
use crate::agents::pool::{AgentPool, Plan};
use crate::agents::rows::{AgentRows, log_pool_events};
use crate::backend::{ClusterBackend, Observation, RunLatency, SecondMetrics};
use crate::matrix::CellConfig;

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
    rows: AgentRows,
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
            rows: AgentRows::new(config, time_scale),
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
        self.rows.measured()
    }

    fn log_events(&self) {
        log_pool_events(&self.pool);
    }

    /// Hands over the rows whose agent windows are complete (all of them when `last`).
    fn collect(&mut self, rows: &mut Vec<SecondMetrics>, last: bool) {
        if let Err(e) = self.rows.collect(&self.pool, rows, last) {
            self.failure.get_or_insert(e);
        }
    }
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
            self.rows.push(self.time_s, services);
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
        self.rows.run_latency()
    }
}
