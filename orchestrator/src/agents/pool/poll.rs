//! The poller: just after each second ends, every run's status and closed windows are fetched; windows are kept
//! by cell second until the cell takes them, and an agent that fails or stops answering is handed to loss
//! handling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load_agent::client::{AgentClient, ClientError};
use load_agent::protocol::{RunState, RunStatus, WindowSnapshot};
use tokio::task::JoinSet;

use super::loss::handle_loss;
use super::{
    AgentPool, LOSS_AFTER, POLL_AFTER_SECOND, POLL_TIMEOUT, PoolEvent, RunFigures, RunSlot, START_TOLERANCE_MS, Shared,
    Started, unix_now_s,
};
use crate::agents::preflight;

impl AgentPool {
    /// True when every run that covers cell second `second` has delivered its window (or is lost or over).
    pub fn window_complete(&self, second: u64) -> bool {
        let state = self.shared.state();
        state.runs.iter().all(|run| {
            second < run.offset
                || run.lost
                || run.delivered > second - run.offset
                || run.over.is_some() && run.total_windows.is_some_and(|total| total <= second - run.offset)
        })
    }

    /// Takes every run's window of cell second `second`.
    pub fn take_window(&self, second: u64) -> Vec<WindowSnapshot> {
        let mut state = self.shared.state();
        state.runs.iter_mut().filter_map(|run| run.windows.remove(&second)).collect()
    }

    /// Every window received and not yet taken, by cell second (at the end: the tail after the last row).
    pub fn take_all(&self) -> BTreeMap<u64, Vec<WindowSnapshot>> {
        let mut state = self.shared.state();
        let mut out: BTreeMap<u64, Vec<WindowSnapshot>> = BTreeMap::new();
        for run in &mut state.runs {
            for (second, window) in std::mem::take(&mut run.windows) {
                out.entry(second).or_default().push(window);
            }
        }
        out
    }
}

enum PollOutcome {
    Status(Box<RunStatus>, Vec<WindowSnapshot>),
    Failed(ClientError),
}

async fn poll_run(client: &AgentClient, run: &str, delivered: u64) -> PollOutcome {
    let timeout = |message: &str| {
        PollOutcome::Failed(ClientError::Transport { agent: client.url().to_string(), message: message.to_string() })
    };
    let status = match tokio::time::timeout(POLL_TIMEOUT, client.status(run)).await {
        Err(_) => return timeout("no answer to a poll within 2 s"),
        Ok(Err(e)) => return PollOutcome::Failed(e),
        Ok(Ok(status)) => status,
    };
    let mut windows = Vec::new();
    if status.windows_closed > delivered {
        let last_is_next = status.windows_closed == delivered + 1;
        match &status.window {
            Some(window) if last_is_next && window.index == delivered => windows.push(window.clone()),
            _ => match tokio::time::timeout(POLL_TIMEOUT, client.windows(run, delivered)).await {
                Err(_) => return timeout("no answer to a poll within 2 s"),
                Ok(Err(e)) => return PollOutcome::Failed(e),
                Ok(Ok(list)) => windows = list.windows,
            },
        }
    }
    PollOutcome::Status(Box::new(status), windows)
}

pub(super) async fn poll_loop(shared: Arc<Shared>) {
    let Some(started) = shared.state().started.clone() else { return };
    let mut second = 1u64;
    loop {
        let due = started.origin + Duration::from_secs(second) + POLL_AFTER_SECOND;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            // Late (a busy machine): poll now and aim at the next second.
            second = (now.duration_since(started.origin).as_secs_f64() - POLL_AFTER_SECOND.as_secs_f64())
                .floor()
                .max(second as f64) as u64;
        }
        poll_once(&shared, &started).await;
        if shared.state().runs.iter().all(RunSlot::done) {
            return;
        }
        second += 1;
    }
}

async fn poll_once(shared: &Arc<Shared>, started: &Started) {
    let targets: Vec<(usize, AgentClient, String, u64)> = {
        let state = shared.state();
        state
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.done())
            .map(|(i, r)| (i, shared.agents[r.agent].client.clone(), r.run_id.clone(), r.delivered))
            .collect()
    };
    let mut polls = JoinSet::new();
    for (index, client, run, delivered) in targets {
        polls.spawn(async move { (index, poll_run(&client, &run, delivered).await) });
    }
    let mut outcomes = Vec::new();
    while let Some(Ok(outcome)) = polls.join_next().await {
        outcomes.push(outcome);
    }
    let mut newly_lost = Vec::new();
    {
        let mut guard = shared.state();
        let state = &mut *guard;
        let elapsed_s = started.origin.elapsed().as_secs_f64();
        for (index, outcome) in outcomes {
            let run = &mut state.runs[index];
            if run.lost {
                continue;
            }
            match outcome {
                PollOutcome::Status(status, windows) => {
                    run.last_contact = Instant::now();
                    run.last_contact_unix_s = unix_now_s();
                    for window in windows {
                        if window.index == run.delivered {
                            run.windows.insert(run.offset + window.index, window);
                            run.delivered += 1;
                        }
                    }
                    run.last = RunFigures {
                        requests: status.requests,
                        failures: status.failures,
                        users: status.users,
                        windows_closed: status.windows_closed,
                    };
                    let mut events = Vec::new();
                    if let (Some(due), Some(started)) = (run.start_due_unix_ms, status.started_at_unix_ms) {
                        run.start_due_unix_ms = None;
                        if started.abs_diff(due) > START_TOLERANCE_MS {
                            events.push(format!(
                                "{}: started {} ms {} the common start (a late start or its clock is off): its \
                                 windows are shifted by that much",
                                shared.describe(run.agent),
                                started.abs_diff(due),
                                if started > due { "after" } else { "before" }
                            ));
                        }
                    }
                    if status.health.suspect && run.generator_suspect.is_none() {
                        let reason = status.health.reason.clone().unwrap_or_else(|| "saturated".into());
                        events.push(format!(
                            "{}: the generator is saturated, its latencies are suspect: {reason}",
                            shared.describe(run.agent)
                        ));
                        run.generator_suspect = Some(reason);
                    }
                    if status.state.is_over() && run.over.is_none() {
                        run.over = Some(status.state);
                        run.total_windows = Some(status.windows_closed);
                        run.error = status.error.clone();
                        let early = elapsed_s < started.duration_s - 1.0;
                        if status.state == RunState::Failed || (status.state == RunState::Stopped && early) {
                            let why = status.error.clone().unwrap_or_else(|| format!("{:?}", status.state));
                            newly_lost.push((run.agent, format!("its run ended early: {why}")));
                        }
                    }
                    for message in events {
                        state.events.push(PoolEvent { warning: true, message });
                    }
                }
                PollOutcome::Failed(error) => {
                    let definitive = matches!(error.status(), Some(401 | 403 | 404));
                    if definitive || run.last_contact.elapsed() >= LOSS_AFTER {
                        newly_lost.push((run.agent, preflight::strip(&error)));
                    }
                }
            }
        }
    }
    newly_lost.sort();
    newly_lost.dedup_by_key(|(agent, _)| *agent);
    for (agent, reason) in newly_lost {
        handle_loss(shared, started, agent, reason).await;
    }
}
