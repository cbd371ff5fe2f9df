//! Behaviour cloning from an HPA baseline (imitation as in DRPC), a warm start before PPO or A2C.
//!
//! The HPA controllers drive the training environments for `episodes` episodes; at every decision each service's
//! move is the allowed move of the environment's action space nearest to the HPA's desired replicas (with −2…+2,
//! the HPA's change clipped to ±2: the imitated teacher is the HPA as far as the action space can express it). The actor is then fitted by cross-entropy
//! under the action masks, and the critic by squared error to the teacher's discounted returns, so policy-gradient
//! training starts from the teacher's behaviour with a value function that already knows it.

use dfdx::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::cell::Policy;
use crate::hpa::HorizontalPodAutoscaler;
use crate::policy::HpaPolicy;
use crate::rl::actor_critic::ActorCritic;
use crate::rl::env::AutoscaleEnv;
use crate::rl::features::GraphObservation;
use crate::rl::layers::Device;
use crate::rl::learner::LearnerError;
use crate::rl::optim::Adam;
use crate::settings::rl::ActionSpace;
use crate::settings::rl::BcConfig;

/// The demonstrations: what the teacher saw and did.
#[derive(Debug, Clone, Default)]
pub struct Demonstrations {
    pub observations: Vec<GraphObservation>,
    pub masks: Vec<Vec<bool>>,
    pub actions: Vec<Vec<usize>>,
    pub returns: Vec<f32>,
    /// The action space the moves are indices of.
    pub space: ActionSpace,
}

/// Runs the HPA over every environment for `episodes` episodes each, recording its (clipped) moves.
pub fn demonstrate(
    envs: &mut [AutoscaleEnv],
    manifests: &[HorizontalPodAutoscaler],
    episodes: usize,
    gamma: f32,
) -> Demonstrations {
    let mut demos = Demonstrations { space: envs[0].actions().clone(), ..Demonstrations::default() };
    for env in envs.iter_mut() {
        for _ in 0..episodes {
            let mut teacher = HpaPolicy::new(env.app(), manifests);
            let mut observation = env.reset();
            let mut rewards = Vec::new();
            loop {
                let raw = env.raw_observation();
                let mut targets: Vec<u32> = raw.services.iter().map(|s| s.spec_replicas).collect();
                for decision in teacher.decide(&raw) {
                    targets[decision.service] = decision.replicas;
                }
                let space = env.actions();
                let actions: Vec<usize> = raw
                    .services
                    .iter()
                    .zip(&targets)
                    .zip(&env.app().services)
                    .map(|((s, &t), service)| {
                        space.toward(s.spec_replicas, t, service.replicas.min, service.replicas.max)
                    })
                    .collect();
                demos.masks.push(env.action_mask());
                let step = env.step(&actions);
                demos.observations.push(std::mem::replace(&mut observation, step.observation));
                demos.actions.push(actions);
                rewards.push(step.reward as f32);
                if step.done {
                    break;
                }
            }
            let mut future = 0.0;
            let mut returns = vec![0.0; rewards.len()];
            for t in (0..rewards.len()).rev() {
                future = rewards[t] + gamma * future;
                returns[t] = future;
            }
            demos.returns.extend(returns);
        }
    }
    demos
}

/// Statistics of a cloning run.
#[derive(Debug, Clone, PartialEq)]
pub struct BcStats {
    pub samples: usize,
    /// Mean cross-entropy of the last epoch.
    pub final_loss: f32,
    /// Share of demonstrated moves the fitted actor's most likely move matches, per service.
    pub accuracy: f32,
}

/// Fits `model` to the demonstrations. A non-finite loss stops with an error before its update is applied.
pub fn clone_behaviour(
    model: &mut ActorCritic,
    demos: &Demonstrations,
    config: &BcConfig,
    seed: u64,
) -> Result<BcStats, LearnerError> {
    let dev = Device::default();
    let mut adam = Adam::new(&model.parameter_sizes(), config.learning_rate);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = training_order(demos, config.balance_moves);
    let mut final_loss = 0.0;
    let mut update = 0;
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut batches) = (0.0, 0);
        for chunk in order.chunks(config.batch_size.max(1)) {
            update += 1;
            let b = chunk.len();
            let batch: Vec<&GraphObservation> = chunk.iter().map(|&i| &demos.observations[i]).collect();
            let masks: Vec<&[bool]> = chunk.iter().map(|&i| demos.masks[i].as_slice()).collect();
            let actions: Vec<&[usize]> = chunk.iter().map(|&i| demos.actions[i].as_slice()).collect();
            let returns = dev.tensor_from_vec(chunk.iter().map(|&i| demos.returns[i]).collect(), (b,));
            let terms = model.policy_terms(&dev, &batch, &masks, &actions);
            let cross_entropy = terms.log_prob.mean().negate();
            let value_loss = (terms.values - returns).square().mean();
            let ce = cross_entropy.array();
            let loss = cross_entropy + value_loss * config.vf_coef;
            let loss_value = loss.array();
            if !loss_value.is_finite() {
                return Err(LearnerError::NonFiniteLoss {
                    iteration: epoch + 1,
                    update,
                    loss: loss_value,
                    policy: ce,
                    value: loss_value,
                });
            }
            model.apply_gradients(&loss.backward(), &mut adam, config.max_grad_norm);
            loss_sum += ce;
            batches += 1;
        }
        final_loss = loss_sum / batches.max(1) as f32;
    }
    Ok(BcStats { samples: demos.observations.len(), final_loss, accuracy: accuracy(model, demos) })
}

/// Sample indices of one epoch: every demonstration once, moves repeated when balancing.
pub fn training_order(demos: &Demonstrations, balance_moves: bool) -> Vec<usize> {
    let stay = demos.space.stay();
    let moved: Vec<bool> = demos.actions.iter().map(|a| a.iter().any(|&m| m != stay)).collect();
    let moves = moved.iter().filter(|&&m| m).count();
    let repeat = if balance_moves && moves > 0 {
        ((moved.len() - moves) as f64 / moves as f64).round().clamp(1.0, 10.0) as usize
    } else {
        1
    };
    let mut order = Vec::new();
    for (i, &m) in moved.iter().enumerate() {
        order.extend(std::iter::repeat_n(i, if m { repeat } else { 1 }));
    }
    order
}

/// Share of demonstrated moves that the actor's most likely (masked) move reproduces.
pub fn accuracy(model: &ActorCritic, demos: &Demonstrations) -> f32 {
    use crate::rl::distributions::per_service;
    let dev = Device::default();
    let (mut right, mut total) = (0usize, 0usize);
    for ((observation, mask), actions) in demos.observations.iter().zip(&demos.masks).zip(&demos.actions) {
        let (logits, _) = model.infer(&dev, &[observation]);
        for (dist, &action) in per_service(&logits, mask, demos.space.len()).iter().zip(actions) {
            right += (dist.mode() == action) as usize;
            total += 1;
        }
    }
    if total == 0 { 0.0 } else { right as f32 / total as f32 }
}
