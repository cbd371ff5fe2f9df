//! Deep Q-learning (Mnih et al. 2015), readable top to bottom like CleanRL's dqn.py, for the single-service
//! image classifier of the AHPA study.
//!
//! The Q-network is the actor head of either model: its `nodes × actions` outputs are Q-values, one
//! row per service (with one service, plain DQN; with more, action branching as Tavakoli et al. 2018: every
//! service's row is its own Q-function against the shared reward, so all services move in one step). The critic
//! head is unused.
//!
//! Every step: act ε-greedily (ε decays linearly from `exploration_initial_eps` to `exploration_final_eps` over
//! `exploration_fraction` of the budget; a random action is a uniformly drawn allowed move per service), store the
//! transition in a replay buffer; after `learning_starts` steps, every `train_freq` steps, sample `batch_size`
//! transitions uniformly and take `gradient_steps` Adam steps on the Huber loss between `Q(s, a)` and
//! `y = r + γ·max_{a' allowed} Q_target(s', a')`; every `target_update_interval` steps move the target network
//! toward the online one (`tau` = 1: copy). An episode ends only at its scenario's time limit, so every transition
//! bootstraps from its next state (stable-baselines3's timeout handling). Defaults are stable-baselines3's except
//! where a doc comment says otherwise.

use dfdx::prelude::*;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::rl::actor_critic::ActorCritic;
use crate::rl::env::AutoscaleEnv;
use crate::rl::features::GraphObservation;
use crate::rl::layers::Device;
use crate::rl::learner::{IterationStats, LearnerError};
use crate::rl::optim::Adam;
use crate::settings::rl::DqnConfig;

/// ε at step `t` of a linear decay from `start` to `end` over `duration` steps, then `end` (CleanRL's
/// `linear_schedule`).
pub fn linear_schedule(start: f64, end: f64, duration: f64, t: usize) -> f64 {
    if duration <= 0.0 {
        return end;
    }
    let slope = (end - start) / duration;
    let value = start + slope * t as f64;
    if start >= end { value.max(end) } else { value.min(end) }
}

/// One stored step.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub observation: GraphObservation,
    pub actions: Vec<usize>,
    pub reward: f32,
    pub next_observation: GraphObservation,
    /// Allowed moves in the next state, for the max of the target.
    pub next_mask: Vec<bool>,
}

