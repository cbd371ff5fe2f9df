//! The matrix file as written: its sections, deserialized with serde, and the helpers that deserialize a part of it
//! naming the field path on error. Checks that need more than one field are in [`super::resolve`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use load_agent::yaml::ConfigError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration;
use crate::matrix::axes::AxisKey;
use crate::matrix::executor::ExecutorSection;
use crate::settings::emulated::EmulatedSection;

/// A matrix file as written. Axes are kept as raw values here: each takes one value or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub backend: Option<Value>,
    /// Settings of emulated cells.
    #[serde(default)]
    pub emulated: Option<EmulatedSection>,
    /// The cluster of kubernetes cells (see [`crate::backends::kubernetes::settings`]).
    #[serde(default)]
    pub kubernetes: Option<crate::backends::kubernetes::settings::KubernetesSection>,
    /// Where cells run: local processes (default) or Kubernetes Jobs ([`super::executor`]).
    #[serde(default)]
    pub executor: Option<ExecutorSection>,
    pub seeds: Value,
    pub apps: Value,
    pub scenarios: Value,
    pub policies: Value,
    /// Partial combinations to remove: `{app: redis-cluster, policy: "hpa-*"}`.
    #[serde(default)]
    pub exclude: Vec<serde_json::Map<String, Value>>,
    /// Partial combinations with settings, merged into matching cells or added as new ones.
    #[serde(default)]
    pub include: Vec<serde_json::Map<String, Value>>,
    /// Settings of every cell.
    #[serde(default)]
    pub defaults: CellSettings,
    /// Settings by axis value (a name or a glob): `{app: {online-boutique: {slo: {threshold_ms: 80}}}}`.
    #[serde(default)]
    pub overrides: Overrides,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub report: Option<ReportSpec>,
    #[serde(default)]
    pub paths: Paths,
}

/// How the cells of a matrix are run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Cells run at once; defaults to the number of cores.
    pub max_parallel: Option<usize>,
    /// Stop at the first failed cell: cancel the running ones, skip the rest (default false).
    #[serde(default)]
    pub fail_fast: bool,
    /// Stop once this many cells have failed (fail_fast is max_failures: 1).
    pub max_failures: Option<u32>,
    /// Extra attempts for a cell that failed transiently (a lost process, an unreachable backend).
    #[serde(default)]
    pub retries: u32,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub retry_backoff: Option<Duration>,
    /// Per cell, from its start; a cell past it is killed and failed.
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

/// Settings of a cell beyond its axes. Fields that change results (the SLO) are part of the cell's config and
/// id; the timeout is not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSettings {
    /// Replaces the fields it gives of the app's SLO.
    #[serde(default)]
    pub slo: Option<SloOverride>,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloOverride {
    pub route: Option<String>,
    pub percentile: Option<f64>,
    pub threshold_ms: Option<f64>,
}

/// Settings per axis value; keys are names or globs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub app: BTreeMap<String, CellSettings>,
    #[serde(default)]
    pub policy: BTreeMap<String, CellSettings>,
    #[serde(default)]
    pub scenario: BTreeMap<String, CellSettings>,
    #[serde(default)]
    pub seed: BTreeMap<String, CellSettings>,
    #[serde(default)]
    pub backend: BTreeMap<String, CellSettings>,
}

impl Overrides {
    /// The settings of `axis`, by value or glob.
    pub(crate) fn of(&self, axis: AxisKey) -> &BTreeMap<String, CellSettings> {
        match axis {
            AxisKey::App => &self.app,
            AxisKey::Policy => &self.policy,
            AxisKey::Scenario => &self.scenario,
            AxisKey::Seed => &self.seed,
            AxisKey::Backend => &self.backend,
        }
    }
}

/// What the report of this matrix compares against.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// The policy other policies are compared with; must be one of the matrix's policies.
    pub baseline: Option<String>,
}

/// Where the files a matrix names live, relative to the matrix file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    #[serde(default = "default_apps_dir")]
    pub apps: PathBuf,
    #[serde(default = "default_scenarios_dir")]
    pub scenarios: PathBuf,
    #[serde(default = "default_baselines_dir")]
    pub baselines: PathBuf,
}

fn default_apps_dir() -> PathBuf {
    "apps".into()
}
fn default_scenarios_dir() -> PathBuf {
    "scenarios".into()
}
fn default_baselines_dir() -> PathBuf {
    "../baselines".into()
}

impl Default for Paths {
    fn default() -> Self {
        Paths { apps: default_apps_dir(), scenarios: default_scenarios_dir(), baselines: default_baselines_dir() }
    }
}

/// A policy entry of the matrix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    pub kind: PolicyKind,
    /// `hpa`: a manifest file under the baselines directory of each app.
    #[serde(default)]
    pub manifest: Option<String>,
    /// `static`: `min`, `max`, a number for every service, or a map of service to number.
    #[serde(default)]
    pub replicas: Option<serde_json::Value>,
    /// `rl`: the learner's settings, resolved by [`super::rl_policy`].
    #[serde(default)]
    pub rl: Option<crate::matrix::rl_policy::RlSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Hpa,
    Static,
    Rl,
}

/// Deserializes `value`, naming the field path under `at` on error.
pub(crate) fn typed<T: DeserializeOwned>(value: Value, file: &Path, at: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        ConfigError::new(
            file,
            join_path(at, if inner == "." { "" } else { &inner }),
            load_agent::redact::parse_error(&e.inner().to_string()),
        )
    })
}

pub(crate) fn join_path(at: &str, inner: &str) -> String {
    match (at.is_empty(), inner.is_empty()) {
        (_, true) => at.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{at}{inner}"),
        (false, false) => format!("{at}.{inner}"),
    }
}

/// An axis written as one value or a list: its values, and whether it was a list (for field paths).
pub(crate) fn one_or_many<T: DeserializeOwned>(
    value: Value,
    file: &Path,
    at: &str,
) -> Result<(Vec<T>, bool), ConfigError> {
    match value {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(typed(item, file, &format!("{at}[{i}]"))?);
            }
            Ok((out, true))
        }
        single => Ok((vec![typed(single, file, at)?], false)),
    }
}
