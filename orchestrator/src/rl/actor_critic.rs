//! The two actor-critics behind one interface, and the host-side parameter update every learner shares.

use dfdx::prelude::*;

use crate::rl::distributions::MASKED_LOGIT;
use crate::rl::features::GraphObservation;
use crate::rl::gnn::{Batch3, GnnActorCritic, GraphTensors, ParamMut, ParamRef, Values, encode_batch};
use crate::rl::layers::{AnyTape, Device};
use crate::rl::mlp::{MlpActorCritic, encode_flat_batch};
use crate::rl::optim::{Optimizer, clip_global_norm};

/// The tape of a traced forward pass (training).
pub type Traced = OwnedTape<f32, Cpu>;

/// Either actor-critic, behind one interface.
#[derive(Debug, Clone)]
pub enum ActorCritic {
    Gnn(Box<GnnActorCritic>, GraphTensors),
    Mlp(MlpActorCritic),
}

impl ActorCritic {
    /// Logits `(batch, nodes, actions)` and values `(batch,)` for `observations`, with `x` traced or not.
    pub fn forward<T: AnyTape>(
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

impl ActorCritic {
    /// Logits `(batch, nodes, actions)` and values `(batch,)` with the input traced, for a loss.
    pub fn forward_traced(&self, dev: &Device, observations: &[&GraphObservation]) -> (Batch3<Traced>, Values<Traced>) {
        self.forward(dev, observations, |x| x.leaky_traced(), |x| x.leaky_traced())
    }

    /// Every parameter's values, in the order of [`ActorCritic::parameters`].
    pub fn parameter_values(&self) -> Vec<Vec<f32>> {
        self.parameters().iter().map(|(_, p)| p.values()).collect()
    }

    pub fn set_parameter_values(&mut self, values: &[Vec<f32>]) {
        for (mut param, v) in self.parameters_mut().into_iter().zip(values) {
            param.set(v);
        }
    }

    /// Sizes of every parameter, for optimizers.
    pub fn parameter_sizes(&self) -> Vec<usize> {
        self.parameters().iter().map(|(_, p)| p.values().len()).collect()
    }

    /// One optimizer step from a loss's gradients: clip them to a global norm, then step. Returns the norm
    /// before clipping.
    pub fn apply_gradients(
        &mut self,
        grads: &Gradients<f32, Cpu>,
        optimizer: &mut impl Optimizer,
        max_grad_norm: f32,
    ) -> f32 {
        let mut gradients: Vec<Vec<f32>> = self.parameters().iter().map(|(_, p)| p.gradient(grads)).collect();
        let norm = clip_global_norm(&mut gradients, max_grad_norm);
        let mut params = self.parameter_values();
        optimizer.update(&mut params, &gradients);
        self.set_parameter_values(&params);
        norm
    }
}

/// What a policy-gradient loss needs from one minibatch, all traced: the log-probability of the taken
/// multi-discrete action `(batch,)`, the mean entropy of the masked distributions, and the state values `(batch,)`.
pub struct PolicyTerms {
    pub log_prob: Values<Traced>,
    pub entropy: Tensor<(), f32, Cpu, Traced>,
    pub values: Values<Traced>,
}

impl ActorCritic {
    /// Evaluates taken `actions` (a move per service) under masks (true = allowed), as the losses need them.
    pub fn policy_terms(
        &self,
        dev: &Device,
        observations: &[&GraphObservation],
        masks: &[&[bool]],
        actions: &[&[usize]],
    ) -> PolicyTerms {
        let b = observations.len();
        let nodes = observations[0].num_nodes;
        let mask_bias: Vec<f32> =
            masks.iter().flat_map(|m| m.iter().map(|&allowed| if allowed { 0.0 } else { MASKED_LOGIT })).collect();
        let taken: Vec<usize> = actions.iter().flat_map(|a| a.iter().copied()).collect();
        let actions_per_service = mask_bias.len() / (b * nodes);
        let mask_bias = dev.tensor_from_vec(mask_bias, (b, nodes, actions_per_service));
        let taken = dev.tensor_from_vec(taken, (b, nodes));
        let (logits, values) = self.forward_traced(dev, observations);
        let log_p = (logits + mask_bias).log_softmax::<Axis<2>>();
        let entropy =
            (log_p.with_empty_tape().exp() * log_p.with_empty_tape()).sum::<(usize,), Axes2<1, 2>>().negate().mean();
        let log_prob = log_p.select(taken).sum::<(usize,), Axis<1>>();
        PolicyTerms { log_prob, entropy, values }
    }
}
