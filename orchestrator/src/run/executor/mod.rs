//! Where one attempt of a cell runs: [`local`] (an `orch cell` process on this machine, the default) or
//! [`kubernetes_jobs`] (an `orch cell-job` process here that runs the cell as a Kubernetes Job). The supervisor
//! starts, times out and cancels attempts the same way for both.

pub mod kubernetes_jobs;
pub mod local;

use std::path::Path;

use anyhow::Result;

use crate::matrix::executor::JobExecutor;
use crate::run_folder;

#[derive(Clone)]
pub enum Executor {
    Local,
    KubernetesJobs(Box<JobExecutor>),
}

impl Executor {
    /// The matrix's executor, with the variables of this `orch run` to pass on to Jobs.
    pub fn of(settings: Option<&JobExecutor>) -> Executor {
        match settings {
            None => Executor::Local,
            Some(jobs) => Executor::KubernetesJobs(Box::new(jobs.clone().with_environment())),
        }
    }

    /// The `orch` subcommand that runs one attempt.
    pub fn cell_command(&self) -> &'static str {
        match self {
            Executor::Local => "cell",
            Executor::KubernetesJobs(_) => "cell-job",
        }
    }

    /// Whether an attempt past its timeout is killed at once; an `orch cell-job` is sent SIGTERM and given its
    /// grace instead, to delete its Job (else the cell runs on in the cluster).
    pub fn kill_on_timeout(&self) -> bool {
        matches!(self, Executor::Local)
    }

    /// Records the executor in the run folder and removes what an earlier invocation of the run left in the
    /// cluster (this also checks the cluster is reachable). No attempt of this invocation runs yet.
    pub fn start_run(&self, run_dir: &Path, tag: &str) -> Result<()> {
        if let Executor::KubernetesJobs(jobs) = self {
            run_folder::write_json(&run_dir.join(kubernetes_jobs::RUN_FILE), jobs)?;
            kubernetes_jobs::clean_up_run(jobs, tag)?;
        }
        Ok(())
    }

    /// Removes every trace of the run's attempts that the executor left outside the run folder.
    pub fn clean_up(&self, tag: &str) -> Result<()> {
        match self {
            Executor::Local => Ok(()),
            Executor::KubernetesJobs(jobs) => kubernetes_jobs::clean_up_run(jobs, tag),
        }
    }
}
