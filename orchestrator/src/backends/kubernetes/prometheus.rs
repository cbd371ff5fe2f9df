//! Prometheus' HTTP API (`/api/v1/query`) with the app's query templates: per-workload request, error and latency
//! figures from the mesh (Istio or Linkerd names), per-pod CPU and memory from cAdvisor, and the service graph
//! from the caller → callee series.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::app::kubernetes::{ClusterApp, Queries};

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<AnswerData>,
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorItem>,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// A Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    pub fn new(base: &str) -> Result<Prometheus> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().context("building a client")?;
        Ok(Prometheus { base: base.trim_end_matches('/').to_string(), http })
    }

    /// An instant query; NaN values (a quantile of no requests) are left out.
    pub async fn query(&self, query: &str) -> Result<Vec<Sample>> {
        let url = format!("{}/api/v1/query", self.base);
        let response = self
            .http
            .get(&url)
            .query(&[("query", query)])
            .send()
            .await
            .with_context(|| format!("querying Prometheus at {url}"))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("reading Prometheus' answer from {url}"))?;
        let answer: Answer = serde_json::from_slice(&body)
            .with_context(|| format!("Prometheus at {url} answered {status} with no query result"))?;
        if answer.status != "success" {
            bail!("Prometheus refused the query {query:?}: {}", answer.error.unwrap_or_default());
        }
        let data = answer.data.context("Prometheus' answer has no data")?;
        if data.result_type != "vector" {
            bail!("the query {query:?} gives a {}, not an instant vector", data.result_type);
        }
        Ok(data
            .result
            .into_iter()
            .filter_map(|item| {
                let value: f64 = item.value.1.parse().ok()?;
                value.is_finite().then_some(Sample { labels: item.metric, value })
            })
            .collect())
    }
}

/// What the mesh and cAdvisor say about each service, by service index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshFigures {
    pub arrival_rps: Vec<f64>,
    pub error_rps: Vec<f64>,
    pub p95_ms: Vec<Option<f64>>,
    /// (caller, callee, calls/s) between services of the app.
    pub edges: Vec<(usize, usize, f64)>,
}

/// The app's telemetry through one Prometheus.
#[derive(Clone)]
pub struct Telemetry {
    pub prometheus: Prometheus,
    app: ClusterApp,
}

impl Telemetry {
    pub fn new(prometheus: Prometheus, app: ClusterApp) -> Telemetry {
        Telemetry { prometheus, app }
    }

    fn render(&self, template: &str, quantile: f64) -> String {
        Queries::render(template, &self.app.namespace, &self.app.queries.window, quantile)
    }

    fn by_service(&self, samples: &[Sample], label: &str) -> Vec<Option<f64>> {
        let mut out = vec![None; self.app.deployments.len()];
        for sample in samples {
            if let Some(service) = sample.labels.get(label).and_then(|w| self.app.service_of_deployment(w)) {
                *out[service].get_or_insert(0.0) += sample.value;
            }
        }
        out
    }

    /// Request and error rates, p95 per service, and the call graph's edges.
    pub async fn mesh(&self) -> Result<MeshFigures> {
        let q = &self.app.queries;
        let label = &q.workload_label;
        let requests = self.prometheus.query(&self.render(&q.requests, 0.95)).await?;
        let errors = self.prometheus.query(&self.render(&q.errors, 0.95)).await?;
        let latency = self.prometheus.query(&self.render(&q.latency, 0.95)).await?;
        let edges = self.edges().await?;
        let zero = |v: Vec<Option<f64>>| v.into_iter().map(|x| x.unwrap_or(0.0)).collect();
        Ok(MeshFigures {
            arrival_rps: zero(self.by_service(&requests, label)),
            error_rps: zero(self.by_service(&errors, label)),
            p95_ms: self.by_service(&latency, label),
            edges,
        })
    }

    /// Caller → callee rates between the app's services (series naming a caller outside the app are left out).
    pub async fn edges(&self) -> Result<Vec<(usize, usize, f64)>> {
        let q = &self.app.queries;
        let samples = self.prometheus.query(&self.render(&q.edges, 0.95)).await?;
        let destination = q.edge_destination_label(self.app.mesh);
        let mut edges: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for sample in &samples {
            let find = |label: &str| sample.labels.get(label).and_then(|w| self.app.service_of_deployment(w));
            if let (Some(from), Some(to)) = (find(&q.source_label), find(destination)) {
                *edges.entry((from, to)).or_default() += sample.value;
            }
        }
        Ok(edges.into_iter().map(|((from, to), rate)| (from, to, rate)).collect())
    }

    /// CPU cores and working-set bytes per pod name (cAdvisor).
    pub async fn pod_resources(&self) -> Result<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
        let q = &self.app.queries;
        let collect = |samples: Vec<Sample>| {
            let mut out = BTreeMap::new();
            for s in samples {
                if let Some(pod) = s.labels.get(&q.pod_label) {
                    *out.entry(pod.clone()).or_insert(0.0) += s.value;
                }
            }
            out
        };
        let cpu = collect(self.prometheus.query(&self.render(&q.cpu, 0.95)).await?);
        let memory = collect(self.prometheus.query(&self.render(&q.memory, 0.95)).await?);
        Ok((cpu, memory))
    }
}
