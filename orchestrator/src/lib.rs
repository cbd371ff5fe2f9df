//! `orch`: a batch experiment orchestrator for autoscaling research.
//!
//! Layers, from the ground up (a module imports only from layers below it; docs/ARCHITECTURE.md draws them):
//! - [`duration`], [`limits`], [`hpa`] (a port of the Kubernetes HPA controller), [`app`] (the app model);
//! - [`settings`]: typed settings a cell carries (the emulated app's, the RL learner's);
//! - [`cell`]: the core: a cell's resolved config and id, the [`cell::Policy`] and [`cell::ClusterBackend`]
//!   traits, [`cell::drive`], the summary, how a cell ends, its cancellation token;
//! - [`run_folder`]: the typed files of a run folder;
//! - [`policy`] (HPA, static), [`sim`] (the embedded simulator), [`agents`] (the load-agent pool), [`rl`]
//!   (learned policies: environment, networks, algorithms);
//! - [`backends`]: sim, emulated and kubernetes, each running one cell;
//! - [`matrix`]: a matrix file parsed, resolved and expanded into cells;
//! - [`run`]: planning, the runner, the supervisor, the cell process, executors, resume;
//! - [`report`]: HTML reports of run folders; [`calibration`]: the simulator measured against the burning
//!   emulation; [`cli`]: the `orch` command line, a file per subcommand.

pub mod agents;
pub mod app;
pub mod backends;
pub mod calibration;
pub mod cell;
pub mod cli;
pub mod duration;
pub mod hpa;
pub mod limits;
pub mod matrix;
pub mod policy;
pub mod report;
pub mod rl;
pub mod run;
pub mod run_folder;
pub mod settings;
pub mod sim;
