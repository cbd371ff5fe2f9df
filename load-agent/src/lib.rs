//! `load-agent`: a Locust-equivalent load generator.
//!
//! The orchestrator and the agent share this library: the scenario format ([`scenario`], parsed and validated in
//! one place, with [`yaml`] errors that name file and field), statistics ([`stats`]: HDR histograms, Locust CSVs),
//! and the control API's wire types ([`protocol`]). The agent adds the [`engine`] that replays scenarios and the
//! [`server`] that exposes it over HTTP.

pub mod client;
pub mod clock;
pub mod engine;
pub mod protocol;
pub mod redact;
pub mod scenario;
pub mod server;
pub mod signals;
pub mod stats;
pub mod tree;
pub mod yaml;
