//! Golden tests for the HorizontalPodAutoscaler port: cases from upstream Kubernetes
//! `pkg/controller/podautoscaler/replica_calculator_test.go` and `horizontal_test.go`, rebuilt from their
//! inputs and expected outputs, plus manifest parsing checks.
//!
//! Upstream fixtures, as reproduced here:
//! - replica calculator tests: every pod has two containers, each requesting `requests[i]` and using
//!   `levels[i]`, so pod totals are twice those; metric samples carry the zero time as timestamp and a one
//!   minute window; pod start and Ready transition are the zero time unless a case sets them; "hot" pods
//!   started now, "cool" ones three minutes ago. CPU initialization period 2 min, readiness delay 10 s.
//! - controller tests: pod totals are the reported values; samples are fresh (timestamp now); the Ready
//!   transition equals the start time; downscale stabilization 5 min.
//!
//! The zero time is 0 ms here and "now" is `NOW`, far later, as in upstream.

use std::path::Path;

use orchestrator::hpa::{
    CalcError, CalculatorConfig, ControllerConfig, ControllerHistory, HorizontalPodAutoscaler, HpaController,
    HpaScalingPolicy, MetricSample, PodPhase, PodSample, Quantity, Recommendation, ReplicaCalculation,
    ReplicaCalculator, ResourceName, ScaleEvent, ScalingPolicySelect, ScalingRules, Tolerances,
    calculate_scale_down_limit_with_behaviors, calculate_scale_up_limit, calculate_scale_up_limit_with_scaling_rules,
    convert_desired_replicas_with_rules, get_replicas_change_per_period, group_pods, load_manifests, parse_manifests,
};

const NOW: i64 = 10_000_000;
const MINUTE: i64 = 60_000;

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

/// Upstream's defaultTesting* constants.
fn testing_calculator_config() -> CalculatorConfig {
    CalculatorConfig { tolerance: 0.1, cpu_initialization_period_ms: 2 * MINUTE, initial_readiness_delay_ms: 10_000 }
}

fn testing_controller_config() -> ControllerConfig {
    ControllerConfig {
        calculator: testing_calculator_config(),
        downscale_stabilization_window_ms: 5 * MINUTE,
        sync_period_ms: 15_000,
    }
}

fn tolerance() -> Tolerances {
    Tolerances::uniform(0.1)
}

fn hot() -> i64 {
    NOW
}

fn cool() -> i64 {
    NOW - 3 * MINUTE
}

/// A replica_calculator_test.go pod: two containers requesting and using the given millicores each.
fn calc_pod(i: usize, container_request_milli: i64, container_level_milli: Option<i64>) -> PodSample {
    PodSample {
        name: format!("test-pod-{i}"),
        phase: PodPhase::Running,
        deleting: false,
        ready: Some(true),
        ready_transition_ms: 0,
        start_time_ms: Some(0),
        cpu_request_milli: 2 * container_request_milli,
        memory_request_bytes: 0,
        metric: container_level_milli.map(|level| MetricSample {
            cpu_milli: 2 * level,
            memory_bytes: 0,
            timestamp_ms: 0,
            window_ms: MINUTE,
        }),
    }
}

/// Pods for `requests.len()` pods; `levels` shorter than `requests` leaves the last pods without samples.
fn calc_pods(requests: &[i64], levels: &[i64]) -> Vec<PodSample> {
    requests.iter().enumerate().map(|(i, &r)| calc_pod(i, r, levels.get(i).copied())).collect()
}

fn resource_replicas(current: i32, target: i32, pods: &[PodSample]) -> Result<ReplicaCalculation, CalcError> {
    ReplicaCalculator::new(testing_calculator_config()).get_resource_replicas(
        NOW,
        current,
        target,
        ResourceName::Cpu,
        tolerance(),
        pods,
    )
}

fn calculation(replicas: i32, utilization: i32, raw_average_milli: i64) -> ReplicaCalculation {
    ReplicaCalculation { replicas, utilization: Some(utilization), raw_average_milli }
}

/// A horizontal_test.go pod: the reported totals, a fresh sample, Ready transition at the start time.
fn controller_pod(i: usize, request_milli: i64, level_milli: Option<i64>) -> PodSample {
    PodSample {
        name: format!("test-pod-{i}"),
        phase: PodPhase::Running,
        deleting: false,
        ready: Some(true),
        ready_transition_ms: 0,
        start_time_ms: Some(0),
        cpu_request_milli: request_milli,
        memory_request_bytes: 64 << 20,
        metric: level_milli.map(|level| MetricSample {
            cpu_milli: level,
            memory_bytes: 1 << 20,
            timestamp_ms: NOW,
            window_ms: MINUTE,
        }),
    }
}

fn controller_pods(requests: &[i64], levels: &[i64]) -> Vec<PodSample> {
    requests.iter().enumerate().map(|(i, &r)| controller_pod(i, r, levels.get(i).copied())).collect()
}

/// An autoscaling/v2 manifest for a Deployment, parsed through the public parser.
fn manifest(min: i32, max: i32, metrics: &str, behavior: Option<&str>) -> HorizontalPodAutoscaler {
    let behavior = behavior.map(|b| format!("  behavior: {b}\n")).unwrap_or_default();
    let text = format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: test-hpa\n  namespace: test-namespace\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: test-dep}}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics: {metrics}\n{behavior}"
    );
    parse_manifests(&text, Path::new("test.yaml")).expect("test manifest parses").remove(0)
}

fn cpu_utilization(target: i32) -> String {
    format!(
        "[{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: {target}}}}}}}]"
    )
}

/// Upstream's generateScalingRules as a YAML flow mapping (select policy Max).
fn scaling_rules(pods: i32, pods_period: i32, percent: i32, percent_period: i32, window: i32) -> String {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(format!("{{type: Pods, value: {pods}, periodSeconds: {pods_period}}}"));
    }
    if percent != 0 {
        policies.push(format!("{{type: Percent, value: {percent}, periodSeconds: {percent_period}}}"));
    }
    format!("{{stabilizationWindowSeconds: {window}, selectPolicy: Max, policies: [{}]}}", policies.join(", "))
}

fn controller(hpa: &HorizontalPodAutoscaler) -> HpaController {
    HpaController::new(hpa, testing_controller_config())
}

/// A controller whose recommendation history starts empty rather than unset, like upstream tests that
/// pass `recommendations: []timestampedRecommendation{}` (so the first sync records no initial size).
fn controller_with_empty_history(hpa: &HorizontalPodAutoscaler) -> HpaController {
    let mut c = controller(hpa);
    c.set_history(ControllerHistory { recommendations: Some(vec![]), ..ControllerHistory::default() });
    c
}

fn rec(recommendation: i32, age_ms: i64) -> Recommendation {
    Recommendation { recommendation, timestamp_ms: NOW - age_ms }
}

/// Upstream's generateEventsUniformDistribution: events spread over the last `period_seconds`, each in
/// the middle of its segment.
fn uniform_events(changes: &[i32], period_seconds: i64) -> Vec<ScaleEvent> {
    let segment = period_seconds as f64 / changes.len() as f64;
    changes
        .iter()
        .enumerate()
        .map(|(i, &change)| {
            let boundary_s = (period_seconds as f64 - segment * (i + 1) as f64 + segment / 2.0) as i64;
            ScaleEvent { replica_change: change, timestamp_ms: NOW - boundary_s * 1000, outdated: false }
        })
        .collect()
}

fn with_events(hpa: &HorizontalPodAutoscaler, up: Vec<ScaleEvent>, down: Vec<ScaleEvent>) -> HpaController {
    let mut c = controller(hpa);
    c.set_history(ControllerHistory { recommendations: Some(vec![]), scale_up_events: up, scale_down_events: down });
    c
}

// ---------------------------------------------------------------------------------------------------------
// Replica calculator (replica_calculator_test.go)
// ---------------------------------------------------------------------------------------------------------

// Upstream: TestReplicaCalcScaleUp.
#[test]
fn calc_scale_up() {
    let pods = calc_pods(&[1000, 1000, 1000], &[300, 500, 700]);
    assert_eq!(resource_replicas(3, 30, &pods), Ok(calculation(5, 50, 2 * 500)));
}

// Upstream: TestReplicaCalcScaleDown.
#[test]
fn calc_scale_down() {
    let pods = calc_pods(&[1000; 5], &[100, 300, 500, 250, 250]);
    assert_eq!(resource_replicas(5, 50, &pods), Ok(calculation(3, 28, 2 * 280)));
}

// Upstream: TestReplicaCalcTolerance. 102% of a 100% target is inside the 10% band.
#[test]
fn calc_tolerance_no_change() {
    let pods = calc_pods(&[900, 1000, 1100], &[1010, 1030, 1020]);
    assert_eq!(resource_replicas(3, 100, &pods), Ok(calculation(3, 102, 2 * 1020)));
}

