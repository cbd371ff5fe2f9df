//! Before a cell touches a cluster: which other controllers already scale its deployments, and how to hand them
//! back afterwards.
//!
//! A conflicting controller is an HPA targeting a deployment of the app, a VerticalPodAutoscaler in an updating
//! mode (Auto, Recreate, InPlaceOrRecreate: it evicts pods) or a KEDA ScaledObject that is not paused. Their CRDs
//! may be absent; that is no error. Found one, the cell refuses, naming it, unless the matrix says
//! `kubernetes.take_over: true`: then an HPA is saved and deleted (and created again afterwards), a VPA is set to
//! updateMode Off and a ScaledObject paused (both undone afterwards). The replicas every deployment had are
//! recorded first and put back at the end, whatever ended the cell.

use anyhow::{Result, bail};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::api::{ClusterApi, scaled_object_resource, vpa_resource};
use crate::app::kubernetes::ClusterApp;

/// The label orch puts on the HPAs it creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "orch");
const KEDA_PAUSED: &str = "autoscaling.keda.sh/paused";

/// Another controller scaling one of the app's deployments.
#[derive(Debug, Clone, PartialEq)]
pub enum Conflict {
    Hpa { name: String, deployment: String, object: Box<HorizontalPodAutoscaler> },
    Vpa { name: String, deployment: String, mode: String },
    ScaledObject { name: String, deployment: String },
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::Hpa { name, deployment, object } => {
                let ours = object.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY.0)).map(String::as_str)
                    == Some(MANAGED_BY.1);
                write!(f, "HorizontalPodAutoscaler {name:?} scales deployment {deployment:?}")?;
                if ours {
                    write!(f, " (left by an earlier orch run that was killed: delete it)")?;
                }
                Ok(())
            }
            Conflict::Vpa { name, deployment, mode } => {
                write!(f, "VerticalPodAutoscaler {name:?} (updateMode {mode}) resizes deployment {deployment:?}")
            }
            Conflict::ScaledObject { name, deployment } => {
                write!(f, "KEDA ScaledObject {name:?} scales deployment {deployment:?}")
            }
        }
    }
}

fn target_name(object: &DynamicObject, field: &str) -> Option<(String, String)> {
    let target = object.data.get("spec")?.get(field)?;
    let kind = target.get("kind").and_then(Value::as_str).unwrap_or("Deployment").to_string();
    Some((kind, target.get("name")?.as_str()?.to_string()))
}

/// Every other controller of the app's deployments.
pub async fn find_conflicts(api: &ClusterApi, app: &ClusterApp) -> Result<Vec<Conflict>> {
    let ours = |kind: &str, name: &str| kind == "Deployment" && app.deployments.iter().any(|d| d == name);
    let mut conflicts = Vec::new();
    for hpa in api.list_hpas().await? {
        let spec = &hpa.spec;
        if ours(&spec.scale_target_ref.kind, &spec.scale_target_ref.name) {
            conflicts.push(Conflict::Hpa {
                name: hpa.metadata.name.clone().unwrap_or_default(),
                deployment: spec.scale_target_ref.name.clone(),
                object: Box::new(hpa.clone()),
            });
        }
    }
    for vpa in api.list_custom(&vpa_resource()).await?.unwrap_or_default() {
        let Some((kind, deployment)) = target_name(&vpa, "targetRef") else { continue };
        let mode = vpa.data.pointer("/spec/updatePolicy/updateMode").and_then(Value::as_str).unwrap_or("Auto");
        if ours(&kind, &deployment) && !matches!(mode, "Off" | "Initial") {
            conflicts.push(Conflict::Vpa {
                name: vpa.metadata.name.clone().unwrap_or_default(),
                deployment,
                mode: mode.to_string(),
            });
        }
    }
    for so in api.list_custom(&scaled_object_resource()).await?.unwrap_or_default() {
        let Some((kind, deployment)) = target_name(&so, "scaleTargetRef") else { continue };
        let paused = so.metadata.annotations.as_ref().and_then(|a| a.get(KEDA_PAUSED)).is_some_and(|v| v == "true");
        if ours(&kind, &deployment) && !paused {
            conflicts.push(Conflict::ScaledObject { name: so.metadata.name.clone().unwrap_or_default(), deployment });
        }
    }
    Ok(conflicts)
}

