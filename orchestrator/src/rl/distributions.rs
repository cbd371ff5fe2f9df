//! A masked categorical distribution per service, on the host (dfdx has no sampler).
//!
//! Masked actions get probability exactly 0: their logits are dropped before the softmax, so they are never
//! sampled and add nothing to the entropy. A multi-discrete action is one independent categorical per service;
//! its log-probability and entropy are sums over services.

use rand::Rng;

/// Logit given to masked actions inside dfdx losses (added to the logits), so `exp` of it is 0 in f32.
pub const MASKED_LOGIT: f32 = -1e9;

#[derive(Debug, Clone, PartialEq)]
pub struct MaskedCategorical {
    /// Log-probabilities; `-inf` for masked actions.
    pub log_probs: Vec<f32>,
}

impl MaskedCategorical {
    /// From logits and a mask (true = allowed). At least one action must be allowed.
    pub fn new(logits: &[f32], mask: &[bool]) -> MaskedCategorical {
        assert_eq!(logits.len(), mask.len(), "a mask flag per logit");
        let max = logits.iter().zip(mask).filter(|(_, m)| **m).map(|(l, _)| *l).fold(f32::NEG_INFINITY, f32::max);
        assert!(max.is_finite(), "every action is masked, or a logit is not finite");
        let sum: f32 = logits.iter().zip(mask).filter(|(_, m)| **m).map(|(l, _)| (l - max).exp()).sum();
        let log_sum = max + sum.ln();
        let log_probs =
            logits.iter().zip(mask).map(|(l, m)| if *m { l - log_sum } else { f32::NEG_INFINITY }).collect();
        MaskedCategorical { log_probs }
    }

    pub fn probs(&self) -> Vec<f32> {
        self.log_probs.iter().map(|l| l.exp()).collect()
    }

    pub fn log_prob(&self, action: usize) -> f32 {
        self.log_probs[action]
    }

    pub fn entropy(&self) -> f32 {
        self.log_probs.iter().filter(|l| l.is_finite()).map(|l| -l.exp() * l).sum()
    }

    /// Inverse-CDF sampling; never returns a masked action.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f32 = rng.r#gen();
        let mut cumulative = 0.0;
        let mut last_allowed = 0;
        for (action, l) in self.log_probs.iter().enumerate() {
            if l.is_finite() {
                cumulative += l.exp();
                last_allowed = action;
                if u < cumulative {
                    return action;
                }
            }
        }
        last_allowed
    }

    /// The most likely action (ties: the lowest index).
    pub fn mode(&self) -> usize {
        let mut best = 0;
        for (action, l) in self.log_probs.iter().enumerate() {
            if *l > self.log_probs[best] {
                best = action;
            }
        }
        best
    }
}

/// One categorical per service from `nodes × actions` logits and mask flags, row-major.
pub fn per_service(logits: &[f32], mask: &[bool], actions: usize) -> Vec<MaskedCategorical> {
    logits.chunks(actions).zip(mask.chunks(actions)).map(|(l, m)| MaskedCategorical::new(l, m)).collect()
}
