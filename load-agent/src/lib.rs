//! `load-agent`: a Locust-equivalent load generator.
//!
//! This library holds what the agent and the orchestrator share: the scenario format (parsed and validated in one
//! place) and YAML parsing with errors that name the file and field.

pub mod clock;
pub mod engine;
pub mod protocol;
pub mod scenario;
pub mod stats;
pub mod yaml;
