//! Experiment matrices: parse, resolve every file they name, validate, and expand into cells.
//!
//! ```yaml
//! name: main
//! seeds: [1, 2, 3]
//! apps: [online-boutique]            # experiments/apps/<app>.yaml
//! scenarios: [peak, rushsale]        # experiments/scenarios/<app>/<scenario>.yaml
//! policies:
//!   - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}   # baselines/<app>/hpa-cpu-60.yaml
//!   - {name: static-max, kind: static, replicas: max}
//! strategy: {max_parallel: 2}
//! backend: sim                       # or emulated, or a list: [emulated, sim] (see crate::emulated::settings)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use load_agent::scenario::Scenario;
use load_agent::yaml::{self, ConfigError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::{AppModel, check_scenario_routes};
use crate::emulated::settings::{self as emulated_settings, EmulatedModel, EmulatedRun, EmulatedSection};
use crate::policy::hpa::{self, HorizontalPodAutoscaler};

/// Bumped whenever the meaning of a resolved cell config changes, so cell ids change with it.
pub const CELL_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub backend: BackendAxis,
    /// Settings of emulated cells.
    #[serde(default)]
    pub emulated: Option<EmulatedSection>,
    pub seeds: Vec<u64>,
    pub apps: Vec<String>,
    pub scenarios: Vec<String>,
    pub policies: Vec<PolicySpec>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub paths: Paths,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Sim,
    Emulated,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Emulated => "emulated",
        }
    }
}

/// `backend:` as one value or a list; each cell runs on each listed backend (so an emulated cell can have its
/// simulator twin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAxis(pub Vec<Backend>);

impl Default for BackendAxis {
    fn default() -> Self {
        BackendAxis(vec![Backend::Sim])
    }
}

impl<'de> Deserialize<'de> for BackendAxis {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let names = match OneOrMany::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("give a backend (sim, emulated) or a list of them"))?
        {
            OneOrMany::One(name) => vec![name],
            OneOrMany::Many(names) => names,
        };
        let mut backends = Vec::new();
        for name in names {
            let backend = match name.as_str() {
                "sim" => Backend::Sim,
                "emulated" => Backend::Emulated,
                other => {
                    return Err(serde::de::Error::custom(format!("unknown backend {other:?}: use sim or emulated")));
                }
            };
            if backends.contains(&backend) {
                return Err(serde::de::Error::custom(format!("backend {name:?} is listed twice")));
            }
            backends.push(backend);
        }
        if backends.is_empty() {
            return Err(serde::de::Error::custom("needs at least one backend"));
        }
        Ok(BackendAxis(backends))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Cells run at once; defaults to the number of cores.
    pub max_parallel: Option<usize>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Hpa,
    Static,
}

/// A policy with everything it reads resolved for one app.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedPolicy {
    Hpa { name: String, manifest_file: PathBuf, manifests: Vec<HorizontalPodAutoscaler> },
    Static { name: String, replicas: BTreeMap<String, u32> },
}

impl ResolvedPolicy {
    pub fn name(&self) -> &str {
        match self {
            ResolvedPolicy::Hpa { name, .. } | ResolvedPolicy::Static { name, .. } => name,
        }
    }
}

/// Everything one cell runs with; its hash is part of the cell id.
#[derive(Debug, Clone, Serialize)]
pub struct CellConfig {
    pub format_version: u32,
    pub backend: Backend,
    /// The emulator's parameters, for emulated cells (absent for others, so their ids do not change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulated: Option<EmulatedModel>,
    pub seed: u64,
    pub app: AppModel,
    pub scenario: Scenario,
    pub policy: ResolvedPolicy,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub id: String,
    pub config: CellConfig,
}

/// A parsed, validated and expanded matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub file: PathBuf,
    pub name: String,
    pub max_parallel: usize,
    pub cells: Vec<Cell>,
    /// Where emulated cells get their load from, when any cell is emulated.
    pub emulated: Option<EmulatedRun>,
}

impl Matrix {
    /// Loads `path` and everything it names. Any problem is one error naming the file and field.
    pub fn load(path: &Path) -> Result<Matrix, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read matrix: {e}")))?;
        let file: MatrixFile = yaml::from_str(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve(file, path, base)
    }
}

