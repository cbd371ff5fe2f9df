//! autoscaling/v2 HorizontalPodAutoscaler manifests, as `kubectl apply` takes them.
//!
//! Parsing applies upstream defaulting (`pkg/apis/autoscaling/v2/defaults.go`) and the validation rules the API
//! server would enforce, narrowed to what this controller port supports: Resource metrics (cpu, memory) on a
//! Deployment. Every error names the document and the field path.

use std::collections::BTreeMap;
use std::path::Path;

use load_agent::yaml::{self, ConfigError};
use serde::{Deserialize, Serialize};

use super::quantity::Quantity;

pub const API_VERSION: &str = "autoscaling/v2";
pub const KIND: &str = "HorizontalPodAutoscaler";
/// Upstream `DefaultCPUUtilization`, applied when a manifest lists no metrics.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;
/// Upstream validation bounds.
pub const MAX_PERIOD_SECONDS: i32 = 1800;
pub const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscaler {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: HorizontalPodAutoscalerSpec,
    /// Accepted (a manifest exported with `kubectl get -o yaml` has one) and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Object metadata; server-set fields (uid, resourceVersion, creationTimestamp, ...) are accepted and dropped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscalerSpec {
    pub scale_target_ref: CrossVersionObjectReference,
    /// Defaulted to 1 when parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    pub max_replicas: i32,
    /// Defaulted to 80% CPU utilization when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricSpec>>,
    /// None selects the legacy normalization path; when present its unset fields are defaulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

impl HorizontalPodAutoscalerSpec {
    pub fn min_replicas(&self) -> i32 {
        self.min_replicas.unwrap_or(1)
    }

    pub fn metrics(&self) -> &[MetricSpec] {
        self.metrics.as_deref().unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossVersionObjectReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricSourceType {
    Resource,
    Pods,
    Object,
    External,
    ContainerResource,
}

/// One entry of `spec.metrics`. Only `Resource` is supported; the other sources are read loosely so that
/// the error can say "not supported" rather than complain about their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    #[serde(rename = "type")]
    pub type_: MetricSourceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resource: Option<serde_json::Value>,
}

impl MetricSpec {
    /// A Resource metric with a utilization target, as defaulting and tests build them.
    pub fn resource_utilization(name: ResourceName, average_utilization: i32) -> MetricSpec {
        MetricSpec {
            type_: MetricSourceType::Resource,
            resource: Some(ResourceMetricSource {
                name,
                target: MetricTarget {
                    type_: MetricTargetType::Utilization,
                    average_utilization: Some(average_utilization),
                    average_value: None,
                    value: None,
                },
            }),
            pods: None,
            object: None,
            external: None,
            container_resource: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceName {
    Cpu,
    Memory,
}

impl ResourceName {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
        }
    }
}

impl std::fmt::Display for ResourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMetricSource {
    pub name: ResourceName,
    pub target: MetricTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricTargetType {
    Utilization,
    AverageValue,
    Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTarget {
    #[serde(rename = "type")]
    pub type_: MetricTargetType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    /// cpu in cores ("200m"), memory in bytes ("500Mi").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscalerBehavior {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<HpaScalingRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<HpaScalingRules>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingRules {
    /// Scale-down leaves this None after defaulting: the controller fills in its downscale window (300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<ScalingPolicySelect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<HpaScalingPolicy>>,
    /// Per-direction tolerance (KEP-4951, `HPAConfigurableTolerance`); None means the controller's 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Quantity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalingPolicySelect {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HpaScalingPolicyType {
    Pods,
    Percent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingPolicy {
    #[serde(rename = "type")]
    pub type_: HpaScalingPolicyType,
    pub value: i32,
    pub period_seconds: i32,
}

impl HpaScalingPolicy {
    pub fn pods(value: i32, period_seconds: i32) -> HpaScalingPolicy {
        HpaScalingPolicy { type_: HpaScalingPolicyType::Pods, value, period_seconds }
    }

    pub fn percent(value: i32, period_seconds: i32) -> HpaScalingPolicy {
        HpaScalingPolicy { type_: HpaScalingPolicyType::Percent, value, period_seconds }
    }
}

/// Upstream `defaultHPAScaleUpRules`: no stabilization, the larger of +4 pods and +100% every 15 s.
pub fn default_scale_up_rules() -> HpaScalingRules {
    HpaScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some(ScalingPolicySelect::Max),
        policies: Some(vec![HpaScalingPolicy::pods(4, 15), HpaScalingPolicy::percent(100, 15)]),
        tolerance: None,
    }
}

/// Upstream `defaultHPAScaleDownRules`: -100% every 15 s; the window stays unset for the controller to fill.
pub fn default_scale_down_rules() -> HpaScalingRules {
    HpaScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some(ScalingPolicySelect::Max),
        policies: Some(vec![HpaScalingPolicy::percent(100, 15)]),
        tolerance: None,
    }
}

// Upstream copyHPAScalingRules: every field the user set wins, each unset one takes the default.
fn fill_rules(given: Option<HpaScalingRules>, defaults: HpaScalingRules) -> HpaScalingRules {
    let Some(given) = given else { return defaults };
    HpaScalingRules {
        stabilization_window_seconds: given.stabilization_window_seconds.or(defaults.stabilization_window_seconds),
        select_policy: given.select_policy.or(defaults.select_policy),
        policies: given.policies.or(defaults.policies),
        tolerance: given.tolerance.or(defaults.tolerance),
    }
}

impl HorizontalPodAutoscaler {
    /// Upstream `SetDefaults_HorizontalPodAutoscaler`: minReplicas 1, 80% CPU when no metrics, and behavior
    /// rules filled in only when a behavior is given (an absent behavior keeps the legacy path).
    pub fn apply_defaults(&mut self) {
        let spec = &mut self.spec;
        if spec.min_replicas.is_none() {
            spec.min_replicas = Some(1);
        }
        if spec.metrics.as_ref().is_none_or(|m| m.is_empty()) {
            spec.metrics = Some(vec![MetricSpec::resource_utilization(ResourceName::Cpu, DEFAULT_CPU_UTILIZATION)]);
        }
        if let Some(behavior) = spec.behavior.take() {
            spec.behavior = Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(fill_rules(behavior.scale_up, default_scale_up_rules())),
                scale_down: Some(fill_rules(behavior.scale_down, default_scale_down_rules())),
            });
        }
    }

    /// Checks a defaulted manifest.
    pub fn validate(&self) -> Result<(), InvalidManifest> {
        let fail = |field: &str, message: String| Err(InvalidManifest { field: field.to_string(), message });
        if self.api_version != API_VERSION {
            return fail("apiVersion", format!("must be {API_VERSION:?}, got {:?}", self.api_version));
        }
        if self.kind != KIND {
            return fail("kind", format!("must be {KIND:?}, got {:?}", self.kind));
        }
        if self.metadata.name.trim().is_empty() {
            return fail("metadata.name", "must not be empty".into());
        }
        let spec = &self.spec;
        let target = &spec.scale_target_ref;
        if target.kind != "Deployment" {
            return fail(
                "spec.scaleTargetRef.kind",
                format!("must be \"Deployment\" (the only target this controller port scales), got {:?}", target.kind),
            );
        }
        if target.api_version != "apps/v1" {
            return fail(
                "spec.scaleTargetRef.apiVersion",
                format!("must be \"apps/v1\" for a Deployment, got {:?}", target.api_version),
            );
        }
        if target.name.trim().is_empty() {
            return fail("spec.scaleTargetRef.name", "must not be empty".into());
        }
        let min = spec.min_replicas();
        if min < 1 {
            return fail("spec.minReplicas", format!("must be at least 1, got {min}"));
        }
        if spec.max_replicas < min {
            return fail(
                "spec.maxReplicas",
                format!("must be at least minReplicas ({min}), got {}", spec.max_replicas),
            );
        }
        if spec.metrics().is_empty() {
            return fail("spec.metrics", "must list at least one metric".into());
        }
        for (i, metric) in spec.metrics().iter().enumerate() {
            validate_metric(metric, &format!("spec.metrics[{i}]"))?;
        }
        if let Some(behavior) = &spec.behavior {
            if let Some(rules) = &behavior.scale_up {
                validate_rules(rules, "spec.behavior.scaleUp")?;
            }
            if let Some(rules) = &behavior.scale_down {
                validate_rules(rules, "spec.behavior.scaleDown")?;
            }
        }
        Ok(())
    }
}

/// A field of one manifest the controller port cannot take; [`parse_manifests`] adds the file and document.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidManifest {
    /// Dotted field path inside the manifest, e.g. `spec.metrics[0].type`.
    pub field: String,
    pub message: String,
}

fn validate_metric(metric: &MetricSpec, at: &str) -> Result<(), InvalidManifest> {
    let fail = |field: &str, message: String| Err(InvalidManifest { field: format!("{at}.{field}"), message });
    if metric.type_ != MetricSourceType::Resource {
        return fail(
            "type",
            format!(
                "metric type {:?} is not supported by this controller port: only Resource metrics (cpu, memory) are",
                metric.type_
            ),
        );
    }
    for (set, field) in [
        (metric.pods.is_some(), "pods"),
        (metric.object.is_some(), "object"),
        (metric.external.is_some(), "external"),
        (metric.container_resource.is_some(), "containerResource"),
    ] {
        if set {
            return fail(field, "must not be set when type is Resource".into());
        }
    }
    let Some(resource) = &metric.resource else {
        return fail("resource", "required when type is Resource".into());
    };
    let target = &resource.target;
    let at_target = |field: &str| format!("resource.target.{field}");
    if target.value.is_some() {
        return fail(
            &at_target("value"),
            "a Resource metric takes averageUtilization or averageValue, not value".into(),
        );
    }
    if target.average_utilization.is_some() && target.average_value.is_some() {
        return fail("resource.target", "may not set both averageUtilization and averageValue".into());
    }
    match target.type_ {
        MetricTargetType::Utilization => match target.average_utilization {
            None => fail(&at_target("averageUtilization"), "required when type is Utilization".into()),
            Some(u) if u <= 0 => fail(&at_target("averageUtilization"), format!("must be greater than 0, got {u}")),
            Some(_) => Ok(()),
        },
        MetricTargetType::AverageValue => match &target.average_value {
            None => fail(&at_target("averageValue"), "required when type is AverageValue".into()),
            Some(q) if q.milli_value() <= 0 => {
                fail(&at_target("averageValue"), format!("must be greater than 0, got {:?}", q.as_str()))
            }
            Some(_) => Ok(()),
        },
        MetricTargetType::Value => {
            fail(&at_target("type"), "must be Utilization or AverageValue for a Resource metric".into())
        }
    }
}

fn validate_rules(rules: &HpaScalingRules, at: &str) -> Result<(), InvalidManifest> {
    let fail = |field: &str, message: String| Err(InvalidManifest { field: format!("{at}.{field}"), message });
    let window = rules.stabilization_window_seconds.unwrap_or(0);
    if !(0..=MAX_STABILIZATION_WINDOW_SECONDS).contains(&window) {
        return fail(
            "stabilizationWindowSeconds",
            format!("must be between 0 and {MAX_STABILIZATION_WINDOW_SECONDS}, got {window}"),
        );
    }
    let policies = rules.policies.as_deref().unwrap_or(&[]);
    if policies.is_empty() {
        return fail("policies", "must specify at least one policy".into());
    }
    for (i, policy) in policies.iter().enumerate() {
        if policy.value <= 0 {
            return fail(&format!("policies[{i}].value"), format!("must be greater than 0, got {}", policy.value));
        }
        if !(1..=MAX_PERIOD_SECONDS).contains(&policy.period_seconds) {
            return fail(
                &format!("policies[{i}].periodSeconds"),
                format!("must be between 1 and {MAX_PERIOD_SECONDS}, got {}", policy.period_seconds),
            );
        }
    }
    if let Some(tolerance) = rules.tolerance.as_ref().filter(|t| t.is_negative()) {
        return fail("tolerance", format!("must be greater than or equal to 0, got {:?}", tolerance.as_str()));
    }
    Ok(())
}

/// Parses every HorizontalPodAutoscaler of a multi-document YAML stream; `file` only labels errors.
pub fn parse_manifests(text: &str, file: &Path) -> Result<Vec<HorizontalPodAutoscaler>, ConfigError> {
    // Check apiVersion and kind first, so that a v1 manifest or another kind gets that said plainly rather
    // than an "unknown field" complaint about its v1 fields.
    let heads: Vec<TypeMeta> = yaml::documents_from_str(text, file)?;
    let numbers = document_numbers(text, heads.len());
    for (i, head) in heads.iter().enumerate() {
        let at = |field: &str| format!("document {}: {field}", numbers[i]);
        if head.api_version.as_deref() != Some(API_VERSION) {
            let got = head.api_version.as_deref().map_or("nothing".to_string(), |v| format!("{v:?}"));
            return Err(ConfigError::new(file, at("apiVersion"), format!("must be {API_VERSION:?}, got {got}")));
        }
        if head.kind.as_deref() != Some(KIND) {
            let got = head.kind.as_deref().map_or("nothing".to_string(), |v| format!("{v:?}"));
            return Err(ConfigError::new(file, at("kind"), format!("must be {KIND:?}, got {got}")));
        }
    }
    let mut manifests: Vec<HorizontalPodAutoscaler> = yaml::documents_from_str(text, file)?;
    for (i, hpa) in manifests.iter_mut().enumerate() {
        hpa.apply_defaults();
        if let Err(InvalidManifest { field, message }) = hpa.validate() {
            return Err(ConfigError::new(file, format!("document {}: {field}", numbers[i]), message));
        }
    }
    Ok(manifests)
}

// Just enough of a document to tell what it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

/// Reads and parses a manifest file.
pub fn load_manifests(path: &Path) -> Result<Vec<HorizontalPodAutoscaler>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "", format!("cannot read file: {e}")))?;
    parse_manifests(&text, path)
}

