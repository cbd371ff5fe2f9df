//! The matrix file as written: its sections (the `rl:` block of a policy entry included), its axes, deserialized
//! with serde, the helpers that deserialize a part of it naming the field path on error, and the checks a cell's
//! settings pass on their own. Checks that need more than one field are in [`super::resolve`]. Every other file
//! of matrix/ builds on this one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use load_agent::yaml::ConfigError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration;
use crate::matrix::executor::ExecutorSection;
use crate::settings::emulated::EmulatedSection;
use crate::settings::rl::{ActionSpace, Algo, ModelKind, NetworkSpec, RewardKind};
use crate::settings::simulator::SimulatorSection;

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
    /// The simulator's model, for sim cells and the training of rl policies (default: the most faithful).
    #[serde(default)]
    pub simulator: Option<SimulatorSection>,
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
    pub rl: Option<RlSpec>,
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

/// An axis of the matrix. [`AxisKey::ALL`] is the expansion order: the first varies slowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisKey {
    App,
    Policy,
    Scenario,
    Seed,
    Backend,
}

impl AxisKey {
    pub const ALL: [AxisKey; 5] = [AxisKey::App, AxisKey::Policy, AxisKey::Scenario, AxisKey::Seed, AxisKey::Backend];

    /// The key a cell has: in `exclude`, `include` and `overrides`.
    pub fn key(self) -> &'static str {
        match self {
            AxisKey::App => "app",
            AxisKey::Policy => "policy",
            AxisKey::Scenario => "scenario",
            AxisKey::Seed => "seed",
            AxisKey::Backend => "backend",
        }
    }

    /// The list the file has.
    pub fn list(self) -> &'static str {
        match self {
            AxisKey::App => "apps",
            AxisKey::Policy => "policies",
            AxisKey::Scenario => "scenarios",
            AxisKey::Seed => "seeds",
            AxisKey::Backend => "backend",
        }
    }

    /// The position of this axis in a generic combination's values.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_key(key: &str) -> Option<AxisKey> {
        AxisKey::ALL.into_iter().find(|axis| axis.key() == key)
    }
}

/// Checks what can be checked of settings without knowing the cell.
pub(crate) fn check_settings(file: &Path, at: &str, settings: &CellSettings) -> Result<(), ConfigError> {
    let field = |name: &str| join_path(at, name);
    if let Some(slo) = &settings.slo {
        if let Some(p) = slo.percentile
            && !(p > 0.0 && p < 100.0)
        {
            return Err(ConfigError::new(file, field("slo.percentile"), format!("must be between 0 and 100, got {p}")));
        }
        if let Some(t) = slo.threshold_ms
            && !(t.is_finite() && t > 0.0)
        {
            return Err(ConfigError::new(
                file,
                field("slo.threshold_ms"),
                format!("must be a positive number, got {t}"),
            ));
        }
    }
    if settings.timeout == Some(Duration::ZERO) {
        return Err(ConfigError::new(file, field("timeout"), "must be longer than 0s"));
    }
    Ok(())
}

/// The `rl:` block of a policy entry, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlSpec {
    pub algo: Algo,
    pub model: ModelKind,
    /// Environment steps (decisions) of training.
    pub budget: u64,
    #[serde(default)]
    pub reward: RewardKind,
    /// The moves of one decision [default: −2…+2 replicas].
    #[serde(default)]
    pub actions: ActionSpace,
    #[serde(default)]
    pub training: TrainingSpec,
    /// Overrides of the algorithm's hyperparameters, by name (see PpoConfig, A2cConfig, DqnConfig).
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub network: NetworkSpec,
    /// Environments stepped in parallel.
    #[serde(default = "default_envs")]
    pub envs: usize,
    #[serde(default = "default_interval")]
    pub decision_interval_s: u64,
    /// Behaviour cloning from an HPA baseline before PPO or A2C.
    #[serde(default)]
    pub warm_start: Option<WarmStartSpec>,
    /// The apps of the matrix this policy runs on [default: all of them] (a DQN for the single-service app, say).
    #[serde(default)]
    pub apps: Option<Vec<String>>,
}

fn default_envs() -> usize {
    2
}

fn default_interval() -> u64 {
    15
}

/// Which scenarios training episodes draw from, and how they are randomized.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Scenario names of the app (experiments/scenarios/<app>/<name>.yaml) [default: the matrix's scenarios].
    #[serde(default)]
    pub scenarios: Option<Vec<String>>,
    #[serde(default = "unit_scale")]
    pub scale: [f64; 2],
    #[serde(default)]
    pub noise: f64,
}

fn unit_scale() -> [f64; 2] {
    [1.0, 1.0]
}

/// An entry without `training:` reads as one with an empty block: the matrix's scenarios, unscaled, no noise.
impl Default for TrainingSpec {
    fn default() -> TrainingSpec {
        TrainingSpec { scenarios: None, scale: unit_scale(), noise: 0.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmStartSpec {
    /// An HPA manifest under the baselines directory of each app: the teacher.
    pub manifest: String,
    #[serde(default)]
    pub episodes: Option<usize>,
    #[serde(default)]
    pub epochs: Option<usize>,
}
