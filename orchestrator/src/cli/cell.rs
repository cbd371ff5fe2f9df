//! `orch cell`: one planned cell of a run folder in this process; the work is in crate::run::cell_process.

use std::path::Path;

/// Runs the cell and exits with its exit code.
pub fn run(run_dir: &Path, cell: &str, attempt: u32) -> ! {
    std::process::exit(crate::run::cell_process::run(run_dir, cell, attempt));
}
