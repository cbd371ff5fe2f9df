//! `orch`: a batch experiment orchestrator for autoscaling research.

pub mod policy;
