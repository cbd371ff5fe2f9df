//! What the cluster looks like now, per service of the app: replicas from the Deployments, pods and their
//! readiness from the Pod list (matched by each service's label selector), CPU and memory from metrics.k8s.io
//! PodMetrics or from cAdvisor through Prometheus. Three API calls a second, whatever the app's size.

use std::collections::BTreeMap;

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;

use super::api::ClusterApi;
use super::prometheus::Telemetry;
use crate::app::kubernetes::{ClusterApp, ResourceSource};
use crate::cell::ServiceSecond;
use crate::hpa::{MetricSample, PodPhase, PodSample, Quantity};

/// One service at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceState {
    pub spec_replicas: u32,
    pub status_replicas: u32,
    pub ready_replicas: u32,
    pub pods: Vec<PodSample>,
    /// Summed usage over summed requests of the pods with a sample, in percent (as the HPA computes it).
    pub cpu_utilization_pct: Option<f64>,
    /// Mean working set of the pods with a sample, MiB.
    pub memory_mib: Option<f64>,
    pub memory_request_mib: f64,
}

impl ServiceState {
    pub fn second(&self) -> ServiceSecond {
        ServiceSecond {
            ready: self.ready_replicas,
            desired: self.spec_replicas,
            pods: self.status_replicas,
            cpu_utilization_pct: self.cpu_utilization_pct.unwrap_or(0.0),
            // Read from metrics-server, which reports usage only: CFS throttling is not in its API.
            cfs_periods: None,
            cfs_throttled_periods: None,
            memory_mib: self.memory_mib.unwrap_or(0.0),
        }
    }
}

/// An equality-based label selector (`a=b,c!=d,e,!f`), as Deployments and Services use them.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// Why a label selector was refused; the messages quote it as written.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("{0:?}: set-based selectors (in, notin) are not supported; use key=value")]
    SetBased(String),
    #[error("{0:?} selects every pod; give key=value")]
    Empty(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else if part.contains([' ', '(']) {
                return Err(SelectorError::SetBased(text.to_string()));
            } else {
                Requirement::Exists(part.into())
            };
            out.push(requirement);
        }
        if out.is_empty() {
            return Err(SelectorError::Empty(text.to_string()));
        }
        Ok(Selector(out))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }
}

/// A Go duration as metrics-server writes a window ("15s", "1m0.5s", "30.012s", "500ms"), in ms.
pub fn parse_go_duration_ms(text: &str) -> Option<i64> {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Some(total.round() as i64)
}

fn quantity(value: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<Quantity> {
    value.and_then(|q| Quantity::parse(&q.0).ok())
}

fn time_ms(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time, origin_ms: i64) -> i64 {
    t.0.as_millisecond() - origin_ms
}

/// A pod as the HPA controller reads it; times in ms since `origin_ms` (Unix ms).
pub fn pod_sample(pod: &Pod, metric: Option<MetricSample>, origin_ms: i64) -> PodSample {
    let status = pod.status.clone().unwrap_or_default();
    let phase = match status.phase.as_deref() {
        Some("Pending") => PodPhase::Pending,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Running,
    };
    let ready_condition = status.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let (mut cpu_m, mut memory_bytes) = (0i64, 0i64);
    for container in pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]) {
        let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
        if let Some(q) = quantity(requests.and_then(|r| r.get("cpu"))) {
            cpu_m += q.milli_value();
        }
        if let Some(q) = quantity(requests.and_then(|r| r.get("memory"))) {
            memory_bytes += q.value();
        }
    }
    PodSample {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready: ready_condition.map(|c| c.status == "True"),
        ready_transition_ms: ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(0, |t| time_ms(t, origin_ms)),
        start_time_ms: status.start_time.as_ref().map(|t| time_ms(t, origin_ms)),
        cpu_request_milli: cpu_m,
        memory_request_bytes: memory_bytes,
        metric,
    }
}

/// A PodMetrics object's usage summed over its containers.
pub fn pod_metric(object: &DynamicObject, origin_ms: i64) -> Option<MetricSample> {
    let data = &object.data;
    let timestamp = data.get("timestamp")?.as_str()?;
    let timestamp: k8s_openapi::jiff::Timestamp = timestamp.parse().ok()?;
    let window_ms = data.get("window").and_then(|w| w.as_str()).and_then(parse_go_duration_ms).unwrap_or(0);
    let (mut cpu_milli, mut memory_bytes) = (0i64, 0i64);
    for container in data.get("containers")?.as_array()? {
        let usage = container.get("usage")?;
        if let Some(q) = usage.get("cpu").and_then(|v| v.as_str()).and_then(|t| Quantity::parse(t).ok()) {
            cpu_milli += q.milli_value();
        }
        if let Some(q) = usage.get("memory").and_then(|v| v.as_str()).and_then(|t| Quantity::parse(t).ok()) {
            memory_bytes += q.value();
        }
    }
    Some(MetricSample { cpu_milli, memory_bytes, timestamp_ms: timestamp.as_millisecond() - origin_ms, window_ms })
}

/// Reads every service's state: deployments, pods, and PodMetrics or cAdvisor figures.
pub struct Observer {
    pub app: ClusterApp,
    selectors: Vec<Selector>,
    /// Unix ms of the cell's start: pod times are relative to it.
    pub origin_ms: i64,
    pub telemetry: Option<Telemetry>,
    warned_no_metrics: bool,
}

