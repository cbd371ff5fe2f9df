//! The controller loop of one HorizontalPodAutoscaler: upstream `horizontal.go` `reconcileAutoscaler` and the
//! normalization it applies (legacy, or `spec.behavior` rules), with the history upstream keeps per HPA.

use super::calculator::{CalcError, CalculatorConfig, PodSample, ReplicaCalculation, ReplicaCalculator, Tolerances};
use super::manifest::{
    HorizontalPodAutoscaler, HpaScalingPolicy, HpaScalingPolicyType, HpaScalingRules, MetricSpec, MetricTargetType,
    ResourceName, ScalingPolicySelect, default_scale_down_rules, default_scale_up_rules,
};
use super::quantity::Quantity;

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

/// A direction's behavior rules with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingRules {
    pub stabilization_window_seconds: i32,
    pub select_policy: ScalingPolicySelect,
    pub policies: Vec<HpaScalingPolicy>,
}

impl ScalingRules {
    /// Fills what `rules` leaves unset from `defaults`, and an unset window with `default_window_seconds`.
    pub fn resolve(rules: Option<&HpaScalingRules>, defaults: HpaScalingRules, default_window_seconds: i32) -> Self {
        let rules = rules.cloned().unwrap_or_default();
        ScalingRules {
            stabilization_window_seconds: rules
                .stabilization_window_seconds
                .or(defaults.stabilization_window_seconds)
                .unwrap_or(default_window_seconds),
            select_policy: rules.select_policy.or(defaults.select_policy).unwrap_or(ScalingPolicySelect::Max),
            policies: rules.policies.or(defaults.policies).unwrap_or_default(),
        }
    }