fn resolve(file: MatrixFile, path: &Path, base: &Path) -> Result<Matrix, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(path, field, message);
    if file.name.trim().is_empty() {
        return Err(err("name", "must not be empty".into()));
    }
    for (field, empty) in [
        ("seeds", file.seeds.is_empty()),
        ("apps", file.apps.is_empty()),
        ("scenarios", file.scenarios.is_empty()),
        ("policies", file.policies.is_empty()),
    ] {
        if empty {
            return Err(err(field, "needs at least one entry".into()));
        }
    }
    check_unique(path, "seeds", file.seeds.iter().map(|s| s.to_string()))?;
    check_unique(path, "apps", file.apps.iter().cloned())?;
    check_unique(path, "scenarios", file.scenarios.iter().cloned())?;
    check_unique(path, "policies", file.policies.iter().map(|p| p.name.clone()))?;
    let max_parallel = match file.strategy.max_parallel {
        Some(0) => return Err(err("strategy.max_parallel", "must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let backends = &file.backend.0;
    let emulated = emulated_settings::resolve(file.emulated.as_ref(), backends.contains(&Backend::Emulated), path)?;
    let (emulated_model, emulated_run) = emulated.unzip();
    for (i, policy) in file.policies.iter().enumerate() {
        if !is_id_part(&policy.name) {
            return Err(err(
                &format!("policies[{i}].name"),
                format!("{:?} must be letters, digits, '-' or '_' (it is part of cell ids)", policy.name),
            ));
        }
    }

    let mut cells = Vec::new();
    for (a, app_name) in file.apps.iter().enumerate() {
        let app_file = base.join(&file.paths.apps).join(format!("{app_name}.yaml"));
        if !app_file.is_file() {
            return Err(err(
                &format!("apps[{a}]"),
                format!("unknown app {app_name:?}: {} does not exist", app_file.display()),
            ));
        }
        let app = AppModel::load(&app_file)?;
        if &app.name != app_name {
            return Err(ConfigError::new(
                &app_file,
                "name",
                format!("is {:?} but the file is named {app_name:?}", app.name),
            ));
        }
        let mut scenarios = Vec::new();
        for (s, scenario_name) in file.scenarios.iter().enumerate() {
            let scenario_file = base.join(&file.paths.scenarios).join(app_name).join(format!("{scenario_name}.yaml"));
            if !scenario_file.is_file() {
                return Err(err(
                    &format!("scenarios[{s}]"),
                    format!(
                        "unknown scenario {scenario_name:?} for app {app_name:?}: {} does not exist",
                        scenario_file.display()
                    ),
                ));
            }
            let scenario = Scenario::load(&scenario_file)?;
            check_scenario_routes(&app, &scenario, &scenario_file)?;
            if emulated_model.is_some() {
                emulated_settings::check_cell(&app, &app_file, &scenario, &scenario_file)?;
            }
            scenarios.push(scenario);
        }
        let mut policies = Vec::new();
        for (p, spec) in file.policies.iter().enumerate() {
            policies.push(resolve_policy(spec, &format!("policies[{p}]"), path, base, &file.paths, &app)?);
        }
        for policy in &policies {
            for scenario in &scenarios {
                for &seed in &file.seeds {
                    for &backend in backends {
                        let config = CellConfig {
                            format_version: CELL_FORMAT_VERSION,
                            backend,
                            emulated: emulated_model.clone().filter(|_| backend == Backend::Emulated),
                            seed,
                            app: app.clone(),
                            scenario: scenario.clone(),
                            policy: policy.clone(),
                        };
                        let id = format!(
                            "{}.{}.{}.s{}-{}",
                            app.name,
                            policy.name(),
                            scenario.name,
                            seed,
                            &config_hash(&config)[..8]
                        );
                        cells.push(Cell { id, config });
                    }
                }
            }
        }
    }
    Ok(Matrix { file: path.to_path_buf(), name: file.name, max_parallel, cells, emulated: emulated_run })
}

fn resolve_policy(
    spec: &PolicySpec,
    at: &str,
    matrix_file: &Path,
    base: &Path,
    paths: &Paths,
    app: &AppModel,
) -> Result<ResolvedPolicy, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(matrix_file, format!("{at}.{field}"), message);
    match spec.kind {
        PolicyKind::Hpa => {
            if spec.replicas.is_some() {
                return Err(err("replicas", "an hpa policy takes its replicas from the manifest".into()));
            }
            let Some(manifest) = &spec.manifest else {
                return Err(err(
                    "manifest",
                    "missing: an hpa policy names a manifest file under the baselines directory".into(),
                ));
            };
            let manifest_file = base.join(&paths.baselines).join(&app.name).join(manifest);
            if !manifest_file.is_file() {
                return Err(err(
                    "manifest",
                    format!(
                        "unknown baseline {manifest:?} for app {:?}: {} does not exist",
                        app.name,
                        manifest_file.display()
                    ),
                ));
            }
            let manifests = hpa::load_manifests(&manifest_file)?;
            check_manifests_against_app(&manifests, &manifest_file, app)?;
            Ok(ResolvedPolicy::Hpa { name: spec.name.clone(), manifest_file, manifests })
        }
        PolicyKind::Static => {
            if spec.manifest.is_some() {
                return Err(err("manifest", "a static policy takes no manifest".into()));
            }
            let Some(value) = &spec.replicas else {
                return Err(err("replicas", "missing: give min, max, a number, or a map of service to number".into()));
            };
            let replicas = static_replicas(value, app).map_err(|(field, message)| {
                let field = if field.is_empty() { "replicas".to_string() } else { format!("replicas.{field}") };
                err(&field, message)
            })?;
            Ok(ResolvedPolicy::Static { name: spec.name.clone(), replicas })
        }
    }
}

fn check_manifests_against_app(
    manifests: &[HorizontalPodAutoscaler],
    file: &Path,
    app: &AppModel,
) -> Result<(), ConfigError> {
    let mut targeted = BTreeMap::new();
    for (d, hpa) in manifests.iter().enumerate() {
        let at = format!("document {}", d + 1);
        let target = &hpa.spec.scale_target_ref.name;
        let Some(index) = app.service_index(target) else {
            return Err(ConfigError::new(
                file,
                format!("{at}: spec.scaleTargetRef.name"),
                format!("deployment {target:?} is not a service of app {:?}", app.name),
            ));
        };
        if let Some(previous) = targeted.insert(target.clone(), d + 1) {
            return Err(ConfigError::new(
                file,
                format!("{at}: spec.scaleTargetRef.name"),
                format!("deployment {target:?} is already scaled by document {previous}"),
            ));
        }
        let service = &app.services[index];
        let min = hpa.spec.min_replicas.unwrap_or(1);
        if min < service.replicas.min as i32 || hpa.spec.max_replicas > service.replicas.max as i32 {
            return Err(ConfigError::new(
                file,
                format!("{at}: spec"),
                format!(
                    "replicas {min}..{} fall outside what app {:?} allows for {target:?} ({}..{})",
                    hpa.spec.max_replicas, app.name, service.replicas.min, service.replicas.max
                ),
            ));
        }
    }
    if manifests.is_empty() {
        return Err(ConfigError::new(file, "", "holds no HorizontalPodAutoscaler"));
    }
    Ok(())
}

/// Resolves a static policy's `replicas` value for every service.
fn static_replicas(value: &serde_json::Value, app: &AppModel) -> Result<BTreeMap<String, u32>, (String, String)> {
    let check = |name: &str, count: u64| -> Result<u32, (String, String)> {
        let service = &app.services[app.service_index(name).expect("known service")];
        if count < service.replicas.min as u64 || count > service.replicas.max as u64 {
            return Err((
                String::new(),
                format!("{count} replicas for {name:?} is outside {}..{}", service.replicas.min, service.replicas.max),
            ));
        }
        Ok(count as u32)
    };
    let mut out = BTreeMap::new();
    match value {
        serde_json::Value::String(word) if word == "min" || word == "max" => {
            for s in &app.services {
                out.insert(s.name.clone(), if word == "min" { s.replicas.min } else { s.replicas.max });
            }
        }
        serde_json::Value::Number(n) if n.as_u64().is_some() => {
            for s in &app.services {
                out.insert(s.name.clone(), check(&s.name, n.as_u64().expect("checked"))?);
            }
        }
        serde_json::Value::Object(map) => {
            for s in &app.services {
                out.insert(s.name.clone(), s.replicas.initial());
            }
            for (name, count) in map {
                if app.service_index(name).is_none() {
                    return Err((name.clone(), format!("unknown service {name:?} of app {:?}", app.name)));
                }
                let Some(count) = count.as_u64() else {
                    return Err((name.clone(), format!("must be a whole number, got {count}")));
                };
                out.insert(name.clone(), check(name, count).map_err(|(_, m)| (name.clone(), m))?);
            }
        }
        other => return Err((String::new(), format!("must be min, max, a whole number or a map, got {other}"))),
    }
    Ok(out)
}

fn check_unique(file: &Path, field: &str, items: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.enumerate() {
        if !seen.insert(item.clone()) {
            return Err(ConfigError::new(file, format!("{field}[{i}]"), format!("duplicate entry {item:?}")));
        }
    }
    Ok(())
}

fn is_id_part(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// SHA-256 of the canonical JSON of a cell config, in hex.
pub fn config_hash(config: &CellConfig) -> String {
    // serde_json writes struct fields in declaration order and BTreeMaps sorted: canonical for our types.
    let json = serde_json::to_vec(config).expect("cell config serializes");
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