// Upstream: TestReplicaCalcScaleUpUnreadyLessScale. The never-ready pod counts as idle on scale-up.
#[test]
fn calc_scale_up_unready_less_scale() {
    let mut pods = calc_pods(&[1000, 1000, 1000], &[300, 500, 700]);
    pods[0].ready = Some(false);
    assert_eq!(resource_replicas(3, 30, &pods), Ok(calculation(4, 60, 2 * 600)));
}

// Upstream: TestReplicaCalcScaleUpHotCpuLessScale. A pod in its CPU initialization period whose sample
// predates a full window after it became ready is treated as unready.
#[test]
fn calc_scale_up_hot_cpu_stale_metric_less_scale() {
    let mut pods = calc_pods(&[1000, 1000, 1000], &[300, 500, 700]);
    pods[0].start_time_ms = Some(hot());
    pods[1].start_time_ms = Some(cool());
    pods[2].start_time_ms = Some(cool());
    assert_eq!(resource_replicas(3, 30, &pods), Ok(calculation(4, 60, 2 * 600)));
}

// Upstream: TestReplicaCalcScaleUpUnreadyNoScale. Counting the unready pods as idle would flip the
// direction (40% → 13% of a 30% target), so nothing changes.
#[test]
fn calc_scale_up_unready_direction_flip_no_scale() {
    let mut pods = calc_pods(&[1000, 1000, 1000], &[400, 500, 700]);
    pods[1].ready = Some(false);
    pods[2].ready = Some(false);
    assert_eq!(resource_replicas(3, 30, &pods), Ok(calculation(3, 40, 2 * 400)));
}

// Upstream: TestReplicaCalcScaleHotCpuNoScale. Same flip guard with hot, unready pods.
#[test]
fn calc_hot_cpu_no_scale() {
    let mut pods = calc_pods(&[1000, 1000, 1000], &[400, 500, 700]);
    pods[1].ready = Some(false);
    pods[2].ready = Some(false);
    pods[0].start_time_ms = Some(cool());
    pods[1].start_time_ms = Some(hot());
    pods[2].start_time_ms = Some(hot());
    assert_eq!(resource_replicas(3, 30, &pods), Ok(calculation(3, 40, 2 * 400)));
}

// Upstream: TestReplicaCalcScaleUpIgnoresFailedPods.
#[test]
fn calc_scale_up_ignores_failed_pods() {
    let mut pods = calc_pods(&[1000; 4], &[500, 700]);
    for pod in &mut pods[2..] {
        pod.ready = Some(false);
        pod.phase = PodPhase::Failed;
    }
    assert_eq!(resource_replicas(2, 30, &pods), Ok(calculation(4, 60, 2 * 600)));
}

// Upstream: TestReplicaCalcScaleUpIgnoresDeletionPods.
#[test]
fn calc_scale_up_ignores_deleted_pods() {
    let mut pods = calc_pods(&[1000; 4], &[500, 700]);
    for pod in &mut pods[2..] {
        pod.ready = Some(false);
        pod.deleting = true;
    }
    assert_eq!(resource_replicas(2, 30, &pods), Ok(calculation(4, 60, 2 * 600)));
}

// Upstream: TestReplicaCalcScaleDownIgnoresFailedPods and TestReplicaCalcScaleDownIgnoresDeletionPods.
// Even pods that still have samples are dropped when failed or being deleted.
#[test]
fn calc_scale_down_ignores_failed_and_deleted_pods() {
    let mut pods = calc_pods(&[1000; 7], &[100, 300, 500, 250, 250, 900, 900]);
    pods[5].phase = PodPhase::Failed;
    pods[5].ready = Some(false);
    pods[6].deleting = true;
    pods[6].ready = Some(false);
    assert_eq!(resource_replicas(5, 50, &pods), Ok(calculation(3, 28, 2 * 280)));
}

// Upstream: TestReplicaCalcScaleDownIncludeUnreadyPods. On scale-down unready pods are simply left out.
#[test]
fn calc_scale_down_unready_pods_left_out() {
    let mut pods = calc_pods(&[1000; 5], &[100, 300, 500, 250, 250]);
    pods[3].ready = Some(false);
    pods[4].ready = Some(false);
    assert_eq!(resource_replicas(5, 50, &pods), Ok(calculation(2, 30, 2 * 300)));
}

// Upstream: TestReplicaCalcScaleDownExcludeUnscheduledPods. Pending pods count as unready.
#[test]
fn calc_scale_down_pending_pods() {
    let mut pods = calc_pods(&[1000; 5], &[100]);
    for pod in &mut pods[1..] {
        pod.phase = PodPhase::Pending;
        pod.ready = Some(false);
    }
    assert_eq!(resource_replicas(5, 50, &pods), Ok(calculation(1, 10, 2 * 100)));
}

// Upstream: TestReplicaCalcScaleDownIgnoreHotCpuPods.
#[test]
fn calc_scale_down_ignores_hot_cpu_pods() {
    let mut pods = calc_pods(&[1000; 5], &[100, 300, 500, 250, 250]);
    let starts = [cool(), cool(), cool(), hot(), hot()];
    for (pod, start) in pods.iter_mut().zip(starts) {
        pod.start_time_ms = Some(start);
    }
    assert_eq!(resource_replicas(5, 50, &pods), Ok(calculation(2, 30, 2 * 300)));
}

// Upstream: TestReplicaCalcMissingMetrics. On scale-down the two pods without samples count as using
// 100% of their request: 24% becomes 62%, so 4 → 3 instead of 4 → 1.
#[test]
fn calc_missing_metrics_scale_down() {
    let pods = calc_pods(&[1000; 4], &[400, 95]);
    assert_eq!(resource_replicas(4, 100, &pods), Ok(calculation(3, 24, 495)));
}

// Upstream: TestReplicaCalcMissingMetricsScaleDownTargetOver100. With a 300% target a missing pod
// counts as using 300% of its request.
#[test]
fn calc_missing_metrics_scale_down_target_over_100() {
    let mut pods = calc_pods(&[1000, 1000, 2000, 2000], &[200, 100, 100]);
    pods[0].ready = Some(false);
    assert_eq!(resource_replicas(4, 300, &pods), Ok(calculation(2, 6, 2 * 100)));
}

// Upstream: TestReplicaCalcMissingMetricsNoChangeGt. On scale-up a pod without a sample counts as idle:
// 190% becomes 95%, inside the tolerance.
#[test]
fn calc_missing_metrics_scale_up_no_change() {
    let pods = calc_pods(&[1000, 1000], &[1900]);
    assert_eq!(resource_replicas(2, 100, &pods), Ok(calculation(2, 190, 2 * 1900)));
}

// Upstream: TestReplicaCalcMissingMetricsNoChangeLt and ...NoChangeEq.
#[test]
fn calc_missing_metrics_below_and_at_target_no_change() {
    let pods = calc_pods(&[1000, 1000], &[600]);
    assert_eq!(resource_replicas(2, 100, &pods), Ok(calculation(2, 60, 2 * 600)));
    let pods = calc_pods(&[1000, 1000], &[1000]);
    assert_eq!(resource_replicas(2, 100, &pods), Ok(calculation(2, 100, 2 * 1000)));
}

// Upstream: TestReplicaCalcMissingMetricsUnreadyScaleUp. Missing and unready pods both count as idle.
#[test]
fn calc_missing_metrics_unready_scale_up() {
    let mut pods = calc_pods(&[1000; 3], &[100, 2000]);
    pods[0].ready = Some(false);
    assert_eq!(resource_replicas(3, 50, &pods), Ok(calculation(4, 200, 2 * 2000)));
}

// Upstream: TestReplicaCalcMissingMetricsUnreadyScaleDown.
#[test]
fn calc_missing_metrics_unready_scale_down() {
    let mut pods = calc_pods(&[1000; 4], &[100, 100, 100]);
    pods[0].ready = Some(false);
    assert_eq!(resource_replicas(4, 50, &pods), Ok(calculation(3, 10, 2 * 100)));
}

// Upstream: TestReplicaCalcMissingMetricsUnreadyChange. The pod without a sample turns a 45% scale-down
// (target 50%) into a scale-up once counted at 100%: the direction flip holds the size.
#[test]
fn calc_missing_metrics_direction_flip_no_change() {
    let mut pods = calc_pods(&[1000; 3], &[100, 450]);
    pods[0].ready = Some(false);
    assert_eq!(resource_replicas(3, 50, &pods), Ok(calculation(3, 45, 2 * 450)));
}

