//! The open model (arrival rate): task starts follow the shape's rate whatever the response times, as k6's
//! ramping-arrival-rate executor. Iteration k (over all agents) is due when the integral of the rate reaches
//! k + 1/2 (so a constant rate r over T seconds gives r·T iterations, evenly spaced inside the interval, and a ramp
//! from 0 does not start one at once) and runs on agent k % agent_count, on a free user of a pool that grows to max_users; an iteration that finds no
//! free user is dropped and counted. Each iteration carries its exact intended start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::assign::{ClassTable, global_index, local_share, user_rng};
use super::user::{RunCtx, StopFlag, User};
use crate::scenario::ArrivalRate;

pub struct OpenUsers {
    agent_index: u32,
    agent_count: u32,
    cap: u64,
    seed: u64,
    /// Pool size wanted up front and at most (this agent's share).
    preallocated: u64,
    max_users: u64,
    senders: Vec<mpsc::Sender<Instant>>,
    tasks: Vec<JoinHandle<()>>,
    free: Vec<usize>,
    free_tx: mpsc::UnboundedSender<usize>,
    free_rx: mpsc::UnboundedReceiver<usize>,
    stop: Arc<StopFlag>,
    /// Iterations handed to users that stopped before starting them (they count as dropped).
    unrun: Arc<AtomicU64>,
    /// Iterations due so far over all agents (the integral of the rate), and iterations issued.
    arrivals: f64,
    issued: u64,
    /// Run time (s) and rate at the last advance.
    last_t: f64,
    last_rate: f64,
    dropped: u64,
}

impl OpenUsers {
    pub fn new(agent_index: u32, agent_count: u32, cap: u32, seed: u64) -> OpenUsers {
        let (free_tx, free_rx) = mpsc::unbounded_channel();
        OpenUsers {
            agent_index,
            agent_count,
            cap: cap as u64,
            seed,
            preallocated: 0,
            max_users: 0,
            senders: Vec::new(),
            tasks: Vec::new(),
            free: Vec::new(),
            free_tx,
            free_rx,
            stop: Arc::new(StopFlag::default()),
            unrun: Arc::new(AtomicU64::new(0)),
            arrivals: 0.0,
            issued: 0,
            last_t: 0.0,
            last_rate: 0.0,
            dropped: 0,
        }
    }

    pub fn users(&self) -> u64 {
        self.senders.len() as u64
    }

    /// Iterations that found no free user, or were handed to a user that stopped before starting them.
    pub fn dropped(&self) -> u64 {
        self.dropped + self.unrun.load(Ordering::Relaxed)
    }

    /// Takes the pool sizes of `shape` (at the start, or when a change replaces the shape) and preallocates.
    pub fn configure(
        &mut self,
        shape: &ArrivalRate,
        ctx: &Arc<RunCtx>,
        classes: &mut ClassTable,
    ) -> Result<(), String> {
        let share = |n: u32| local_share(n as u64, self.agent_index, self.agent_count).min(self.cap);
        self.max_users = share(shape.max_users);
        self.preallocated = share(shape.preallocated_users).min(self.max_users);
        while self.users() < self.preallocated {
            // Free at once: an iteration handed to a user still in on_start waits for it, timed from its start.
            let id = self.spawn(ctx, classes)?;
            self.free.push(id);
        }
        Ok(())
    }

    fn spawn(&mut self, ctx: &Arc<RunCtx>, classes: &mut ClassTable) -> Result<usize, String> {
        let id = self.senders.len();
        let index = global_index(id as u64, self.agent_index, self.agent_count);
        let user = User::new(ctx.clone(), index, classes.class_of(index), user_rng(self.seed, index, 0))?;
        let (sender, iterations) = mpsc::channel(1);
        self.senders.push(sender);
        let run = user.run_open(id, self.stop.clone(), iterations, self.free_tx.clone(), self.unrun.clone());
        self.tasks.push(tokio::spawn(run));
        Ok(id)
    }

