//! A lost agent: the loss is recorded (which agent, when, its last figures) and handled as the matrix says, its
//! users started again on the remaining agents from the next whole second, or the cell failed naming it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use load_agent::protocol::StartRun;

use super::{Loss, PoolEvent, RunFigures, RunSlot, Shared, Started, State, unix_now_s};
use crate::agents::preflight;
use crate::agents::takeover::remainder;
use crate::settings::emulated::OnLoss;

/// Marks `agent` and its runs lost and records the loss (with `handled` as a first account of what happens).
pub(super) fn record_loss(
    shared: &Shared,
    state: &mut State,
    agent: usize,
    reason: String,
    handled: &str,
) -> Option<usize> {
    if state.lost[agent] {
        return None;
    }
    state.lost[agent] = true;
    let origin = state.started.as_ref().map(|s| (s.origin, s.plan.time_scale));
    let mut last = RunFigures::default();
    let mut last_window = None;
    let mut last_contact_unix_s: f64 = 0.0;
    let mut last_contact = None;
    for run in state.runs.iter_mut().filter(|r| r.agent == agent) {
        run.lost = true;
        last.requests += run.last.requests;
        last.failures += run.last.failures;
        last.users += run.last.users;
        last.windows_closed += run.last.windows_closed;
        if run.delivered > 0 {
            last_window = last_window.max(Some(run.offset + run.delivered - 1));
        }
        last_contact_unix_s = last_contact_unix_s.max(run.last_contact_unix_s);
        last_contact = last_contact.max(Some(run.last_contact));
    }
    let emulated = |at: Option<Instant>| match (origin, at) {
        (Some((origin, scale)), Some(at)) => {
            let seconds = if at >= origin {
                at.duration_since(origin).as_secs_f64()
            } else {
                -origin.duration_since(at).as_secs_f64()
            };
            seconds * scale
        }
        _ => 0.0,
    };
    let loss = Loss {
        agent: shared.agents[agent].name.clone(),
        url: shared.agents[agent].client.url().to_string(),
        reason: reason.clone(),
        last_contact_unix_s,
        last_contact_emulated_s: emulated(last_contact),
        detected_unix_s: unix_now_s(),
        detected_emulated_s: emulated(Some(Instant::now())),
        last_window,
        last,
        handled: handled.to_string(),
    };
    state.events.push(PoolEvent {
        warning: true,
        message: format!(
            "{} lost at {:.0} s (emulated; last answer at {:.0} s): {reason}",
            shared.describe(agent),
            loss.detected_emulated_s,
            loss.last_contact_emulated_s
        ),
    });
    state.losses.push(loss);
    Some(state.losses.len() - 1)
}

pub(super) async fn handle_loss(shared: &Arc<Shared>, started: &Started, agent: usize, reason: String) {
    let (loss, orphans) = {
        let mut guard = shared.state();
        let state = &mut *guard;
        let Some(loss) = record_loss(shared, state, agent, reason.clone(), "") else { return };
        let orphans: Vec<(u32, u32)> = state
            .runs
            .iter()
            .filter(|r| r.agent == agent && r.over.is_none())
            .map(|r| (r.agent_index, r.agent_count))
            .collect();
        (loss, orphans)
    };
    let who = shared.describe(agent);
    let set_handled = |handled: String, failure: Option<String>| {
        let mut state = shared.state();
        state.losses[loss].handled = handled.clone();
        state.events.push(PoolEvent { warning: failure.is_some(), message: format!("{who}: {handled}") });
        if let Some(failure) = failure {
            state.failure.get_or_insert(failure);
        }
    };
    let at = started.origin.elapsed().as_secs_f64() * started.plan.time_scale;
    if shared.on_loss == OnLoss::Fail {
        let failure = format!("{who} was lost at {at:.0} s of the cell: {reason} (emulated.agents.on_loss is fail)");
        set_handled("the cell failed (on_loss: fail)".into(), Some(failure));
        return;
    }
    // The next whole second far enough ahead for the start to arrive.
    let from = (started.origin.elapsed().as_secs_f64() + 1.0).ceil();
    let mut accounts = Vec::new();
    for (agent_index, agent_count) in orphans {
        let Some(shape) = remainder(&started.plan.scenario.shape, from) else {
            accounts.push("nothing to redistribute: the scenario had ended".to_string());
            continue;
        };
        let mut scenario = started.plan.scenario.clone();
        scenario.shape = shape;
        let start = StartRun {
            scenario,
            target: started.plan.target.clone(),
            seed: started.plan.seed,
            agent_index,
            agent_count,
            start_at_unix_ms: Some(started.origin_unix_ms + (from * 1000.0) as u64),
            deadline_s: Some(started.duration_s - from + started.grace_s + 10.0),
        };
        // The remaining agents, the least loaded first.
        let survivors: Vec<usize> = {
            let state = shared.state();
            let mut survivors: Vec<(usize, usize)> = (0..shared.agents.len())
                .filter(|&a| !state.lost[a])
                .map(|a| (state.runs.iter().filter(|r| r.agent == a && !r.done()).count(), a))
                .collect();
            survivors.sort();
            survivors.into_iter().map(|(_, a)| a).collect()
        };
        let mut refusals = Vec::new();
        let mut taken = None;
        for survivor in survivors {
            let client = shared.agents[survivor].client.clone();
            match tokio::time::timeout(Duration::from_secs(5), client.start_run(&start)).await {
                Ok(Ok(created)) => {
                    taken = Some((survivor, created.run_id));
                    break;
                }
                Ok(Err(e)) => refusals.push(format!("{}: {}", shared.describe(survivor), preflight::strip(&e))),
                Err(_) => refusals.push(format!("{}: no answer within 5 s", shared.describe(survivor))),
            }
        }
        match taken {
            Some((survivor, run_id)) => {
                let name = shared.agents[agent].name.clone();
                let mut state = shared.state();
                let mut slot = RunSlot::new(
                    survivor,
                    run_id.clone(),
                    agent_index,
                    agent_count,
                    from as u64,
                    Some(name),
                    started.origin + Duration::from_secs_f64(from),
                );
                slot.start_due_unix_ms = start.start_at_unix_ms;
                state.runs.push(slot);
                accounts.push(format!(
                    "users {agent_index} of every {agent_count} moved to {} (run {run_id}) from second {from:.0} \
                     ({:.0} s emulated)",
                    shared.describe(survivor),
                    from * started.plan.time_scale
                ));
            }
            None => {
                let why = if refusals.is_empty() { "no agent is left".to_string() } else { refusals.join("; ") };
                let failure =
                    format!("{who} was lost at {at:.0} s of the cell ({reason}) and no agent took its users: {why}");
                set_handled(format!("redistribution failed: {why}"), Some(failure));
                return;
            }
        }
    }
    set_handled(accounts.join("; "), None);
}
