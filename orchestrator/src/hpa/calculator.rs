//! The replica calculator: upstream `replica_calculator.go` and `metrics/utilization.go` for Resource metrics.
//!
//! Pure and deterministic: the caller passes the pods (with their metrics-server samples) and `now_ms`.
//! Values are handled in milli-units, as upstream reads every quantity with `MilliValue()`: millicores for
//! cpu, thousandths of a byte for memory. That keeps integer truncations identical to upstream.

use std::collections::BTreeMap;

use super::manifest::ResourceName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One metrics-server sample of a pod: container usage summed over the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    /// When the sample's window ended.
    pub timestamp_ms: i64,
    /// How long the sample averaged over.
    pub window_ms: i64,
}

/// What the controller sees of one pod matched by the target's selector.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub name: String,
    pub phase: PodPhase,
    /// deletionTimestamp is set.
    pub deleting: bool,
    /// The Ready condition's status; None when the pod has no Ready condition.
    pub ready: Option<bool>,
    /// The Ready condition's lastTransitionTime.
    pub ready_transition_ms: i64,
    /// status.startTime; None before the kubelet accepted the pod.
    pub start_time_ms: Option<i64>,
    /// Container requests summed over the pod; 0 means no request.
    pub cpu_request_milli: i64,
    pub memory_request_bytes: i64,
    /// None when metrics-server has no sample for this pod.
    pub metric: Option<MetricSample>,
}

impl PodSample {
    fn request_milli(&self, resource: ResourceName) -> i64 {
        match resource {
            ResourceName::Cpu => self.cpu_request_milli,
            ResourceName::Memory => self.memory_request_bytes.saturating_mul(1000),
        }
    }
}

fn usage_milli(sample: &MetricSample, resource: ResourceName) -> i64 {
    match resource {
        ResourceName::Cpu => sample.cpu_milli,
        ResourceName::Memory => sample.memory_bytes.saturating_mul(1000),
    }
}

/// kube-controller-manager flags the calculator reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalculatorConfig {
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub cpu_initialization_period_ms: i64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub initial_readiness_delay_ms: i64,
}

impl Default for CalculatorConfig {
    fn default() -> Self {
        CalculatorConfig { tolerance: 0.1, cpu_initialization_period_ms: 300_000, initial_readiness_delay_ms: 30_000 }
    }
}

/// The band around a usage ratio of 1.0 inside which nothing changes; per direction since KEP-4951.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub scale_down: f64,
    pub scale_up: f64,
}

impl Tolerances {
    pub fn uniform(tolerance: f64) -> Tolerances {
        Tolerances { scale_down: tolerance, scale_up: tolerance }
    }

    pub fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

/// A replica proposal for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCalculation {
    pub replicas: i32,
    /// Percent of requests (integer, truncated); None for an average-value target.
    pub utilization: Option<i32>,
    /// Average usage per pod that had a metric, in milli-units (millicores, or thousandths of a byte).
    pub raw_average_milli: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("unable to get metrics for resource {resource}: no metrics returned from resource metrics API")]
    NoMetrics { resource: ResourceName },
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyMetrics,
    #[error("missing request for {resource} in pod {pod}")]
    MissingRequest { pod: String, resource: ResourceName },
    #[error("no metrics returned matched known pods")]
    NoMatchedRequests,
}

/// How `groupPods` sorted the pods: indices into the pod slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodGroups {
    pub ready_pod_count: usize,
    /// Pending, or (cpu only) not ready / still initializing with a stale sample.
    pub unready: Vec<usize>,
    /// No sample from metrics-server.
    pub missing: Vec<usize>,
    /// Being deleted, or failed.
    pub ignored: Vec<usize>,
}

/// Upstream `groupPods`. Readiness only matters for cpu, whose usage spikes while a pod starts.
pub fn group_pods(pods: &[PodSample], resource: ResourceName, config: &CalculatorConfig, now_ms: i64) -> PodGroups {
    let mut groups = PodGroups::default();
    for (i, pod) in pods.iter().enumerate() {
        if pod.deleting || pod.phase == PodPhase::Failed {
            groups.ignored.push(i);
            continue;
        }
        if pod.phase == PodPhase::Pending {
            groups.unready.push(i);
            continue;
        }
        let Some(metric) = &pod.metric else {
            groups.missing.push(i);
            continue;
        };
        if resource == ResourceName::Cpu {
            let unready = match (pod.ready, pod.start_time_ms) {
                (Some(ready), Some(start)) => {
                    if start + config.cpu_initialization_period_ms > now_ms {
                        // Still initializing: trust the sample only if the pod is ready and a whole metric
                        // window has passed since it became so.
                        !ready || metric.timestamp_ms < pod.ready_transition_ms + metric.window_ms
                    } else {
                        // Past initialization: drop only a pod that is unready and has never been ready.
                        !ready && start + config.initial_readiness_delay_ms > pod.ready_transition_ms
                    }
                }
                _ => true,
            };
            if unready {
                groups.unready.push(i);
                continue;
            }
        }
        groups.ready_pod_count += 1;
    }
    groups
}

