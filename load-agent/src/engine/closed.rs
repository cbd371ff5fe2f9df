//! The closed model (stages, ramps): the user count follows the shape's target at its spawn rate, users are started
//! one by one at 1/spawn_rate intervals (the first at once, as Locust does) and stopped most recent first. A new
//! target pre-empts an unfinished ramp ([`step_users`]).
//!
//! The live users are always global indices `0..n` (spawn order over all agents); this agent runs those with
//! `i % agent_count == agent_index`, so any number of agents split every count exactly, and classes, which follow
//! the index, keep their proportions at every count.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::assign::{ClassTable, global_index, local_share, user_rng};
use super::user::{RunCtx, StopFlag, User};
use crate::scenario::{UsersTarget, step_users};

struct Live {
    stop: Arc<StopFlag>,
    task: JoinHandle<()>,
}

pub struct ClosedUsers {
    agent_index: u32,
    agent_count: u32,
    cap: u64,
    seed: u64,
    /// The global user count as `step_users` moves it (fractional between spawns).
    current: f64,
    live: Vec<Live>,
    /// Users told to stop that may still be finishing a request.
    stopping: Vec<JoinHandle<()>>,
    /// How often each local slot has been started.
    generations: Vec<u32>,
}

/// The whole number of users a ramp at `current` toward `goal` has started (or not yet stopped): a rising ramp
/// starts its next user when the previous one is a whole 1/spawn_rate old, a falling one stops them likewise.
fn whole_users(current: f64, goal: u32) -> u64 {
    let goal = goal as f64;
    let n = if current < goal - 1e-9 {
        ((current + 1e-9).floor() + 1.0).min(goal)
    } else if current > goal + 1e-9 {
        ((current - 1e-9).ceil() - 1.0).max(goal)
    } else {
        goal
    };
    n.max(0.0) as u64
}

impl ClosedUsers {
    pub fn new(agent_index: u32, agent_count: u32, cap: u32, seed: u64) -> ClosedUsers {
        ClosedUsers {
            agent_index,
            agent_count,
            cap: cap as u64,
            seed,
            current: 0.0,
            live: Vec::new(),
            stopping: Vec::new(),
            generations: Vec::new(),
        }
    }

    pub fn users(&self) -> u64 {
        self.live.len() as u64
    }

    /// This agent's share of `global` users, capped.
    pub fn share(&self, global: u64) -> u64 {
        local_share(global, self.agent_index, self.agent_count).min(self.cap)
    }

    /// Moves the user count toward `target` over `dt` seconds, starting and stopping users.
    pub fn step(
        &mut self,
        ctx: &Arc<RunCtx>,
        classes: &mut ClassTable,
        target: UsersTarget,
        dt: f64,
    ) -> Result<(), String> {
        self.current = step_users(self.current, target, dt.max(0.0));
        if !self.current.is_finite() {
            self.current = target.users as f64;
        }
        let wanted = self.share(whole_users(self.current, target.users));
        while self.users() < wanted {
            let slot = self.live.len();
            let index = global_index(slot as u64, self.agent_index, self.agent_count);
            if self.generations.len() <= slot {
                self.generations.push(0);
            }
            let generation = self.generations[slot];
            self.generations[slot] += 1;
            let user = User::new(ctx.clone(), index, classes.class_of(index), user_rng(self.seed, index, generation))?;
            let stop = Arc::new(StopFlag::default());
            let task = tokio::spawn(user.run_closed(stop.clone()));
            self.live.push(Live { stop, task });
        }
        while self.users() > wanted {
            // Locust stops the most recently started users first.
            let live = self.live.pop().expect("more users than wanted");
            live.stop.stop();
            self.stopping.push(live.task);
        }
        self.stopping.retain(|task| !task.is_finished());
        Ok(())
    }

    /// How long until the ramp toward `target` starts or stops its next user.
    pub fn next_change_in(&self, target: UsersTarget) -> Option<Duration> {
        let goal = target.users as f64;
        let rate = target.spawn_rate;
        if rate.is_nan() || rate <= 0.0 || (self.current - goal).abs() < 1e-9 {
            return None;
        }
        let distance = if self.current < goal {
            (self.current + 1e-9).floor() + 1.0 - self.current
        } else {
            self.current - ((self.current - 1e-9).ceil() - 1.0)
        };
        Some(Duration::from_secs_f64((distance / rate).clamp(0.0, 3600.0)))
    }

    /// Tells every user to stop; returns their tasks to wait for.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks = std::mem::take(&mut self.stopping);
        for live in self.live.drain(..) {
            live.stop.stop();
            tasks.push(live.task);
        }
        tasks
    }
}

impl Drop for ClosedUsers {
    /// Users outlive neither their model nor a run that was aborted.
    fn drop(&mut self) {
        for live in &self.live {
            live.stop.stop();
            live.task.abort();
        }
        for task in &self.stopping {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_start_one_by_one_from_time_zero() {
        // Rising toward 3 at 1 user/s: the first user at once, the second after 1 s, the third after 2 s.
        assert_eq!(whole_users(0.0, 3), 1);
        assert_eq!(whole_users(0.999, 3), 1);
        assert_eq!(whole_users(1.0, 3), 2);
        assert_eq!(whole_users(2.5, 3), 3);
        assert_eq!(whole_users(3.0, 3), 3);
        // Falling from 3 toward 1: one stops at once, the next after 1 s.
        assert_eq!(whole_users(3.0, 1), 2);
        assert_eq!(whole_users(2.2, 1), 2);
        assert_eq!(whole_users(2.0, 1), 1);
        assert_eq!(whole_users(0.0, 0), 0);
    }
}
