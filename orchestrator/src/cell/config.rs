//! The resolved configuration of one cell: what it runs (backend, app, scenario, policy, seed), its id and the
//! hash the id ends with. Everything a cell needs is here, resolved: nothing below reads the matrix again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use load_agent::scenario::Scenario;
use load_agent::yaml::{self, ConfigError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::app::AppModel;
use crate::hpa::HorizontalPodAutoscaler;
use crate::settings::emulated::EmulatorSettings;
use crate::settings::rl::RlPolicyConfig;
use crate::settings::simulator::SimulatorSettings;

/// Bumped whenever the meaning of a resolved cell config changes, so cell ids change with it.
/// 2: ids hash the config with sorted keys and without file paths.
pub const CELL_FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Sim,
    Emulated,
    Kubernetes,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Emulated => "emulated",
            Backend::Kubernetes => "kubernetes",
        }
    }

    /// The backend a matrix names, through the same serde names as the file.
    pub fn parse(name: &str) -> Option<Backend> {
        serde_json::from_value(Value::String(name.to_string())).ok()
    }
}

/// A policy with everything it reads resolved for one app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedPolicy {
    Hpa { name: String, manifest_file: PathBuf, manifests: Vec<HorizontalPodAutoscaler> },
    Static { name: String, replicas: BTreeMap<String, u32> },
    Rl(Box<RlPolicyConfig>),
}

impl ResolvedPolicy {
    pub fn name(&self) -> &str {
        match self {
            ResolvedPolicy::Hpa { name, .. } | ResolvedPolicy::Static { name, .. } => name,
            ResolvedPolicy::Rl(rl) => &rl.name,
        }
    }
}

/// Everything one cell runs with; its hash is part of the cell id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellConfig {
    pub format_version: u32,
    pub backend: Backend,
    /// The emulator's parameters, for emulated cells (absent for others, so their ids do not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulated: Option<EmulatorSettings>,
    pub seed: u64,
    // Shared: the cells of a matrix point at one copy of each app, scenario and policy.
    #[serde(with = "shared")]
    pub app: Arc<AppModel>,
    #[serde(with = "shared")]
    pub scenario: Arc<Scenario>,
    #[serde(with = "shared")]
    pub policy: Arc<ResolvedPolicy>,
    /// The simulator's model, for sim cells; absent for others and for the legacy model, so cells of the model
    /// before calibration keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSettings>,
}

impl CellConfig {
    /// The model the simulator runs this cell with (absent: the legacy one).
    pub fn simulator_settings(&self) -> SimulatorSettings {
        self.simulator.unwrap_or(SimulatorSettings::LEGACY)
    }
}

/// Serializes an `Arc<T>` as the `T` it points to (serde's own impl needs its `rc` feature).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, serializer: S) -> Result<S::Ok, S::Error> {
        T::serialize(value, serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<T>, D::Error> {
        T::deserialize(deserializer).map(Arc::new)
    }
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub id: String,
    pub config: CellConfig,
    /// How long the cell may run before it is killed and failed.
    pub timeout: Duration,
}

/// `<app>.<policy>.<scenario>.s<seed>-<hash8>`.
pub fn cell_id(config: &CellConfig) -> String {
    cell_id_with(config, &mut ConfigHasher::default())
}

pub(crate) fn cell_id_with(config: &CellConfig, hasher: &mut ConfigHasher) -> String {
    format!(
        "{}.{}.{}.s{}-{}",
        config.app.name,
        config.policy.name(),
        config.scenario.name,
        config.seed,
        &hasher.hash(config)[..8]
    )
}

/// A cell config that does not serialize (a bug, not an input problem): the serializer's words.
#[derive(Debug, thiserror::Error)]
pub enum ConfigYamlError {
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("{0}")]
    Yaml(serde_yaml::Error),
}

/// The resolved config as config.yaml holds it: written through the JSON tree, so enums read back as
/// `{variant: value}` maps like every other file of the project.
pub fn config_yaml(config: &CellConfig) -> Result<String, ConfigYamlError> {
    let tree = serde_json::to_value(config).map_err(ConfigYamlError::Json)?;
    yaml::to_string(&tree).map_err(ConfigYamlError::Yaml)
}

/// Reads a config.yaml that [`config_yaml`] wrote.
pub fn read_config_yaml(path: &Path) -> Result<CellConfig, ConfigError> {
    yaml::read_file(path)
}

/// SHA-256 of the canonical JSON of a cell config, in hex.
///
/// A policy's `*_file` fields say where an input was read from; its content is in the config and hashed, the
/// path is not, so the same cell has the same id whichever directory or path form the matrix was run from.
pub fn config_hash(config: &CellConfig) -> String {
    ConfigHasher::default().hash(config)
}

/// Hashes cell configs as [`config_hash`] defines, reusing the JSON of the apps, scenarios and policies cells
/// share (by pointer): the canonical JSON of a config is the object of its fields under sorted keys, so it is put
/// together from each field's JSON, and a cell's own cost is its few small fields. Only for configs whose shared
/// parts outlive the hasher (a pointer must not be reused for another value while it runs).
#[derive(Default)]
pub(crate) struct ConfigHasher {
    parts: HashMap<(&'static str, usize), Vec<u8>>,
}

impl ConfigHasher {
    fn hash(&mut self, config: &CellConfig) -> String {
        let mut hasher = Sha256::new();
        // The fields of CellConfig in sorted order, as serde_json writes a sorted object (no spaces).
        hasher.update(b"{\"app\":");
        hasher.update(self.part("app", &config.app, canonical_json));
        hasher.update(b",\"backend\":");
        hasher.update(canonical_json(&config.backend));
        if let Some(emulated) = &config.emulated {
            hasher.update(b",\"emulated\":");
            hasher.update(canonical_json(emulated));
        }
        hasher.update(b",\"format_version\":");
        hasher.update(canonical_json(&config.format_version));
        hasher.update(b",\"policy\":");
        hasher.update(self.part("policy", &config.policy, |policy| {
            let mut tree = serde_json::to_value(policy).expect("cell config serializes");
            if let Value::Object(fields) = &mut tree {
                fields.retain(|key, _| !key.ends_with("_file"));
            }
            serde_json::to_vec(&canonical(tree)).expect("cell config serializes")
        }));
        hasher.update(b",\"scenario\":");
        hasher.update(self.part("scenario", &config.scenario, canonical_json));
        hasher.update(b",\"seed\":");
        hasher.update(canonical_json(&config.seed));
        if let Some(simulator) = &config.simulator {
            hasher.update(b",\"simulator\":");
            hasher.update(canonical_json(simulator));
        }
        hasher.update(b"}");
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn part<T>(&mut self, kind: &'static str, value: &Arc<T>, json: impl FnOnce(&T) -> Vec<u8>) -> &[u8] {
        let key = (kind, Arc::as_ptr(value) as *const () as usize);
        self.parts.entry(key).or_insert_with(|| json(value))
    }
}

/// A value's JSON with every object's keys sorted.
fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let tree = serde_json::to_value(value).expect("cell config serializes");
    serde_json::to_vec(&canonical(tree)).expect("cell config serializes")
}

/// The same tree with every object's keys in sorted order (whatever map type serde_json was built with), so the
/// hash depends on the config's content only, not on the order fields are declared in.
pub(crate) fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}