// Upstream: TestReplicaCalcEmptyMetrics.
#[test]
fn calc_no_metrics_error() {
    let pods = calc_pods(&[1000; 3], &[]);
    let err = resource_replicas(4, 100, &pods).unwrap_err();
    assert_eq!(err, CalcError::NoMetrics { resource: ResourceName::Cpu });
    assert_eq!(
        err.to_string(),
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
}

// Upstream: GetResourceReplicas' error when every sample belongs to an ignored or unready pod.
#[test]
fn calc_no_ready_metrics_error() {
    let mut pods = calc_pods(&[1000; 2], &[500, 500]);
    pods[0].ready = Some(false);
    pods[1].phase = PodPhase::Failed;
    let err = resource_replicas(2, 50, &pods).unwrap_err();
    assert_eq!(err, CalcError::NoReadyMetrics);
    assert_eq!(err.to_string(), "did not receive metrics for targeted pods (pods might be unready)");
}

// Upstream: TestReplicaCalcEmptyCPURequest.
#[test]
fn calc_missing_request_error() {
    let mut pods = calc_pods(&[1000], &[200]);
    pods[0].cpu_request_milli = 0;
    assert!(resource_replicas(1, 100, &pods).unwrap_err().to_string().starts_with("missing request for cpu"));
}

// Upstream: TestReplicaCalcComputedToleranceAlgImplementation. Requests spread around 300m, usage 150m:
// a target just past the tolerance scales down, one just inside it does not.
#[test]
fn calc_computed_tolerance() {
    // Per-container requests around 300m, each container using 150m: 50% utilization.
    let requests = [400, 200, 310, 290, 302, 298, 301, 299, 300, 300];
    let pods: Vec<PodSample> = requests.iter().enumerate().map(|(i, &r)| calc_pod(i, r, Some(150))).collect();
    let target_ratio = 1.0 / (2.0 * (1.0 - 0.1));
    let scale_target = ((target_ratio + 0.01) * 100.0) as i32;
    assert_eq!(scale_target, 56);
    assert_eq!(resource_replicas(10, scale_target, &pods), Ok(calculation(9, 50, 2 * 150)));
    let hold_target = ((target_ratio + 0.004) * 100.0) as i32;
    assert_eq!(hold_target, 55);
    assert_eq!(resource_replicas(10, hold_target, &pods), Ok(calculation(10, 50, 2 * 150)));
}

// Upstream: TestGroupPods, the CPU readiness cases around the initialization period and the initial
// readiness delay (strict comparisons at the boundaries).
#[test]
fn calc_group_pods_readiness_rules() {
    let config = testing_calculator_config();
    let base = |start: i64, ready: Option<bool>, transition: i64, sample: Option<(i64, i64)>| PodSample {
        name: "p".into(),
        phase: PodPhase::Succeeded,
        deleting: false,
        ready,
        ready_transition_ms: transition,
        start_time_ms: Some(start),
        cpu_request_milli: 1000,
        memory_request_bytes: 1,
        metric: sample.map(|(ts, window)| MetricSample {
            cpu_milli: 1,
            memory_bytes: 1,
            timestamp_ms: ts,
            window_ms: window,
        }),
    };
    let ready_count = |pod: PodSample, resource| group_pods(&[pod], resource, &config, NOW).ready_pod_count;
    // "count in a ready pod - memory": readiness is ignored for memory.
    assert_eq!(ready_count(base(0, None, 0, Some((NOW, MINUTE))), ResourceName::Memory), 1);
    // "ignore a pod without ready condition - CPU".
    assert_eq!(ready_count(base(NOW, None, 0, Some((0, 0))), ResourceName::Cpu), 0);
    // "count in a ready pod with fresh metrics during initialization period - CPU".
    assert_eq!(ready_count(base(NOW - MINUTE, Some(true), NOW - 30_000, Some((NOW, 30_000))), ResourceName::Cpu), 1);
    // "ignore a ready pod without fresh metrics during initialization period - CPU".
    assert_eq!(ready_count(base(NOW - MINUTE, Some(true), NOW - 30_000, Some((NOW, MINUTE))), ResourceName::Cpu), 0);
    // "ignore an unready pod during initialization period - CPU" (never ready, past the period).
    assert_eq!(
        ready_count(base(NOW - 10 * MINUTE, Some(false), NOW - 9 * MINUTE - 54_000, Some((0, 0))), ResourceName::Cpu),
        0
    );
    // "count in a ready pod without fresh metrics after initialization period - CPU".
    assert_eq!(
        ready_count(
            base(NOW - 3 * MINUTE, Some(true), NOW - 3 * MINUTE, Some((NOW - 2 * MINUTE, MINUTE))),
            ResourceName::Cpu
        ),
        1
    );
    // "count in an unready pod that was ready after initialization period - CPU".
    assert_eq!(ready_count(base(NOW - 10 * MINUTE, Some(false), NOW - 9 * MINUTE, Some((0, 0))), ResourceName::Cpu), 1);
    // "ignore pod that has never been ready after initialization period - CPU": exactly at the delay.
    assert_eq!(
        ready_count(base(NOW - 10 * MINUTE, Some(false), NOW - 9 * MINUTE - 50_000, Some((0, 0))), ResourceName::Cpu),
        1
    );
    // "a missing pod" and "pending pods are ignored".
    let groups = group_pods(&[base(NOW - 3 * MINUTE, None, 0, None)], ResourceName::Cpu, &config, NOW);
    assert_eq!((groups.ready_pod_count, groups.missing.clone(), groups.unready.len()), (0, vec![0], 0));
    let mut pending = base(0, None, 0, None);
    pending.phase = PodPhase::Pending;
    let groups = group_pods(&[pending], ResourceName::Cpu, &config, NOW);
    assert_eq!((groups.ready_pod_count, groups.unready.clone(), groups.missing.len()), (0, vec![0], 0));
}

/// Memory pods whose samples are plain values, standing in for upstream's custom per-pod metrics: both go
/// through calcPlainMetricReplicas, and memory, like a custom metric, skips the CPU readiness rules.
fn plain_pods(levels_milli: &[i64]) -> Vec<PodSample> {
    levels_milli
        .iter()
        .enumerate()
        .map(|(i, &level)| {
            let mut pod = calc_pod(i, 1000, Some(0));
            pod.memory_request_bytes = 1 << 30;
            pod.metric.as_mut().unwrap().memory_bytes = level / 1000;
            pod
        })
        .collect()
}

fn raw_replicas(current: i32, target_milli: i64, pods: &[PodSample]) -> Result<ReplicaCalculation, CalcError> {
    ReplicaCalculator::new(testing_calculator_config()).get_raw_resource_replicas(
        NOW,
        current,
        target_milli,
        ResourceName::Memory,
        tolerance(),
        pods,
    )
}

fn raw(replicas: i32, average_milli: i64) -> ReplicaCalculation {
    ReplicaCalculation { replicas, utilization: None, raw_average_milli: average_milli }
}

// Upstream: TestReplicaCalcScaleUpCM, TestReplicaCalcScaleDownCM and TestReplicaCalcToleranceCM, through
// the average-value path (GetRawResourceReplicas shares calcPlainMetricReplicas with them).
#[test]
fn calc_average_value_scale_up_down_tolerance() {
    assert_eq!(raw_replicas(3, 15_000, &plain_pods(&[20_000, 10_000, 30_000])), Ok(raw(4, 20_000)));
    assert_eq!(raw_replicas(5, 20_000, &plain_pods(&[12_000; 5])), Ok(raw(3, 12_000)));
    assert_eq!(raw_replicas(3, 20_000, &plain_pods(&[20_000, 21_000, 21_000])), Ok(raw(3, 20_666)));
}

// Upstream: TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale. Outside CPU, an unready (but running) pod
// still counts.
#[test]
fn calc_average_value_unready_not_cpu_counts() {
    let mut pods = plain_pods(&[50_000, 10_000, 30_000]);
    pods[2].ready = Some(false);
    pods[2].start_time_ms = Some(hot());
    assert_eq!(raw_replicas(3, 15_000, &pods), Ok(raw(6, 30_000)));
}

// ---------------------------------------------------------------------------------------------------------
// Controller (horizontal_test.go)
// ---------------------------------------------------------------------------------------------------------

fn legacy_hpa(min: i32, max: i32, target: i32) -> HorizontalPodAutoscaler {
    manifest(min, max, &cpu_utilization(target), None)
}

// Upstream: TestScaleUp.
#[test]
fn controller_scale_up() {
    let mut c = controller(&legacy_hpa(2, 6, 30));
    let out = c.reconcile(NOW, 3, 3, &controller_pods(&[1000; 3], &[300, 500, 700]));
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (5, true, Some(50)));
    assert_eq!(out.reason, "cpu utilization 50% above target 30%");
}

// Upstream: TestScaleUpUnreadyLessScale.
#[test]
fn controller_scale_up_unready_less_scale() {
    let mut pods = controller_pods(&[1000; 3], &[300, 500, 700]);
    pods[0].ready = Some(false);
    let out = controller(&legacy_hpa(2, 6, 30)).reconcile(NOW, 3, 3, &pods);
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (4, true, Some(60)));
}

