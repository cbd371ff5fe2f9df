//! `static`: fixed replicas, never changed.

use crate::cell::Observation;
use crate::cell::{Decision, Policy};

pub struct StaticPolicy {
    replicas: Vec<u32>,
}

impl StaticPolicy {
    pub fn new(replicas: Vec<u32>) -> StaticPolicy {
        StaticPolicy { replicas }
    }
}

impl Policy for StaticPolicy {
    fn initial_replicas(&self) -> Vec<u32> {
        self.replicas.clone()
    }

    fn interval_s(&self) -> u64 {
        // Nothing to decide; a long interval keeps observation cost away from the simulation.
        u64::MAX
    }

    fn decide(&mut self, _observation: &Observation) -> Vec<Decision> {
        Vec::new()
    }
}
