//! The app model's optional `kubernetes:` block: how the app's services are found in a cluster and how its
//! telemetry is queried. The namespace is the app model's top-level `namespace`.
//!
//! ```yaml
//! kubernetes:
//!   deployments: {redis-cart: redis-cart-master}     # service -> Deployment name [default: the service name]
//!   selectors: {frontend: "app=frontend"}            # service -> pod label selector [default: app=<deployment>]
//!   telemetry:
//!     mesh: istio                  # istio | linkerd: the default query templates
//!     resources: metrics-server    # metrics-server (PodMetrics) | prometheus (cAdvisor), for CPU and memory
//!     window: 30s                  # the rate window of the queries
//!     queries: {requests: "sum by (destination_workload) (rate(...[{window}]))", ...}   # replace a default
//!     labels: {workload: destination_workload, source: source_workload, pod: pod}
//! ```
//!
//! Query templates take `{namespace}`, `{window}` and (latency) `{quantile}`; each returns one series per
//! workload (per pod for cpu and memory, per source and destination for edges), named by the labels above.

use std::collections::BTreeMap;
use std::path::Path;

use load_agent::yaml::ConfigError;
use serde::{Deserialize, Serialize};

use crate::app::AppModel;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesApp {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selectors: BTreeMap<String, String>,
    #[serde(default)]
    pub telemetry: TelemetrySpec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mesh {
    #[default]
    Istio,
    Linkerd,
}

/// Where CPU and memory per pod come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceSource {
    /// metrics.k8s.io PodMetrics, as the HPA reads them.
    #[default]
    MetricsServer,
    /// cAdvisor's container_cpu_usage_seconds_total and container_memory_working_set_bytes through Prometheus.
    Prometheus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    #[serde(default)]
    pub mesh: Mesh,
    #[serde(default)]
    pub resources: ResourceSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default)]
    pub queries: QueryOverrides,
    #[serde(default)]
    pub labels: LabelOverrides,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// The queries of a cell, placeholders still in.
#[derive(Debug, Clone, PartialEq)]
pub struct Queries {
    /// Calls arriving per second, per destination workload.
    pub requests: String,
    /// Failed calls per second, per destination workload.
    pub errors: String,
    /// A quantile of a call's duration in ms, per destination workload.
    pub latency: String,
    /// Calls per second per caller and callee.
    pub edges: String,
    /// CPU cores used, per pod.
    pub cpu: String,
    /// Working-set bytes, per pod.
    pub memory: String,
    pub workload_label: String,
    pub source_label: String,
    pub pod_label: String,
    pub window: String,
}

impl Queries {
    pub fn for_mesh(mesh: Mesh) -> Queries {
        let (requests, errors, latency, edges, workload, source) = match mesh {
            Mesh::Istio => (
                r#"sum by (destination_workload) (rate(istio_requests_total{reporter="destination",destination_workload_namespace="{namespace}"}[{window}]))"#,
                r#"sum by (destination_workload) (rate(istio_requests_total{reporter="destination",destination_workload_namespace="{namespace}",response_code=~"5.."}[{window}]))"#,
                r#"histogram_quantile({quantile}, sum by (destination_workload, le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="{namespace}"}[{window}])))"#,
                r#"sum by (source_workload, destination_workload) (rate(istio_requests_total{reporter="destination",destination_workload_namespace="{namespace}"}[{window}]))"#,
                "destination_workload",
                "source_workload",
            ),
            Mesh::Linkerd => (
                r#"sum by (deployment) (rate(request_total{direction="inbound",namespace="{namespace}"}[{window}]))"#,
                r#"sum by (deployment) (rate(response_total{direction="inbound",namespace="{namespace}",classification="failure"}[{window}]))"#,
                r#"histogram_quantile({quantile}, sum by (deployment, le) (rate(response_latency_ms_bucket{direction="inbound",namespace="{namespace}"}[{window}])))"#,
                r#"sum by (deployment, dst_deployment) (rate(request_total{direction="outbound",namespace="{namespace}"}[{window}]))"#,
                "deployment",
                "deployment",
            ),
        };
        Queries {
            requests: requests.into(),
            errors: errors.into(),
            latency: latency.into(),
            edges: edges.into(),
            cpu: r#"sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="{namespace}",container!=""}[{window}]))"#
                .into(),
            memory: r#"sum by (pod) (container_memory_working_set_bytes{namespace="{namespace}",container!=""})"#.into(),
            workload_label: workload.into(),
            source_label: source.into(),
            pod_label: "pod".into(),
            window: "30s".into(),
        }
    }

    /// Linkerd names the edge's callee `dst_deployment`; Istio `destination_workload`.
    pub fn edge_destination_label(&self, mesh: Mesh) -> &str {
        match mesh {
            Mesh::Istio => &self.workload_label,
            Mesh::Linkerd => "dst_deployment",
        }
    }