// Upstream: TestScaleUpHotCpuLessScale. A pod that started now has a sample from before a full window
// after it became ready.
#[test]
fn controller_scale_up_hot_cpu_less_scale() {
    let mut pods = controller_pods(&[1000; 3], &[300, 500, 700]);
    let starts = [hot(), cool(), cool()];
    for (pod, start) in pods.iter_mut().zip(starts) {
        pod.start_time_ms = Some(start);
        pod.ready_transition_ms = start;
    }
    let out = controller(&legacy_hpa(2, 6, 30)).reconcile(NOW, 3, 3, &pods);
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (4, true, Some(60)));
}

// Upstream: TestScaleDown (recommendations start empty, so nothing stabilizes).
#[test]
fn controller_scale_down() {
    let mut c = controller_with_empty_history(&legacy_hpa(2, 6, 50));
    let out = c.reconcile(NOW, 5, 5, &controller_pods(&[1000; 5], &[100, 300, 500, 250, 250]));
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (3, true, Some(28)));
    assert_eq!(out.reason, "all metrics below target (cpu utilization 28%, target 50%)");
}

// Upstream: TestScaleDownStabilizeInitialSize. A fresh controller records the current size first, so the
// first sync cannot scale down.
#[test]
fn controller_scale_down_stabilize_initial_size() {
    let mut c = controller(&legacy_hpa(2, 6, 50));
    let out = c.reconcile(NOW, 5, 5, &controller_pods(&[1000; 5], &[100, 300, 500, 250, 250]));
    assert_eq!((out.desired_replicas, out.rescale), (5, false));
    assert!(out.reason.starts_with("ScaleDownStabilized"), "{}", out.reason);
    let recorded: Vec<i32> = c.history().recommendations.as_ref().unwrap().iter().map(|r| r.recommendation).collect();
    assert_eq!(recorded, vec![5, 3]);
}

// Upstream: TestStabilizeDownscale. A recommendation of 4 from a minute ago outweighs today's 2; the one
// from ten minutes ago (10) is outside the window.
#[test]
fn controller_stabilize_downscale() {
    let mut c = controller(&legacy_hpa(1, 5, 100));
    c.set_history(ControllerHistory {
        recommendations: Some(vec![rec(10, 10 * MINUTE), rec(4, MINUTE)]),
        ..ControllerHistory::default()
    });
    let out = c.reconcile(NOW, 4, 4, &controller_pods(&[100; 3], &[50, 50, 50]));
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (4, false, Some(50)));
    assert!(out.reason.starts_with("ScaleDownStabilized"), "{}", out.reason);
    // The outdated slot (10) was reused for today's recommendation instead of growing the list.
    let recorded: Vec<i32> = c.history().recommendations.as_ref().unwrap().iter().map(|r| r.recommendation).collect();
    assert_eq!(recorded, vec![2, 4]);
}

// Upstream: TestTolerance.
#[test]
fn controller_tolerance() {
    let out = controller(&legacy_hpa(1, 5, 100)).reconcile(
        NOW,
        3,
        3,
        &controller_pods(&[900, 1000, 1100], &[1010, 1030, 1020]),
    );
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (3, false, Some(102)));
}

// Upstream: TestMinReplicas.
#[test]
fn controller_min_replicas_clamp() {
    let mut c = controller_with_empty_history(&legacy_hpa(2, 5, 90));
    let out = c.reconcile(NOW, 3, 3, &controller_pods(&[900, 1000, 1100], &[10, 95, 10]));
    assert_eq!((out.desired_replicas, out.rescale), (2, true));
    assert!(out.reason.starts_with("TooFewReplicas"), "{}", out.reason);
}

// Upstream: TestMaxReplicas.
#[test]
fn controller_max_replicas_clamp() {
    let out = controller(&legacy_hpa(2, 5, 90)).reconcile(
        NOW,
        3,
        3,
        &controller_pods(&[900, 1000, 1100], &[8000, 9500, 1000]),
    );
    assert_eq!((out.desired_replicas, out.rescale), (5, true));
    assert!(out.reason.starts_with("TooManyReplicas"), "{}", out.reason);
}

// Upstream: TestZeroReplicas. A deployment at spec.replicas 0 is left alone.
#[test]
fn controller_zero_replicas_disables() {
    let out = controller(&legacy_hpa(3, 5, 90)).reconcile(NOW, 0, 0, &[]);
    assert_eq!((out.desired_replicas, out.rescale), (0, false));
    assert!(out.reason.starts_with("ScalingDisabled"), "{}", out.reason);
}

// Upstream: TestTooFewReplicas and TestTooManyReplicas: out-of-range sizes are fixed before any metric.
#[test]
fn controller_out_of_range_current_replicas() {
    let out = controller(&legacy_hpa(3, 5, 90)).reconcile(NOW, 2, 2, &[]);
    assert_eq!((out.desired_replicas, out.rescale), (3, true));
    assert_eq!(out.reason, "Current number of replicas below Spec.MinReplicas");
    let out = controller(&legacy_hpa(3, 5, 90)).reconcile(NOW, 10, 10, &[]);
    assert_eq!((out.desired_replicas, out.rescale), (5, true));
    assert_eq!(out.reason, "Current number of replicas above Spec.MaxReplicas");
}

// Upstream: TestMissingReports. Only one pod is listed; it runs at 100% of a 50% target.
#[test]
fn controller_missing_reports() {
    let mut c = controller_with_empty_history(&legacy_hpa(1, 5, 50));
    let out = c.reconcile(NOW, 4, 4, &controller_pods(&[200], &[200]));
    assert_eq!((out.desired_replicas, out.rescale), (2, true));
}

// Upstream: TestEmptyMetrics. No samples at all: the error keeps the size.
#[test]
fn controller_empty_metrics_keeps_size() {
    let out = controller(&legacy_hpa(2, 6, 100)).reconcile(NOW, 4, 4, &controller_pods(&[1000; 4], &[]));
    assert_eq!((out.desired_replicas, out.rescale), (4, false));
    assert_eq!(
        out.reason,
        "metrics error: invalid metrics (1 invalid out of 1), first error is: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
}

// Upstream: TestMoreReplicasThanSpecNoScale. During a 25% surge five pods run for a spec of four, all at
// target: upstream's current size is spec.replicas, and nothing changes.
#[test]
fn controller_more_replicas_than_spec_no_scale() {
    let out = controller(&legacy_hpa(1, 8, 50)).reconcile(NOW, 4, 4, &controller_pods(&[1000; 5], &[500; 5]));
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (4, false, Some(50)));
}

// Upstream: TestConvertDesiredReplicasWithRules (legacy limits; the cap is max(2 × current, 4)).
#[test]
fn legacy_convert_desired_replicas_with_rules() {
    assert_eq!(convert_desired_replicas_with_rules(5, 7, 3, 8), (7, "DesiredWithinRange"));
    assert_eq!(convert_desired_replicas_with_rules(3, 1, 2, 8), (2, "TooFewReplicas"));
    assert_eq!(convert_desired_replicas_with_rules(20, 1000, 1, 10), (10, "TooManyReplicas"));
    assert_eq!(convert_desired_replicas_with_rules(3, 1000, 1, 2000), (6, "ScaleUpLimit"));
    assert_eq!(calculate_scale_up_limit(1), 4);
    assert_eq!(calculate_scale_up_limit(3), 6);
}

// Upstream: TestNormalizeDesiredReplicas (legacy stabilizeRecommendation over a 5 minute window).
#[test]
fn legacy_stabilize_recommendation_log() {
    let cases: [(&str, Vec<Recommendation>, i32, i32, usize); 5] = [
        ("empty log", vec![], 5, 5, 1),
        ("stabilize", vec![rec(4, 2 * MINUTE), rec(5, MINUTE)], 3, 5, 3),
        ("no stabilize", vec![rec(1, 2 * MINUTE), rec(2, MINUTE)], 3, 3, 3),
        ("no stabilize - old recommendations", vec![rec(10, 10 * MINUTE), rec(9, 9 * MINUTE)], 3, 3, 2),
        (
            "stabilize - old recommendations",
            vec![rec(10, 10 * MINUTE), rec(4, MINUTE), rec(5, 2 * MINUTE), rec(9, 9 * MINUTE)],
            3,
            5,
            4,
        ),
    ];
    for (name, recommendations, desired, expected, log_length) in cases {
        let mut c = controller(&legacy_hpa(1, 10, 50));
        c.set_history(ControllerHistory { recommendations: Some(recommendations), ..ControllerHistory::default() });
        assert_eq!(c.stabilize_recommendation(NOW, desired), expected, "{name}");
        assert_eq!(c.history().recommendations.as_ref().unwrap().len(), log_length, "{name}");
    }
}

