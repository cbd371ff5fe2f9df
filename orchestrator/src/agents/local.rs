//! Local agents: `load-agent --listen 127.0.0.1:0` processes orch starts for a cell and stops after it. Each gets
//! a temporary data directory; its log goes where the caller says (the cell's agents/<name>/agent.log). On Linux a
//! local agent dies with orch (PR_SET_PDEATHSIG), so a killed orch leaves no load behind. Each is allowed the
//! cell's target by name: an agent without a token drives only loopback targets by itself, and a cell's target
//! may lie elsewhere (a cluster's URL).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use load_agent::engine::Target;

/// Where to find the binary: this environment variable, else next to the orch executable.
pub const BIN_ENV: &str = "ORCH_LOAD_AGENT_BIN";
/// Runs one local agent may hold at once: its own, plus users taken over from lost agents.
const MAX_RUNS: &str = "8";

/// The load-agent binary: `explicit` (--load-agent-bin), ORCH_LOAD_AGENT_BIN, or `load-agent` next to the running
/// executable (or one folder up, for test binaries in target/<profile>/deps).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let check = |path: PathBuf, origin: &str| -> Result<PathBuf> {
        if path.is_file() { Ok(path) } else { bail!("{origin}: {} is not a file", path.display()) }
    };
    if let Some(path) = explicit {
        return check(path.to_path_buf(), "--load-agent-bin");
    }
    if let Some(path) = std::env::var_os(BIN_ENV).filter(|p| !p.is_empty()) {
        return check(PathBuf::from(path), BIN_ENV);
    }
    let exe = std::env::current_exe().context("locating the orch executable")?;
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(folder) = dir else { break };
        let candidate = folder.join(format!("load-agent{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
        dir = folder.parent();
    }
    Err(anyhow!(
        "cannot find the load-agent binary (tried {}); build it (`cargo build --release -p load-agent`), or give \
         --load-agent-bin PATH or {BIN_ENV}",
        tried.join(", ")
    ))
}

/// A running local agent; dropping it stops the process (SIGTERM, then SIGKILL after a grace period).
pub struct LocalAgent {
    child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl LocalAgent {
    /// Starts an agent that may drive load to `target` (the cell's URL) only.
    pub fn spawn(bin: &Path, log: &Path, target: &str) -> Result<LocalAgent> {
        let allowed = Target::parse(target).map_err(|e| anyhow!("the cell's target: {e}"))?.authority();
        let data = tempfile::Builder::new().prefix("orch-agent-").tempdir().context("creating an agent data folder")?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating the agent log {}", log.display()))?;
        let mut command = Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0", "--max-runs", MAX_RUNS, "--allow-target", &allowed, "--data-dir"])
            .arg(data.path())
            .env_remove("LOAD_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                // Die with the parent; harmless if it fails.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // The first line says where it listens; read it with a time limit.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
        });
        let line = match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                bail!("{} printed no address: {e}", bin.display());
            }
            Err(_) => {
                let _ = child.kill();
                bail!("{} did not start listening within 20 s (see {})", bin.display(), log.display());
            }
        };
        let Some(address) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not start: {:?} (see {})", bin.display(), line.trim(), log.display());
        };
        Ok(LocalAgent { url: format!("http://{address}"), child, _data: data })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
