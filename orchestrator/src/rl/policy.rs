//! A trained checkpoint as a [`Policy`] for cells: every decision interval, the most likely move per service.

use std::path::Path;

use crate::app::AppModel;
use crate::cell::Observation;
use crate::cell::{Decision, Policy};
use crate::rl::actor_critic::ActorCritic;
use crate::rl::checkpoint::{self, CheckpointError, ModelSpec};
use crate::rl::distributions::per_service;
use crate::rl::graph::NODE_EDGE_INPUTS;
use crate::rl::layers::Device;
use crate::settings::rl::ActionSpace;
use crate::settings::rl::FeatureLayout;

pub struct RlPolicy {
    app: AppModel,
    edges: Vec<(usize, usize)>,
    layout: FeatureLayout,
    model: ActorCritic,
    actions: ActionSpace,
    interval_s: u64,
    dev: Device,
}

impl RlPolicy {
    /// Loads the checkpoint at `base` for `app`. A GNN runs on any app; an MLP only on one with the shape it was
    /// trained on.
    pub fn from_checkpoint(base: &Path, app: &AppModel) -> Result<RlPolicy, CheckpointError> {
        let meta = checkpoint::load_meta(base)?;
        let layout = meta.env.features.clone();
        let edges: Vec<(usize, usize)> = app.edges().into_iter().collect();
        let n = app.services.len();
        let inputs = match meta.model {
            ModelSpec::Gnn(_) => layout.node_width() + NODE_EDGE_INPUTS + layout.global_features.len(),
            ModelSpec::Mlp(_) => layout.flat_width(n, edges.len()),
        };
        let (model, meta) = checkpoint::load(base, meta.model.type_name(), inputs, n, &edges)?;
        Ok(RlPolicy {
            app: app.clone(),
            edges,
            layout,
            model,
            actions: meta.env.actions.clone(),
            interval_s: meta.env.decision_interval_s,
            dev: Device::default(),
        })
    }
}

impl Policy for RlPolicy {
    fn initial_replicas(&self) -> Vec<u32> {
        self.app.services.iter().map(|s| s.replicas.initial()).collect()
    }

    fn interval_s(&self) -> u64 {
        self.interval_s
    }

    fn decide(&mut self, observation: &Observation) -> Vec<Decision> {
        let encoded = self.layout.encode(&self.app, &self.edges, observation);
        let (logits, _) = self.model.infer(&self.dev, &[&encoded]);
        let mask = self.actions.mask(&self.app, observation);
        let mut decisions = Vec::new();
        for (service, dist) in per_service(&logits, &mask, self.actions.len()).iter().enumerate() {
            let action = dist.mode();
            let current = observation.services[service].spec_replicas;
            let bounds = &self.app.services[service].replicas;
            let replicas = self.actions.apply(action, current, bounds.min, bounds.max);
            if replicas != current {
                decisions.push(Decision {
                    service,
                    replicas,
                    reason: format!("rl: {} (p={:.2})", self.actions.label(action), dist.probs()[action]),
                });
            }
        }
        decisions
    }
}
