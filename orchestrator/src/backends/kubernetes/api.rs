//! The typed API calls of the backend, in one place: what it reads (deployments, pods, PodMetrics, autoscalers)
//! and the few things it writes (the scale subresource, HPAs, take-over patches).
//!
//! Every write goes through [`ClusterApi::write`], which refuses a deployment the app model does not list and, in
//! dry-run mode, prints the call (method, path, body) instead of making it. Errors name the object and say what a
//! 401, 403, 404 or 409 means; connection failures are transient (worth a retry).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::cell::TransientError;

/// metrics.k8s.io PodMetrics.
pub fn pod_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"), "pods")
}

pub fn vpa_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler"),
        "verticalpodautoscalers",
    )
}

pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"), "scaledobjects")
}

/// A write the backend made or, in dry-run mode, would have made.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

impl std::fmt::Display for ApiCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(body) = &self.body {
            write!(f, " {body}")?;
        }
        Ok(())
    }
}

/// One namespace of one cluster, as the backend may touch it.
#[derive(Clone)]
pub struct ClusterApi {
    client: Client,
    pub namespace: String,
    /// Deployments the app model lists: the only ones whose scale may be written.
    allowed: Arc<BTreeSet<String>>,
    /// Dry-run: writes are recorded here (and printed) instead of sent.
    dry_run: Option<Arc<Mutex<Vec<ApiCall>>>>,
}

impl ClusterApi {
    pub fn new(client: Client, namespace: &str, deployments: &[String]) -> ClusterApi {
        ClusterApi {
            client,
            namespace: namespace.to_string(),
            allowed: Arc::new(deployments.iter().cloned().collect()),
            dry_run: None,
        }
    }

    /// The same API in dry-run mode: reads go to the cluster, writes are printed and recorded only.
    pub fn dry_run(mut self) -> ClusterApi {
        self.dry_run = Some(Arc::default());
        self
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run.is_some()
    }

    /// The writes a dry run recorded, in order.
    pub fn recorded(&self) -> Vec<ApiCall> {
        self.dry_run.as_ref().map(|calls| calls.lock().expect("calls").clone()).unwrap_or_default()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn hpas(&self) -> Api<HorizontalPodAutoscaler> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn dynamic(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, resource)
    }

    fn object_path<K: Resource<DynamicType = ()>>(&self, name: &str) -> String {
        format!("{}/{name}", K::url_path(&(), Some(&self.namespace)))
    }

    fn dynamic_path(&self, resource: &ApiResource, name: Option<&str>) -> String {
        let base = DynamicObject::url_path(resource, Some(&self.namespace));
        match name {
            Some(name) => format!("{base}/{name}"),
            None => base,
        }
    }

    /// Records a write; in dry-run mode prints it and returns false (do not send).
    fn write(&self, call: ApiCall) -> bool {
        match &self.dry_run {
            Some(calls) => {
                println!("dry-run: {call}");
                calls.lock().expect("calls").push(call);
                false
            }
            None => {
                tracing::debug!(method = call.method, path = %call.path, "api write");
                true
            }
        }
    }

    fn check_allowed(&self, deployment: &str) -> Result<()> {
        if self.allowed.contains(deployment) {
            Ok(())
        } else {
            Err(anyhow!("refusing to touch deployment {}/{deployment}: the app model does not list it", self.namespace))
        }
    }

    pub async fn deployment(&self, name: &str) -> Result<Deployment> {
        let what = format!("deployment {}/{name}", self.namespace);
        self.deployments().get(name).await.map_err(|e| explain(e, "reading", &what))
    }