// Legacy path over simulated time (horizontal.go normalizeDesiredReplicas): each sync may at most reach
// max(2 × current, 4), so 1 → 4 → 8 → 16 → 20 while the load asks for 20.
#[test]
fn legacy_sequence_scale_up_cap() {
    let mut c = controller(&legacy_hpa(1, 20, 50));
    // The load asks for 20 pods at the 50% target (21 at the last step, capped by maxReplicas).
    let steps = [(1, 1000, 4), (4, 250, 8), (8, 125, 16), (16, 63, 20)];
    for (i, (current, per_pod, expected)) in steps.into_iter().enumerate() {
        let n = current as usize;
        let out =
            c.reconcile(NOW + i as i64 * 15_000, current, current, &controller_pods(&vec![100; n], &vec![per_pod; n]));
        assert_eq!((out.desired_replicas, out.rescale), (expected, true), "step {i}");
        let limited = if expected < 20 { "ScaleUpLimit" } else { "TooManyReplicas" };
        assert!(out.reason.starts_with(limited), "step {i}: {}", out.reason);
    }
    // The legacy path keeps no scale events.
    assert!(c.history().scale_up_events.is_empty() && c.history().scale_down_events.is_empty());
}

// Legacy path over simulated time: a downscale waits until every higher recommendation of the last 300 s
// has aged out, and outdated recommendation slots are reused rather than the log growing.
#[test]
fn legacy_sequence_downscale_stabilization() {
    let mut c = controller(&legacy_hpa(1, 10, 50));
    let out = c.reconcile(NOW, 6, 6, &controller_pods(&[1000; 6], &[500; 6]));
    assert_eq!((out.desired_replicas, out.rescale), (6, false));
    // The load drops to 10% of requests: the proposal is 2, held at 6 while t=0 is inside the window.
    let quiet = controller_pods(&[1000; 6], &[100; 6]);
    for t in (15_000..=300_000).step_by(15_000) {
        let out = c.reconcile(NOW + t, 6, 6, &quiet);
        assert_eq!((out.desired_replicas, out.rescale), (6, false), "t={t}");
        assert!(out.reason.starts_with("ScaleDownStabilized"), "t={t}: {}", out.reason);
    }
    let recorded = |c: &HpaController| c.history().recommendations.as_ref().unwrap().len();
    assert_eq!(recorded(&c), 22);
    // t=315 s: the recommendations of t=0 are older than 300 s.
    let out = c.reconcile(NOW + 315_000, 6, 6, &quiet);
    assert_eq!((out.desired_replicas, out.rescale), (2, true));
    assert_eq!(recorded(&c), 22, "an outdated slot was reused");
    // t=330 s at 2 pods the proposal is 1, but recent recommendations of 2 hold it.
    let out = c.reconcile(NOW + 330_000, 2, 2, &controller_pods(&[1000; 2], &[100; 2]));
    assert_eq!((out.desired_replicas, out.rescale), (2, false));
    assert_eq!(recorded(&c), 22);
}

// ---------------------------------------------------------------------------------------------------------
// Behavior path (horizontal_test.go)
// ---------------------------------------------------------------------------------------------------------

fn behavior_hpa(
    min: i32,
    max: i32,
    target: i32,
    scale_up: Option<&str>,
    scale_down: Option<&str>,
) -> HorizontalPodAutoscaler {
    let mut parts = Vec::new();
    if let Some(up) = scale_up {
        parts.push(format!("scaleUp: {up}"));
    }
    if let Some(down) = scale_down {
        parts.push(format!("scaleDown: {down}"));
    }
    manifest(min, max, &cpu_utilization(target), Some(&format!("{{{}}}", parts.join(", "))))
}

// Upstream: TestUpscaleCap. A 700% per minute policy caps 3 → 60 at 24.
#[test]
fn behavior_upscale_cap() {
    let hpa = behavior_hpa(1, 100, 10, Some(&scaling_rules(0, 0, 700, 60, 0)), None);
    let out = controller(&hpa).reconcile(NOW, 3, 3, &controller_pods(&[100; 3], &[100, 200, 300]));
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (24, true, Some(200)));
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
}

// Upstream: TestUpscaleCapGreaterThanMaxReplicas.
#[test]
fn behavior_upscale_cap_greater_than_max() {
    let hpa = behavior_hpa(1, 20, 10, Some(&scaling_rules(0, 0, 700, 60, 0)), None);
    let out = controller(&hpa).reconcile(NOW, 3, 3, &controller_pods(&[100; 3], &[100, 200, 300]));
    assert_eq!((out.desired_replicas, out.rescale), (20, true));
    assert!(out.reason.starts_with("TooManyReplicas"), "{}", out.reason);
}

// Upstream: TestScaleDownWithScalingRules. Only scale-up rules given; scale-down takes the defaults.
#[test]
fn behavior_scale_down_with_default_down_rules() {
    let hpa = behavior_hpa(2, 6, 50, Some(&scaling_rules(0, 0, 100, 15, 30)), None);
    let mut c = controller_with_empty_history(&hpa);
    let (up, down) = c.behavior().unwrap();
    assert_eq!((up.stabilization_window_seconds, down.stabilization_window_seconds), (30, 300));
    let out = c.reconcile(NOW, 5, 5, &controller_pods(&[1000; 5], &[100, 300, 500, 250, 250]));
    assert_eq!((out.desired_replicas, out.rescale), (3, true));
    assert_eq!(c.history().scale_down_events.len(), 1);
    assert_eq!(c.history().scale_down_events[0].replica_change, 2);
}

// Upstream: TestScalingWithRules, "scaleUp with default behavior" and the two "pods policy larger / percent
// policy larger" cases: selectPolicy Max picks the larger of +4 pods and +100%.
#[test]
fn behavior_default_scale_up_select_max() {
    let hpa = behavior_hpa(1, 1000, 50, Some("{}"), None);
    let c = with_events(&hpa, vec![], vec![]);
    assert_eq!(c.convert_desired_replicas_with_behavior_rate(NOW, 10, 50), (20, "ScaleUpLimit"));
    // Small deployments are limited by the Pods policy instead: 2 → 6, not 4.
    assert_eq!(c.convert_desired_replicas_with_behavior_rate(NOW, 2, 50), (6, "ScaleUpLimit"));
    let hpa = behavior_hpa(1, 1000, 50, Some(&scaling_rules(100, 60, 100, 60, 0)), None);
    assert_eq!(
        with_events(&hpa, vec![], vec![]).convert_desired_replicas_with_behavior_rate(NOW, 10, 500),
        (110, "ScaleUpLimit")
    );
    let hpa = behavior_hpa(1, 1000, 50, Some(&scaling_rules(2, 60, 100, 60, 0)), None);
    assert_eq!(
        with_events(&hpa, vec![], vec![]).convert_desired_replicas_with_behavior_rate(NOW, 10, 500),
        (20, "ScaleUpLimit")
    );
}

// Upstream: TestCalculateScaleUpLimitWithScalingRules and TestCalculateScaleDownLimitWithBehaviors:
// selectPolicy Min picks the smaller change (min limit up, max limit down).
#[test]
fn behavior_select_policy_min() {
    let rules = ScalingRules {
        stabilization_window_seconds: 300,
        select_policy: ScalingPolicySelect::Min,
        policies: vec![HpaScalingPolicy::pods(2, 60), HpaScalingPolicy::percent(50, 60)],
    };
    assert_eq!(calculate_scale_up_limit_with_scaling_rules(NOW, 1, &[], &[], &rules), 2);
    assert_eq!(calculate_scale_down_limit_with_behaviors(NOW, 5, &[], &[], &rules), 3);
    // The same through a manifest and a sync: 4 pods at 4× target, Min of (+2 pods, +25%) = 5 (Max: 6).
    let hpa = behavior_hpa(
        1,
        100,
        50,
        Some(
            "{selectPolicy: Min, policies: [{type: Pods, value: 2, periodSeconds: 60}, {type: Percent, value: 25, periodSeconds: 60}]}",
        ),
        None,
    );
    let out = controller(&hpa).reconcile(NOW, 4, 4, &controller_pods(&[100; 4], &[200; 4]));
    assert_eq!((out.desired_replicas, out.rescale), (5, true));
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
}

