//! An MLP actor-critic over the flattened observation (node, edge and global features of one topology).
//!
//! As stable-baselines3's default for PPO: separate actor and critic networks, two tanh layers of 64 each. The
//! actor's output is `nodes × actions` logits, so the network is tied to the topology it was built for.

use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::rl::features::GraphObservation;
use crate::rl::gnn::{Batch3, ParamMut, ParamRef, Values};
use crate::rl::layers::{AnyTape, Device, Linear};

pub type Batch2<T> = Tensor<(usize, usize), f32, Cpu, T>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Length of the flattened observation.
    pub inputs: usize,
    pub nodes: usize,
    pub hidden: Vec<usize>,
    /// Moves per service (checkpoints from before action spaces: the default 5).
    #[serde(default = "crate::rl::gnn::default_actions")]
    pub actions: usize,
}

#[derive(Debug, Clone)]
pub struct MlpActorCritic {
    pub config: MlpConfig,
    pub actor: Vec<Linear>,
    pub critic: Vec<Linear>,
}

/// Stacks flattened observations into a `(batch, inputs)` tensor, a row per sample.
pub fn encode_flat_batch(dev: &Device, observations: &[&GraphObservation]) -> Batch2<NoneTape> {
    let rows: Vec<Vec<f32>> = observations.iter().map(|o| o.flatten()).collect();
    let width = rows.first().expect("a non-empty batch").len();
    assert!(rows.iter().all(|r| r.len() == width), "a batch holds one topology");
    dev.tensor_from_vec(rows.concat(), (rows.len(), width))
}

fn tower(
    dev: &Device,
    rng: &mut ChaCha8Rng,
    inputs: usize,
    hidden: &[usize],
    outputs: usize,
    gain: f32,
) -> Vec<Linear> {
    let mut layers = Vec::new();
    let mut width = inputs;
    for &h in hidden {
        layers.push(Linear::new(dev, rng, width, h, 1.0));
        width = h;
    }
    layers.push(Linear::new(dev, rng, width, outputs, gain));
    layers
}

fn run<T: AnyTape>(layers: &[Linear], x: Batch2<T>) -> Batch2<T> {
    let (last, hidden) = layers.split_last().expect("an output layer");
    let mut h = x;
    for layer in hidden {
        h = layer.forward2(h).tanh();
    }
    last.forward2(h)
}

impl MlpActorCritic {
    pub fn new(dev: &Device, config: MlpConfig, seed: u64) -> MlpActorCritic {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let actor = tower(dev, &mut rng, config.inputs, &config.hidden, config.nodes * config.actions, 0.01);
        let critic = tower(dev, &mut rng, config.inputs, &config.hidden, 1, 1.0);
        MlpActorCritic { config, actor, critic }
    }

    /// Logits `(batch, nodes, actions)` and state values `(batch,)`.
    pub fn forward<T: AnyTape>(&self, x: Batch2<T>) -> (Batch3<T>, Values<T>) {
        let batch = x.shape().0;
        let values = run(&self.critic, x.with_empty_tape()).reshape_like(&(batch,));
        let logits = run(&self.actor, x).reshape_like(&(batch, self.config.nodes, self.config.actions));
        (logits, values)
    }

    pub fn parameters(&self) -> Vec<(String, ParamRef<'_>)> {
        let mut out = Vec::new();
        for (tower, layers) in [("actor", &self.actor), ("critic", &self.critic)] {
            for (i, layer) in layers.iter().enumerate() {
                out.push((format!("{tower}.{i}.weight"), ParamRef::Matrix(&layer.weight)));
                out.push((format!("{tower}.{i}.bias"), ParamRef::Vector(&layer.bias)));
            }
        }
        out
    }

    /// Every parameter, mutable, in the order of [`MlpActorCritic::parameters`].
    pub fn parameters_mut(&mut self) -> Vec<ParamMut<'_>> {
        let mut out = Vec::new();
        for layer in self.actor.iter_mut().chain(self.critic.iter_mut()) {
            out.push(ParamMut::Matrix(&mut layer.weight));
            out.push(ParamMut::Vector(&mut layer.bias));
        }
        out
    }
}