/// Upstream `GetResourceUtilizationRatio`: (usage ratio, utilization percent, raw average).
fn resource_utilization_ratio(
    metrics: &BTreeMap<usize, i64>,
    requests: &[i64],
    target_utilization: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let mut metrics_total: i128 = 0;
    let mut requests_total: i128 = 0;
    let mut entries: i128 = 0;
    for (&pod, &value) in metrics {
        metrics_total += i128::from(value);
        requests_total += i128::from(requests[pod]);
        entries += 1;
    }
    if requests_total == 0 {
        return Err(CalcError::NoMatchedRequests);
    }
    let utilization = (metrics_total * 100 / requests_total).clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
    let raw_average = (metrics_total / entries).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    Ok((f64::from(utilization) / f64::from(target_utilization), utilization, raw_average))
}

/// Upstream `GetMetricUsageRatio`: (usage ratio, average usage).
fn metric_usage_ratio(metrics: &BTreeMap<usize, i64>, target_usage: i64) -> (f64, i64) {
    let total: i128 = metrics.values().map(|&v| i128::from(v)).sum();
    let average = (total / metrics.len() as i128).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    (average as f64 / target_usage as f64, average)
}

// Go's int32(math.Ceil(x)); saturating where Go would overflow.
fn ceil_to_i32(x: f64) -> i32 {
    x.ceil() as i32
}

/// Upstream `ReplicaCalculator`, for Resource metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReplicaCalculator {
    pub config: CalculatorConfig,
}

impl ReplicaCalculator {
    pub fn new(config: CalculatorConfig) -> ReplicaCalculator {
        ReplicaCalculator { config }
    }

    // The samples metrics-server returned, keyed by pod index.
    fn fetch_metrics(pods: &[PodSample], resource: ResourceName) -> Result<BTreeMap<usize, i64>, CalcError> {
        let metrics: BTreeMap<usize, i64> = pods
            .iter()
            .enumerate()
            .filter_map(|(i, pod)| pod.metric.as_ref().map(|m| (i, usage_milli(m, resource))))
            .collect();
        if metrics.is_empty() {
            return Err(CalcError::NoMetrics { resource });
        }
        Ok(metrics)
    }

    /// Upstream `GetResourceReplicas`: replicas for a target utilization (percent of requests).
    pub fn get_resource_replicas(
        &self,
        now_ms: i64,
        current_replicas: i32,
        target_utilization: i32,
        resource: ResourceName,
        tolerances: Tolerances,
        pods: &[PodSample],
    ) -> Result<ReplicaCalculation, CalcError> {
        let mut metrics = Self::fetch_metrics(pods, resource)?;
        if pods.is_empty() {
            return Err(CalcError::NoPods);
        }
        let groups = group_pods(pods, resource, &self.config, now_ms);
        for i in groups.ignored.iter().chain(&groups.unready) {
            metrics.remove(i);
        }
        if metrics.is_empty() {
            return Err(CalcError::NoReadyMetrics);
        }
        // Requests of every listed pod, ignored ones included, as upstream computes them.
        let mut requests = Vec::with_capacity(pods.len());
        for pod in pods {
            let request = pod.request_milli(resource);
            if request <= 0 {
                return Err(CalcError::MissingRequest { pod: pod.name.clone(), resource });
            }
            requests.push(request);
        }

        let (usage_ratio, utilization, raw_average) =
            resource_utilization_ratio(&metrics, &requests, target_utilization)?;
        let result =
            |replicas| ReplicaCalculation { replicas, utilization: Some(utilization), raw_average_milli: raw_average };

        let scale_up_with_unready = !groups.unready.is_empty() && usage_ratio > 1.0;
        if !scale_up_with_unready && groups.missing.is_empty() {
            if tolerances.is_within(usage_ratio) {
                return Ok(result(current_replicas));
            }
            return Ok(result(ceil_to_i32(usage_ratio * groups.ready_pod_count as f64)));
        }

        if !groups.missing.is_empty() {
            if usage_ratio < 1.0 {
                // Scaling down: assume a pod without a sample uses all of its request, or the target when
                // the target is above 100%, so that it never argues for a deeper cut.
                let fallback = i64::from(target_utilization.max(100));
                for &i in &groups.missing {
                    metrics.insert(i, requests[i] * fallback / 100);
                }
            } else if usage_ratio > 1.0 {
                // Scaling up: assume it uses nothing, so that it never argues for a larger step.
                for &i in &groups.missing {
                    metrics.insert(i, 0);
                }
            }
        }
        if scale_up_with_unready {
            // Unready pods will soon take load: count them as idle so the step stays cautious.
            for &i in &groups.unready {
                metrics.insert(i, 0);
            }
        }

        let (new_usage_ratio, _, _) = resource_utilization_ratio(&metrics, &requests, target_utilization)?;
        if tolerances.is_within(new_usage_ratio)
            || (usage_ratio < 1.0 && new_usage_ratio > 1.0)
            || (usage_ratio > 1.0 && new_usage_ratio < 1.0)
        {
            // Too small a change, or the fallbacks flipped the direction: hold.
            return Ok(result(current_replicas));
        }
        let new_replicas = ceil_to_i32(new_usage_ratio * metrics.len() as f64);
        if (new_usage_ratio < 1.0 && new_replicas > current_replicas)
            || (new_usage_ratio > 1.0 && new_replicas < current_replicas)
        {
            // Counting more pods than are running would move against the ratio's direction: hold.
            return Ok(result(current_replicas));
        }
        Ok(result(new_replicas))
    }

