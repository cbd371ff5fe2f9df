//! `hpa`: one HorizontalPodAutoscaler controller per targeted deployment, read from a real manifest.

use crate::app::AppModel;
use crate::cell::Observation;
use crate::cell::{Decision, Policy};
use crate::hpa::{ControllerConfig, HorizontalPodAutoscaler, HpaController};

pub struct HpaPolicy {
    /// (service index, its controller)
    controllers: Vec<(usize, HpaController)>,
    initial: Vec<u32>,
    sync_period_s: u64,
}

impl HpaPolicy {
    /// Builds controllers for manifests already checked against the app (targets exist, bounds fit).
    pub fn new(app: &AppModel, manifests: &[HorizontalPodAutoscaler]) -> HpaPolicy {
        let config = ControllerConfig::default();
        let mut initial: Vec<u32> = app.services.iter().map(|s| s.replicas.initial()).collect();
        let controllers: Vec<(usize, HpaController)> = manifests
            .iter()
            .map(|hpa| {
                let service = app.service_index(&hpa.spec.scale_target_ref.name).expect("target checked");
                // A deployment starts inside its HPA's bounds, as the controller would put it on its first sync.
                let min = hpa.spec.min_replicas.unwrap_or(1) as u32;
                let max = hpa.spec.max_replicas as u32;
                initial[service] = initial[service].clamp(min, max);
                (service, HpaController::new(hpa, config.clone()))
            })
            .collect();
        let sync_period_s = (config.sync_period_ms / 1000).max(1) as u64;
        HpaPolicy { controllers, initial, sync_period_s }
    }
}

impl Policy for HpaPolicy {
    fn initial_replicas(&self) -> Vec<u32> {
        self.initial.clone()
    }

    fn interval_s(&self) -> u64 {
        self.sync_period_s
    }

    fn decide(&mut self, observation: &Observation) -> Vec<Decision> {
        let now_ms = observation.time_s as i64 * 1000;
        let mut decisions = Vec::new();
        for (service, controller) in &mut self.controllers {
            let seen = &observation.services[*service];
            // Upstream takes the current replica count from the scale subresource's spec.replicas.
            let replicas = seen.spec_replicas as i32;
            let result = controller.reconcile(now_ms, replicas, replicas, &seen.pods);
            if result.rescale {
                decisions.push(Decision {
                    service: *service,
                    replicas: result.desired_replicas.max(0) as u32,
                    reason: result.reason,
                });
            }
        }
        decisions
    }
}