    /// Fills the placeholders.
    pub fn render(template: &str, namespace: &str, window: &str, quantile: f64) -> String {
        template
            .replace("{namespace}", namespace)
            .replace("{window}", window)
            .replace("{quantile}", &quantile.to_string())
    }
}

/// What the backend needs to find and watch one app in a cluster, resolved from the app model.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterApp {
    pub namespace: String,
    /// Per service, in the app model's order.
    pub deployments: Vec<String>,
    pub selectors: Vec<String>,
    pub mesh: Mesh,
    pub resources: ResourceSource,
    pub queries: Queries,
}

impl ClusterApp {
    pub fn resolve(app: &AppModel) -> ClusterApp {
        let spec = app.kubernetes.clone().unwrap_or_default();
        let deployments: Vec<String> = app
            .services
            .iter()
            .map(|s| spec.deployments.get(&s.name).cloned().unwrap_or_else(|| s.name.clone()))
            .collect();
        let selectors = app
            .services
            .iter()
            .zip(&deployments)
            .map(|(s, d)| spec.selectors.get(&s.name).cloned().unwrap_or_else(|| format!("app={d}")))
            .collect();
        let telemetry = &spec.telemetry;
        let mut queries = Queries::for_mesh(telemetry.mesh);
        let q = &telemetry.queries;
        for (slot, given) in [
            (&mut queries.requests, &q.requests),
            (&mut queries.errors, &q.errors),
            (&mut queries.latency, &q.latency),
            (&mut queries.edges, &q.edges),
            (&mut queries.cpu, &q.cpu),
            (&mut queries.memory, &q.memory),
        ] {
            if let Some(text) = given {
                *slot = text.clone();
            }
        }
        let l = &telemetry.labels;
        for (slot, given) in [
            (&mut queries.workload_label, &l.workload),
            (&mut queries.source_label, &l.source),
            (&mut queries.pod_label, &l.pod),
        ] {
            if let Some(text) = given {
                *slot = text.clone();
            }
        }
        if let Some(window) = &telemetry.window {
            queries.window = window.clone();
        }
        ClusterApp {
            namespace: app.namespace.clone(),
            deployments,
            selectors,
            mesh: telemetry.mesh,
            resources: telemetry.resources,
            queries,
        }
    }

    pub fn service_of_deployment(&self, deployment: &str) -> Option<usize> {
        self.deployments.iter().position(|d| d == deployment)
    }
}

/// Checks the block against the app's services; `file` (the app model's) only labels the error.
pub fn validate(app: &AppModel, file: &Path) -> Result<(), ConfigError> {
    let err = |field: String, message: String| Err(ConfigError::new(file, field, message));
    let Some(spec) = &app.kubernetes else { return Ok(()) };
    for (field, map) in [("deployments", &spec.deployments), ("selectors", &spec.selectors)] {
        for (service, value) in map {
            let at = format!("kubernetes.{field}.{service}");
            if app.service_index(service).is_none() {
                return err(at, format!("unknown service {service:?}"));
            }
            if value.trim().is_empty() {
                return err(at, "must not be empty".into());
            }
        }
    }
    let mut seen = BTreeMap::new();
    for service in &app.services {
        let deployment = spec.deployments.get(&service.name).unwrap_or(&service.name);
        if let Some(other) = seen.insert(deployment.clone(), service.name.clone()) {
            return err(
                format!("kubernetes.deployments.{}", service.name),
                format!("deployment {deployment:?} is already the deployment of {other:?}"),
            );
        }
    }
    if let Some(window) = &spec.telemetry.window
        && crate::duration::parse(window).is_err()
    {
        return err("kubernetes.telemetry.window".into(), format!("{window:?} is not a duration like 30s"));
    }
    let q = &spec.telemetry.queries;
    for (name, query) in [
        ("requests", &q.requests),
        ("errors", &q.errors),
        ("latency", &q.latency),
        ("edges", &q.edges),
        ("cpu", &q.cpu),
        ("memory", &q.memory),
    ] {
        if let Some(query) = query
            && query.trim().is_empty()
        {
            return err(format!("kubernetes.telemetry.queries.{name}"), "must not be empty".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_with_the_namespace_and_window() {
        let q = Queries::for_mesh(Mesh::Istio);
        let text = Queries::render(&q.latency, "shop", "30s", 0.95);
        assert!(text.starts_with("histogram_quantile(0.95, sum by (destination_workload, le)"), "{text}");
        assert!(text.contains(r#"destination_workload_namespace="shop""#) && text.contains("[30s]"), "{text}");
        let q = Queries::for_mesh(Mesh::Linkerd);
        assert!(q.latency.contains("response_latency_ms_bucket"));
        assert_eq!(q.edge_destination_label(Mesh::Linkerd), "dst_deployment");
    }
}