    /// Upstream `GetRawResourceReplicas` (`calcPlainMetricReplicas`): replicas for a target average usage per
    /// pod, in milli-units (a Quantity's `MilliValue()`: "500m" cpu is 500, "1Mi" memory is 1_048_576_000).
    pub fn get_raw_resource_replicas(
        &self,
        now_ms: i64,
        current_replicas: i32,
        target_average_milli: i64,
        resource: ResourceName,
        tolerances: Tolerances,
        pods: &[PodSample],
    ) -> Result<ReplicaCalculation, CalcError> {
        let mut metrics = Self::fetch_metrics(pods, resource)?;
        if pods.is_empty() {
            return Err(CalcError::NoPods);
        }
        let groups = group_pods(pods, resource, &self.config, now_ms);
        for i in groups.ignored.iter().chain(&groups.unready) {
            metrics.remove(i);
        }
        if metrics.is_empty() {
            return Err(CalcError::NoReadyMetrics);
        }

        let (usage_ratio, usage) = metric_usage_ratio(&metrics, target_average_milli);
        let result = |replicas| ReplicaCalculation { replicas, utilization: None, raw_average_milli: usage };

        let scale_up_with_unready = !groups.unready.is_empty() && usage_ratio > 1.0;
        if !scale_up_with_unready && groups.missing.is_empty() {
            if tolerances.is_within(usage_ratio) {
                return Ok(result(current_replicas));
            }
            return Ok(result(ceil_to_i32(usage_ratio * groups.ready_pod_count as f64)));
        }

        if !groups.missing.is_empty() {
            if usage_ratio < 1.0 {
                // Scaling down: a pod without a sample is assumed to sit exactly at the target.
                for &i in &groups.missing {
                    metrics.insert(i, target_average_milli);
                }
            } else if usage_ratio > 1.0 {
                for &i in &groups.missing {
                    metrics.insert(i, 0);
                }
            }
        }
        if scale_up_with_unready {
            for &i in &groups.unready {
                metrics.insert(i, 0);
            }
        }

        let (new_usage_ratio, _) = metric_usage_ratio(&metrics, target_average_milli);
        if tolerances.is_within(new_usage_ratio)
            || (usage_ratio < 1.0 && new_usage_ratio > 1.0)
            || (usage_ratio > 1.0 && new_usage_ratio < 1.0)
        {
            return Ok(result(current_replicas));
        }
        let new_replicas = ceil_to_i32(new_usage_ratio * metrics.len() as f64);
        if (new_usage_ratio < 1.0 && new_replicas > current_replicas)
            || (new_usage_ratio > 1.0 && new_replicas < current_replicas)
        {
            return Ok(result(current_replicas));
        }
        Ok(result(new_replicas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, cpu: Option<i64>) -> PodSample {
        PodSample {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            ready: Some(true),
            ready_transition_ms: 0,
            start_time_ms: Some(0),
            cpu_request_milli: 1000,
            memory_request_bytes: 1 << 20,
            metric: cpu.map(|c| MetricSample {
                cpu_milli: c,
                memory_bytes: 1 << 19,
                timestamp_ms: 0,
                window_ms: 60_000,
            }),
        }
    }

    #[test]
    fn tolerance_band_is_inclusive_and_per_direction() {
        let t = Tolerances { scale_down: 0.1, scale_up: 0.05 };
        assert!(t.is_within(0.9));
        assert!(!t.is_within(0.89));
        assert!(t.is_within(1.05));
        assert!(!t.is_within(1.06));
    }

    #[test]
    fn memory_utilization_uses_requests() {
        let calc = ReplicaCalculator::default();
        let pods = vec![running("a", Some(100)), running("b", Some(100))];
        // 0.5 MiB used of 1 MiB requested: 50%, target 25% doubles the pods.
        let out = calc
            .get_resource_replicas(1_000_000, 2, 25, ResourceName::Memory, Tolerances::uniform(0.1), &pods)
            .unwrap();
        assert_eq!(out, ReplicaCalculation { replicas: 4, utilization: Some(50), raw_average_milli: 524_288_000 });
    }

    #[test]
    fn missing_request_is_an_error() {
        let calc = ReplicaCalculator::default();
        let mut pods = vec![running("a", Some(100))];
        pods[0].cpu_request_milli = 0;
        let err = calc
            .get_resource_replicas(1_000_000, 1, 50, ResourceName::Cpu, Tolerances::uniform(0.1), &pods)
            .unwrap_err();
        assert_eq!(err, CalcError::MissingRequest { pod: "a".into(), resource: ResourceName::Cpu });
    }
}
