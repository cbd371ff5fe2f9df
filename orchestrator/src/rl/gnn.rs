//! A graph actor-critic over the call graph.
//!
//! Each layer mixes, per service, its own features, the mean over its callers and the mean over its callees, with
//! separate weights per direction: `H' = tanh(H·W_self + Â_callers·H·W_callers + Â_callees·H·W_callees + b)`.
//! The action head is shared by every node (a logit per move of the action space), and the critic reads the mean
//! of the node embeddings, so the same weights run on any topology.
//!
//! Batch-correct: a minibatch is a `(batch, nodes, inputs)` tensor and every sample is propagated over the graph
//! with its own features. dfdx records gradients through the left operand of a matmul only, so `Â·H` is computed
//! as `(Hᵀ·Âᵀ)ᵀ` per sample.

use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::rl::features::GraphObservation;
use crate::rl::graph::{NormalizedAdjacency, node_inputs};
use crate::rl::layers::{AnyTape, Device, Linear, Matrix};

pub type Batch3<T> = Tensor<(usize, usize, usize), f32, Cpu, T>;
pub type Values<T> = Tensor<(usize,), f32, Cpu, T>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GnnConfig {
    /// Inputs per node (see [`crate::rl::graph::node_inputs`]).
    pub inputs: usize,
    pub hidden: usize,
    pub layers: usize,
    /// Moves per service: the action head's outputs (checkpoints from before action spaces: the default 5).
    #[serde(default = "default_actions")]
    pub actions: usize,
}

/// Moves per service of the reference action space, −2…+2.
pub fn default_actions() -> usize {
    crate::settings::rl::ActionSpace::default().len()
}

/// One graph convolution with a weight per direction.
#[derive(Debug, Clone)]
pub struct GraphConv {
    pub own: Linear,
    pub from_callers: Matrix,
    pub from_callees: Matrix,
}

/// The adjacency of one topology as tensors, transposed for right-multiplication.
#[derive(Debug, Clone)]
pub struct GraphTensors {
    pub num_nodes: usize,
    pub from_callers_t: Matrix,
    pub from_callees_t: Matrix,
}

impl GraphTensors {
    pub fn new(dev: &Device, adjacency: &NormalizedAdjacency) -> GraphTensors {
        let n = adjacency.num_nodes;
        GraphTensors {
            num_nodes: n,
            from_callers_t: dev.tensor_from_vec(NormalizedAdjacency::transposed(&adjacency.from_callers, n), (n, n)),
            from_callees_t: dev.tensor_from_vec(NormalizedAdjacency::transposed(&adjacency.from_callees, n), (n, n)),
        }
    }
}

/// Stacks observations of one topology into a `(batch, nodes, inputs)` tensor, each sample its own rows.
pub fn encode_batch(dev: &Device, observations: &[&GraphObservation]) -> Batch3<NoneTape> {
    let first = observations.first().expect("a non-empty batch");
    let n = first.num_nodes;
    let mut data = Vec::new();
    for observation in observations {
        assert_eq!(observation.edges, first.edges, "a batch holds one topology");
        data.extend(node_inputs(observation));
    }
    let width = data.len() / (observations.len() * n);
    dev.tensor_from_vec(data, (observations.len(), n, width))
}

#[derive(Debug, Clone)]
pub struct GnnActorCritic {
    pub config: GnnConfig,
    pub convs: Vec<GraphConv>,
    pub actor: Linear,
    pub critic: Linear,
}

/// `Â·H` for every sample of `h: (batch, nodes, features)`, with `a_t = Âᵀ`.
fn propagate<T: AnyTape>(h: Batch3<T>, a_t: &Matrix) -> Batch3<T> {
    h.permute::<_, Axes3<0, 2, 1>>().matmul(a_t.clone()).permute::<_, Axes3<0, 2, 1>>()
}

impl GnnActorCritic {
    pub fn new(dev: &Device, config: GnnConfig, seed: u64) -> GnnActorCritic {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut convs = Vec::new();
        let mut width = config.inputs;
        for _ in 0..config.layers {
            let neighbours = |rng: &mut ChaCha8Rng| Linear::new(dev, rng, width, config.hidden, 1.0).weight;
            convs.push(GraphConv {
                own: Linear::new(dev, &mut rng, width, config.hidden, 1.0),
                from_callers: neighbours(&mut rng),
                from_callees: neighbours(&mut rng),
            });
            width = config.hidden;
        }
        // Small initial policy logits (as stable-baselines3's 0.01 gain), so the first policy is near uniform.
        let actor = Linear::new(dev, &mut rng, width, config.actions, 0.01);
        let critic = Linear::new(dev, &mut rng, width, 1, 1.0);
        GnnActorCritic { config, convs, actor, critic }
    }