// The 1-based stream position of each non-empty document, numbered as `documents_from_str` numbers its own
// errors (empty documents count, so a stray `---` does not shift later numbers). Falls back to plain positions
// when the line scan disagrees with the parser about how many documents hold content.
fn document_numbers(text: &str, parsed: usize) -> Vec<usize> {
    let mut segments: Vec<bool> = vec![false]; // does each segment hold content?
    let mut explicit_start = false;
    for line in text.lines() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            let first_is_blank = segments.len() == 1 && !segments[0];
            // A leading `---` opens the first document instead of closing an empty one.
            if first_is_blank && !explicit_start {
                explicit_start = true;
            } else {
                segments.push(false);
            }
            if line.len() > 3 && !line[3..].trim().is_empty() && !line[3..].trim_start().starts_with('#') {
                *segments.last_mut().expect("non-empty") = true;
            }
            continue;
        }
        let content = line.trim();
        if !(content.is_empty() || content.starts_with('#') || content == "...") {
            *segments.last_mut().expect("non-empty") = true;
        }
    }
    let numbers: Vec<usize> = segments.iter().enumerate().filter(|(_, has)| **has).map(|(i, _)| i + 1).collect();
    if numbers.len() == parsed { numbers } else { (1..=parsed).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<HorizontalPodAutoscaler>, ConfigError> {
        parse_manifests(text, Path::new("hpa.yaml"))
    }

    #[test]
    fn document_numbering_counts_empty_documents() {
        assert_eq!(document_numbers("a: 1\n", 1), vec![1]);
        assert_eq!(document_numbers("---\na: 1\n---\nb: 2\n", 2), vec![1, 2]);
        assert_eq!(document_numbers("a: 1\n---\n---\nb: 2\n---\n", 2), vec![1, 3]);
        assert_eq!(document_numbers("# head\n---\na: 1\n", 1), vec![1]);
    }

    #[test]
    fn defaults_keep_legacy_path_without_behavior() {
        let text = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 5\n";
        let hpa = &parse(text).unwrap()[0];
        assert_eq!(hpa.spec.min_replicas, Some(1));
        assert!(hpa.spec.behavior.is_none());
        assert_eq!(hpa.spec.metrics(), &[MetricSpec::resource_utilization(ResourceName::Cpu, 80)]);
    }
}
