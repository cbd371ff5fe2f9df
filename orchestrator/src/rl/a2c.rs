//! Advantage actor-critic (A2C, the synchronous variant of Mnih et al. 2016), readable top to bottom like CleanRL.
//!
//! One iteration: every environment runs `n_steps` decisions with the current policy (in parallel threads, see
//! [`crate::rl::rollout`]); GAE with λ = 1 gives n-step advantages and returns; then one gradient step on the
//! whole rollout minimizing `−mean(A·log π(a|s)) + vf_coef·mean((V − R)²) − ent_coef·H`, gradients clipped to a
//! global norm, RMSprop. Defaults are stable-baselines3's A2C.

use dfdx::prelude::*;

use crate::rl::actor_critic::ActorCritic;
use crate::rl::env::AutoscaleEnv;
use crate::rl::features::GraphObservation;
use crate::rl::layers::Device;
use crate::rl::learner::{IterationStats, LearnerError};
use crate::rl::optim::RmsProp;
use crate::rl::returns::{gae, normalize};
use crate::rl::rollout::Workers;
use crate::settings::rl::A2cConfig;

/// A2C's state: the model, its optimizer and the environments.
pub struct A2c {
    pub config: A2cConfig,
    pub model: ActorCritic,
    dev: Device,
    optimizer: RmsProp,
    workers: Workers,
    iteration: usize,
}

impl A2c {
    pub fn new(config: A2cConfig, model: ActorCritic, envs: Vec<AutoscaleEnv>, seed: u64) -> A2c {
        A2c {
            optimizer: RmsProp::new(&model.parameter_sizes(), config.learning_rate),
            config,
            model,
            dev: Device::default(),
            workers: Workers::new(envs, seed),
            iteration: 0,
        }
    }

    /// Decisions one iteration collects.
    pub fn steps_per_iteration(&self) -> usize {
        self.config.n_steps * self.workers.len()
    }

    /// One A2C update: collect, compute advantages, one gradient step. On a non-finite loss the step is not
    /// applied and the error names the update.
    pub fn iterate(&mut self) -> Result<IterationStats, LearnerError> {
        self.iteration += 1;
        let c = self.config.clone();
        let rollouts = self.workers.collect(&self.model, c.n_steps, c.gamma, c.normalize_reward);

        let mut observations = Vec::new();
        let (mut masks, mut actions, mut advantages, mut returns, mut finished) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut reward_sum = 0.0;
        for r in rollouts {
            let (adv, ret) = gae(&r.rewards, &r.values, &r.dones, r.last_value, c.gamma, c.gae_lambda);
            reward_sum += r.raw_reward_sum;
            observations.extend(r.observations);
            masks.extend(r.masks);
            actions.extend(r.actions);
            advantages.extend(adv);
            returns.extend(ret);
            finished.extend(r.finished_returns);
        }
        if c.normalize_advantage {
            normalize(&mut advantages);
        }
        let total = observations.len();

        let batch: Vec<&GraphObservation> = observations.iter().collect();
        let batch_masks: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
        let batch_actions: Vec<&[usize]> = actions.iter().map(Vec::as_slice).collect();
        let dev = &self.dev;
        let adv = dev.tensor_from_vec(advantages, (total,));
        let ret = dev.tensor_from_vec(returns, (total,));
        let terms = self.model.policy_terms(dev, &batch, &batch_masks, &batch_actions);
        // The policy gradient: advantages are constants, so only log π carries the tape.
        let policy_loss = (terms.log_prob * adv).mean().negate();
        let value_loss = (terms.values - ret).square().mean();
        let (pg, vl, ent) = (policy_loss.array(), value_loss.array(), terms.entropy.array());
        let loss = policy_loss + value_loss * c.vf_coef - terms.entropy * c.ent_coef;
        let loss_value = loss.array();
        if !loss_value.is_finite() {
            return Err(LearnerError::NonFiniteLoss {
                iteration: self.iteration,
                update: self.iteration,
                loss: loss_value,
                policy: pg,
                value: vl,
            });
        }
        self.model.apply_gradients(&loss.backward(), &mut self.optimizer, c.max_grad_norm);
        Ok(IterationStats {
            iteration: self.iteration,
            env_steps: total,
            mean_reward: reward_sum / total as f64,
            finished_episode_returns: finished,
            policy_loss: pg,
            value_loss: vl,
            entropy: ent,
            clip_fraction: 0.0,
            epsilon: 0.0,
        })
    }
}
