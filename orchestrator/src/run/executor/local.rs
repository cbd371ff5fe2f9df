//! The child process of one attempt: `orch cell` for the local executor (the cell runs in it), `orch cell-job` for
//! the Kubernetes one (it runs the cell as a Job and follows it). Either way the supervisor owns a process here.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::run_folder;

/// One attempt of one cell.
pub struct Attempt<'a> {
    /// The `orch` binary.
    pub program: &'a Path,
    pub run_dir: &'a Path,
    pub cell_id: &'a str,
    pub attempt: u32,
    /// The cell's folder: the child's stdout and stderr go to its stderr.log.
    pub dir: &'a Path,
}

/// Starts `orch <command>` for the attempt, in a process group of its own, killed if this process dies.
pub fn start(command_name: &str, attempt: &Attempt<'_>) -> Result<Child> {
    let stderr = File::create(attempt.dir.join(run_folder::STDERR_LOG)).context("creating stderr.log")?;
    let stdout = stderr.try_clone().context("sharing stderr.log")?;
    let mut command = Command::new(attempt.program);
    command
        .arg(command_name)
        .arg("--run-dir")
        .arg(attempt.run_dir)
        .arg("--cell")
        .arg(attempt.cell_id)
        .arg("--attempt")
        .arg(attempt.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec. The child leads its own process group, so
    // we can stop it with everything it starts; it gets SIGKILL if we die (even by kill -9), so a resumed
    // run never finds it still writing.
    unsafe {
        command.pre_exec(move || {
            libc::setpgid(0, 0);
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn().with_context(|| format!("starting {} cell", attempt.program.display()))
}
