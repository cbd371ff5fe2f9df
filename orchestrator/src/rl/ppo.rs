//! Proximal policy optimization (Schulman et al. 2017), readable top to bottom in the style of CleanRL.
//!
//! One iteration: every environment runs `n_steps` decisions in its own thread with the current policy (see
//! [`crate::rl::rollout`]: masked categorical sampling on the host, time-limit truncation bootstrapped);
//! GAE gives advantages and returns; then `n_epochs` passes over the rollout in minibatches drawn without
//! replacement, each minimizing `−min(ρ·A, clip(ρ, 1 ± ε)·A) + vf_coef·(V − R)² − ent_coef·H`, with advantages
//! normalized per minibatch, gradients clipped to a global norm, and Adam. Defaults are stable-baselines3's
//! except `n_steps` (SB3: 2048 per env), which is smaller because one decision is 15 simulated seconds.

use dfdx::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::rl::actor_critic::ActorCritic;
use crate::rl::env::AutoscaleEnv;
use crate::rl::features::GraphObservation;
use crate::rl::gnn::Values;
use crate::rl::layers::{AnyTape, Device};
use crate::rl::learner::{IterationStats, LearnerError};
use crate::rl::optim::Adam;
use crate::rl::returns::{gae, normalize};
use crate::rl::rollout::Workers;
use crate::settings::rl::PpoConfig;

impl PpoConfig {
    /// Learning rate and entropy coefficient when `progress` (0 → 1) of the budget is spent.
    pub fn scheduled(&self, progress: f64) -> (f32, f32) {
        let remaining = (1.0 - progress).clamp(0.0, 1.0) as f32;
        let lr = if self.anneal_lr { self.learning_rate * remaining } else { self.learning_rate };
        let ent = match self.ent_coef_final {
            Some(last) => last + (self.ent_coef - last) * remaining,
            None => self.ent_coef,
        };
        (lr, ent)
    }
}

/// The clipped surrogate loss, `−mean(min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A))`, from log-ratios `log ρ`.
pub fn clipped_surrogate<T: AnyTape>(
    log_ratio: Values<T>,
    advantages: Tensor<(usize,), f32, Cpu>,
    clip_range: f32,
) -> Tensor<(), f32, Cpu, T> {
    let ratio = log_ratio.exp();
    let unclipped = ratio.with_empty_tape() * advantages.clone();
    let clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages;
    unclipped.minimum(clipped).mean().negate()
}

/// PPO's state: the model, its optimizer and the environments.
pub struct Ppo {
    pub config: PpoConfig,
    pub model: ActorCritic,
    dev: Device,
    adam: Adam,
    workers: Workers,
    rng: ChaCha8Rng,
    iteration: usize,
    /// Decisions collected so far, and the budget the schedules run over (none: constant).
    env_steps: usize,
    total_steps: Option<usize>,
}

impl Ppo {
    pub fn new(config: PpoConfig, model: ActorCritic, envs: Vec<AutoscaleEnv>, seed: u64) -> Ppo {
        Ppo {
            adam: Adam::new(&model.parameter_sizes(), config.learning_rate),
            config,
            model,
            dev: Device::default(),
            workers: Workers::new(envs, seed),
            rng: ChaCha8Rng::seed_from_u64(seed),
            iteration: 0,
            env_steps: 0,
            total_steps: None,
        }
    }

    /// The training budget in decisions, which `anneal_lr` and `ent_coef_final` schedule over.
    pub fn set_budget(&mut self, total_steps: usize) {
        self.total_steps = Some(total_steps.max(1));
    }

    /// Decisions one iteration collects.
    pub fn steps_per_iteration(&self) -> usize {
        self.config.n_steps * self.workers.len()
    }

