//! The end of a cell's agents: each run's Locust CSVs downloaded once final, and the record agents.json holds.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use load_agent::client::AgentClient;
use load_agent::protocol::{RunState, RunStatus};
use serde::Serialize;
use tokio::task::JoinSet;

use super::{AgentPool, Loss, POLL_TIMEOUT, RunFigures};

impl AgentPool {
    /// Stops the poller, downloads each run's Locust CSVs into `agents_dir/<agent>/` (a takeover run's into
    /// `agents_dir/<agent>/takeover-of-<lost agent>/`) and returns the record for agents.json.
    pub fn finish(&mut self, agents_dir: &Path) -> Result<AgentsReport> {
        self.stop_all();
        if let Some(poller) = self.poller.take() {
            poller.abort();
        }
        let targets: Vec<(usize, AgentClient, String, std::path::PathBuf)> = {
            let state = self.shared.state();
            state
                .runs
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.lost)
                .map(|(i, r)| {
                    let agent = &self.shared.agents[r.agent];
                    let mut dir = agents_dir.join(&agent.name);
                    if let Some(lost) = &r.takeover_of {
                        dir = dir.join(format!("takeover-of-{lost}"));
                    }
                    (i, agent.client.clone(), r.run_id.clone(), dir)
                })
                .collect()
        };
        let downloaded: Vec<(usize, Result<Vec<String>>)> = self.runtime.block_on(async {
            let mut downloads = JoinSet::new();
            for (index, client, run, dir) in targets {
                downloads.spawn(async move { (index, download_csvs(&client, &run, &dir).await) });
            }
            let mut out = Vec::new();
            while let Some(Ok(result)) = downloads.join_next().await {
                out.push(result);
            }
            out
        });
        let mut state = self.shared.state();
        let mut problems = Vec::new();
        for (index, result) in downloaded {
            match result {
                Ok(files) => state.runs[index].files = files,
                Err(e) => {
                    let run = &state.runs[index];
                    problems.push(format!("{}: {e:#}", self.shared.describe(run.agent)));
                }
            }
        }
        let report = AgentsReport {
            format: 1,
            agents: self
                .shared
                .agents
                .iter()
                .zip(&state.lost)
                .map(|(a, &lost)| AgentReport {
                    name: a.name.clone(),
                    url: a.client.url().to_string(),
                    local: a.pid.is_some(),
                    pid: a.pid,
                    lost,
                })
                .collect(),
            runs: state
                .runs
                .iter()
                .map(|r| RunReport {
                    agent: self.shared.agents[r.agent].name.clone(),
                    run_id: r.run_id.clone(),
                    agent_index: r.agent_index,
                    agent_count: r.agent_count,
                    from_second: r.offset,
                    takeover_of: r.takeover_of.clone(),
                    state: r.over,
                    lost: r.lost,
                    figures: r.last.clone(),
                    windows_received: r.delivered,
                    generator_suspect: r.generator_suspect.clone(),
                    error: r.error.clone(),
                    files: r.files.clone(),
                })
                .collect(),
            losses: state.losses.clone(),
            requests: state.runs.iter().map(|r| r.last.requests).sum(),
            failures: state.runs.iter().map(|r| r.last.failures).sum(),
            download_errors: problems,
        };
        Ok(report)
    }
}

/// agents.json
#[derive(Debug, Clone, Serialize)]
pub struct AgentsReport {
    pub format: u32,
    pub agents: Vec<AgentReport>,
    pub runs: Vec<RunReport>,
    pub losses: Vec<Loss>,
    /// Requests the agents counted (their runs' last cumulative figures).
    pub requests: u64,
    pub failures: u64,
    pub download_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    pub name: String,
    pub url: String,
    pub local: bool,
    pub pid: Option<u32>,
    pub lost: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub agent: String,
    pub run_id: String,
    pub agent_index: u32,
    pub agent_count: u32,
    /// The cell second its first window covers.
    pub from_second: u64,
    pub takeover_of: Option<String>,
    pub state: Option<RunState>,
    pub lost: bool,
    pub figures: RunFigures,
    pub windows_received: u64,
    pub generator_suspect: Option<String>,
    pub error: Option<String>,
    pub files: Vec<String>,
}

/// The Locust CSVs a run leaves, downloaded once its files are final.
const CSV_FILES: [&str; 3] = ["locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv"];

async fn download_csvs(client: &AgentClient, run: &str, dir: &Path) -> Result<Vec<String>> {
    // The agent writes status.json last: once it says the run is over, the other files are final.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = tokio::time::timeout(POLL_TIMEOUT, client.download(run, "status.json")).await;
        let over = match status {
            Ok(Ok(bytes)) => serde_json::from_slice::<RunStatus>(&bytes).is_ok_and(|s| s.state.is_over()),
            _ => false,
        };
        if over {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("run {run}: its files were not final within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for name in CSV_FILES {
        let bytes = tokio::time::timeout(Duration::from_secs(30), client.download(run, name))
            .await
            .map_err(|_| anyhow::anyhow!("run {run}: downloading {name} took over 30 s"))?
            .map_err(|e| anyhow::anyhow!("run {run}: {name}: {e}"))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.push(name.to_string());
    }
    Ok(files)
}
