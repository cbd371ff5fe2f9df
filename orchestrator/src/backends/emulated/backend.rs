//! The emulated app as a [`ClusterBackend`]: the same policies drive it through the same interface as the
//! simulator.
//!
//! One backend second is one emulated second: `1 / time_scale` wall seconds. At each, the cluster's control plane
//! ticks (readiness, CPU accounting, metrics-server windows) and the second's replicas and CPU are kept. The load
//! columns of a metrics row come from the agents ([`AgentDriven`]): their window of the wall second that holds the
//! emulated second, merged over agents, arrives about a second later, so rows are handed over as their window
//! completes (in order, one per emulated second) while decisions stay on time. Request rates are real rates (per
//! wall second), so with time compression a row's rates are those of the wall second it falls in, and a run's
//! request totals in the summary are the requests the uncompressed run would have made (the same as its simulator
//! twin's).

use std::sync::Arc;

use load_agent::stats::Entry;
use tokio::runtime::Runtime;

use super::server::Emulator;
use crate::backends::agent_driven::AgentDriven;
use crate::cell::{ClusterBackend, Observation, RunLatency, SecondMetrics};

pub struct EmulatedBackend {
    // Field order is drop order: agents stop before the app, and the runtime goes last.
    load: AgentDriven,
    emulator: Emulator,
    runtime: Arc<Runtime>,
}

impl EmulatedBackend {
    /// A backend over a started emulator and agents ready to start; they start at [`ClusterBackend::reset`].
    pub fn new(runtime: Arc<Runtime>, emulator: Emulator, load: AgentDriven) -> EmulatedBackend {
        EmulatedBackend { load, emulator, runtime }
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    pub fn load_mut(&mut self) -> &mut AgentDriven {
        &mut self.load
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Run-level totals of what the agents measured.
    pub fn measured(&self) -> (&Entry, &Entry) {
        self.load.measured()
    }
}

impl ClusterBackend for EmulatedBackend {
    /// Sets the replicas (warm pods, ready at once) and starts the agents at a common start a moment from now.
    fn reset(&mut self, replicas: &[u32]) {
        self.emulator.cluster.reset(replicas);
        if self.load.start() {
            tracing::info!(
                target_url = %self.emulator.target_url(),
                control_url = %self.emulator.control_url(),
                agents = ?self.load.pool.agent_names(),
                time_scale = self.load.plan().time_scale,
                "load started"
            );
        }
    }

    fn observe(&self) -> Observation {
        self.emulator.cluster.observe()
    }

    fn scale(&mut self, service: usize, replicas: u32) {
        self.emulator.cluster.scale(service, replicas);
    }

    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool {
        let cluster = &self.emulator.cluster;
        self.load.tick(rows, |t| {
            // The second that ended, as the policy left it; then the control plane moves on.
            let services = cluster.second();
            cluster.tick(t + 1);
            services
        })
    }

    fn run_latency(&self) -> RunLatency {
        self.load.run_latency()
    }
}
