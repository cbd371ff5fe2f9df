//! The interface every cluster backend offers a cell's driver: reset, observe, scale, and one second at a time.

use super::observation::{Observation, RunLatency, SecondMetrics};

/// A cluster the runner can drive one second at a time.
pub trait ClusterBackend {
    /// Puts every deployment at `replicas`, ready, with no load and no history.
    fn reset(&mut self, replicas: &[u32]);
    fn observe(&self) -> Observation;
    /// Sets a deployment's desired replicas; pods start or stop as the cluster would.
    fn scale(&mut self, service: usize, replicas: u32);
    /// Moves the backend's clock one second on and pushes the rows of seconds whose measurements are complete,
    /// oldest first; false once the scenario has ended (rows pushed then are the last). The simulator's rows are
    /// complete at once (one per tick); a backend whose measurements of a second arrive after it (load agents close
    /// a second's window once it is over) hands its rows over later, but in order and one per second, while
    /// decisions stay on its clock.
    fn tick(&mut self, rows: &mut Vec<SecondMetrics>) -> bool;
    fn run_latency(&self) -> RunLatency;
}