    pub async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        let what = format!("deployments in namespace {}", self.namespace);
        Ok(self.deployments().list(&ListParams::default()).await.map_err(|e| explain(e, "listing", &what))?.items)
    }

    /// spec.replicas of the deployment's scale subresource.
    pub async fn replicas(&self, name: &str) -> Result<i32> {
        let what = format!("the scale of deployment {}/{name}", self.namespace);
        let scale = self.deployments().get_scale(name).await.map_err(|e| explain(e, "reading", &what))?;
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// A merge patch on the scale subresource's spec.replicas.
    pub async fn scale(&self, name: &str, replicas: i32) -> Result<()> {
        self.check_allowed(name)?;
        let body = json!({"spec": {"replicas": replicas}});
        let path = format!("{}/scale", self.object_path::<Deployment>(name));
        if self.write(ApiCall { method: "PATCH", path, body: Some(body.clone()) }) {
            let what = format!("deployment {}/{name} to {replicas} replicas", self.namespace);
            self.deployments()
                .patch_scale(name, &PatchParams::default(), &Patch::Merge(&body))
                .await
                .map_err(|e| explain(e, "scaling", &what))?;
        }
        Ok(())
    }

    pub async fn list_pods(&self) -> Result<Vec<Pod>> {
        let what = format!("pods in namespace {}", self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(pods.list(&ListParams::default()).await.map_err(|e| explain(e, "listing", &what))?.items)
    }

    /// PodMetrics of the namespace; `None` when metrics.k8s.io is not served (no metrics-server).
    pub async fn list_pod_metrics(&self) -> Result<Option<Vec<DynamicObject>>> {
        let what = format!("PodMetrics (metrics.k8s.io) in namespace {}", self.namespace);
        optional(self.dynamic(&pod_metrics_resource()).list(&ListParams::default()).await, "listing", &what)
    }

    pub async fn list_hpas(&self) -> Result<Vec<HorizontalPodAutoscaler>> {
        let what = format!("HorizontalPodAutoscalers in namespace {}", self.namespace);
        Ok(self.hpas().list(&ListParams::default()).await.map_err(|e| explain(e, "listing", &what))?.items)
    }

    pub async fn hpa(&self, name: &str) -> Result<HorizontalPodAutoscaler> {
        let what = format!("HorizontalPodAutoscaler {}/{name}", self.namespace);
        self.hpas().get(name).await.map_err(|e| explain(e, "reading", &what))
    }

    pub async fn create_hpa(&self, hpa: &HorizontalPodAutoscaler) -> Result<()> {
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let target = &hpa.spec.scale_target_ref.name;
        self.check_allowed(target)?;
        let path = K8sPath::collection::<HorizontalPodAutoscaler>(&self.namespace);
        if self.write(ApiCall { method: "POST", path, body: Some(serde_json::to_value(hpa)?) }) {
            let what = format!("HorizontalPodAutoscaler {}/{name}", self.namespace);
            self.hpas().create(&PostParams::default(), hpa).await.map_err(|e| explain(e, "creating", &what))?;
        }
        Ok(())
    }

    /// Deletes an HPA; one already gone is fine.
    pub async fn delete_hpa(&self, name: &str) -> Result<()> {
        let path = self.object_path::<HorizontalPodAutoscaler>(name);
        if self.write(ApiCall { method: "DELETE", path, body: None }) {
            let what = format!("HorizontalPodAutoscaler {}/{name}", self.namespace);
            match self.hpas().delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(explain(e, "deleting", &what)),
            }
        }
        Ok(())
    }

    /// Objects of a custom resource; `None` when its CRD is not installed.
    pub async fn list_custom(&self, resource: &ApiResource) -> Result<Option<Vec<DynamicObject>>> {
        let what = format!("{} ({}) in namespace {}", resource.plural, resource.api_version, self.namespace);
        optional(self.dynamic(resource).list(&ListParams::default()).await, "listing", &what)
    }

    /// A merge patch on a custom object (take-over: pausing a VPA or a ScaledObject, and undoing it).
    pub async fn patch_custom(&self, resource: &ApiResource, name: &str, body: Value) -> Result<()> {
        let path = self.dynamic_path(resource, Some(name));
        if self.write(ApiCall { method: "PATCH", path, body: Some(body.clone()) }) {
            let what = format!("{} {}/{name}", resource.kind, self.namespace);
            self.dynamic(resource)
                .patch(name, &PatchParams::default(), &Patch::Merge(&body))
                .await
                .map_err(|e| explain(e, "patching", &what))?;
        }
        Ok(())
    }
}

/// Paths of API collections, for dry-run lines.
pub struct K8sPath;

impl K8sPath {
    pub fn collection<K: Resource<DynamicType = ()>>(namespace: &str) -> String {
        K::url_path(&(), Some(namespace))
    }
}

/// A list whose API group may be absent: 404 (no such resource) is `None`.
fn optional<T>(result: Result<kube::core::ObjectList<T>, kube::Error>, verb: &str, what: &str) -> Result<Option<Vec<T>>>
where
    T: Clone,
{
    match result {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(explain(e, verb, what)),
    }
}

/// An API error as a sentence naming the object and what the status means.
pub fn explain(error: kube::Error, verb: &str, what: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) => {
            let detail = if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            let message = match status.code {
                401 => format!(
                    "{verb} {what}: 401 Unauthorized: the cluster does not accept the kubeconfig's credentials \
                     (expired token or certificate?): {detail}"
                ),
                403 => format!(
                    "{verb} {what}: 403 Forbidden: the kubeconfig's identity lacks the RBAC permission \
                     (see experiments/k8s/rbac.yaml): {detail}"
                ),
                404 => format!("{verb} {what}: 404 Not Found: it does not exist: {detail}"),
                409 => {
                    format!("{verb} {what}: 409 Conflict: it already exists or was changed at the same time: {detail}")
                }
                code if code >= 500 || code == 429 => {
                    return anyhow::Error::new(TransientError(format!("{verb} {what}: {code}: {detail}")));
                }
                code => format!("{verb} {what}: {code} {}: {detail}", status.reason),
            };
            anyhow!(message)
        }
        // Not an answer from the API server: unreachable, reset, timed out. Worth another attempt.
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            anyhow::Error::new(TransientError(format!("{verb} {what}: the API server did not answer: {error}")))
        }
        _ => anyhow!("{verb} {what}: {error}"),
    }
}
