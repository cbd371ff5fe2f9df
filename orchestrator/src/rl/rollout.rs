//! On-policy rollouts: every environment runs `n_steps` decisions with the current policy in its own thread.
//!
//! Actions are sampled on the host from masked categoricals, one seeded RNG per environment, so a rollout does not
//! depend on thread scheduling. An episode cut by its time limit is bootstrapped: its last reward gets
//! `γ·V(final state)` added (as stable-baselines3 does), so the end of a scenario is not mistaken for a terminal
//! state whose future is worth nothing.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::rl::distributions::per_service;
use crate::rl::env::{ACTIONS_PER_SERVICE, AutoscaleEnv};
use crate::rl::features::GraphObservation;
use crate::rl::layers::Device;
use crate::rl::model::ActorCritic;

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
}

impl Workers {
    /// Resets every environment; environment `i` samples actions from a stream seeded by `seed` and `i`.
    pub fn new(mut envs: Vec<AutoscaleEnv>, seed: u64) -> Workers {
        assert!(!envs.is_empty(), "at least one environment");
        let current = envs.iter_mut().map(|e| e.reset()).collect();
        let rngs = (0..envs.len() as u64).map(|i| ChaCha8Rng::seed_from_u64(seed ^ ((i + 1) << 32))).collect();
        Workers { episode_returns: vec![0.0; envs.len()], envs, current, rngs }
    }

    pub fn len(&self) -> usize {
        self.envs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Runs every environment for `n_steps` decisions with `model`, one thread each.
    pub fn collect(&mut self, model: &ActorCritic, n_steps: usize, gamma: f32) -> Vec<Rollout> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .envs
                .iter_mut()
                .zip(&mut self.current)
                .zip(&mut self.rngs)
                .zip(&mut self.episode_returns)
                .map(|(((env, current), rng), episode_return)| {
                    scope.spawn(move || run_env(env, current, rng, episode_return, model, n_steps, gamma))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("environment thread panicked")).collect()
        })
    }
}

fn run_env(
    env: &mut AutoscaleEnv,
    current: &mut GraphObservation,
    rng: &mut ChaCha8Rng,
    episode_return: &mut f64,
    model: &ActorCritic,
    n_steps: usize,
    gamma: f32,
) -> Rollout {
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
        rollout.raw_reward_sum += step.reward;
        let mut reward = step.reward as f32;
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
