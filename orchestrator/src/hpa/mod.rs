//! The Kubernetes HorizontalPodAutoscaler, ported from the upstream controller.
//!
//! A pure, deterministic port of `pkg/controller/podautoscaler` (autoscaling/v2, Resource metrics):
//! [`manifest`] reads and defaults manifests, [`calculator`] turns pod samples into a replica proposal,
//! [`controller`] applies `reconcileAutoscaler`'s bounds, stabilization and rate limits with its history.
//! Time is always passed in (`now_ms`), never read from a clock.

pub mod calculator;
pub mod controller;
pub mod manifest;
pub mod quantity;

pub use calculator::{
    CalcError, CalculatorConfig, MetricSample, PodGroups, PodPhase, PodSample, ReplicaCalculation, ReplicaCalculator,
    Tolerances, group_pods,
};
pub use controller::{
    ControllerConfig, ControllerHistory, HpaController, MetricOutcome, Recommendation, Reconciliation, ScaleEvent,
    ScalingRules, calculate_scale_down_limit_with_behaviors, calculate_scale_up_limit,
    calculate_scale_up_limit_with_scaling_rules, convert_desired_replicas_with_rules, get_replicas_change_per_period,
};
pub use manifest::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec,
    HpaScalingPolicy, HpaScalingPolicyType, HpaScalingRules, MetricSourceType, MetricSpec, MetricTarget,
    MetricTargetType, ObjectMeta, ResourceMetricSource, ResourceName, ScalingPolicySelect, default_scale_down_rules,
    default_scale_up_rules, load_manifests, parse_manifests,
};
pub use quantity::{Quantity, QuantityError};