// Upstream: calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors with selectPolicy
// Disabled: that direction never moves, the other still does.
#[test]
fn behavior_select_policy_disabled() {
    let hpa = behavior_hpa(
        1,
        100,
        50,
        Some("{selectPolicy: Disabled}"),
        Some("{selectPolicy: Disabled, stabilizationWindowSeconds: 0}"),
    );
    let mut c = controller_with_empty_history(&hpa);
    let out = c.reconcile(NOW, 4, 4, &controller_pods(&[100; 4], &[200; 4]));
    assert_eq!((out.desired_replicas, out.rescale), (4, false));
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
    let out = c.reconcile(NOW + 15_000, 4, 4, &controller_pods(&[100; 4], &[5; 4]));
    assert_eq!((out.desired_replicas, out.rescale), (4, false));
    assert!(out.reason.starts_with("ScaleDownLimit"), "{}", out.reason);
    // Only scale-up disabled: scaling down still works.
    let hpa = behavior_hpa(1, 100, 50, Some("{selectPolicy: Disabled}"), Some("{stabilizationWindowSeconds: 0}"));
    let out = controller_with_empty_history(&hpa).reconcile(NOW, 4, 4, &controller_pods(&[100; 4], &[5; 4]));
    assert_eq!((out.desired_replicas, out.rescale), (1, true));
}

// Upstream: TestNormalizeDesiredReplicasWithBehavior ("simple scale down stabilization", "scale down
// stabilization, reuse one of obsolete recommendation element", "scale up stabilization, reuse one of
// obsolete recommendation element").
#[test]
fn behavior_stabilization_windows() {
    let values = |c: &HpaController| -> Vec<i32> {
        c.history().recommendations.as_ref().unwrap().iter().map(|r| r.recommendation).collect()
    };
    let down_180 =
        behavior_hpa(1, 1000, 50, Some("{stabilizationWindowSeconds: 0}"), Some("{stabilizationWindowSeconds: 180}"));
    let mut c = controller(&down_180);
    c.set_history(ControllerHistory {
        recommendations: Some(vec![rec(4, 2 * MINUTE), rec(5, MINUTE)]),
        ..ControllerHistory::default()
    });
    assert_eq!(c.stabilize_recommendation_with_behaviors(NOW, 100, 3), (5, "ScaleDownStabilized"));
    assert_eq!(values(&c), vec![4, 5, 3]);

    let mut c = controller(&down_180);
    c.set_history(ControllerHistory {
        recommendations: Some(vec![rec(10, 10 * MINUTE), rec(4, MINUTE), rec(5, 2 * MINUTE), rec(9, 9 * MINUTE)]),
        ..ControllerHistory::default()
    });
    assert_eq!(c.stabilize_recommendation_with_behaviors(NOW, 100, 3).0, 5);
    assert_eq!(values(&c), vec![10, 4, 5, 3]);

    let up_300 =
        behavior_hpa(1, 1000, 50, Some("{stabilizationWindowSeconds: 300}"), Some("{stabilizationWindowSeconds: 0}"));
    let mut c = controller(&up_300);
    c.set_history(ControllerHistory {
        recommendations: Some(vec![rec(10, 100 * MINUTE), rec(6, MINUTE), rec(5, 2 * MINUTE), rec(9, 3 * MINUTE)]),
        ..ControllerHistory::default()
    });
    assert_eq!(c.stabilize_recommendation_with_behaviors(NOW, 1, 100), (5, "ScaleUpStabilized"));
    assert_eq!(values(&c), vec![100, 6, 5, 9]);
}

// Behavior path over simulated time: the default scale-down window (the controller's 300 s) holds the
// highest recommendation of the last five minutes, then lets go.
#[test]
fn behavior_sequence_scale_down_stabilization_window() {
    let hpa = behavior_hpa(1, 10, 50, Some("{}"), Some("{}"));
    let mut c = controller(&hpa);
    // t=0: 4 pods at 75% of a 50% target → 6.
    let out = c.reconcile(NOW, 4, 4, &controller_pods(&[1000; 4], &[750; 4]));
    assert_eq!((out.desired_replicas, out.rescale), (6, true));
    // t=60 s: 6 pods at 40% → 5 (ceil(0.8 × 6)), held at 6.
    let out = c.reconcile(NOW + 60_000, 6, 6, &controller_pods(&[1000; 6], &[400; 6]));
    assert_eq!((out.desired_replicas, out.rescale), (6, false));
    assert!(out.reason.starts_with("ScaleDownStabilized"), "{}", out.reason);
    // t=120 s .. 300 s: 10% → 2; the highest recommendation within 300 s is still 6 (from t=0).
    let quiet = controller_pods(&[1000; 6], &[100; 6]);
    for t in [120_000, 180_000, 240_000, 299_000] {
        let out = c.reconcile(NOW + t, 6, 6, &quiet);
        assert_eq!((out.desired_replicas, out.rescale), (6, false), "t={t}");
    }
    // t=301 s: t=0 is out of the window; t=60 s (5) is the highest left.
    let out = c.reconcile(NOW + 301_000, 6, 6, &quiet);
    assert_eq!((out.desired_replicas, out.rescale), (5, true));
    // t=361 s: only 2s remain.
    let out = c.reconcile(NOW + 361_000, 5, 5, &controller_pods(&[1000; 5], &[100; 5]));
    assert_eq!((out.desired_replicas, out.rescale), (2, true));
}

// Behavior path over simulated time: a 50% per minute scale-down policy counts the replicas already
// removed within the minute, and truncates (10 → 5, then 5 → 2 rather than 3).
#[test]
fn behavior_sequence_scale_down_percent_limit_counts_earlier_events() {
    let down = "{stabilizationWindowSeconds: 0, policies: [{type: Percent, value: 50, periodSeconds: 60}]}";
    let hpa = behavior_hpa(1, 10, 50, Some("{}"), Some(down));
    let mut c = controller(&hpa);
    let quiet = |n: usize| controller_pods(&vec![1000; n], &vec![50; n]);
    let out = c.reconcile(NOW, 10, 10, &quiet(10));
    assert_eq!((out.desired_replicas, out.rescale), (5, true));
    assert!(out.reason.starts_with("ScaleDownLimit"), "{}", out.reason);
    // Within the minute the period started at 10: 50% of 10 is already reached.
    for t in [15_000, 30_000, 59_999] {
        let out = c.reconcile(NOW + t, 5, 5, &quiet(5));
        assert_eq!((out.desired_replicas, out.rescale), (5, false), "t={t}");
        assert!(out.reason.starts_with("ScaleDownLimit"), "t={t}: {}", out.reason);
    }
    // At t=60 s the event is no longer inside the period: 5 × 50% = 2.5, truncated to 2.
    let out = c.reconcile(NOW + 60_000, 5, 5, &quiet(5));
    assert_eq!((out.desired_replicas, out.rescale), (2, true));
    assert_eq!(
        c.history().scale_down_events.iter().map(|e| e.replica_change).collect::<Vec<_>>(),
        vec![5, 3],
        "the first event was not yet older than the longest period, so the list grew"
    );
}

// Behavior path: default scale-up policies over successive syncs, each 15 s period starting afresh:
// 2 → 6 (+4 pods beats +100%), then 6 → 12 (+100% beats +4).
#[test]
fn behavior_sequence_default_scale_up() {
    let hpa = behavior_hpa(1, 100, 10, None, Some("{}"));
    let mut c = controller(&hpa);
    let out = c.reconcile(NOW, 2, 2, &controller_pods(&[100; 2], &[500; 2]));
    assert_eq!((out.desired_replicas, out.rescale), (6, true));
    // Within the same 15 s period the +4 is already spent (period start 2 → limit 6).
    let out = c.reconcile(NOW + 14_999, 6, 6, &controller_pods(&[100; 6], &[500; 6]));
    assert_eq!((out.desired_replicas, out.rescale), (6, false));
    let out = c.reconcile(NOW + 15_000, 6, 6, &controller_pods(&[100; 6], &[500; 6]));
    assert_eq!((out.desired_replicas, out.rescale), (12, true));
}

