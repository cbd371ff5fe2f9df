//! Proximal policy optimization (Schulman et al. 2017), readable top to bottom in the style of CleanRL.
//!
//! One iteration: every environment runs `n_steps` decisions in its own thread with the current policy (masked
//! categorical sampling on the host, one seeded RNG per environment, so results do not depend on scheduling);
//! GAE gives advantages and returns; then `n_epochs` passes over the rollout in minibatches drawn without
//! replacement, each minimizing `−min(ρ·A, clip(ρ, 1 ± ε)·A) + vf_coef·(V − R)² − ent_coef·H`, with advantages
//! normalized per minibatch, gradients clipped to a global norm, and Adam. Defaults are stable-baselines3's
//! except `n_steps` (SB3: 2048 per env), which is smaller because one decision is 15 simulated seconds.

use dfdx::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::rl::distributions::{MASKED_LOGIT, per_service};
use crate::rl::env::{ACTIONS_PER_SERVICE, AutoscaleEnv};
use crate::rl::features::GraphObservation;
use crate::rl::gnn::{Batch3, GnnActorCritic, GraphTensors, ParamMut, ParamRef, Values, encode_batch};
use crate::rl::layers::Device;
use crate::rl::mlp::{MlpActorCritic, encode_flat_batch};
use crate::rl::optim::{Adam, clip_global_norm};
use crate::rl::returns::{gae, normalize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoConfig {
    /// Decisions per environment per rollout.
    pub n_steps: usize,
    /// Samples per minibatch (SB3: 64).
    pub batch_size: usize,
    /// Passes over each rollout (SB3: 10).
    pub n_epochs: usize,
    /// Discount (SB3: 0.99).
    pub gamma: f32,
    /// GAE λ (SB3: 0.95).
    pub gae_lambda: f32,
    /// Policy ratio clip ε (SB3: 0.2).
    pub clip_range: f32,
    /// Entropy bonus (SB3: 0.0).
    pub ent_coef: f32,
    /// Value loss weight (SB3: 0.5).
    pub vf_coef: f32,
    /// Global gradient norm limit (SB3: 0.5).
    pub max_grad_norm: f32,
    /// Adam step size (SB3: 3e-4), eps 1e-5.
    pub learning_rate: f32,
    /// Normalize advantages per minibatch (SB3: true).
    pub normalize_advantage: bool,
}

impl Default for PpoConfig {
    fn default() -> PpoConfig {
        PpoConfig {
            n_steps: 64,
            batch_size: 64,
            n_epochs: 10,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_range: 0.2,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            learning_rate: 3e-4,
            normalize_advantage: true,
        }
    }
}

/// Either actor-critic, behind one interface.
#[derive(Debug, Clone)]
pub enum ActorCritic {
    Gnn(Box<GnnActorCritic>, GraphTensors),
    Mlp(MlpActorCritic),
}

impl ActorCritic {
    /// Logits `(batch, nodes, actions)` and values `(batch,)` for `observations`, with `x` traced or not.
    fn forward<T: crate::rl::layers::AnyTape>(
        &self,
        dev: &Device,
        observations: &[&GraphObservation],
        trace: impl Fn(Tensor<(usize, usize, usize), f32, Cpu>) -> Batch3<T>,
        trace_flat: impl Fn(Tensor<(usize, usize), f32, Cpu>) -> Tensor<(usize, usize), f32, Cpu, T>,
    ) -> (Batch3<T>, Values<T>) {
        match self {
            ActorCritic::Gnn(model, graph) => model.forward(trace(encode_batch(dev, observations)), graph),
            ActorCritic::Mlp(model) => model.forward(trace_flat(encode_flat_batch(dev, observations))),
        }
    }

    /// Logits (flattened, `batch × nodes × actions`) and values, without a tape.
    pub fn infer(&self, dev: &Device, observations: &[&GraphObservation]) -> (Vec<f32>, Vec<f32>) {
        let (logits, values) = self.forward(dev, observations, |x| x, |x| x);
        (logits.as_vec(), values.as_vec())
    }

    pub fn parameters(&self) -> Vec<(String, ParamRef<'_>)> {
        match self {
            ActorCritic::Gnn(model, _) => model.parameters(),
            ActorCritic::Mlp(model) => model.parameters(),
        }
    }

    pub fn parameters_mut(&mut self) -> Vec<ParamMut<'_>> {
        match self {
            ActorCritic::Gnn(model, _) => model.parameters_mut(),
            ActorCritic::Mlp(model) => model.parameters_mut(),
        }
    }
}

