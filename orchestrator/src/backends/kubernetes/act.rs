//! Acting on the cluster: replicas through the scale subresource (RL and static policies, resets, restores), and
//! HPA baselines as real autoscaling/v2 HorizontalPodAutoscalers that the cluster's controller runs. Their status
//! is recorded every second into hpa.csv; they are deleted at the end of the cell.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use super::api::ClusterApi;
use super::safety::MANAGED_BY;
use crate::cell::CancelToken;
use crate::hpa;

/// The manifest as the object orch creates: in the app's namespace, labelled as orch's and with the cell.
pub fn hpa_object(
    manifest: &hpa::HorizontalPodAutoscaler,
    namespace: &str,
    cell: &str,
) -> Result<HorizontalPodAutoscaler> {
    let mut value = serde_json::to_value(manifest).context("serializing the HPA manifest")?;
    value["metadata"]["namespace"] = namespace.into();
    let labels = value["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
        .entry("labels")
        .or_insert(serde_json::json!({}));
    labels[MANAGED_BY.0] = MANAGED_BY.1.into();
    labels["orch.cell"] = label_value(cell).into();
    value.as_object_mut().expect("an object").remove("status");
    serde_json::from_value(value).context("the HPA manifest as an autoscaling/v2 object")
}

/// A label value from a cell id: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric.
pub fn label_value(text: &str) -> String {
    let cleaned: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let tail = if cleaned.len() > 63 { &cleaned[cleaned.len() - 63..] } else { &cleaned[..] };
    tail.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// Waits until every deployment has `replicas` pods, all of them ready (or the deadline passes, or Ctrl-C).
pub async fn await_ready(
    api: &ClusterApi,
    deployments: &[(String, i32)],
    timeout: Duration,
    cancel: &CancelToken,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let listed = api.list_deployments().await?;
        let mut waiting = Vec::new();
        for (name, want) in deployments {
            let Some(deployment) = listed.iter().find(|d| d.metadata.name.as_ref() == Some(name)) else {
                bail!("deployment {}/{name} does not exist", api.namespace);
            };
            let status = deployment.status.clone().unwrap_or_default();
            let spec = deployment.spec.replicas.unwrap_or(1);
            let (ready, total) = (status.ready_replicas.unwrap_or(0), status.replicas.unwrap_or(0));
            if spec != *want || ready != *want || total != *want {
                waiting.push(format!("{name} ({ready}/{want} ready, {total} pods)"));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        cancel.check()?;
        if Instant::now() >= deadline {
            bail!(
                "deployments not ready within {} (kubernetes.readiness_timeout): {}",
                crate::duration::format(timeout),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What an HPA said at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaState {
    pub current_replicas: i32,
    pub desired_replicas: i32,
    pub current_cpu_pct: Option<i32>,
    /// The AbleToScale / ScalingActive / ScalingLimited conditions that are not True-and-quiet, as text.
    pub reason: String,
}

pub fn hpa_state(hpa: &HorizontalPodAutoscaler) -> HpaState {
    let status = hpa.status.clone().unwrap_or_default();
    let cpu = status.current_metrics.as_ref().and_then(|m| {
        m.iter()
            .find_map(|m| m.resource.as_ref().filter(|r| r.name == "cpu").and_then(|r| r.current.average_utilization))
    });
    let mut reasons = Vec::new();
    for condition in status.conditions.unwrap_or_default() {
        let reason = condition.reason.unwrap_or_default();
        let message = condition.message.unwrap_or_default();
        reasons.push(format!("{}={} {reason}: {message}", condition.type_, condition.status));
    }
    HpaState {
        current_replicas: status.current_replicas.unwrap_or(0),
        desired_replicas: status.desired_replicas,
        current_cpu_pct: cpu,
        reason: reasons.join("; "),
    }
}

/// The HPAs a cell created, recorded each second and deleted at the end.
pub struct HpaRecorder {
    /// (HPA name, service index, deployment)
    pub hpas: Vec<(String, usize, String)>,
    csv: std::io::BufWriter<std::fs::File>,
    pub last: Vec<Option<HpaState>>,
}

impl HpaRecorder {
    pub fn create(path: &std::path::Path, hpas: Vec<(String, usize, String)>) -> Result<HpaRecorder> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut csv = std::io::BufWriter::new(file);
        writeln!(csv, "t,hpa,deployment,current_replicas,desired_replicas,current_cpu_pct,conditions")?;
        let last = vec![None; hpas.len()];
        Ok(HpaRecorder { hpas, csv, last })
    }

    /// Reads every HPA and writes a row each.
    pub async fn record(&mut self, api: &ClusterApi, t: u64) -> Result<()> {
        for (i, (name, _, deployment)) in self.hpas.iter().enumerate() {
            let state = hpa_state(&api.hpa(name).await?);
            let cpu = state.current_cpu_pct.map(|c| c.to_string()).unwrap_or_default();
            let conditions = state.reason.replace('"', "'");
            writeln!(
                self.csv,
                "{t},{name},{deployment},{},{},{cpu},\"{conditions}\"",
                state.current_replicas, state.desired_replicas
            )?;
            self.last[i] = Some(state);
        }
        Ok(())
    }

    pub fn finish(&mut self) -> Result<()> {
        self.csv.flush().context("writing hpa.csv")
    }
}
