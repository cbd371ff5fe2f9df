//! What the emulated and kubernetes backends share: load from agents, a clock on wall time, rows that complete
//! once the agents' windows of a second arrive (about a second later), a failure that ends the cell, the
//! cancellation it answers, the run-folder lock that makes such cells take turns, and agents.json.
//!
//! A backend keeps an [`AgentDriven`] and gives it, at each second, what the cluster did in that second
//! ([`AgentDriven::tick`]); the agents' load columns are merged into those rows here.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use load_agent::stats::Entry;

use crate::agents::pool::{AgentPool, AgentsReport, Plan};
use crate::agents::rows::{AgentRows, log_pool_events};
use crate::cell::{CancelToken, CellConfig, RunLatency, SecondMetrics, ServiceSecond};

pub struct AgentDriven {
    pub pool: AgentPool,
    plan: Plan,
    /// How long the agents may take to finish their last requests after the scenario.
    grace_s: f64,
    time_scale: f64,
    origin: Option<Instant>,
    time_s: u64,
    duration_s: u64,
    rows: AgentRows,
    failure: Option<anyhow::Error>,
    cancel: CancelToken,
}

impl AgentDriven {
    /// Over a checked pool; the agents start at [`AgentDriven::start`]. One backend second is `1 / time_scale`
    /// wall seconds.
    pub fn new(pool: AgentPool, plan: Plan, config: &CellConfig, cancel: &CancelToken) -> AgentDriven {
        let time_scale = plan.time_scale;
        AgentDriven {
            pool,
            grace_s: config.scenario.request_timeout_s + 2.0,
            time_scale,
            origin: None,
            time_s: 0,
            duration_s: (plan.scenario.duration_s() * time_scale).round() as u64,
            plan,
            rows: AgentRows::new(config, time_scale),
            failure: None,
            cancel: cancel.clone(),
        }
    }

    /// Starts the agents at a common start a moment from now; the clock starts at 0 then.
    pub fn start(&mut self) -> bool {
        self.time_s = 0;
        match self.pool.start(self.plan.clone(), self.grace_s) {
            Ok(origin) => {
                self.origin = Some(origin);
                true
            }
            Err(error) => {
                self.fail(error.into());
                false
            }
        }
    }

    /// The token that asks the cell to stop.
    pub fn cancel(&self) -> &CancelToken {
        &self.cancel
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The backend clock, in backend seconds since the start.
    pub fn time_s(&self) -> u64 {
        self.time_s
    }

    /// Ends the cell with `error` (the first failure wins).
    pub fn fail(&mut self, error: anyhow::Error) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    pub fn failure(&self) -> Option<&anyhow::Error> {
        self.failure.as_ref()
    }

    pub fn take_failure(&mut self) -> Option<anyhow::Error> {
        self.failure.take()
    }

    /// One backend second: waits until it is over, asks `second` what the cluster did in it (called with the
    /// second's index; the cluster may move on to the next second inside it), and hands over the rows whose agent
    /// windows are complete. False once the scenario has ended, failed or was cancelled (the last rows are handed
    /// over then).
    pub fn tick(&mut self, rows: &mut Vec<SecondMetrics>, second: impl FnOnce(u64) -> Vec<ServiceSecond>) -> bool {
        log_pool_events(&self.pool);
        if self.failure.is_none()
            && let Some(failure) = self.pool.failure()
        {
            self.fail(anyhow!(failure));
        }
        // Ctrl-C or a timeout reached this `orch cell`: end the load now, so the agents' runs are stopped and the
        // cell's files collected (and a cluster restored) within the cancel grace.
        if self.failure.is_none() && self.cancel.is_cancelled() {
            self.fail(crate::cell::Cancelled.into());
        }
        let Some(origin) = self.origin.filter(|_| self.failure.is_none()) else {
            self.pool.stop_all();
            self.collect(rows, true);
            log_pool_events(&self.pool);
            return false;
        };
        if self.time_s < self.duration_s {
            let due = origin + Duration::from_secs_f64((self.time_s + 1) as f64 / self.time_scale);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let services = second(self.time_s);
            self.rows.push(self.time_s, services);
            self.time_s += 1;
            self.collect(rows, false);
            return true;
        }
        // The scenario has ended: the agents finish their requests in flight and close their last windows.
        self.pool.wait_done(Duration::from_secs_f64(self.grace_s + 10.0));
        self.collect(rows, true);
        log_pool_events(&self.pool);
        false
    }

    pub fn run_latency(&self) -> RunLatency {
        self.rows.run_latency()
    }

    /// Run-level totals of what the agents measured (the SLO route's and every request's).
    pub fn measured(&self) -> (&Entry, &Entry) {
        self.rows.measured()
    }

    /// Hands over the rows whose agent windows are complete (all of them when `last`).
    fn collect(&mut self, rows: &mut Vec<SecondMetrics>, last: bool) {
        if let Err(e) = self.rows.collect(&self.pool, rows, last) {
            self.fail(e.into());
        }
    }
}

/// Collects the agents' files into `agents_dir` and writes the cell's agents.json.
pub fn finish_agents(pool: &mut AgentPool, agents_dir: &Path, cell_dir: &Path) -> Result<AgentsReport> {
    let report = pool.finish(agents_dir).context("collecting the agents' files")?;
    for problem in &report.download_errors {
        tracing::warn!(%problem, "agent files");
    }
    let json = serde_json::to_vec_pretty(&report).context("serializing agents.json")?;
    crate::run_folder::write_atomically(&cell_dir.join(crate::run_folder::AGENTS_JSON), &json)?;
    Ok(report)
}

/// Holds a run folder's lock for one kind of agent-driven cell (an flock, released when dropped or when the
/// process dies): two such cells at once would measure each other (emulated) or fight over one cluster.
pub struct TurnLock(#[allow(dead_code)] File);

/// Waits for the run folder's `.<kind>.lock`.
pub fn take_turn(run_dir: &Path, kind: &str) -> Result<TurnLock> {
    use std::os::fd::AsRawFd;
    let path = run_dir.join(format!(".{kind}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("locking {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(TurnLock(file))
}