    /// Node embeddings after every graph convolution: `(batch, nodes, hidden)`.
    pub fn embed<T: AnyTape>(&self, x: Batch3<T>, graph: &GraphTensors) -> Batch3<T> {
        let mut h = x;
        for conv in &self.convs {
            let callers = propagate(h.with_empty_tape(), &graph.from_callers_t).matmul(conv.from_callers.clone());
            let callees = propagate(h.with_empty_tape(), &graph.from_callees_t).matmul(conv.from_callees.clone());
            h = (conv.own.forward3(h) + callers + callees).tanh();
        }
        h
    }

    /// Logits `(batch, nodes, actions)` and state values `(batch,)`.
    pub fn forward<T: AnyTape>(&self, x: Batch3<T>, graph: &GraphTensors) -> (Batch3<T>, Values<T>) {
        let batch = x.shape().0;
        let h = self.embed(x, graph);
        let pooled = h.with_empty_tape().mean::<(usize, usize), Axis<1>>();
        let values = self.critic.forward2(pooled).reshape_like(&(batch,));
        (self.actor.forward3(h), values)
    }

    /// Every parameter, named, in a fixed order (checkpoints and optimizers use it).
    pub fn parameters(&self) -> Vec<(String, ParamRef<'_>)> {
        let mut out = Vec::new();
        for (i, conv) in self.convs.iter().enumerate() {
            out.push((format!("conv{i}.own.weight"), ParamRef::Matrix(&conv.own.weight)));
            out.push((format!("conv{i}.own.bias"), ParamRef::Vector(&conv.own.bias)));
            out.push((format!("conv{i}.from_callers"), ParamRef::Matrix(&conv.from_callers)));
            out.push((format!("conv{i}.from_callees"), ParamRef::Matrix(&conv.from_callees)));
        }
        out.push(("actor.weight".into(), ParamRef::Matrix(&self.actor.weight)));
        out.push(("actor.bias".into(), ParamRef::Vector(&self.actor.bias)));
        out.push(("critic.weight".into(), ParamRef::Matrix(&self.critic.weight)));
        out.push(("critic.bias".into(), ParamRef::Vector(&self.critic.bias)));
        out
    }
}

impl GnnActorCritic {
    /// Every parameter, mutable, in the order of [`GnnActorCritic::parameters`].
    pub fn parameters_mut(&mut self) -> Vec<ParamMut<'_>> {
        let mut out = Vec::new();
        for conv in &mut self.convs {
            out.push(ParamMut::Matrix(&mut conv.own.weight));
            out.push(ParamMut::Vector(&mut conv.own.bias));
            out.push(ParamMut::Matrix(&mut conv.from_callers));
            out.push(ParamMut::Matrix(&mut conv.from_callees));
        }
        for layer in [&mut self.actor, &mut self.critic] {
            out.push(ParamMut::Matrix(&mut layer.weight));
            out.push(ParamMut::Vector(&mut layer.bias));
        }
        out
    }
}

/// A mutable parameter of either rank.
#[derive(Debug)]
pub enum ParamMut<'a> {
    Matrix(&'a mut Matrix),
    Vector(&'a mut crate::rl::layers::Vector),
}

impl ParamMut<'_> {
    pub fn set(&mut self, values: &[f32]) {
        match self {
            ParamMut::Matrix(t) => t.copy_from(values),
            ParamMut::Vector(t) => t.copy_from(values),
        }
    }
}

/// A parameter of either rank.
#[derive(Debug, Clone, Copy)]
pub enum ParamRef<'a> {
    Matrix(&'a Matrix),
    Vector(&'a crate::rl::layers::Vector),
}

impl ParamRef<'_> {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            ParamRef::Matrix(t) => vec![t.shape().0, t.shape().1],
            ParamRef::Vector(t) => vec![t.shape().0],
        }
    }

    pub fn values(&self) -> Vec<f32> {
        match self {
            ParamRef::Matrix(t) => t.as_vec(),
            ParamRef::Vector(t) => t.as_vec(),
        }
    }

    /// The gradient recorded for this parameter (panics if the backward pass did not reach it).
    pub fn gradient(&self, grads: &Gradients<f32, Cpu>) -> Vec<f32> {
        match self {
            ParamRef::Matrix(t) => grads.get(*t).as_vec(),
            ParamRef::Vector(t) => grads.get(*t).as_vec(),
        }
    }
}