/// Refuses the cell when another controller is found and taking over is not allowed.
pub fn refuse(conflicts: &[Conflict], namespace: &str, take_over: bool) -> Result<()> {
    if conflicts.is_empty() || take_over {
        return Ok(());
    }
    let list: Vec<String> = conflicts.iter().map(|c| c.to_string()).collect();
    bail!(
        "another controller scales the app in namespace {namespace}: {}; remove it, or set kubernetes.take_over: \
         true in the matrix to suspend it for each cell (it is restored afterwards)",
        list.join("; ")
    )
}

/// What was suspended, to be restored.
#[derive(Debug, Default)]
pub struct TakeOver {
    hpas: Vec<HorizontalPodAutoscaler>,
    vpas: Vec<(String, String)>,
    scaled_objects: Vec<String>,
}

/// Suspends every conflicting controller; returns what to restore (also what was done before an error).
pub async fn take_over(api: &ClusterApi, conflicts: &[Conflict], done: &mut TakeOver) -> Result<()> {
    for conflict in conflicts {
        tracing::warn!(controller = %conflict, "taking over: suspended for the cell");
        match conflict {
            Conflict::Hpa { name, object, .. } => {
                api.delete_hpa(name).await?;
                done.hpas.push(clean_for_create(object));
            }
            Conflict::Vpa { name, mode, .. } => {
                api.patch_custom(&vpa_resource(), name, json!({"spec": {"updatePolicy": {"updateMode": "Off"}}}))
                    .await?;
                done.vpas.push((name.clone(), mode.clone()));
            }
            Conflict::ScaledObject { name, .. } => {
                api.patch_custom(
                    &scaled_object_resource(),
                    name,
                    json!({"metadata": {"annotations": {KEDA_PAUSED: "true"}}}),
                )
                .await?;
                done.scaled_objects.push(name.clone());
            }
        }
    }
    Ok(())
}

/// Gives every suspended controller back, as it was. Goes on after an error and reports the first.
pub async fn hand_back(api: &ClusterApi, done: &mut TakeOver) -> Result<()> {
    let mut first_error = None;
    for hpa in done.hpas.drain(..) {
        if let Err(e) = api.create_hpa(&hpa).await {
            first_error.get_or_insert(e);
        }
    }
    for (name, mode) in done.vpas.drain(..) {
        let body = json!({"spec": {"updatePolicy": {"updateMode": mode}}});
        if let Err(e) = api.patch_custom(&vpa_resource(), &name, body).await {
            first_error.get_or_insert(e);
        }
    }
    for name in done.scaled_objects.drain(..) {
        let body = json!({"metadata": {"annotations": {KEDA_PAUSED: null}}});
        if let Err(e) = api.patch_custom(&scaled_object_resource(), &name, body).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The object as it can be created again: server-set metadata and status dropped.
fn clean_for_create(hpa: &HorizontalPodAutoscaler) -> HorizontalPodAutoscaler {
    let mut hpa = hpa.clone();
    let meta = &mut hpa.metadata;
    meta.resource_version = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.managed_fields = None;
    meta.generation = None;
    hpa.status = None;
    hpa
}

/// The replicas each deployment of the app had before the cell (scale subresource spec.replicas).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub replicas: Vec<(String, i32)>,
}

impl Snapshot {
    pub async fn take(api: &ClusterApi, app: &ClusterApp) -> Result<Snapshot> {
        let mut replicas = Vec::new();
        for deployment in &app.deployments {
            replicas.push((deployment.clone(), api.replicas(deployment).await?));
        }
        Ok(Snapshot { replicas })
    }

    /// Puts back every deployment whose replicas differ now. Goes on after an error and reports the first.
    pub async fn restore(&self, api: &ClusterApi) -> Result<()> {
        let mut first_error = None;
        for (deployment, before) in &self.replicas {
            let now = if api.is_dry_run() { None } else { api.replicas(deployment).await.ok() };
            if now != Some(*before)
                && let Err(e) = api.scale(deployment, *before).await
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
