//! The interface of an autoscaling policy: it decides desired replicas from observations at its own interval.

use super::observation::Observation;

/// A change of one deployment's desired replicas, with the policy's reason for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub service: usize,
    pub replicas: u32,
    pub reason: String,
}

pub trait Policy: Send {
    /// Replicas each service runs when the cell starts.
    fn initial_replicas(&self) -> Vec<u32>;
    /// Seconds between decisions.
    fn interval_s(&self) -> u64;
    /// Replica changes for this decision point; services not listed keep theirs.
    fn decide(&mut self, observation: &Observation) -> Vec<Decision>;
}