/// The clipped surrogate loss, `−mean(min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A))`, from log-ratios `log ρ`.
pub fn clipped_surrogate<T: crate::rl::layers::AnyTape>(
    log_ratio: Values<T>,
    advantages: Tensor<(usize,), f32, Cpu>,
    clip_range: f32,
) -> Tensor<(), f32, Cpu, T> {
    let ratio = log_ratio.exp();
    let unclipped = ratio.with_empty_tape() * advantages.clone();
    let clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages;
    unclipped.minimum(clipped).mean().negate()
}

/// One environment's rollout.
#[derive(Debug, Clone, Default)]
struct Rollout {
    observations: Vec<GraphObservation>,
    masks: Vec<Vec<bool>>,
    actions: Vec<Vec<usize>>,
    log_probs: Vec<f32>,
    values: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<bool>,
    last_value: f32,
    /// Sums of rewards of the episodes that ended in this rollout.
    finished_returns: Vec<f64>,
}

/// Statistics of one iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationStats {
    pub iteration: usize,
    pub env_steps: usize,
    /// Mean reward per decision over the rollout.
    pub mean_reward: f64,
    pub finished_episode_returns: Vec<f64>,
    pub policy_loss: f32,
    pub value_loss: f32,
    pub entropy: f32,
    pub clip_fraction: f32,
}

/// PPO's state: the model, its optimizer, the environments and their current observations.
pub struct Ppo {
    pub config: PpoConfig,
    pub model: ActorCritic,
    dev: Device,
    adam: Adam,
    envs: Vec<AutoscaleEnv>,
    current: Vec<GraphObservation>,
    episode_returns: Vec<f64>,
    env_rngs: Vec<ChaCha8Rng>,
    rng: ChaCha8Rng,
    iteration: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PpoError {
    #[error("update {update} (iteration {iteration}): loss is {loss} (policy {policy}, value {value})")]
    NonFiniteLoss { iteration: usize, update: usize, loss: f32, policy: f32, value: f32 },
}

impl Ppo {
    pub fn new(config: PpoConfig, model: ActorCritic, mut envs: Vec<AutoscaleEnv>, seed: u64) -> Ppo {
        assert!(!envs.is_empty(), "at least one environment");
        let sizes: Vec<usize> = model.parameters().iter().map(|(_, p)| p.values().len()).collect();
        let current = envs.iter_mut().map(|e| e.reset()).collect();
        let env_rngs = (0..envs.len() as u64).map(|i| ChaCha8Rng::seed_from_u64(seed ^ ((i + 1) << 32))).collect();
        Ppo {
            adam: Adam::new(&sizes, config.learning_rate),
            config,
            model,
            dev: Device::default(),
            episode_returns: vec![0.0; envs.len()],
            envs,
            current,
            env_rngs,
            rng: ChaCha8Rng::seed_from_u64(seed),
            iteration: 0,
        }
    }

