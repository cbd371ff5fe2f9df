//! The policy factory: a cell's resolved policy, built. Backends receive the policy ready to drive; this is the only
//! place that knows every policy kind, learned ones included.

use crate::cell::{CellConfig, Policy, ResolvedPolicy};
use crate::policy::{HpaPolicy, StaticPolicy};

/// Builds the policy a resolved config describes (an RL policy from the checkpoint its config names).
pub fn build_policy(config: &CellConfig) -> Box<dyn Policy> {
    match config.policy.as_ref() {
        ResolvedPolicy::Hpa { manifests, .. } => Box::new(HpaPolicy::new(&config.app, manifests)),
        ResolvedPolicy::Rl(rl) => Box::new(super::rl_training::build_policy(rl, &config.app)),
        ResolvedPolicy::Static { replicas, .. } => Box::new(StaticPolicy::new(
            config
                .app
                .services
                .iter()
                .map(|s| replicas.get(&s.name).copied().unwrap_or(s.replicas.initial()))
                .collect(),
        )),
    }
}
