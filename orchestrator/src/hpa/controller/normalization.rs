//! Normalization of a replica proposal, as upstream applies it: the stabilization windows (legacy, or the
//! `spec.behavior` rules of each direction), the rate limits of the scaling policies, min/max, and the scale
//! events they count.

use super::{Behavior, HpaController, Recommendation, ScaleEvent};
use crate::hpa::manifest::{
    HpaScalingPolicy, HpaScalingPolicyType, HpaScalingRules, ScalingPolicySelect, default_scale_down_rules,
    default_scale_up_rules,
};

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

impl HpaController {
    /// Upstream `normalizeDesiredReplicas` (no behavior): stabilize, then clamp with the legacy scale-up cap.
    /// Returns (replicas, limiting condition if any, stabilization reason if any).
    pub(super) fn normalize_desired_replicas(
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
    pub(super) fn normalize_desired_replicas_with_behaviors(
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
