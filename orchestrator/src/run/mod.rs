//! Running a matrix: cells planned into a run folder, trained models prepared, each cell run by an executor in a
//! process of its own, supervised (timeouts, retries, cancellation), resumed after an interruption.
//!
//! - [`runner`]: plans a matrix into a run folder, resumes it, writes summary.csv; [`plan_diff`]: what changed
//!   since a run was planned; [`selection`]: `--only`, `--app`, ... filters.
//! - [`supervisor`]: cells in parallel, each attempt a child process, with timeouts, retries and a failure budget.
//! - [`executor`]: where an attempt runs: a local `orch cell` process or a Kubernetes Job.
//! - [`cell_process`]: `orch cell`, one cell in this process: status, heartbeat, signals, exit code;
//!   [`execute`]: the cell itself, into its folder (run.log, metrics.csv, summary.json).
//! - [`policies`]: the policy a cell's config names, built (the one place that knows every policy kind);
//!   [`rl_training`]: the RL models a run needs, trained once and cached by hash.
//! - [`interrupt`]: Ctrl-C for `orch run`; [`fault`]: fault injection for tests.

pub mod cell_process;
pub mod execute;
pub mod executor;
pub mod fault;
pub mod interrupt;
pub mod plan_diff;
pub mod policies;
pub mod rl_training;
pub mod runner;
pub mod selection;
pub mod supervisor;
