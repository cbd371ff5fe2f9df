//! What an RL policy sees: per-service node features, per-edge features along the call graph, global features.
//!
//! Every feature is scaled to roughly [0, 1] with constants that do not depend on the app, so a graph policy
//! trained on one topology reads another's features the same way. Rates are log-scaled:
//! `ln(1 + rps) / ln(1 + rate_reference_rps)`, so `rate_reference_rps` reads as 1.

use crate::app::AppModel;
use crate::cell::Observation;
use crate::settings::rl::{FeatureLayout, NODE_FEATURES};

/// One state, encoded: a graph with a feature row per service and per edge, plus global features.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphObservation {
    pub num_nodes: usize,
    /// `num_nodes × NODE_FEATURES.len()`, row-major (a service's features are contiguous).
    pub nodes: Vec<f32>,
    /// Caller → callee, by service index.
    pub edges: Vec<(usize, usize)>,
    /// `edges.len() × EDGE_FEATURES.len()`, row-major.
    pub edge_features: Vec<f32>,
    pub global: Vec<f32>,
}

impl GraphObservation {
    pub fn node(&self, service: usize) -> &[f32] {
        let width = NODE_FEATURES.len();
        &self.nodes[service * width..(service + 1) * width]
    }

    /// Node features, then edge features, then global features: the input of a flat (MLP) policy.
    pub fn flatten(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.nodes.len() + self.edge_features.len() + self.global.len());
        out.extend_from_slice(&self.nodes);
        out.extend_from_slice(&self.edge_features);
        out.extend_from_slice(&self.global);
        out
    }
}

impl FeatureLayout {
    pub fn node_width(&self) -> usize {
        self.node_features.len()
    }

    /// Length of [`GraphObservation::flatten`] for a graph of this size.
    pub fn flat_width(&self, num_nodes: usize, num_edges: usize) -> usize {
        num_nodes * self.node_features.len() + num_edges * self.edge_features.len() + self.global_features.len()
    }

    /// `ln(1 + rps) / ln(1 + rate_reference_rps)`.
    pub fn rate(&self, rps: f64) -> f32 {
        (rps.max(0.0).ln_1p() / self.rate_reference_rps.ln_1p()) as f32
    }

    fn ratio(&self, value: f64) -> f32 {
        if value.is_finite() { value.clamp(0.0, self.ratio_clip) as f32 } else { self.ratio_clip as f32 }
    }

    /// Encodes an observation of `app`; `edges` are the app's call-graph edges. The offered load is what arrived
    /// from outside the app in the last second: every service's arrivals minus the calls services made to each
    /// other, so a policy evaluated in a cell computes it exactly as in training.
    pub fn encode(&self, app: &AppModel, edges: &[(usize, usize)], observation: &Observation) -> GraphObservation {
        let arrivals: f64 = observation.services.iter().map(|s| s.arrival_rps).sum();
        let internal: f64 = observation.services.iter().flat_map(|s| &s.outgoing_rps).map(|&(_, rps)| rps).sum();
        let offered_rps = (arrivals - internal).max(0.0);
        let n = app.services.len();
        assert_eq!(observation.services.len(), n, "observation and app model disagree on the number of services");
        let mut nodes = Vec::with_capacity(n * NODE_FEATURES.len());
        for (service, seen) in app.services.iter().zip(&observation.services) {
            let max = service.replicas.max.max(1) as f64;
            let pending = seen.status_replicas.saturating_sub(seen.ready_replicas) as f64;
            let out_rps: f64 = seen.outgoing_rps.iter().map(|&(_, rps)| rps).sum();
            nodes.extend_from_slice(&[
                (seen.ready_replicas as f64 / max) as f32,
                (seen.spec_replicas as f64 / max) as f32,
                (pending / max) as f32,
                self.ratio(seen.cpu_utilization_pct.unwrap_or(0.0) / 100.0),
                self.ratio(seen.memory_utilization_pct / 100.0),
                self.rate(seen.arrival_rps),
                self.rate(out_rps),
                self.ratio(seen.sojourn_p95_ms / app.slo.threshold_ms),
                self.ratio(seen.failure_ratio),
            ]);
        }
        let edge_features = edges
            .iter()
            .map(|&(from, to)| {
                let rps = observation.services[from]
                    .outgoing_rps
                    .iter()
                    .filter(|&&(callee, _)| callee == to)
                    .map(|&(_, rps)| rps)
                    .sum();
                self.rate(rps)
            })
            .collect();
        GraphObservation {
            num_nodes: n,
            nodes,
            edges: edges.to_vec(),
            edge_features,
            global: vec![self.rate(offered_rps)],
        }
    }
}
