//! `orch`: a batch experiment orchestrator for autoscaling research.
//!
//! Data flow: [`matrix`] parses and resolves a matrix into cells ([`combinations`] expands include/exclude);
//! [`runner`] plans them into a run folder ([`run_folder`]) and resumes it; the [`supervisor`] runs each cell as an
//! `orch cell` process ([`cell_process`]) with timeouts, retries and cancellation; each cell ([`cell`]) drives a
//! [`backend`] (the embedded [`sim`]ulator, the [`emulated`] app or a real cluster through [`kubernetes`], under
//! real load from [`agents`]) with a
//! [`policy`] and summarises the run; [`report`] renders the run folder as HTML. [`limits`] bounds what input
//! files may ask for. [`cli`] is the `orch` command line, a file per subcommand.

pub mod agents;
pub mod app;
pub mod backend;
pub mod cell;
pub mod cell_process;
pub mod cli;
pub mod combinations;
pub mod duration;
pub mod emulated;
pub mod fault;
pub mod interrupt;
pub mod kubernetes;
pub mod limits;
pub mod matrix;
pub mod plan_diff;
pub mod policy;
pub mod report;
pub mod rl;
pub mod run_folder;
pub mod runner;
pub mod selection;
pub mod sim;
pub mod supervisor;