/// A ring buffer of transitions, sampled uniformly with replacement (as stable-baselines3's `ReplayBuffer`).
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    capacity: usize,
    items: Vec<Transition>,
    /// Where the next transition goes once the buffer is full.
    next: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize) -> ReplayBuffer {
        assert!(capacity > 0, "a replay buffer holds at least one transition");
        ReplayBuffer { capacity, items: Vec::new(), next: 0 }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, index: usize) -> &Transition {
        &self.items[index]
    }

    /// Stores `transition`, overwriting the oldest once full.
    pub fn push(&mut self, transition: Transition) {
        if self.items.len() < self.capacity {
            self.items.push(transition);
        } else {
            self.items[self.next] = transition;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// `count` indices of stored transitions, uniformly with replacement.
    pub fn sample(&self, count: usize, rng: &mut impl Rng) -> Vec<usize> {
        assert!(!self.items.is_empty(), "sampling an empty replay buffer");
        (0..count).map(|_| rng.r#gen_range(0..self.items.len())).collect()
    }
}

/// TD targets `r + γ·max_{a' allowed} Q_target(s', a')`, per sample and service (`rewards.len() × nodes`).
/// `next_q` and `next_masks` are `batch × nodes × actions`, row-major.
pub fn td_targets(rewards: &[f32], next_q: &[f32], next_masks: &[bool], nodes: usize, gamma: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(rewards.len() * nodes);
    let actions = next_q.len() / (rewards.len() * nodes).max(1);
    for (b, &reward) in rewards.iter().enumerate() {
        for node in 0..nodes {
            let at = (b * nodes + node) * actions;
            let best =
                (0..actions).filter(|&a| next_masks[at + a]).map(|a| next_q[at + a]).fold(f32::NEG_INFINITY, f32::max);
            // Staying is always allowed, so some move is; guard anyway against an all-masked row.
            out.push(reward + gamma * if best.is_finite() { best } else { 0.0 });
        }
    }
    out
}

/// The greedy move per service: the allowed action of highest Q (ties: the lowest index). `q` and `mask` hold
/// `actions` entries per service; `stay` is the fallback of an all-masked row.
pub fn greedy(q: &[f32], mask: &[bool], actions: usize, stay: usize) -> Vec<usize> {
    q.chunks(actions)
        .zip(mask.chunks(actions))
        .map(|(q, m)| {
            let mut best = None;
            for a in 0..actions {
                if m[a] && best.is_none_or(|b: usize| q[a] > q[b]) {
                    best = Some(a);
                }
            }
            best.unwrap_or(stay)
        })
        .collect()
}

/// DQN's state: online and target networks, the optimizer, the buffer and the environments.
pub struct Dqn {
    pub config: DqnConfig,
    pub model: ActorCritic,
    target: ActorCritic,
    dev: Device,
    adam: Adam,
    buffer: ReplayBuffer,
    envs: Vec<AutoscaleEnv>,
    current: Vec<GraphObservation>,
    episode_returns: Vec<f64>,
    rng: ChaCha8Rng,
    /// Environment steps taken so far, over all environments.
    global_step: usize,
    /// The budget the ε schedule decays over.
    total_steps: usize,
    iteration: usize,
    gradient_updates: usize,
}

impl Dqn {
    /// DQN over `envs` (stepped in turn, one transition each per step) for a budget of `total_steps`.
    pub fn new(
        config: DqnConfig,
        model: ActorCritic,
        mut envs: Vec<AutoscaleEnv>,
        total_steps: usize,
        seed: u64,
    ) -> Dqn {
        assert!(!envs.is_empty(), "at least one environment");
        let mut adam = Adam::new(&model.parameter_sizes(), config.learning_rate);
        adam.eps = 1e-8;
        let current = envs.iter_mut().map(|e| e.reset()).collect();
        Dqn {
            target: model.clone(),
            buffer: ReplayBuffer::new(config.buffer_size),
            config,
            model,
            dev: Device::default(),
            adam,
            episode_returns: vec![0.0; envs.len()],
            envs,
            current,
            rng: ChaCha8Rng::seed_from_u64(seed),
            global_step: 0,
            total_steps,
            iteration: 0,
            gradient_updates: 0,
        }
    }

    /// Decisions one iteration collects (a row of training.csv).
    pub fn steps_per_iteration(&self) -> usize {
        self.config.log_interval.max(self.envs.len())
    }

    /// ε now.
    pub fn epsilon(&self) -> f64 {
        let c = &self.config;
        let duration = c.exploration_fraction * self.total_steps as f64;
        linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, duration, self.global_step)
    }

    fn act(&mut self, env: usize) -> Vec<usize> {
        let mask = self.envs[env].action_mask();
        let (actions, stay) = (self.envs[env].actions().len(), self.envs[env].actions().stay());
        if self.rng.r#gen::<f64>() < self.epsilon() {
            mask.chunks(actions)
                .map(|m| {
                    let allowed: Vec<usize> = (0..actions).filter(|&a| m[a]).collect();
                    allowed[self.rng.r#gen_range(0..allowed.len())]
                })
                .collect()
        } else {
            let (q, _) = self.model.infer(&self.dev, &[&self.current[env]]);
            greedy(&q, &mask, actions, stay)
        }
    }

    /// One gradient step on a sampled minibatch; returns the loss.
    fn train_step(&mut self) -> Result<f32, LearnerError> {
        let c = &self.config;
        let indices = self.buffer.sample(c.batch_size, &mut self.rng);
        let batch: Vec<&Transition> = indices.iter().map(|&i| self.buffer.get(i)).collect();
        let b = batch.len();
        let nodes = batch[0].observation.num_nodes;
        let dev = &self.dev;
        let next: Vec<&GraphObservation> = batch.iter().map(|t| &t.next_observation).collect();
        let (next_q, _) = self.target.infer(dev, &next);
        let next_masks: Vec<bool> = batch.iter().flat_map(|t| t.next_mask.iter().copied()).collect();
        let rewards: Vec<f32> = batch.iter().map(|t| t.reward).collect();
        let targets = td_targets(&rewards, &next_q, &next_masks, nodes, c.gamma);

        let observations: Vec<&GraphObservation> = batch.iter().map(|t| &t.observation).collect();
        let taken: Vec<usize> = batch.iter().flat_map(|t| t.actions.iter().copied()).collect();
        let (q, values) = self.model.forward_traced(dev, &observations);
        let q_taken = q.select(dev.tensor_from_vec(taken, (b, nodes)));
        let loss = dfdx::losses::huber_loss(q_taken, dev.tensor_from_vec(targets, (b, nodes)), 1.0);
        // The critic head is not part of DQN; 0·V gives it a (zero) gradient so every parameter has one.
        let loss = loss + values.sum::<(), _>() * 0.0;
        let loss_value = loss.array();
        self.gradient_updates += 1;
        if !loss_value.is_finite() {
            return Err(LearnerError::NonFiniteLoss {
                iteration: self.iteration,
                update: self.gradient_updates,
                loss: loss_value,
                policy: loss_value,
                value: 0.0,
            });
        }
        let max_norm = self.config.max_grad_norm;
        self.model.apply_gradients(&loss.backward(), &mut self.adam, max_norm);
        Ok(loss_value)
    }

    fn update_target(&mut self) {
        let tau = self.config.tau;
        if tau >= 1.0 {
            self.target = self.model.clone();
            return;
        }
        let online = self.model.parameter_values();
        let mut target = self.target.parameter_values();
        for (t, o) in target.iter_mut().flatten().zip(online.iter().flatten()) {
            *t = tau * o + (1.0 - tau) * *t;
        }
        self.target.set_parameter_values(&target);
    }

    /// Runs `steps_per_iteration` decisions (spread over the environments), learning as configured.
    pub fn iterate(&mut self) -> Result<IterationStats, LearnerError> {
        self.iteration += 1;
        let steps = self.steps_per_iteration();
        let (mut reward_sum, mut loss_sum, mut losses, mut done_steps) = (0.0, 0.0, 0, 0);
        let mut finished = Vec::new();
        while done_steps < steps {
            for env in 0..self.envs.len() {
                let actions = self.act(env);
                let step = self.envs[env].step(&actions);
                reward_sum += step.reward;
                self.episode_returns[env] += step.reward;
                let next_mask = self.envs[env].action_mask();
                let observation = std::mem::replace(&mut self.current[env], step.observation.clone());
                self.buffer.push(Transition {
                    observation,
                    actions,
                    reward: step.reward as f32,
                    next_observation: step.observation,
                    next_mask,
                });
                if step.done {
                    finished.push(self.episode_returns[env]);
                    self.episode_returns[env] = 0.0;
                    self.current[env] = self.envs[env].reset();
                }
                self.global_step += 1;
                done_steps += 1;
                let c = &self.config;
                if self.global_step > c.learning_starts && self.global_step.is_multiple_of(c.train_freq) {
                    for _ in 0..c.gradient_steps {
                        loss_sum += self.train_step()?;
                        losses += 1;
                    }
                }
                if self.global_step.is_multiple_of(self.config.target_update_interval.max(1)) {
                    self.update_target();
                }
            }
        }
        Ok(IterationStats {
            iteration: self.iteration,
            env_steps: done_steps,
            mean_reward: reward_sum / done_steps as f64,
            finished_episode_returns: finished,
            // For DQN, the TD (Huber) loss; it has no separate value loss or entropy.
            policy_loss: if losses > 0 { loss_sum / losses as f32 } else { 0.0 },
            value_loss: 0.0,
            entropy: 0.0,
            clip_fraction: 0.0,
            epsilon: self.epsilon() as f32,
        })
    }
}