    /// Runs every environment for `n_steps` decisions, one thread each.
    fn collect(&mut self) -> Vec<Rollout> {
        let n_steps = self.config.n_steps;
        let model = &self.model;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .envs
                .iter_mut()
                .zip(&mut self.current)
                .zip(&mut self.env_rngs)
                .zip(&mut self.episode_returns)
                .map(|(((env, current), rng), episode_return)| {
                    scope.spawn(move || {
                        let dev = Device::default();
                        let mut rollout = Rollout::default();
                        for _ in 0..n_steps {
                            let mask = env.action_mask();
                            let (logits, values) = model.infer(&dev, &[&*current]);
                            let dists = per_service(&logits, &mask, ACTIONS_PER_SERVICE);
                            let actions: Vec<usize> = dists.iter().map(|d| d.sample(rng)).collect();
                            let log_prob = dists.iter().zip(&actions).map(|(d, &a)| d.log_prob(a)).sum();
                            let step = env.step(&actions);
                            *episode_return += step.reward;
                            rollout.observations.push(std::mem::replace(current, step.observation));
                            rollout.masks.push(mask);
                            rollout.actions.push(actions);
                            rollout.log_probs.push(log_prob);
                            rollout.values.push(values[0]);
                            rollout.rewards.push(step.reward as f32);
                            rollout.dones.push(step.done);
                            if step.done {
                                rollout.finished_returns.push(*episode_return);
                                *episode_return = 0.0;
                                *current = env.reset();
                            }
                        }
                        rollout.last_value = model.infer(&dev, &[&*current]).1[0];
                        rollout
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("environment thread panicked")).collect()
        })
    }

    /// One PPO iteration: collect, compute advantages, update.
    pub fn iterate(&mut self) -> Result<IterationStats, PpoError> {
        self.iteration += 1;
        let c = self.config.clone();
        let rollouts = self.collect();

        // Advantages and returns, per environment, then one flat buffer.
        let mut observations = Vec::new();
        let (mut masks, mut actions, mut old_log_probs, mut advantages, mut returns) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut finished = Vec::new();
        let mut reward_sum = 0.0;
        for r in rollouts {
            let (adv, ret) = gae(&r.rewards, &r.values, &r.dones, r.last_value, c.gamma, c.gae_lambda);
            reward_sum += r.rewards.iter().map(|&x| x as f64).sum::<f64>();
            observations.extend(r.observations);
            masks.extend(r.masks);
            actions.extend(r.actions);
            old_log_probs.extend(r.log_probs);
            advantages.extend(adv);
            returns.extend(ret);
            finished.extend(r.finished_returns);
        }
        let total = observations.len();
        let nodes = observations[0].num_nodes;

        let (mut pg_sum, mut v_sum, mut ent_sum, mut clipped, mut updates) = (0.0, 0.0, 0.0, 0.0, 0);
        let mut order: Vec<usize> = (0..total).collect();
        for _epoch in 0..c.n_epochs {
            // Minibatches without replacement: a fresh permutation per epoch, cut into chunks.
            order.shuffle(&mut self.rng);
            for chunk in order.chunks(c.batch_size) {
                updates += 1;
                let b = chunk.len();
                let batch: Vec<&GraphObservation> = chunk.iter().map(|&i| &observations[i]).collect();
                let mut adv: Vec<f32> = chunk.iter().map(|&i| advantages[i]).collect();
                if c.normalize_advantage {
                    normalize(&mut adv);
                }
                let mask_bias: Vec<f32> =
                    chunk.iter().flat_map(|&i| masks[i].iter().map(|&m| if m { 0.0 } else { MASKED_LOGIT })).collect();
                let taken: Vec<usize> = chunk.iter().flat_map(|&i| actions[i].iter().copied()).collect();
                let dev = &self.dev;
                let mask_bias = dev.tensor_from_vec(mask_bias, (b, nodes, ACTIONS_PER_SERVICE));
                let taken = dev.tensor_from_vec(taken, (b, nodes));
                let old = dev.tensor_from_vec(chunk.iter().map(|&i| old_log_probs[i]).collect(), (b,));
                let ret = dev.tensor_from_vec(chunk.iter().map(|&i| returns[i]).collect(), (b,));
                let adv = dev.tensor_from_vec(adv, (b,));

                let (logits, values) = self.model.forward(dev, &batch, |x| x.leaky_traced(), |x| x.leaky_traced());
                let log_p = (logits + mask_bias).log_softmax::<Axis<2>>();
                let entropy = (log_p.with_empty_tape().exp() * log_p.with_empty_tape())
                    .sum::<(usize,), Axes2<1, 2>>()
                    .negate()
                    .mean();
                let new_log_prob = log_p.select(taken).sum::<(usize,), Axis<1>>();
                let log_ratio = new_log_prob - old;
                let ratios = log_ratio.as_vec().iter().map(|l| l.exp()).collect::<Vec<f32>>();
                clipped += ratios.iter().filter(|r| (*r - 1.0).abs() > c.clip_range).count() as f32 / b as f32;
                let policy_loss = clipped_surrogate(log_ratio, adv, c.clip_range);
                let value_loss = (values - ret).square().mean();
                let (pg, vl, ent) = (policy_loss.array(), value_loss.array(), entropy.array());
                let loss = policy_loss + value_loss * c.vf_coef - entropy * c.ent_coef;
                let loss_value = loss.array();
                if !loss_value.is_finite() {
                    return Err(PpoError::NonFiniteLoss {
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

                let grads = loss.backward();
                let mut gradients: Vec<Vec<f32>> =
                    self.model.parameters().iter().map(|(_, p)| p.gradient(&grads)).collect();
                clip_global_norm(&mut gradients, c.max_grad_norm);
                let mut params: Vec<Vec<f32>> = self.model.parameters().iter().map(|(_, p)| p.values()).collect();
                self.adam.update(&mut params, &gradients);
                for (mut param, values) in self.model.parameters_mut().into_iter().zip(&params) {
                    param.set(values);
                }
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
        })
    }
}
