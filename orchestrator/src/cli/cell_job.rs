//! `orch cell-job`: one attempt of a planned cell as a Kubernetes Job; the work is in crate::backends::kubernetes::jobs.

use std::path::Path;

/// Runs the attempt as a Job and exits with the cell's exit code.
pub fn run(run_dir: &Path, cell: &str, attempt: u32) -> ! {
    std::process::exit(crate::run::executor::kubernetes_jobs::run_attempt(run_dir, cell, attempt));
}