impl Observer {
    pub fn new(app: ClusterApp, telemetry: Option<Telemetry>, origin_ms: i64) -> Result<Observer> {
        let selectors = app
            .selectors
            .iter()
            .map(|s| Selector::parse(s).map_err(|m| anyhow::anyhow!("label selector: {m}")))
            .collect::<Result<_>>()?;
        Ok(Observer { app, selectors, origin_ms, telemetry, warned_no_metrics: false })
    }

    pub async fn read(&mut self, api: &ClusterApi, memory_request_mib: &[f64]) -> Result<Vec<ServiceState>> {
        let deployments: BTreeMap<String, Deployment> = api
            .list_deployments()
            .await?
            .into_iter()
            .map(|d| (d.metadata.name.clone().unwrap_or_default(), d))
            .collect();
        let pods = api.list_pods().await?;
        let metrics: BTreeMap<String, MetricSample> = match self.app.resources {
            ResourceSource::MetricsServer => match api.list_pod_metrics().await? {
                Some(list) => list
                    .iter()
                    .filter_map(|m| Some((m.metadata.name.clone()?, pod_metric(m, self.origin_ms)?)))
                    .collect(),
                None => {
                    if !self.warned_no_metrics {
                        tracing::warn!("metrics.k8s.io is not served (no metrics-server?): no CPU figures");
                        self.warned_no_metrics = true;
                    }
                    BTreeMap::new()
                }
            },
            ResourceSource::Prometheus => self.cadvisor().await,
        };
        let mut states = Vec::with_capacity(self.app.deployments.len());
        for (index, name) in self.app.deployments.iter().enumerate() {
            let Some(deployment) = deployments.get(name) else {
                anyhow::bail!("deployment {}/{name} is gone", self.app.namespace);
            };
            let spec = &deployment.spec;
            let status = deployment.status.clone().unwrap_or_default();
            let samples: Vec<PodSample> = pods
                .iter()
                .filter(|p| {
                    let labels = p.metadata.labels.clone().unwrap_or_default();
                    self.selectors[index].matches(&labels)
                })
                .map(|p| {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    pod_sample(p, metrics.get(&name).cloned(), self.origin_ms)
                })
                .collect();
            let with_metric: Vec<&PodSample> = samples.iter().filter(|p| p.metric.is_some()).collect();
            let requested: i64 = with_metric.iter().map(|p| p.cpu_request_milli).sum();
            let used: i64 = with_metric.iter().map(|p| p.metric.as_ref().expect("filtered").cpu_milli).sum();
            let memory: i64 = with_metric.iter().map(|p| p.metric.as_ref().expect("filtered").memory_bytes).sum();
            states.push(ServiceState {
                spec_replicas: spec.replicas.unwrap_or(1).max(0) as u32,
                status_replicas: status.replicas.unwrap_or(0).max(0) as u32,
                ready_replicas: status.ready_replicas.unwrap_or(0).max(0) as u32,
                cpu_utilization_pct: (requested > 0).then(|| 100.0 * used as f64 / requested as f64),
                memory_mib: (!with_metric.is_empty())
                    .then(|| memory as f64 / with_metric.len() as f64 / (1024.0 * 1024.0)),
                memory_request_mib: memory_request_mib.get(index).copied().unwrap_or(0.0),
                pods: samples,
            });
        }
        Ok(states)
    }

    /// CPU and memory per pod from cAdvisor, as metric samples (the query's rate window as the sample's).
    async fn cadvisor(&mut self) -> BTreeMap<String, MetricSample> {
        let Some(telemetry) = &self.telemetry else {
            if !self.warned_no_metrics {
                tracing::warn!("telemetry.resources is prometheus but the matrix names no kubernetes.prometheus");
                self.warned_no_metrics = true;
            }
            return BTreeMap::new();
        };
        match telemetry.pod_resources().await {
            Ok((cpu, memory)) => {
                let now_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond() - self.origin_ms;
                let window_ms = crate::duration::parse(&self.app.queries.window).map_or(0, |d| d.as_millis() as i64);
                cpu.into_iter()
                    .map(|(pod, cores)| {
                        let memory_bytes = memory.get(&pod).copied().unwrap_or(0.0) as i64;
                        let sample = MetricSample {
                            cpu_milli: (cores * 1000.0).round() as i64,
                            memory_bytes,
                            timestamp_ms: now_ms,
                            window_ms,
                        };
                        (pod, sample)
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cAdvisor figures from Prometheus");
                BTreeMap::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_kubectl_does() {
        let labels: BTreeMap<String, String> =
            [("app".to_string(), "frontend".to_string()), ("tier".into(), "web".into())].into();
        for (text, expected) in [
            ("app=frontend", true),
            ("app==frontend,tier=web", true),
            ("app=cart", false),
            ("app!=cart", true),
            ("tier", true),
            ("!tier", false),
        ] {
            assert_eq!(Selector::parse(text).unwrap().matches(&labels), expected, "{text}");
        }
        assert!(Selector::parse("app in (a, b)").is_err());
        assert!(Selector::parse(" ").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration_ms("15s"), Some(15_000));
        assert_eq!(parse_go_duration_ms("1m0.5s"), Some(60_500));
        assert_eq!(parse_go_duration_ms("500ms"), Some(500));
        assert_eq!(parse_go_duration_ms("15"), None);
    }
}
