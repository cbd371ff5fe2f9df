//! The controller loop of one HorizontalPodAutoscaler: upstream `horizontal.go` `reconcileAutoscaler` and the
//! normalization it applies (legacy, or `spec.behavior` rules), with the history upstream keeps per HPA.
//!
//! This file computes the replica proposal from the metrics and runs the loop; `normalization` holds the
//! stabilization windows, the rate limits and the scale-event history that turn a proposal into the new size.

mod normalization;

use super::calculator::{CalcError, CalculatorConfig, PodSample, ReplicaCalculation, ReplicaCalculator, Tolerances};
use super::manifest::{
    HorizontalPodAutoscaler, MetricSourceType, MetricSpec, MetricTargetType, ResourceName, default_scale_down_rules,
    default_scale_up_rules,
};
use super::quantity::Quantity;

pub use normalization::{
    ScalingRules, calculate_scale_down_limit_with_behaviors, calculate_scale_up_limit,
    calculate_scale_up_limit_with_scaling_rules, convert_desired_replicas_with_rules, get_replicas_change_per_period,
};

/// kube-controller-manager settings for the HPA controller.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    pub calculator: CalculatorConfig,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`: the legacy window, and the behavior scale-down
    /// window when a manifest leaves it unset.
    pub downscale_stabilization_window_ms: i64,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_period_ms: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            calculator: CalculatorConfig::default(),
            downscale_stabilization_window_ms: 300_000,
            sync_period_ms: 15_000,
        }
    }
}

/// An unstabilized recommendation, kept for the stabilization windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub recommendation: i32,
    pub timestamp_ms: i64,
}

/// A rescale the controller made, kept for the behavior rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// How many replicas were added (scale-up list) or removed (scale-down list); never negative.
    pub replica_change: i32,
    pub timestamp_ms: i64,
    /// Older than every policy period: the slot may be reused.
    pub outdated: bool,
}

/// What upstream keeps per HPA between syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerHistory {
    /// None until the first sync records the current size as the initial recommendation.
    pub recommendations: Option<Vec<Recommendation>>,
    pub scale_up_events: Vec<ScaleEvent>,
    pub scale_down_events: Vec<ScaleEvent>,
}

/// The outcome of one metric of the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricOutcome {
    /// Upstream's metric name, e.g. "cpu resource utilization (percentage of request)".
    pub name: String,
    pub resource: ResourceName,
    pub result: Result<ReplicaCalculation, CalcError>,
}

/// The outcome of one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    /// What the deployment should run; equals the current replicas when `rescale` is false.
    pub desired_replicas: i32,
    /// Whether the controller would update the scale subresource.
    pub rescale: bool,
    pub reason: String,
    /// Utilization percent of the metric behind the decision (or the first utilization metric computed).
    pub utilization: Option<i32>,
    /// Every metric's outcome, in spec order; empty when no metric was computed.
    pub metrics: Vec<MetricOutcome>,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Utilization(i32),
    AverageValue(Quantity),
}

#[derive(Debug, Clone, PartialEq)]
struct ResourceMetric {
    resource: ResourceName,
    target: Target,
}

#[derive(Debug, Clone, PartialEq)]
struct Behavior {
    scale_up: ScalingRules,
    scale_down: ScalingRules,
}

/// One HorizontalPodAutoscaler's controller: its spec, settings and history.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaController {
    name: String,
    target: String,
    min_replicas: i32,
    max_replicas: i32,
    metrics: Vec<Result<ResourceMetric, MetricError>>,
    behavior: Option<Behavior>,
    tolerances: Tolerances,
    config: ControllerConfig,
    calculator: ReplicaCalculator,
    history: ControllerHistory,
}

/// Why one metric of the spec yields no proposal; the messages are upstream's where upstream has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum MetricError {
    #[error("metric type {0:?} is not supported by this controller port")]
    UnsupportedType(MetricSourceType),
    #[error(
        "invalid resource metric source: neither an average utilization target nor an average value (usage) target \
         was set"
    )]
    NoTarget,
    #[error(transparent)]
    Calc(#[from] CalcError),
}

/// Upstream's error when metrics failed: all of them, or some while the others would scale down.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid metrics ({invalid} invalid out of {total}), first error is: {first}")]
struct InvalidMetrics {
    invalid: usize,
    total: usize,
    first: MetricError,
}

fn resolve_metric(spec: &MetricSpec) -> Result<ResourceMetric, MetricError> {
    let Some(source) = &spec.resource else {
        return Err(MetricError::UnsupportedType(spec.type_));
    };
    // Upstream prefers an average value when one is set, whatever the target type says.
    let target = match (&source.target.average_value, source.target.average_utilization) {
        (Some(value), _) => Target::AverageValue(value.clone()),
        (None, Some(utilization)) if source.target.type_ != MetricTargetType::Value => Target::Utilization(utilization),
        _ => {
            return Err(MetricError::NoTarget);
        }
    };
    Ok(ResourceMetric { resource: source.name, target })
}