// Upstream: TestScalingWithRules, the cases with previous events.
#[test]
fn behavior_rate_limits_with_previous_events() {
    let up = |rules: &str, events: &[i32]| {
        with_events(&behavior_hpa(1, 1000, 50, Some(rules), None), uniform_events(events, 120), vec![])
    };
    let down = |rules: &str, events: &[i32]| {
        with_events(&behavior_hpa(1, 1000, 50, None, Some(rules)), vec![], uniform_events(events, 120))
    };
    // "scaleUp with pod policy and previous scale up events": 100 - 15 + 150.
    assert_eq!(
        up(&scaling_rules(150, 120, 0, 0, 0), &[1, 5, 9]).convert_desired_replicas_with_behavior_rate(NOW, 100, 500),
        (235, "ScaleUpLimit")
    );
    // "scaleUp with percent policy and previous scale up events": (100 - 15) × 3.
    assert_eq!(
        up(&scaling_rules(0, 0, 200, 120, 0), &[1, 5, 9]).convert_desired_replicas_with_behavior_rate(NOW, 100, 500),
        (255, "ScaleUpLimit")
    );
    // "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events".
    assert_eq!(
        up(&scaling_rules(5, 120, 0, 0, 0), &[1, 5, 9]).convert_desired_replicas_with_behavior_rate(NOW, 100, 500),
        (100, "ScaleUpLimit")
    );
    // "scaleDown with pod policy limitation and previous events": 100 + 15 - 5 > 100, keep 100.
    assert_eq!(
        down(&scaling_rules(5, 120, 0, 0, 300), &[1, 5, 9]).convert_desired_replicas_with_behavior_rate(NOW, 100, 2),
        (100, "ScaleDownLimit")
    );
    // "scaleDown with percent policy limitation and previous events": (100 + 12) × 50%.
    assert_eq!(
        down(&scaling_rules(0, 0, 50, 120, 300), &[2, 4, 6]).convert_desired_replicas_with_behavior_rate(NOW, 100, 0),
        (56, "ScaleDownLimit")
    );
    // "scaleDown with previous events preventing further scale down": (100 + 30) × 90% = 117 > 100.
    assert_eq!(
        down(&scaling_rules(0, 0, 10, 120, 300), &[10, 10, 10])
            .convert_desired_replicas_with_behavior_rate(NOW, 100, 0),
        (100, "ScaleDownLimit")
    );
    // "scaleDown with spec MinReplicas limitation with large percent policy and previous events".
    let min5 = with_events(
        &behavior_hpa(5, 1000, 50, None, Some(&scaling_rules(0, 0, 100, 120, 300))),
        vec![],
        uniform_events(&[1, 5, 9], 120),
    );
    assert_eq!(min5.convert_desired_replicas_with_behavior_rate(NOW, 100, 2), (5, "TooFewReplicas"));
    // "scaleUp with spec MaxReplicas limitation with large pod policy and events".
    let max200 = with_events(
        &behavior_hpa(1, 200, 50, Some(&scaling_rules(300, 60, 0, 0, 0)), None),
        uniform_events(&[1, 5, 9], 120),
        vec![],
    );
    assert_eq!(max200.convert_desired_replicas_with_behavior_rate(NOW, 100, 500), (200, "TooManyReplicas"));
}

// Upstream: TestStoreScaleEvents, "replace one entry, use policies with different periods" and "two
// entries, both actual".
#[test]
fn behavior_store_scale_events() {
    let at = |change: i32, age_s: i64| ScaleEvent {
        replica_change: change,
        timestamp_ms: NOW - age_s * 1000,
        outdated: false,
    };
    let summary = |events: &[ScaleEvent]| events.iter().map(|e| (e.replica_change, e.outdated)).collect::<Vec<_>>();

    let rules = scaling_rules(10, 60, 100, 30, 0);
    let prev = vec![at(8, 29), at(6, 59), at(7, 61), at(9, 61)];
    assert_eq!(get_replicas_change_per_period(NOW, 60, &prev), 14);
    let mut c = with_events(&behavior_hpa(1, 100, 50, Some(&rules), None), prev.clone(), vec![]);
    c.store_scale_event(NOW, 10, 15);
    assert_eq!(summary(&c.history().scale_up_events), vec![(8, false), (6, false), (7, true), (5, false)]);
    let mut c = with_events(&behavior_hpa(1, 100, 50, None, Some(&rules)), vec![], prev);
    c.store_scale_event(NOW, 10, 5);
    assert_eq!(summary(&c.history().scale_down_events), vec![(8, false), (6, false), (7, true), (5, false)]);

    let rules = scaling_rules(10, 120, 100, 30, 0);
    let prev = vec![at(7, 58), at(6, 59)];
    assert_eq!(get_replicas_change_per_period(NOW, 60, &prev), 13);
    let mut c = with_events(&behavior_hpa(1, 100, 50, Some(&rules), None), prev, vec![]);
    c.store_scale_event(NOW, 10, 15);
    assert_eq!(summary(&c.history().scale_up_events), vec![(7, false), (6, false), (5, false)]);

    // "empty entries with default behavior": without a behavior nothing is stored.
    let mut c = controller(&legacy_hpa(1, 100, 50));
    c.store_scale_event(NOW, 10, 15);
    assert!(c.history().scale_up_events.is_empty());
}

// Upstream: KEP-4951 configurable tolerance (tolerancesForHpa): a behavior's per-direction tolerance
// replaces the controller's 0.1 for that direction only.
#[test]
fn behavior_configurable_tolerance() {
    // 52% of a 50% target (ratio 1.04): inside the default band, outside a 0.02 scale-up tolerance.
    let pods = controller_pods(&[1000; 10], &[525; 10]);
    let out = controller(&legacy_hpa(1, 20, 50)).reconcile(NOW, 10, 10, &pods);
    assert_eq!((out.desired_replicas, out.rescale), (10, false));
    let hpa = behavior_hpa(1, 20, 50, Some("{tolerance: \"0.02\"}"), None);
    let c = controller(&hpa);
    assert_eq!(c.tolerances(), Tolerances { scale_down: 0.1, scale_up: 0.02 });
    let out = controller(&hpa).reconcile(NOW, 10, 10, &pods);
    assert_eq!((out.desired_replicas, out.rescale), (11, true));
}

// Upstream: computeReplicasForMetrics (TestScaleUpOneMetricInvalid, TestNoScaleDownOneMetricInvalid):
// the largest proposal wins; a failing metric does not block a scale-up but does block a scale-down.
#[test]
fn controller_multiple_metrics() {
    let metrics = "[{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 30}}}, {type: Resource, resource: {name: memory, target: {type: AverageValue, averageValue: 1Mi}}}]";
    let hpa = manifest(1, 10, metrics, None);
    // cpu wants 4 (40% of 30%), memory (2 MiB average of 1 MiB) wants 6.
    let mut pods = controller_pods(&[1000; 3], &[400; 3]);
    for pod in &mut pods {
        pod.metric.as_mut().unwrap().memory_bytes = 2 << 20;
    }
    let out = controller(&hpa).reconcile(NOW, 3, 3, &pods);
    assert_eq!((out.desired_replicas, out.rescale, out.utilization), (6, true, Some(40)));
    assert_eq!(out.metrics.len(), 2);
    assert_eq!(out.metrics[0].result.as_ref().unwrap().replicas, 4);
    assert_eq!(out.reason, "memory average 2.0Mi above target 1Mi");

    // A memory utilization metric fails for lack of memory requests.
    let metrics = "[{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 30}}}, {type: Resource, resource: {name: memory, target: {type: Utilization, averageUtilization: 50}}}]";
    let hpa = manifest(1, 10, metrics, None);
    let mut pods = controller_pods(&[1000; 3], &[300, 400, 500]);
    for pod in &mut pods {
        pod.memory_request_bytes = 0;
    }
    let out = controller(&hpa).reconcile(NOW, 3, 3, &pods);
    assert_eq!((out.desired_replicas, out.rescale), (4, true));
    let mut pods = controller_pods(&[1000; 5], &[100, 300, 500, 250, 250]);
    for pod in &mut pods {
        pod.memory_request_bytes = 0;
    }
    let mut c = controller_with_empty_history(&manifest(1, 10, &metrics.replace("30}", "50}"), None));
    let out = c.reconcile(NOW, 5, 5, &pods);
    assert_eq!((out.desired_replicas, out.rescale), (5, false));
    assert!(out.reason.starts_with("metrics error: invalid metrics (1 invalid out of 2)"), "{}", out.reason);
}

#[test]
fn controller_exposes_target_and_sync_period() {
    let c = controller(&legacy_hpa(1, 5, 60));
    assert_eq!(c.target_deployment(), "test-dep");
    assert_eq!(c.sync_period_ms(), 15_000);
    assert_eq!(HpaController::new(&legacy_hpa(1, 5, 60), ControllerConfig::default()).sync_period_ms(), 15_000);
    assert_eq!(ControllerConfig::default().downscale_stabilization_window_ms, 300_000);
    assert_eq!(
        CalculatorConfig::default(),
        CalculatorConfig { tolerance: 0.1, cpu_initialization_period_ms: 300_000, initial_readiness_delay_ms: 30_000 }
    );
}

// ---------------------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------------------

const VALID: &str = r#"# two HPAs in one stream
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: frontend
  namespace: shop
  uid: 3c1f0b6e-0000-4000-8000-000000000000
  creationTimestamp: "2024-01-01T00:00:00Z"
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: frontend
  minReplicas: 2
  maxReplicas: 12
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 60
    - type: Resource
      resource:
        name: memory
        target:
          type: AverageValue
          averageValue: 500Mi
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 120
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
      tolerance: "0.05"
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: cart
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: cart}
  maxReplicas: 4
"#;

