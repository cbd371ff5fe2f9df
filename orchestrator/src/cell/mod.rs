//! The cell core: what one cell is and how it runs, below every backend, policy and executor.
//!
//! - [`config`]: the resolved config of a cell (backend, app, scenario, policy, seed), its id and hash.
//! - [`observation`]: what a policy sees and what a backend reports each second; [`cluster`]: the
//!   [`ClusterBackend`] trait every backend implements; [`policy`]: the [`Policy`] trait.
//! - [`drive`]: a policy driving a backend to the end of the scenario; [`summary`]: the cell's figures.
//! - [`outcome`]: why a cell ended (typed errors, exit codes); [`cancel`]: the token that asks it to stop.
//!
//! Nothing here imports from a layer above (backends, matrix, run, report, cli).

pub mod cancel;
pub mod cluster;
pub mod config;
pub mod drive;
pub mod observation;
pub mod outcome;
pub mod policy;
pub mod summary;

pub use cancel::CancelToken;
pub use cluster::ClusterBackend;
pub use config::{Backend, Cell, CellConfig, ResolvedPolicy, cell_id, config_hash, config_yaml, read_config_yaml};
pub use drive::drive;
pub use observation::{Observation, RunLatency, SecondMetrics, ServiceObservation, ServiceSecond};
pub use outcome::{Cancelled, TransientError};
pub use policy::{Decision, Policy};
pub use summary::{CellSummary, NonFiniteFigure};
