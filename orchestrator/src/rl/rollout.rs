//! On-policy rollouts: every environment runs `n_steps` decisions with the current policy in its own thread.
//!
//! Actions are sampled on the host from masked categoricals, one seeded RNG per environment, so a rollout does not
//! depend on thread scheduling. An episode cut by its time limit is bootstrapped: its last reward gets
//! `γ·V(final state)` added (as stable-baselines3 does), so the end of a scenario is not mistaken for a terminal
//! state whose future is worth nothing.
//!
//! With `normalize_reward`, each environment divides its rewards by the running standard deviation of its own
//! discounted return (gymnasium's `NormalizeReward`, stable-baselines3's `VecNormalize(norm_reward=True)`), so
//! rewards of any scale give value losses of order one and the value loss cannot swamp the policy gradient under
//! global-norm clipping. Per environment, so the statistics do not depend on thread scheduling.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::rl::actor_critic::ActorCritic;
use crate::rl::distributions::per_service;
use crate::rl::env::AutoscaleEnv;
use crate::rl::features::GraphObservation;
use crate::rl::layers::Device;

/// One environment's rollout.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    pub observations: Vec<GraphObservation>,
    pub masks: Vec<Vec<bool>>,
    pub actions: Vec<Vec<usize>>,
    pub log_probs: Vec<f32>,
    pub values: Vec<f32>,
    /// Rewards, with the bootstrap of a truncated episode's final state folded into its last one.
    pub rewards: Vec<f32>,
    pub dones: Vec<bool>,
    /// Value of the state the rollout stopped in.
    pub last_value: f32,
    /// Sums of (unbootstrapped) rewards of the episodes that ended in this rollout.
    pub finished_returns: Vec<f64>,
    /// Rewards as the environment gave them, for statistics.
    pub raw_reward_sum: f64,
}

/// The environments of an on-policy learner and where each of them is.
pub struct Workers {
    pub envs: Vec<AutoscaleEnv>,
    current: Vec<GraphObservation>,
    episode_returns: Vec<f64>,
    rngs: Vec<ChaCha8Rng>,
    normalizers: Vec<RewardNormalizer>,
}

/// Running variance of the discounted return, to scale rewards by: gymnasium's `RunningMeanStd` (mean 0 and
/// variance 1 with a weight of 1e-4 to start), and the scaled reward clipped to ±10 as stable-baselines3's
/// `VecNormalize` does (the first few rewards meet a variance estimated from almost nothing).
#[derive(Debug, Clone)]
pub struct RewardNormalizer {
    discounted_return: f64,
    count: f64,
    mean: f64,
    variance: f64,
}

/// Normalized rewards are clipped to ±this (stable-baselines3's `VecNormalize(clip_reward=10)`).
pub const REWARD_CLIP: f64 = 10.0;

impl Default for RewardNormalizer {
    fn default() -> RewardNormalizer {
        RewardNormalizer { discounted_return: 0.0, count: 1e-4, mean: 0.0, variance: 1.0 }
    }
}

impl RewardNormalizer {
    /// `reward` divided by the running standard deviation of the discounted return, which it first updates.
    pub fn normalize(&mut self, reward: f64, gamma: f64, done: bool) -> f64 {
        self.discounted_return = self.discounted_return * gamma + reward;
        let x = self.discounted_return;
        let total = self.count + 1.0;
        let delta = x - self.mean;
        self.mean += delta / total;
        self.variance = (self.variance * self.count + delta * delta * self.count / total) / total;
        self.count = total;
        if done {
            self.discounted_return = 0.0;
        }
        (reward / (self.variance + 1e-8).sqrt()).clamp(-REWARD_CLIP, REWARD_CLIP)
    }
}

impl Workers {
    /// Resets every environment; environment `i` samples actions from a stream seeded by `seed` and `i`.
    pub fn new(mut envs: Vec<AutoscaleEnv>, seed: u64) -> Workers {
        assert!(!envs.is_empty(), "at least one environment");
        let current = envs.iter_mut().map(|e| e.reset()).collect();
        let rngs = (0..envs.len() as u64).map(|i| ChaCha8Rng::seed_from_u64(seed ^ ((i + 1) << 32))).collect();
        Workers {
            episode_returns: vec![0.0; envs.len()],
            normalizers: vec![RewardNormalizer::default(); envs.len()],
            envs,
            current,
            rngs,
        }
    }

    pub fn len(&self) -> usize {
        self.envs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Runs every environment for `n_steps` decisions with `model`, one thread each.
    pub fn collect(&mut self, model: &ActorCritic, n_steps: usize, gamma: f32, normalize_reward: bool) -> Vec<Rollout> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .envs
                .iter_mut()
                .zip(&mut self.current)
                .zip(&mut self.rngs)
                .zip(&mut self.episode_returns)
                .zip(&mut self.normalizers)
                .map(|((((env, current), rng), episode_return), normalizer)| {
                    let normalizer = normalize_reward.then_some(normalizer);
                    scope.spawn(move || run_env(env, current, rng, episode_return, normalizer, model, n_steps, gamma))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("environment thread panicked")).collect()
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn run_env(
    env: &mut AutoscaleEnv,
    current: &mut GraphObservation,
    rng: &mut ChaCha8Rng,
    episode_return: &mut f64,
    mut normalizer: Option<&mut RewardNormalizer>,
    model: &ActorCritic,
    n_steps: usize,
    gamma: f32,
) -> Rollout {
    let dev = Device::default();
    let mut rollout = Rollout::default();
    for _ in 0..n_steps {
        let mask = env.action_mask();
        let (logits, values) = model.infer(&dev, &[&*current]);
        let dists = per_service(&logits, &mask, env.actions().len());
        let actions: Vec<usize> = dists.iter().map(|d| d.sample(rng)).collect();
        let log_prob = dists.iter().zip(&actions).map(|(d, &a)| d.log_prob(a)).sum();
        let step = env.step(&actions);
        *episode_return += step.reward;
        rollout.raw_reward_sum += step.reward;
        let mut reward = match normalizer.as_deref_mut() {
            Some(n) => n.normalize(step.reward, gamma as f64, step.done) as f32,
            None => step.reward as f32,
        };
        if step.truncated {
            reward += gamma * model.infer(&dev, &[&step.observation]).1[0];
        }
        rollout.observations.push(std::mem::replace(current, step.observation));
        rollout.masks.push(mask);
        rollout.actions.push(actions);
        rollout.log_probs.push(log_prob);
        rollout.values.push(values[0]);
        rollout.rewards.push(reward);
        rollout.dones.push(step.done);
        if step.done {
            rollout.finished_returns.push(*episode_return);
            *episode_return = 0.0;
            *current = env.reset();
        }
    }
    rollout.last_value = model.infer(&dev, &[&*current]).1[0];
    rollout
}
