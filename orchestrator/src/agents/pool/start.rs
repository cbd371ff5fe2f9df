//! Starting a cell's agents: every agent checked before anything starts, then one run per agent at a common
//! start time, and the poller.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use load_agent::client::ClientError;
use load_agent::protocol::StartRun;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use super::poll::poll_loop;
use super::{Agent, AgentPool, AgentSpec, Plan, RunSlot, START_LEAD, Shared, Started, State};
use crate::agents::local::LocalAgent;
use crate::agents::preflight::{self, Candidate, PreflightError};
use crate::settings::emulated::OnLoss;

/// An agent that would not start its run; `who` names it, `detail` is its answer.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// 409: a run of its own is going on.
    #[error("{who} is busy: {detail}")]
    Busy { who: String, detail: String },
    #[error("{who} refused the run: {detail}")]
    Refused { who: String, detail: String },
}

impl AgentPool {
    /// Checks every agent (concurrently) before anything starts; the error names the first agent that fails.
    /// `users` is the most users the scenario runs at once, split over the agents.
    pub fn connect(
        runtime: Handle,
        specs: Vec<AgentSpec>,
        token_env: Option<&str>,
        users: u64,
        on_loss: OnLoss,
    ) -> Result<AgentPool, PreflightError> {
        let count = specs.len() as u64;
        let mut local = Vec::new();
        let mut agents = Vec::new();
        for spec in specs {
            let pid = spec.local.as_ref().map(LocalAgent::pid);
            if let Some(process) = spec.local {
                local.push(process);
            }
            agents.push(Agent { name: spec.name, client: spec.client, pid });
        }
        let share = users.div_ceil(count.max(1));
        runtime.block_on(async {
            let mut checks = JoinSet::new();
            for (index, agent) in agents.iter().enumerate() {
                let (name, client) = (agent.name.clone(), agent.client.clone());
                let token_env = token_env.map(str::to_string);
                checks.spawn(async move {
                    let candidate = Candidate { name: &name, client: &client, token_env: token_env.as_deref() };
                    (index, preflight::check(&candidate, share).await)
                });
            }
            let mut errors: Vec<(usize, PreflightError)> = Vec::new();
            while let Some(result) = checks.join_next().await {
                if let Ok((index, Err(error))) = result {
                    errors.push((index, error));
                }
            }
            // The first agent's error, in the order the agents are listed.
            match errors.into_iter().min_by_key(|(index, _)| *index) {
                Some((_, error)) => Err(error),
                None => Ok(()),
            }
        })?;
        let lost = vec![false; agents.len()];
        let shared = Arc::new(Shared { agents, on_loss, state: Mutex::new(State { lost, ..State::default() }) });
        Ok(AgentPool { runtime, shared, _local: local, poller: None })
    }

    /// Starts one run per agent, all at a common start time a moment from now; returns that start. On any
    /// refusal, the runs already started are stopped and the error names the agent.
    pub fn start(&mut self, plan: Plan, grace_s: f64) -> Result<Instant, StartError> {
        let count = self.shared.agents.len() as u32;
        let duration_s = plan.scenario.duration_s();
        let start_at = SystemTime::now() + START_LEAD;
        let origin_unix_ms = start_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let shared = self.shared.clone();
        let created: Vec<(usize, Result<String, ClientError>)> = self.runtime.block_on(async {
            let mut starts = JoinSet::new();
            for (index, agent) in shared.agents.iter().enumerate() {
                let client = agent.client.clone();
                let start = StartRun {
                    scenario: plan.scenario.clone(),
                    target: plan.target.clone(),
                    seed: plan.seed,
                    agent_index: index as u32,
                    agent_count: count,
                    start_at_unix_ms: Some(origin_unix_ms),
                    // A safety net: the agents stop by themselves if orch goes away.
                    deadline_s: Some(duration_s + grace_s + 10.0),
                };
                starts.spawn(async move {
                    let created = match tokio::time::timeout(Duration::from_secs(10), client.start_run(&start)).await {
                        Ok(result) => result.map(|c| c.run_id),
                        Err(_) => Err(ClientError::Transport {
                            agent: client.url().to_string(),
                            message: "no answer to the start within 10 s".into(),
                        }),
                    };
                    (index, created)
                });
            }
            let mut out = Vec::new();
            while let Some(Ok(result)) = starts.join_next().await {
                out.push(result);
            }
            out.sort_by_key(|(index, _)| *index);
            out
        });
        let origin = Instant::now() + start_at.duration_since(SystemTime::now()).unwrap_or_default();
        let mut failure = None;
        let mut state = self.shared.state();
        for (index, result) in created {
            match result {
                Ok(run_id) => {
                    let mut run = RunSlot::new(index, run_id, index as u32, count, 0, None, origin);
                    run.start_due_unix_ms = Some(origin_unix_ms);
                    state.runs.push(run);
                }
                Err(e) => {
                    let (who, detail) = (self.shared.describe(index), preflight::strip(&e));
                    failure.get_or_insert(if e.status() == Some(409) {
                        StartError::Busy { who, detail }
                    } else {
                        StartError::Refused { who, detail }
                    });
                }
            }
        }
        if let Some(error) = failure {
            drop(state);
            self.stop_all();
            return Err(error);
        }
        state.started = Some(Started { plan, origin, origin_unix_ms, duration_s, grace_s });
        drop(state);
        self.poller = Some(self.runtime.spawn(poll_loop(self.shared.clone())));
        Ok(origin)
    }
}
