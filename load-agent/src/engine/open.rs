//! The open model (arrival rate): task starts follow the shape's rate whatever the response times, as k6's
//! ramping-arrival-rate executor. Iteration k (over all agents) is due when the integral of the rate reaches
//! k + 1/2 (so a constant rate r over T seconds gives r·T iterations, evenly spaced inside the interval, and a ramp
//! from 0 does not start one at once), or with `arrivals: poisson` the sum of k + 1 unit exponentials drawn from
//! the run's seed (every agent draws the same sequence), and runs on agent k % agent_count, on a free user of a
//! pool that grows to max_users; an iteration that finds no free user is dropped and counted. Each iteration
//! carries its exact intended start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::assign::{ClassTable, global_index, local_share, user_rng};
use super::user::{RunCtx, StopFlag, User};
use crate::scenario::{ArrivalRate, Arrivals};

/// Where on the integral of the rate each iteration falls due.
struct DueSchedule {
    /// Poisson: the draws, the points drawn and not yet forgotten, and the iteration of the first of them.
    poisson: Option<(Box<ChaCha8Rng>, std::collections::VecDeque<f64>, u64)>,
}

impl DueSchedule {
    fn new(arrivals: Arrivals, seed: u64) -> DueSchedule {
        let poisson = match arrivals {
            Arrivals::Even => None,
            // Its own stream, so the users' draws do not move with it.
            Arrivals::Poisson => {
                Some((Box::new(ChaCha8Rng::seed_from_u64(seed ^ 0x6172_7269_7661_6c73)), Default::default(), 0))
            }
        };
        DueSchedule { poisson }
    }

    /// Continues a Poisson sequence after `issued` iterations, the last due at `integral`.
    fn continue_after(&mut self, issued: u64, integral: f64) {
        if let Some((_, points, first)) = &mut self.poisson {
            points.clear();
            points.push_back(integral);
            *first = issued.saturating_sub(1);
        }
    }

    /// The point of iteration `k` (not below one forgotten).
    fn point(&mut self, k: u64) -> f64 {
        match &mut self.poisson {
            None => k as f64 + 0.5,
            Some((rng, points, first)) => {
                while *first + points.len() as u64 <= k {
                    let last = points.back().copied().unwrap_or(0.0);
                    points.push_back(last - (1.0 - rng.r#gen::<f64>()).ln());
                }
                points[(k - *first) as usize]
            }
        }
    }

    /// Forgets the points of iterations before `k` (keeping the last, which the next draw adds to).
    fn forget_before(&mut self, k: u64) {
        if let Some((_, points, first)) = &mut self.poisson {
            while *first < k && points.len() > 1 {
                points.pop_front();
                *first += 1;
            }
        }
    }

    /// How many iterations are due once the integral reaches `integral`, given `from` of them were before.
    fn due_count(&mut self, integral: f64, from: u64) -> u64 {
        if self.poisson.is_none() {
            // The cast saturates, so any rate stays finite work.
            return if integral >= 0.5 { ((integral - 0.5).floor() as u64).saturating_add(1) } else { 0 };
        }
        let mut k = from;
        while self.point(k) <= integral {
            k += 1;
        }
        k
    }
}

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
    schedule: DueSchedule,
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
            schedule: DueSchedule::new(Arrivals::Even, seed),
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
        let even = self.schedule.poisson.is_none();
        if even != shape.arrivals.is_even() {
            // A shape changed to another spacing keeps the iterations issued so far and continues from there.
            self.schedule = DueSchedule::new(shape.arrivals, self.seed);
            self.schedule.continue_after(self.issued, self.arrivals);
        }
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
        let due_end = self.schedule.due_count(self.arrivals, self.issued);
        let mut k = self.next_local(self.issued);
        while k < due_end {
            let s = offset_within_step(self.schedule.point(k) - before, r0, rate, h);
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
        self.schedule.forget_before(self.issued);
        Ok(())
    }

    /// The first iteration at or after `k` that runs on this agent.
    fn next_local(&self, k: u64) -> u64 {
        let count = self.agent_count.max(1) as u64;
        let index = self.agent_index as u64 % count;
        k.saturating_add((index + count - k % count) % count)
    }

    /// How long until this agent's next iteration falls due at `rate` (None: not at this rate).
    pub fn next_due_in(&mut self, rate: f64) -> Option<Duration> {
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        let k = self.next_local(self.issued);
        let remaining = (self.schedule.point(k) - self.arrivals).max(0.0);
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
    fn poisson_points_have_unit_exponential_gaps_and_even_ones_sit_mid_interval() {
        let mut even = DueSchedule::new(Arrivals::Even, 1);
        assert_eq!((even.point(0), even.point(3)), (0.5, 3.5));
        assert_eq!(even.due_count(3.5, 0), 4);
        let mut poisson = DueSchedule::new(Arrivals::Poisson, 1);
        let points: Vec<f64> = (0..20_000).map(|k| poisson.point(k)).collect();
        let gaps: Vec<f64> = points.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 1.0).abs() < 0.03 && (var - 1.0).abs() < 0.06, "gaps mean {mean}, variance {var}");
        // Asking again, counting or forgetting draws nothing new: the sequence is the same whatever the questions.
        assert_eq!(poisson.point(19_999), points[19_999]);
        let mut again = DueSchedule::new(Arrivals::Poisson, 1);
        assert_eq!(again.due_count(points[99], 0), 100);
        assert_eq!(again.point(5), points[5]);
        again.forget_before(50);
        assert_eq!((again.point(50), again.point(150)), (points[50], points[150]));
    }

    #[test]
    fn intended_starts_follow_the_integral_of_the_rate() {
        assert!((offset_within_step(1.0, 10.0, 10.0, 0.5) - 0.1).abs() < 1e-12);
        // From 0 to 20/s over 1 s: the integral is 10 s², so it reaches 2.5 at 0.5 s.
        assert!((offset_within_step(2.5, 0.0, 20.0, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(offset_within_step(5.0, 0.0, 0.0, 0.2), 0.2);
    }
}