impl HpaController {
    /// Builds the controller for one manifest; upstream defaulting is applied if the manifest lacks it.
    pub fn new(hpa: &HorizontalPodAutoscaler, config: ControllerConfig) -> HpaController {
        let mut hpa = hpa.clone();
        hpa.apply_defaults();
        let spec = &hpa.spec;
        let window_seconds = (config.downscale_stabilization_window_ms / 1000) as i32;
        let behavior = spec.behavior.as_ref().map(|b| Behavior {
            scale_up: ScalingRules::resolve(b.scale_up.as_ref(), default_scale_up_rules(), 0),
            // maybeInitScaleDownStabilizationWindow: an unset scale-down window takes the controller's.
            scale_down: ScalingRules::resolve(b.scale_down.as_ref(), default_scale_down_rules(), window_seconds),
        });
        // tolerancesForHpa: per-direction overrides only exist inside a behavior.
        let mut tolerances = Tolerances::uniform(config.calculator.tolerance);
        if let Some(b) = &spec.behavior {
            if let Some(t) = b.scale_up.as_ref().and_then(|r| r.tolerance.as_ref()) {
                tolerances.scale_up = t.as_f64();
            }
            if let Some(t) = b.scale_down.as_ref().and_then(|r| r.tolerance.as_ref()) {
                tolerances.scale_down = t.as_f64();
            }
        }
        HpaController {
            name: hpa.metadata.name.clone(),
            target: spec.scale_target_ref.name.clone(),
            min_replicas: spec.min_replicas(),
            max_replicas: spec.max_replicas,
            metrics: spec.metrics().iter().map(resolve_metric).collect(),
            behavior,
            tolerances,
            calculator: ReplicaCalculator::new(config.calculator),
            config,
            history: ControllerHistory::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Deployment this HPA scales (`spec.scaleTargetRef.name`).
    pub fn target_deployment(&self) -> &str {
        &self.target
    }

    pub fn sync_period_ms(&self) -> i64 {
        self.config.sync_period_ms
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn tolerances(&self) -> Tolerances {
        self.tolerances
    }

    /// The resolved behavior rules, or None on the legacy path.
    pub fn behavior(&self) -> Option<(&ScalingRules, &ScalingRules)> {
        self.behavior.as_ref().map(|b| (&b.scale_up, &b.scale_down))
    }

    pub fn history(&self) -> &ControllerHistory {
        &self.history
    }

    /// Replaces the history, e.g. to start from a state an upstream test sets up.
    pub fn set_history(&mut self, history: ControllerHistory) {
        self.history = history;
    }

    /// One sync (upstream `reconcileAutoscaler`). `spec_replicas` is the scale subresource's `spec.replicas`;
    /// `current_replicas` is what upstream calls currentReplicas, which current upstream also reads from
    /// `spec.replicas`: pass the same value to match it exactly.
    pub fn reconcile(
        &mut self,
        now_ms: i64,
        spec_replicas: i32,
        current_replicas: i32,
        pods: &[PodSample],
    ) -> Reconciliation {
        // recordInitialRecommendation: the size at the first sync counts as a recent recommendation, so a
        // fresh controller does not scale down before a stabilization window has passed.
        if self.history.recommendations.is_none() {
            self.history.recommendations =
                Some(vec![Recommendation { recommendation: current_replicas, timestamp_ms: now_ms }]);
        }
        let min = self.min_replicas;
        let max = self.max_replicas;

        let hold = |reason: String, metrics: Vec<MetricOutcome>, utilization: Option<i32>| Reconciliation {
            desired_replicas: current_replicas,
            rescale: false,
            reason,
            utilization,
            metrics,
        };

        let (desired, reason, utilization, metrics) = if spec_replicas == 0 && min != 0 {
            // A deployment scaled to zero by hand is left alone.
            return hold(
                "ScalingDisabled: scaling is disabled since the replica count of the target is zero".into(),
                vec![],
                None,
            );
        } else if current_replicas > max {
            (max, "Current number of replicas above Spec.MaxReplicas".to_string(), None, vec![])
        } else if current_replicas < min {
            (min, "Current number of replicas below Spec.MinReplicas".to_string(), None, vec![])
        } else {
            let computed = self.compute_replicas_for_metrics(now_ms, spec_replicas, pods);
            let utilization = computed.utilization();
            let (replicas, chosen) = match &computed.proposal {
                Ok(p) => (p.replicas, p.chosen),
                Err(error) => return hold(format!("metrics error: {error}"), computed.outcomes, utilization),
            };
            let prenormalized = replicas.max(0);
            let detail = computed.describe(chosen, prenormalized, current_replicas);
            let (desired, condition, stabilized) = if self.behavior.is_none() {
                self.normalize_desired_replicas(now_ms, current_replicas, prenormalized)
            } else {
                self.normalize_desired_replicas_with_behaviors(now_ms, current_replicas, prenormalized)
            };
            let reason = match (condition, stabilized) {
                (Some(limit), _) => format!("{limit}: {detail}"),
                (None, Some(stabilization)) => format!("{stabilization}: {detail}"),
                (None, None) => detail,
            };
            (desired, reason, utilization, computed.outcomes)
        };

        if desired == current_replicas {
            return hold(reason, metrics, utilization);
        }
        self.store_scale_event(now_ms, current_replicas, desired);
        Reconciliation { desired_replicas: desired, rescale: true, reason, utilization, metrics }
    }

    // Upstream computeReplicasForMetrics: the largest proposal; an error when every metric failed, or when
    // some failed and the others would scale down (a broken metric must not shrink the deployment).
    fn compute_replicas_for_metrics(&self, now_ms: i64, spec_replicas: i32, pods: &[PodSample]) -> Computed {
        let mut outcomes = Vec::with_capacity(self.metrics.len());
        let mut replicas = 0;
        let mut chosen = None;
        let mut invalid = 0;
        let mut first_error = None;
        for metric in &self.metrics {
            let outcome = match metric {
                Err(error) => Err(error.clone()),
                Ok(metric) => {
                    let outcome = self.compute_resource_metric(now_ms, spec_replicas, metric, pods);
                    let result = outcome.result.clone();
                    outcomes.push(outcome);
                    result.map_err(MetricError::from)
                }
            };
            match outcome {
                Err(error) => {
                    if invalid == 0 {
                        first_error = Some(error);
                    }
                    invalid += 1;
                }
                Ok(calculation) => {
                    if replicas == 0 || calculation.replicas > replicas {
                        replicas = calculation.replicas;
                        chosen = Some(outcomes.len() - 1);
                    }
                }
            }
        }
        let error = first_error.map(|first| InvalidMetrics { invalid, total: self.metrics.len(), first });
        let proposal = match error {
            Some(error) if invalid >= self.metrics.len() || replicas < spec_replicas => Err(error),
            _ => Ok(Proposal { replicas, chosen }),
        };
        Computed { proposal, outcomes, targets: self.metrics.iter().filter_map(|m| m.clone().ok()).collect() }
    }

    fn compute_resource_metric(
        &self,
        now_ms: i64,
        spec_replicas: i32,
        metric: &ResourceMetric,
        pods: &[PodSample],
    ) -> MetricOutcome {
        let resource = metric.resource;
        match &metric.target {
            Target::AverageValue(value) => MetricOutcome {
                name: format!("{resource} resource"),
                resource,
                result: self.calculator.get_raw_resource_replicas(
                    now_ms,
                    spec_replicas,
                    value.milli_value(),
                    resource,
                    self.tolerances,
                    pods,
                ),
            },
            Target::Utilization(target) => MetricOutcome {
                name: format!("{resource} resource utilization (percentage of request)"),
                resource,
                result: self.calculator.get_resource_replicas(
                    now_ms,
                    spec_replicas,
                    *target,
                    resource,
                    self.tolerances,
                    pods,
                ),
            },
        }
    }
}

struct Proposal {
    replicas: i32,
    /// Index into the outcomes of the metric that proposed `replicas`.
    chosen: Option<usize>,
}

struct Computed {
    proposal: Result<Proposal, InvalidMetrics>,
    outcomes: Vec<MetricOutcome>,
    targets: Vec<ResourceMetric>,
}

impl Computed {
    fn utilization(&self) -> Option<i32> {
        let chosen = self.proposal.as_ref().ok().and_then(|p| p.chosen);
        let of = |o: &MetricOutcome| o.result.as_ref().ok().and_then(|r| r.utilization);
        chosen.and_then(|i| of(&self.outcomes[i])).or_else(|| self.outcomes.iter().find_map(of))
    }

    // A short human account of the metric behind the proposal.
    fn describe(&self, chosen: Option<usize>, desired: i32, current: i32) -> String {
        let Some(i) = chosen else { return "no metric proposed a size".into() };
        let outcome = &self.outcomes[i];
        let Ok(calculation) = &outcome.result else { return outcome.name.clone() };
        let (value, target) = match (&self.targets[i].target, calculation.utilization) {
            (Target::Utilization(t), Some(u)) => (format!("{} utilization {u}%", outcome.resource), format!("{t}%")),
            (Target::AverageValue(q), _) => (
                format!(
                    "{} average {}",
                    outcome.resource,
                    format_milli(outcome.resource, calculation.raw_average_milli)
                ),
                q.as_str().to_string(),
            ),
            (Target::Utilization(t), None) => (format!("{} utilization", outcome.resource), format!("{t}%")),
        };
        match desired.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{value} above target {target}"),
            std::cmp::Ordering::Less => format!("all metrics below target ({value}, target {target})"),
            std::cmp::Ordering::Equal => format!("no change ({value}, target {target})"),
        }
    }
}

fn format_milli(resource: ResourceName, milli: i64) -> String {
    match resource {
        ResourceName::Cpu => format!("{milli}m"),
        ResourceName::Memory => format!("{:.1}Mi", milli as f64 / 1000.0 / 1_048_576.0),
    }
}
