//! Global-norm gradient clipping, Adam and RMSprop, over parameters as flat host vectors.
//!
//! dfdx 0.13 has no gradient clipping, and its Adam defaults to eps 1e-8 where stable-baselines3 uses 1e-5.

/// A first-order optimizer over flat parameter vectors.
pub trait Optimizer {
    /// One step of descent on `params` along `gradients`.
    fn update(&mut self, params: &mut [Vec<f32>], gradients: &[Vec<f32>]);
}

/// Scales every gradient by `max_norm / ‖g‖` when the global L2 norm over all of them exceeds `max_norm`
/// (PyTorch's `clip_grad_norm_`, with its 1e-6). Returns the norm before clipping.
pub fn clip_global_norm(gradients: &mut [Vec<f32>], max_norm: f32) -> f32 {
    let norm = gradients.iter().flatten().map(|g| g * g).sum::<f32>().sqrt();
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        gradients.iter_mut().flatten().for_each(|g| *g *= scale);
    }
    norm
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    step: i32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Adam {
    /// Adam for parameters of these sizes; betas 0.9/0.999 and eps 1e-5 as stable-baselines3's PPO.
    pub fn new(sizes: &[usize], lr: f32) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-5,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// One step of descent on `params` along `gradients`, with bias correction.
    pub fn update(&mut self, params: &mut [Vec<f32>], gradients: &[Vec<f32>]) {
        assert_eq!(params.len(), self.m.len(), "parameter count changed");
        self.step += 1;
        let c1 = 1.0 - self.beta1.powi(self.step);
        let c2 = 1.0 - self.beta2.powi(self.step);
        for (((p, g), m), v) in params.iter_mut().zip(gradients).zip(&mut self.m).zip(&mut self.v) {
            for i in 0..p.len() {
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g[i];
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g[i] * g[i];
                p[i] -= self.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + self.eps);
            }
        }
    }
}

impl Optimizer for Adam {
    fn update(&mut self, params: &mut [Vec<f32>], gradients: &[Vec<f32>]) {
        Adam::update(self, params, gradients);
    }
}

/// RMSprop as PyTorch computes it (no momentum, not centered): `v ← α·v + (1 − α)·g²`, `p ← p − lr·g / (√v + eps)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RmsProp {
    pub lr: f32,
    pub alpha: f32,
    pub eps: f32,
    v: Vec<Vec<f32>>,
}

impl RmsProp {
    /// RMSprop for parameters of these sizes; alpha 0.99 and eps 1e-5 as stable-baselines3's A2C.
    pub fn new(sizes: &[usize], lr: f32) -> RmsProp {
        RmsProp { lr, alpha: 0.99, eps: 1e-5, v: sizes.iter().map(|&n| vec![0.0; n]).collect() }
    }
}

impl Optimizer for RmsProp {
    fn update(&mut self, params: &mut [Vec<f32>], gradients: &[Vec<f32>]) {
        assert_eq!(params.len(), self.v.len(), "parameter count changed");
        for ((p, g), v) in params.iter_mut().zip(gradients).zip(&mut self.v) {
            for i in 0..p.len() {
                v[i] = self.alpha * v[i] + (1.0 - self.alpha) * g[i] * g[i];
                p[i] -= self.lr * g[i] / (v[i].sqrt() + self.eps);
            }
        }
    }
}