    fn longest_policy_period(&self) -> i32 {
        self.policies.iter().map(|p| p.period_seconds).max().unwrap_or(0).max(0)
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
    metrics: Vec<Result<ResourceMetric, String>>,
    behavior: Option<Behavior>,
    tolerances: Tolerances,
    config: ControllerConfig,
    calculator: ReplicaCalculator,
    history: ControllerHistory,
}

fn resolve_metric(spec: &MetricSpec) -> Result<ResourceMetric, String> {
    let Some(source) = &spec.resource else {
        return Err(format!("metric type {:?} is not supported by this controller port", spec.type_));
    };
    // Upstream prefers an average value when one is set, whatever the target type says.
    let target = match (&source.target.average_value, source.target.average_utilization) {
        (Some(value), _) => Target::AverageValue(value.clone()),
        (None, Some(utilization)) if source.target.type_ != MetricTargetType::Value => Target::Utilization(utilization),
        _ => {
            return Err("invalid resource metric source: neither an average utilization target nor an average value \
                 (usage) target was set"
                .into());
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
                Err(message) => return hold(format!("metrics error: {message}"), computed.outcomes, utilization),
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
                Err(message) => Err(message.clone()),
                Ok(metric) => {
                    let outcome = self.compute_resource_metric(now_ms, spec_replicas, metric, pods);
                    let result = outcome.result.clone();
                    outcomes.push(outcome);
                    result.map_err(|e| e.to_string())
                }
            };
            match outcome {
                Err(message) => {
                    if invalid == 0 {
                        first_error = Some(message);
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
        let error = first_error.map(|first| {
            format!("invalid metrics ({invalid} invalid out of {}), first error is: {first}", self.metrics.len())
        });
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

    /// Upstream `normalizeDesiredReplicas` (no behavior): stabilize, then clamp with the legacy scale-up cap.
    /// Returns (replicas, limiting condition if any, stabilization reason if any).
    fn normalize_desired_replicas(
        &mut self,
        now_ms: i64,
        current_replicas: i32,
        prenormalized: i32,
    ) -> (i32, Option<&'static str>, Option<&'static str>) {
        let stabilized = self.stabilize_recommendation(now_ms, prenormalized);
        let stabilization = (stabilized != prenormalized).then_some("ScaleDownStabilized");
        let (desired, condition) =
            convert_desired_replicas_with_rules(current_replicas, stabilized, self.min_replicas, self.max_replicas);
        (desired, (desired != stabilized).then_some(condition), stabilization)
    }

    /// Upstream `normalizeDesiredReplicasWithBehaviors`: stabilize both ways, then apply the rate policies.
    fn normalize_desired_replicas_with_behaviors(
        &mut self,
        now_ms: i64,
        current_replicas: i32,
        prenormalized: i32,
    ) -> (i32, Option<&'static str>, Option<&'static str>) {
        let (stabilized, reason) =
            self.stabilize_recommendation_with_behaviors(now_ms, current_replicas, prenormalized);
        let stabilization = (stabilized != prenormalized).then_some(reason);
        let (desired, condition) =
            self.convert_desired_replicas_with_behavior_rate(now_ms, current_replicas, stabilized);
        (desired, (desired != stabilized).then_some(condition), stabilization)
    }

    /// Upstream `stabilizeRecommendation` (legacy path): records the recommendation, reusing one slot older
    /// than the window, and returns the highest recommendation inside the window.
    pub fn stabilize_recommendation(&mut self, now_ms: i64, prenormalized: i32) -> i32 {
        let cutoff = now_ms - self.config.downscale_stabilization_window_ms;
        let recommendations = self.history.recommendations.get_or_insert_with(Vec::new);
        let mut max_recommendation = prenormalized;
        let mut old_sample = None;
        for (i, rec) in recommendations.iter().enumerate() {
            if rec.timestamp_ms < cutoff {
                old_sample = Some(i);
            } else if rec.recommendation > max_recommendation {
                max_recommendation = rec.recommendation;
            }
        }
        let new = Recommendation { recommendation: prenormalized, timestamp_ms: now_ms };
        match old_sample {
            Some(i) => recommendations[i] = new,
            None => recommendations.push(new),
        }
        max_recommendation
    }

    /// Upstream `stabilizeRecommendationWithBehaviors`: keeps the result between the lowest recommendation of
    /// the scale-up window and the highest of the scale-down window. Returns (replicas, reason if it moved).
    /// On the legacy path this uses the default behavior rules.
    pub fn stabilize_recommendation_with_behaviors(
        &mut self,
        now_ms: i64,
        current_replicas: i32,
        desired_replicas: i32,
    ) -> (i32, &'static str) {
        let (up_window, down_window) = match &self.behavior {
            Some(b) => (b.scale_up.stabilization_window_seconds, b.scale_down.stabilization_window_seconds),
            None => (0, (self.config.downscale_stabilization_window_ms / 1000) as i32),
        };
        let up_cutoff = now_ms - i64::from(up_window) * 1000;
        let down_cutoff = now_ms - i64::from(down_window) * 1000;
        let recommendations = self.history.recommendations.get_or_insert_with(Vec::new);
        let mut up_recommendation = desired_replicas;
        let mut down_recommendation = desired_replicas;
        let mut old_sample = None;
        for (i, rec) in recommendations.iter().enumerate() {
            if rec.timestamp_ms > up_cutoff {
                up_recommendation = up_recommendation.min(rec.recommendation);
            }
            if rec.timestamp_ms > down_cutoff {
                down_recommendation = down_recommendation.max(rec.recommendation);
            }
            if rec.timestamp_ms < up_cutoff && rec.timestamp_ms < down_cutoff {
                old_sample = Some(i);
            }
        }
        let mut recommendation = current_replicas;
        if recommendation < up_recommendation {
            recommendation = up_recommendation;
        }
        if recommendation > down_recommendation {
            recommendation = down_recommendation;
        }
        let new = Recommendation { recommendation: desired_replicas, timestamp_ms: now_ms };
        match old_sample {
            Some(i) => recommendations[i] = new,
            None => recommendations.push(new),
        }
        let reason = if desired_replicas >= current_replicas { "ScaleUpStabilized" } else { "ScaleDownStabilized" };
        (recommendation, reason)
    }

    /// Upstream `convertDesiredReplicasWithBehaviorRate`: caps the change by the policies of its direction
    /// (counting changes already made within each policy's period) and by min/max. Returns (replicas,
    /// condition). On the legacy path this uses the default behavior rules.
    pub fn convert_desired_replicas_with_behavior_rate(
        &self,
        now_ms: i64,
        current_replicas: i32,
        desired_replicas: i32,
    ) -> (i32, &'static str) {
        let window_seconds = (self.config.downscale_stabilization_window_ms / 1000) as i32;
        let default_behavior;
        let behavior = match &self.behavior {
            Some(b) => b,
            None => {
                default_behavior = Behavior {
                    scale_up: ScalingRules::resolve(None, default_scale_up_rules(), 0),
                    scale_down: ScalingRules::resolve(None, default_scale_down_rules(), window_seconds),
                };
                &default_behavior
            }
        };
        let up_events = &self.history.scale_up_events;
        let down_events = &self.history.scale_down_events;
        if desired_replicas > current_replicas {
            let mut limit = calculate_scale_up_limit_with_scaling_rules(
                now_ms,
                current_replicas,
                up_events,
                down_events,
                &behavior.scale_up,
            );
            // Past events may put the limit below the current size; never scale down on the way up.
            if limit < current_replicas {
                limit = current_replicas;
            }
            let (maximum_allowed, condition) = if self.max_replicas > limit {
                (limit, "ScaleUpLimit")
            } else {
                (self.max_replicas, "TooManyReplicas")
            };
            if desired_replicas > maximum_allowed {
                return (maximum_allowed, condition);
            }
        } else if desired_replicas < current_replicas {
            let mut limit = calculate_scale_down_limit_with_behaviors(
                now_ms,
                current_replicas,
                up_events,
                down_events,
                &behavior.scale_down,
            );
            if limit > current_replicas {
                limit = current_replicas;
            }
            let (minimum_allowed, condition) = if self.min_replicas < limit {
                (limit, "ScaleDownLimit")
            } else {
                (self.min_replicas, "TooFewReplicas")
            };
            if desired_replicas < minimum_allowed {
                return (minimum_allowed, condition);
            }
        }
        (desired_replicas, "DesiredWithinRange")
    }

    /// Upstream `storeScaleEvent`: only with a behavior (the legacy path never reads events). Marks events
    /// older than the direction's longest policy period as outdated and reuses the last such slot.
    pub fn store_scale_event(&mut self, now_ms: i64, prev_replicas: i32, new_replicas: i32) {
        let Some(behavior) = &self.behavior else { return };
        let (events, rules, change) = if new_replicas > prev_replicas {
            (&mut self.history.scale_up_events, &behavior.scale_up, new_replicas - prev_replicas)
        } else {
            (&mut self.history.scale_down_events, &behavior.scale_down, prev_replicas - new_replicas)
        };
        let cutoff = now_ms - i64::from(rules.longest_policy_period()) * 1000;
        let mut old_sample = None;
        for (i, event) in events.iter_mut().enumerate() {
            if event.timestamp_ms < cutoff {
                event.outdated = true;
            }
            if event.outdated {
                old_sample = Some(i);
            }
        }
        let new = ScaleEvent { replica_change: change, timestamp_ms: now_ms, outdated: false };
        match old_sample {
            Some(i) => events[i] = new,
            None => events.push(new),
        }
    }
}

struct Proposal {
    replicas: i32,
    /// Index into the outcomes of the metric that proposed `replicas`.
    chosen: Option<usize>,
}

struct Computed {
    proposal: Result<Proposal, String>,
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

/// Upstream `convertDesiredReplicasWithRules` (legacy path): min clamp, and a max of the smaller of
/// maxReplicas and the legacy scale-up cap. Returns (replicas, condition).
pub fn convert_desired_replicas_with_rules(
    current_replicas: i32,
    desired_replicas: i32,
    min_replicas: i32,
    max_replicas: i32,
) -> (i32, &'static str) {
    // The cap guards against a bogus usage report making the deployment explode in one step.
    let scale_up_limit = calculate_scale_up_limit(current_replicas);
    let (maximum_allowed, condition) = if max_replicas > scale_up_limit {
        (scale_up_limit, "ScaleUpLimit")
    } else {
        (max_replicas, "TooManyReplicas")
    };
    if desired_replicas < min_replicas {
        (min_replicas, "TooFewReplicas")
    } else if desired_replicas > maximum_allowed {
        (maximum_allowed, condition)
    } else {
        (desired_replicas, "DesiredWithinRange")
    }
}

/// Upstream `calculateScaleUpLimit`: max(2 × current, 4).
pub fn calculate_scale_up_limit(current_replicas: i32) -> i32 {
    (2.0 * f64::from(current_replicas)).max(4.0) as i32
}

/// Upstream `getReplicasChangePerPeriod`: replicas changed by events strictly inside the last period.
pub fn get_replicas_change_per_period(now_ms: i64, period_seconds: i32, events: &[ScaleEvent]) -> i32 {
    let cutoff = now_ms - i64::from(period_seconds) * 1000;
    events.iter().filter(|e| e.timestamp_ms > cutoff).map(|e| e.replica_change).sum()
}

fn clamp_i32(x: i64) -> i32 {
    x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Upstream `calculateScaleUpLimitWithScalingRules`: the most replicas the scale-up policies allow now.
pub fn calculate_scale_up_limit_with_scaling_rules(
    now_ms: i64,
    current_replicas: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        ScalingPolicySelect::Disabled => return current_replicas,
        // For scaling up, the smallest change is the smallest limit.
        ScalingPolicySelect::Min => (i32::MAX, std::cmp::min::<i32>),
        ScalingPolicySelect::Max => (i32::MIN, std::cmp::max::<i32>),
    };
    for policy in &rules.policies {
        let added = get_replicas_change_per_period(now_ms, policy.period_seconds, scale_up_events);
        let removed = get_replicas_change_per_period(now_ms, policy.period_seconds, scale_down_events);
        // The policy counts from the size at the start of its period.
        let period_start = i64::from(current_replicas) - i64::from(added) + i64::from(removed);
        let proposed = match policy.type_ {
            HpaScalingPolicyType::Pods => clamp_i32(period_start + i64::from(policy.value)),
            // Rounded up: a small percentage of a small deployment must still allow one more pod.
            HpaScalingPolicyType::Percent => {
                (period_start as f64 * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// Upstream `calculateScaleDownLimitWithBehaviors`: the fewest replicas the scale-down policies allow now.
/// A Percent policy truncates the replicas that stay (upstream converts the float with int32(), no ceil).
pub fn calculate_scale_down_limit_with_behaviors(
    now_ms: i64,
    current_replicas: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &ScalingRules,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        ScalingPolicySelect::Disabled => return current_replicas,
        // For scaling down, the smallest change is the largest limit.
        ScalingPolicySelect::Min => (i32::MIN, std::cmp::max::<i32>),
        ScalingPolicySelect::Max => (i32::MAX, std::cmp::min::<i32>),
    };
    for policy in &rules.policies {
        let added = get_replicas_change_per_period(now_ms, policy.period_seconds, scale_up_events);
        let removed = get_replicas_change_per_period(now_ms, policy.period_seconds, scale_down_events);
        let period_start = i64::from(current_replicas) - i64::from(added) + i64::from(removed);
        let proposed = match policy.type_ {
            HpaScalingPolicyType::Pods => clamp_i32(period_start - i64::from(policy.value)),
            HpaScalingPolicyType::Percent => (period_start as f64 * (1.0 - f64::from(policy.value) / 100.0)) as i32,
        };
        result = pick(result, proposed);
    }
    result
}