#[test]
fn manifest_valid_with_behavior_and_defaults() {
    let hpas = parse_manifests(VALID, Path::new("hpa.yaml")).unwrap();
    assert_eq!(hpas.len(), 2);
    let frontend = &hpas[0];
    assert_eq!(frontend.metadata.name, "frontend");
    assert_eq!(frontend.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(frontend.spec.min_replicas, Some(2));
    assert_eq!(frontend.spec.metrics().len(), 2);
    let memory = frontend.spec.metrics()[1].resource.as_ref().unwrap();
    assert_eq!(memory.target.average_value.as_ref().map(Quantity::value), Some(500 * 1024 * 1024));
    let behavior = frontend.spec.behavior.as_ref().unwrap();
    // The scale-up rules were absent: filled with upstream's defaults.
    let up = behavior.scale_up.as_ref().unwrap();
    assert_eq!(up.stabilization_window_seconds, Some(0));
    assert_eq!(up.select_policy, Some(ScalingPolicySelect::Max));
    assert_eq!(up.policies, Some(vec![HpaScalingPolicy::pods(4, 15), HpaScalingPolicy::percent(100, 15)]));
    // The scale-down rules keep what was given and default the select policy.
    let down = behavior.scale_down.as_ref().unwrap();
    assert_eq!(down.stabilization_window_seconds, Some(120));
    assert_eq!(down.select_policy, Some(ScalingPolicySelect::Max));
    assert_eq!(down.policies, Some(vec![HpaScalingPolicy::pods(1, 60)]));
    assert_eq!(down.tolerance.as_ref().map(Quantity::as_f64), Some(0.05));

    // The second HPA: minReplicas 1, 80% CPU, and no behavior (legacy path).
    let cart = &hpas[1];
    assert_eq!(cart.spec.min_replicas, Some(1));
    assert!(cart.spec.behavior.is_none());
    let cpu = cart.spec.metrics()[0].resource.as_ref().unwrap();
    assert_eq!((cpu.name, cpu.target.average_utilization), (ResourceName::Cpu, Some(80)));

    // An empty behavior gets both default rule sets; the scale-down window stays for the controller.
    let hpa = behavior_hpa(1, 5, 50, None, None);
    let behavior = hpa.spec.behavior.as_ref().unwrap();
    assert_eq!(behavior.scale_down.as_ref().unwrap().stabilization_window_seconds, None);
    assert_eq!(behavior.scale_down.as_ref().unwrap().policies, Some(vec![HpaScalingPolicy::percent(100, 15)]));
    let (_, down) = controller(&hpa).behavior().map(|(u, d)| (u.clone(), d.clone())).unwrap();
    assert_eq!(down.stabilization_window_seconds, 300);

    // Round trip: what serializes parses back to the same thing.
    let json = serde_json::to_string(&hpas).unwrap();
    let back: Vec<HorizontalPodAutoscaler> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, hpas);
}

#[test]
fn manifest_load_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hpa.yaml");
    std::fs::write(&path, VALID).unwrap();
    assert_eq!(load_manifests(&path).unwrap().len(), 2);
    let err = load_manifests(&dir.path().join("absent.yaml")).unwrap_err();
    assert_eq!(err.field, "");
    assert!(err.message.starts_with("cannot read file"), "{err}");
}

const BASE: &str = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  minReplicas: 1\n  maxReplicas: 5\n  metrics:\n    - type: Resource\n      resource:\n        name: cpu\n        target:\n          type: Utilization\n          averageUtilization: 60\n  behavior:\n    scaleUp:\n      stabilizationWindowSeconds: 0\n    scaleDown:\n      policies:\n        - type: Percent\n          value: 50\n          periodSeconds: 60\n";

/// (what to replace in BASE, replacement, expected field path, expected text in the message)
const INVALID: &[(&str, &str, &str, &str)] = &[
    ("apiVersion: autoscaling/v2", "apiVersion: autoscaling/v1", "document 1: apiVersion", "autoscaling/v2"),
    ("kind: HorizontalPodAutoscaler", "kind: Deployment", "document 1: kind", "HorizontalPodAutoscaler"),
    (
        "kind: Deployment\n    name: web",
        "kind: StatefulSet\n    name: web",
        "document 1: spec.scaleTargetRef.kind",
        "Deployment",
    ),
    ("minReplicas: 1", "minReplicas: 0", "document 1: spec.minReplicas", "at least 1"),
    ("maxReplicas: 5", "maxReplicas: 0", "document 1: spec.maxReplicas", "minReplicas"),
    ("maxReplicas: 5", "maxReplica: 5", "document 1: spec.maxReplica", "unknown field"),
    (
        "periodSeconds: 60",
        "periodSeconds: 0",
        "document 1: spec.behavior.scaleDown.policies[0].periodSeconds",
        "between 1 and 1800",
    ),
    (
        "periodSeconds: 60",
        "periodSeconds: 1801",
        "document 1: spec.behavior.scaleDown.policies[0].periodSeconds",
        "between 1 and 1800",
    ),
    ("value: 50", "value: 0", "document 1: spec.behavior.scaleDown.policies[0].value", "greater than 0"),
    (
        "stabilizationWindowSeconds: 0",
        "stabilizationWindowSeconds: 3601",
        "document 1: spec.behavior.scaleUp.stabilizationWindowSeconds",
        "between 0 and 3600",
    ),
    (
        "stabilizationWindowSeconds: 0",
        "selectPolicy: Maximum",
        "document 1: spec.behavior.scaleUp.selectPolicy",
        "unknown variant",
    ),
    (
        "stabilizationWindowSeconds: 0",
        "policies: []",
        "document 1: spec.behavior.scaleUp.policies",
        "at least one policy",
    ),
    (
        "periodSeconds: 60\n",
        "periodSeconds: 60\n      tolerance: \"-0.1\"\n",
        "document 1: spec.behavior.scaleDown.tolerance",
        "greater than or equal to 0",
    ),
    ("- type: Resource", "- type: Pods", "document 1: spec.metrics[0].type", "not supported by this controller port"),
    ("name: cpu", "name: gpu", "document 1: spec.metrics[0].resource.name", "unknown variant"),
    (
        "averageUtilization: 60",
        "averageUtilization: 0",
        "document 1: spec.metrics[0].resource.target.averageUtilization",
        "greater than 0",
    ),
    (
        "type: Utilization\n          averageUtilization: 60",
        "type: AverageValue\n          averageValue: 12q",
        "document 1: spec.metrics[0].resource.target.averageValue",
        "not a quantity",
    ),
    (
        "type: Utilization\n          averageUtilization: 60",
        "type: AverageValue",
        "document 1: spec.metrics[0].resource.target.averageValue",
        "required",
    ),
];

#[test]
fn manifest_invalid_cases_name_the_field() {
    assert!(parse_manifests(BASE, Path::new("hpa.yaml")).is_ok());
    for &(from, to, field, message) in INVALID {
        assert!(BASE.contains(from), "fixture text {from:?} not in BASE");
        let text = BASE.replacen(from, to, 1);
        let err = parse_manifests(&text, Path::new("hpa.yaml")).expect_err(field);
        assert_eq!(err.field, field, "replacing {from:?} with {to:?}: {err}");
        assert!(err.message.contains(message), "replacing {from:?} with {to:?}: {err}");
        assert_eq!(err.file, Path::new("hpa.yaml"));
    }
}

#[test]
fn manifest_errors_name_the_document() {
    // The second document is broken; a stray empty document before it still counts.
    let text = format!("{BASE}---\n---\n{}", BASE.replacen("periodSeconds: 60", "periodSeconds: 0", 1));
    let err = parse_manifests(&text, Path::new("hpa.yaml")).unwrap_err();
    assert_eq!(err.field, "document 3: spec.behavior.scaleDown.policies[0].periodSeconds");
    let text = format!("{BASE}---\n{}", BASE.replacen("periodSeconds: 60", "periodSeconds: 0", 1));
    let err = parse_manifests(&text, Path::new("hpa.yaml")).unwrap_err();
    assert_eq!(err.field, "document 2: spec.behavior.scaleDown.policies[0].periodSeconds");
    assert!(err.to_string().starts_with("hpa.yaml: document 2: spec.behavior"), "{err}");
}

#[test]
fn quantity_parser() {
    let milli = |s: &str| Quantity::parse(s).unwrap().milli_value();
    let bytes = |s: &str| Quantity::parse(s).unwrap().value();
    assert_eq!(milli("200m"), 200);
    assert_eq!(milli("1"), 1000);
    assert_eq!(milli("1.5"), 1500);
    assert_eq!(milli("250m"), 250);
    assert_eq!(bytes("500Mi"), 524_288_000);
    assert_eq!(bytes("1.5Gi"), 1_610_612_736);
    assert_eq!(bytes("1G"), 1_000_000_000);
    assert_eq!(bytes("128974848"), 128_974_848);
    assert_eq!(bytes("129e6"), 129_000_000);
    assert_eq!(bytes("123Mi"), 128_974_848);
    for bad in ["", "1.5.5", "12q", "Mi", "1 Mi", "0x10"] {
        assert!(Quantity::parse(bad).is_err(), "{bad:?}");
    }
}
