//! `orch`: a batch experiment orchestrator for autoscaling research.
//!
//! Data flow: [`matrix`] parses and resolves a matrix into cells; [`runner`] runs them in parallel; each cell
//! ([`cell`]) drives a [`backend`] (the embedded [`sim`]ulator, or the [`emulated`] app under real load from
//! [`agents`]) with a [`policy`] and summarises the run.

pub mod agents;
pub mod app;
pub mod backend;
pub mod cell;
pub mod emulated;
pub mod matrix;
pub mod policy;
pub mod rl;
pub mod runner;
pub mod sim;
