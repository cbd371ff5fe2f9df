//! Load agents for emulated cells: remote ones named by the matrix (`emulated.agents.urls`), `--agents` or
//! ORCH_AGENTS, or local `load-agent` processes orch starts on loopback (the default). The pool checks them before
//! a cell starts, splits the users, starts them at one time, polls their windows every second and merges them
//! losslessly, handles a lost agent as the matrix says, and downloads their Locust CSVs at the end.
//!
//! - [`local`]: starting and stopping local agent processes; finding the binary.
//! - [`preflight`]: reachable, token, protocol version, busy, user cap — each error naming the agent.
//! - [`pool`]: runs, polling, loss and redistribution, downloads, agents.json.
//! - [`takeover`]: the rest of a shape, for the run that takes over a lost agent's users.
//! - [`merge`]: several agents' windows of one second as one.
//! - [`rows`]: backend seconds waiting for their agent windows, handed over as metrics rows.

pub mod local;
pub mod merge;
pub mod pool;
pub mod preflight;
pub mod rows;
pub mod takeover;

use std::path::Path;

use anyhow::{Context, Result};
use load_agent::client::AgentClient;
use load_agent::scenario::LoadShape;

use crate::settings::emulated::{AgentSource, AgentsSetup};
pub use pool::{AgentPool, AgentSpec, AgentsReport};

/// The most users a shape runs at once (open model: its user cap).
pub fn peak_users(shape: &LoadShape) -> u64 {
    match shape {
        LoadShape::Stages(stages) => stages.iter().map(|s| s.users as u64).max().unwrap_or(0),
        LoadShape::Ramps(ramps) => ramps.iter().map(|r| r.users as u64).max().unwrap_or(0),
        LoadShape::ArrivalRate(open) => open.max_users as u64,
        LoadShape::Trace(_) => 0,
    }
}

/// The token for remote agents, from the variable the settings name.
fn token(token_env: &str) -> Option<String> {
    std::env::var(token_env).ok().filter(|t| !t.is_empty())
}

/// The agents a cell uses: remote ones as named, or local processes started now (their logs in
/// `agents_dir/<name>/agent.log`) and allowed `target`. Also returns the token variable, for pre-flight messages.
pub fn agents_for(run: AgentsSetup<'_>, agents_dir: &Path, target: &str) -> Result<(Vec<AgentSpec>, Option<String>)> {
    match run.source {
        AgentSource::Remote { urls, token_env } => {
            let token = token(token_env);
            let specs = urls
                .iter()
                .enumerate()
                .map(|(i, url)| AgentSpec {
                    name: format!("remote-{i}"),
                    client: AgentClient::new(url, token.clone()),
                    local: None,
                })
                .collect();
            Ok((specs, Some(token_env.clone())))
        }
        AgentSource::Local { count } => {
            let bin = local::find_binary(run.load_agent_bin)?;
            let mut specs = Vec::new();
            for i in 0..*count {
                let name = format!("local-{i}");
                let dir = agents_dir.join(&name);
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let process = local::LocalAgent::spawn(&bin, &dir.join("agent.log"), target)
                    .with_context(|| format!("starting local agent {name}"))?;
                specs.push(AgentSpec { name, client: AgentClient::new(&process.url, None), local: Some(process) });
            }
            Ok((specs, None))
        }
    }
}

/// The checked pool of a cell's agents (started now when local, allowed `target`), sized for the scenario's peak
/// users.
pub fn pool_for_cell(
    runtime: tokio::runtime::Handle,
    run: AgentsSetup<'_>,
    agents_dir: &Path,
    target: &str,
    shape: &LoadShape,
) -> Result<AgentPool> {
    let (specs, token_env) = agents_for(run, agents_dir, target)?;
    Ok(AgentPool::connect(runtime, specs, token_env.as_deref(), peak_users(shape), run.on_loss)?)
}

/// Why the agents of a run are not ready for it.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// No load-agent binary for the local agents (the whole chain of why, on one line).
    #[error("{0:#}")]
    NoBinary(anyhow::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Agent(#[from] preflight::PreflightError),
}

/// Checks the agents before a run starts anything: remote ones answer, take the token and are free; for local ones,
/// the load-agent binary exists (they start with each cell).
pub fn preflight(run: AgentsSetup<'_>, users: u64) -> Result<(), NotReady> {
    let AgentSource::Remote { urls, token_env } = run.source else {
        // Local agents: the binary they run must be there before any cell starts.
        return local::find_binary(run.load_agent_bin).map(|_| ()).map_err(NotReady::NoBinary);
    };
    // Multi-threaded: the pool drives its calls through a runtime handle, which a current-thread runtime refuses.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(NotReady::Runtime)?;
    let token = token(token_env);
    let specs: Vec<AgentSpec> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| AgentSpec {
            name: format!("remote-{i}"),
            client: AgentClient::new(url, token.clone()),
            local: None,
        })
        .collect();
    AgentPool::connect(runtime.handle().clone(), specs, Some(token_env), users, run.on_loss)?;
    Ok(())
}