    /// Advances the schedule to run time `t` (rate `rate` there) and hands out this agent's iterations that fell
    /// due since the last call, each with its intended start.
    pub fn advance(
        &mut self,
        t: f64,
        rate: f64,
        started: Instant,
        ctx: &Arc<RunCtx>,
        classes: &mut ClassTable,
    ) -> Result<(), String> {
        let (t0, r0) = (self.last_t, self.last_rate);
        let h = t - t0;
        self.last_t = t;
        self.last_rate = rate;
        if h <= 0.0 {
            return Ok(());
        }
        let before = self.arrivals;
        // Exact for a rate linear over the step (the shapes are piecewise linear and the steps short).
        self.arrivals += 0.5 * (r0 + rate) * h;
        // Iterations k with k + 1/2 <= arrivals are due (the cast saturates, so any rate stays finite work).
        let due_end = if self.arrivals >= 0.5 { ((self.arrivals - 0.5).floor() as u64).saturating_add(1) } else { 0 };
        let mut k = self.next_local(self.issued);
        while k < due_end {
            let s = offset_within_step(k as f64 + 0.5 - before, r0, rate, h);
            let intended = started + Duration::from_secs_f64((t0 + s).max(0.0));
            if !self.dispatch(intended, ctx, classes)? {
                // The pool is exhausted: the rest of this step's iterations find no free user either. Counting
                // them at once keeps a step's work bounded by the pool size, whatever the rate.
                let count = self.agent_count.max(1) as u64;
                self.dropped += (due_end - 1 - k) / count;
                break;
            }
            k = k.saturating_add(self.agent_count.max(1) as u64);
        }
        self.issued = self.issued.max(due_end);
        Ok(())
    }

    /// The first iteration at or after `k` that runs on this agent.
    fn next_local(&self, k: u64) -> u64 {
        let count = self.agent_count.max(1) as u64;
        let index = self.agent_index as u64 % count;
        k.saturating_add((index + count - k % count) % count)
    }

    /// How long until this agent's next iteration falls due at `rate` (None: not at this rate).
    pub fn next_due_in(&self, rate: f64) -> Option<Duration> {
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        let k = self.next_local(self.issued);
        let remaining = (k as f64 + 0.5 - self.arrivals).max(0.0);
        Some(Duration::from_secs_f64((remaining / rate).min(3600.0)))
    }

    /// Hands one iteration to a free user (spawning one while the pool may grow); false when it was dropped.
    fn dispatch(&mut self, intended: Instant, ctx: &Arc<RunCtx>, classes: &mut ClassTable) -> Result<bool, String> {
        while let Ok(id) = self.free_rx.try_recv() {
            self.free.push(id);
        }
        loop {
            let id = match self.free.pop() {
                Some(id) => id,
                None if self.users() < self.max_users => self.spawn(ctx, classes)?,
                None => {
                    self.dropped += 1;
                    return Ok(false);
                }
            };
            // A free user waits on an empty channel; one that ended (it cannot, short of a panic) is skipped.
            if self.senders[id].try_send(intended).is_ok() {
                return Ok(true);
            }
        }
    }

    /// Tells every user to stop; returns their tasks to wait for.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        self.stop.stop();
        self.senders.clear();
        std::mem::take(&mut self.tasks)
    }
}

impl Drop for OpenUsers {
    /// Users outlive neither their pool nor a run that was aborted.
    fn drop(&mut self) {
        self.stop.stop();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where within a step of `h` seconds, with the rate moving linearly from `r0` to `r1`, the integral of the rate
/// reaches `a`.
fn offset_within_step(a: f64, r0: f64, r1: f64, h: f64) -> f64 {
    let slope = (r1 - r0) / h;
    let s = if slope.abs() < 1e-12 {
        if r0 > 0.0 { a / r0 } else { h }
    } else {
        // r0·s + slope·s²/2 = a
        let disc = r0 * r0 + 2.0 * slope * a;
        if disc <= 0.0 { h } else { (disc.sqrt() - r0) / slope }
    };
    s.clamp(0.0, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_starts_follow_the_integral_of_the_rate() {
        assert!((offset_within_step(1.0, 10.0, 10.0, 0.5) - 0.1).abs() < 1e-12);
        // From 0 to 20/s over 1 s: the integral is 10 s², so it reaches 2.5 at 0.5 s.
        assert!((offset_within_step(2.5, 0.0, 20.0, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(offset_within_step(5.0, 0.0, 0.0, 0.2), 0.2);
    }
}
