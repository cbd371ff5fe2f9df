//! A dense layer with runtime-sized dimensions, on dfdx tensors.
//!
//! Weights are plain dfdx tensors, not traced: a traced input carries the tape, and the gradient of every weight
//! it meets is recorded on it (dfdx records gradients of both operands of an op, so weights must sit on the
//! right of a matmul and the traced tensor on the left).

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub type Device = Cpu;
pub type Matrix = Tensor<(usize, usize), f32, Cpu>;
pub type Vector = Tensor<(usize,), f32, Cpu>;

/// Tapes the models accept: `OwnedTape` when training, `NoneTape` when acting.
pub trait AnyTape: Tape<f32, Cpu> + Merge<Self> + Merge<NoneTape> {}
impl<T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>> AnyTape for T {}

/// `y = x·W + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `inputs × outputs`.
    pub weight: Matrix,
    pub bias: Vector,
}

impl Linear {
    /// PyTorch's default initialization: uniform in ±1/√inputs for weights and bias, scaled by `gain`.
    pub fn new(dev: &Device, rng: &mut ChaCha8Rng, inputs: usize, outputs: usize, gain: f32) -> Linear {
        let bound = gain / (inputs as f32).sqrt();
        let mut uniform = |count: usize| (0..count).map(|_| rng.r#gen_range(-bound..bound)).collect::<Vec<f32>>();
        Linear {
            weight: dev.tensor_from_vec(uniform(inputs * outputs), (inputs, outputs)),
            bias: dev.tensor_from_vec(uniform(outputs), (outputs,)),
        }
    }

    pub fn outputs(&self) -> usize {
        self.bias.shape().0
    }

    /// On a batch of rows: `(batch, inputs) → (batch, outputs)`.
    pub fn forward2<T: AnyTape>(&self, x: Tensor<(usize, usize), f32, Cpu, T>) -> Tensor<(usize, usize), f32, Cpu, T> {
        let rows = x.shape().0;
        let out = self.outputs();
        x.matmul(self.weight.clone()) + self.bias.clone().broadcast_like::<_, Axis<0>>(&(rows, out))
    }

    /// On a batch of graphs: `(batch, nodes, inputs) → (batch, nodes, outputs)`, the same weights for every node.
    pub fn forward3<T: AnyTape>(
        &self,
        x: Tensor<(usize, usize, usize), f32, Cpu, T>,
    ) -> Tensor<(usize, usize, usize), f32, Cpu, T> {
        let (batch, nodes, _) = *x.shape();
        let out = self.outputs();
        x.matmul(self.weight.clone()) + self.bias.clone().broadcast_like::<_, Axes2<0, 1>>(&(batch, nodes, out))
    }
}