    /// One PPO iteration: collect, compute advantages, update. On a non-finite loss nothing of that update is
    /// applied and the error names it.
    pub fn iterate(&mut self) -> Result<IterationStats, LearnerError> {
        self.iteration += 1;
        let mut c = self.config.clone();
        let progress = self.total_steps.map_or(0.0, |total| self.env_steps as f64 / total as f64);
        let (lr, ent_coef) = c.scheduled(progress);
        self.adam.lr = lr;
        c.ent_coef = ent_coef;
        let rollouts = self.workers.collect(&self.model, c.n_steps, c.gamma, c.normalize_reward);

        // Advantages and returns, per environment, then one flat buffer.
        let mut observations = Vec::new();
        let (mut masks, mut actions, mut old_log_probs, mut advantages, mut returns) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut finished = Vec::new();
        let mut reward_sum = 0.0;
        for r in rollouts {
            let (adv, ret) = gae(&r.rewards, &r.values, &r.dones, r.last_value, c.gamma, c.gae_lambda);
            reward_sum += r.raw_reward_sum;
            observations.extend(r.observations);
            masks.extend(r.masks);
            actions.extend(r.actions);
            old_log_probs.extend(r.log_probs);
            advantages.extend(adv);
            returns.extend(ret);
            finished.extend(r.finished_returns);
        }
        let total = observations.len();
        self.env_steps += total;

        let (mut pg_sum, mut v_sum, mut ent_sum, mut clipped, mut updates) = (0.0, 0.0, 0.0, 0.0, 0);
        let mut order: Vec<usize> = (0..total).collect();
        for _epoch in 0..c.n_epochs {
            // Minibatches without replacement: a fresh permutation per epoch, cut into chunks.
            order.shuffle(&mut self.rng);
            for chunk in order.chunks(c.batch_size) {
                updates += 1;
                let b = chunk.len();
                let batch: Vec<&GraphObservation> = chunk.iter().map(|&i| &observations[i]).collect();
                let batch_masks: Vec<&[bool]> = chunk.iter().map(|&i| masks[i].as_slice()).collect();
                let batch_actions: Vec<&[usize]> = chunk.iter().map(|&i| actions[i].as_slice()).collect();
                let mut adv: Vec<f32> = chunk.iter().map(|&i| advantages[i]).collect();
                if c.normalize_advantage {
                    normalize(&mut adv);
                }
                let dev = &self.dev;
                let old = dev.tensor_from_vec(chunk.iter().map(|&i| old_log_probs[i]).collect(), (b,));
                let ret = dev.tensor_from_vec(chunk.iter().map(|&i| returns[i]).collect(), (b,));
                let adv = dev.tensor_from_vec(adv, (b,));

                let terms = self.model.policy_terms(dev, &batch, &batch_masks, &batch_actions);
                let log_ratio = terms.log_prob - old;
                let ratios = log_ratio.as_vec().iter().map(|l| l.exp()).collect::<Vec<f32>>();
                clipped += ratios.iter().filter(|r| (*r - 1.0).abs() > c.clip_range).count() as f32 / b as f32;
                let policy_loss = clipped_surrogate(log_ratio, adv, c.clip_range);
                let value_loss = (terms.values - ret).square().mean();
                let (pg, vl, ent) = (policy_loss.array(), value_loss.array(), terms.entropy.array());
                let loss = policy_loss + value_loss * c.vf_coef - terms.entropy * c.ent_coef;
                let loss_value = loss.array();
                if !loss_value.is_finite() {
                    return Err(LearnerError::NonFiniteLoss {
                        iteration: self.iteration,
                        update: updates,
                        loss: loss_value,
                        policy: pg,
                        value: vl,
                    });
                }
                pg_sum += pg;
                v_sum += vl;
                ent_sum += ent;
                self.model.apply_gradients(&loss.backward(), &mut self.adam, c.max_grad_norm);
            }
        }
        let n = updates.max(1) as f32;
        Ok(IterationStats {
            iteration: self.iteration,
            env_steps: total,
            mean_reward: reward_sum / total as f64,
            finished_episode_returns: finished,
            policy_loss: pg_sum / n,
            value_loss: v_sum / n,
            entropy: ent_sum / n,
            clip_fraction: clipped / n,
            epsilon: 0.0,
        })
    }
}
