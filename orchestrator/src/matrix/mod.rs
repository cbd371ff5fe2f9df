//! Experiment matrices: parse, resolve every file they name, validate, and expand into cells.
//!
//! ```yaml
//! name: main
//! apps: [online-boutique, redis-cluster]     # experiments/apps/<app>.yaml; every axis takes a value or a list
//! scenarios: [peak, rushsale]                # experiments/scenarios/<app>/<scenario>.yaml
//! policies:
//!   - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}   # baselines/<app>/hpa-cpu-60.yaml
//!   - {name: static-max, kind: static, replicas: max}
//! seeds: [1, 2, 3]
//! backend: sim
//! exclude: [{app: redis-cluster, policy: static-max}]            # partial match, globs allowed
//! include: [{app: online-boutique, slo: {threshold_ms: 80}}]     # merged into matching cells, else added
//! defaults: {timeout: 10m}
//! overrides: {app: {redis-cluster: {slo: {threshold_ms: 5}}}}
//! strategy: {max_parallel: 2, fail_fast: false, max_failures: 5, retries: 2, retry_backoff: 1s, timeout: 1h}
//! report: {baseline: hpa-cpu-60}
//! ```
//!
//! Expansion follows GitHub Actions' matrix rules (see [`crate::matrix::combinations`]); a cell's settings are layered
//! `defaults`, then `overrides` by axis (app, policy, scenario, seed, backend), then the include entries merged
//! into it, later layers replacing the fields they set.

pub mod combinations;
pub mod executor;
pub mod rl_policy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use glob::Pattern;
use load_agent::scenario::Scenario;
use load_agent::tree::{self, Located};
use load_agent::yaml::{self, ConfigError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::{AppModel, check_scenario_routes};
use crate::cell::config::{CELL_FORMAT_VERSION, ConfigHasher, cell_id_with};
use crate::cell::{Backend, Cell, CellConfig, ResolvedPolicy};
use crate::duration;
use crate::hpa::{self, HorizontalPodAutoscaler};
use crate::limits;
use crate::matrix::executor::ExecutorSection;
use crate::settings::emulated::{self as emulated_settings, EmulatedRun, EmulatedSection};
use combinations::{Axis, Origin};

/// A cell's timeout when neither the strategy nor its settings give one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The wait before the first retry of a transient failure; it doubles with every further retry.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// The axes in expansion order (the first varies slowest): the key a cell has, and the list the file has.
pub const AXES: [(&str, &str); 5] =
    [("app", "apps"), ("policy", "policies"), ("scenario", "scenarios"), ("seed", "seeds"), ("backend", "backend")];

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
    /// Where cells run: local processes (default) or Kubernetes Jobs ([`executor`]).
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

/// The strategy as the runner applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionStrategy {
    pub max_failures: Option<u32>,
    pub retries: u32,
    pub retry_backoff: Duration,
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
    /// In the order of [`AXES`].
    fn by_axis(&self) -> [&BTreeMap<String, CellSettings>; 5] {
        [&self.app, &self.policy, &self.scenario, &self.seed, &self.backend]
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
    /// `rl`: the learner's settings, resolved by [`rl_policy`].
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

/// A parsed, validated and expanded matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub file: PathBuf,
    pub name: String,
    pub max_parallel: usize,
    pub strategy: ExecutionStrategy,
    /// `report.baseline`: a policy name.
    pub baseline: Option<String>,
    /// In plan order: the axes' product in axis order, then cells added by `include`.
    pub cells: Vec<Cell>,
    /// Where emulated cells get their load from, when any cell is emulated.
    pub emulated: Option<EmulatedRun>,
    /// The cluster and load of kubernetes cells, when any cell runs on one.
    pub kubernetes: Option<crate::backends::kubernetes::settings::KubernetesRun>,
    /// `executor: kubernetes`: cells run as Jobs.
    pub executor: Option<executor::JobExecutor>,
}

impl Matrix {
    /// Loads `path` and everything it names. Any problem is one error naming the file and field.
    pub fn load(path: &Path) -> Result<Matrix, ConfigError> {
        let mut cells = Vec::new();
        let mut matrix = Matrix::load_each(path, &mut |cell| cells.push(cell))?;
        matrix.cells = cells;
        Ok(matrix)
    }

    /// [`Matrix::load`] that hands each cell to `on_cell` as soon as it is resolved, in plan order, and keeps none
    /// (`cells` is empty): what `orch plan` prints, in memory that does not grow with the cells. Every file is read
    /// and checked before the first cell is handed on, so an error comes before any cell.
    pub fn load_each(path: &Path, on_cell: &mut dyn FnMut(Cell)) -> Result<Matrix, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read matrix: {e}")))?;
        limits::check_matrix_size(&text, path)?;
        let mut tree: Value = yaml::from_str(&text, path)?;
        // Top-level `x-` keys hold YAML anchors for later aliases, as in Compose files; they are not settings.
        if let Value::Object(map) = &mut tree {
            map.retain(|key, _| !key.starts_with("x-"));
        }
        let file: MatrixFile = typed(tree, path, "")?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve(file, path, base, on_cell)
    }
}

/// Deserializes `value`, naming the field path under `at` on error.
fn typed<T: DeserializeOwned>(value: Value, file: &Path, at: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        ConfigError::new(
            file,
            join_path(at, if inner == "." { "" } else { &inner }),
            load_agent::redact::parse_error(&e.inner().to_string()),
        )
    })
}

fn join_path(at: &str, inner: &str) -> String {
    match (at.is_empty(), inner.is_empty()) {
        (_, true) => at.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{at}{inner}"),
        (false, false) => format!("{at}.{inner}"),
    }
}

/// An axis written as one value or a list: its values, and whether it was a list (for field paths).
fn one_or_many<T: DeserializeOwned>(value: Value, file: &Path, at: &str) -> Result<(Vec<T>, bool), ConfigError> {
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

/// Resolves a parsed matrix, handing its cells to `on_cell` in plan order; the returned matrix has no cells.
fn resolve(file: MatrixFile, path: &Path, base: &Path, on_cell: &mut dyn FnMut(Cell)) -> Result<Matrix, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(path, field, message);
    if file.name.trim().is_empty() {
        return Err(err("name", "must not be empty".into()));
    }
    let (apps, apps_listed) = one_or_many::<String>(file.apps, path, "apps")?;
    let (policies, policies_listed) = one_or_many::<PolicySpec>(file.policies, path, "policies")?;
    let (scenarios, scenarios_listed) = one_or_many::<String>(file.scenarios, path, "scenarios")?;
    if let Value::Array(items) = &file.seeds
        && items.len() > limits::MAX_SEEDS
    {
        return Err(err("seeds", limits::above(format!("{} seeds", items.len()), limits::MAX_SEEDS)));
    }
    let (seeds, seeds_listed) = one_or_many::<u64>(file.seeds, path, "seeds")?;
    let (backends, backends_listed) = match file.backend {
        Some(value) => one_or_many::<Backend>(value, path, "backend")?,
        None => (vec![Backend::default()], false),
    };
    let listed = [apps_listed, policies_listed, scenarios_listed, seeds_listed, backends_listed];
    for (field, empty) in [
        ("apps", apps.is_empty()),
        ("policies", policies.is_empty()),
        ("scenarios", scenarios.is_empty()),
        ("seeds", seeds.is_empty()),
        ("backend", backends.is_empty()),
    ] {
        if empty {
            return Err(err(field, "needs at least one entry".into()));
        }
    }
    check_unique(path, "apps", apps.iter().cloned())?;
    check_unique(path, "policies", policies.iter().map(|p| p.name.clone()))?;
    check_unique(path, "scenarios", scenarios.iter().cloned())?;
    check_unique(path, "seeds", seeds.iter().map(|s| s.to_string()))?;
    check_unique(path, "backend", backends.iter().map(|b| b.name().to_string()))?;
    let axis_path = |k: usize, i: usize| {
        if listed[k] { format!("{}[{i}]", AXES[k].1) } else { AXES[k].1.to_string() }
    };
    for (k, names) in [(0, &apps), (2, &scenarios)] {
        for (i, name) in names.iter().enumerate() {
            check_id_part(path, &axis_path(k, i), name)?;
        }
    }
    for (i, policy) in policies.iter().enumerate() {
        check_id_part(path, &format!("{}.name", axis_path(1, i)), &policy.name)?;
    }

    let strategy = &file.strategy;
    let max_parallel = match strategy.max_parallel {
        Some(0) => return Err(err("strategy.max_parallel", "must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let max_failures = match (strategy.fail_fast, strategy.max_failures) {
        (_, Some(0)) => return Err(err("strategy.max_failures", "must be at least 1".into())),
        (true, Some(_)) => {
            return Err(err(
                "strategy.max_failures",
                "give fail_fast (stop at the first failure) or max_failures, not both".into(),
            ));
        }
        (true, None) => Some(1),
        (false, n) => n,
    };
    if strategy.retries > 20 {
        return Err(err("strategy.retries", format!("{} retries is more than 20", strategy.retries)));
    }
    if strategy.timeout == Some(Duration::ZERO) {
        return Err(err("strategy.timeout", "must be longer than 0s".into()));
    }
    let execution = ExecutionStrategy {
        max_failures,
        retries: strategy.retries,
        retry_backoff: strategy.retry_backoff.unwrap_or(DEFAULT_RETRY_BACKOFF),
    };
    let default_timeout = strategy.timeout.unwrap_or(DEFAULT_TIMEOUT);
    check_settings(path, "defaults", &file.defaults)?;

    let axes: Vec<Axis> = vec![
        axis(0, apps.clone()),
        axis(1, policies.iter().map(|p| p.name.clone()).collect()),
        axis(2, scenarios.clone()),
        axis(3, seeds.iter().map(u64::to_string).collect()),
        axis(4, backends.iter().map(|b| b.name().to_string()).collect()),
    ];
    check_cell_count(path, &axes)?;
    let exclude = parse_exclude(path, &file.exclude)?;
    let (include, include_settings) = parse_include(path, file.include, &policies)?;
    let combos = combinations::expand(&axes, &exclude, &include).map_err(|(field, message)| err(&field, message))?;
    if combos.is_empty() {
        return Err(err("exclude", "removes every cell: nothing would run".into()));
    }
    if combos.len() > limits::MAX_CELLS {
        return Err(err("include", limits::above(format!("{} cells", combos.len()), limits::MAX_CELLS)));
    }
    let overrides = parse_overrides(path, &file.overrides, &combos)?;
    let uses_emulated = combos.iter().any(|c| c.values[4] == Backend::Emulated.name());
    let (emulated_model, emulated_run) =
        emulated_settings::resolve(file.emulated.as_ref(), uses_emulated, path)?.unzip();
    let uses_kubernetes = combos.iter().any(|c| c.values[4] == Backend::Kubernetes.name());
    let kubernetes_run =
        crate::backends::kubernetes::settings::resolve(file.kubernetes.as_ref(), uses_kubernetes, path)?;
    let mut emulation_checked: BTreeSet<(String, String)> = BTreeSet::new();
    let baseline = file.report.as_ref().and_then(|r| r.baseline.clone());
    if let Some(name) = &baseline
        && !policies.iter().any(|p| &p.name == name)
    {
        let known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        return Err(err("report.baseline", format!("{name:?} is not a policy of this matrix; policies: {known:?}")));
    }

    let mut loaded_apps: HashMap<String, Arc<AppModel>> = HashMap::new();
    let mut loaded_scenarios: HashMap<(String, String), Arc<Scenario>> = HashMap::new();
    let mut resolved_policies: HashMap<(usize, String), Option<Arc<ResolvedPolicy>>> = HashMap::new();
    // An app with a cell's SLO settings applied; cells share it, so memory grows with the variants, not the cells.
    let mut app_variants: HashMap<(String, String, u64, u64), Arc<AppModel>> = HashMap::new();
    // Where each of a combination's values was written, for errors about it.
    let field_of = |combo: &combinations::Combination, k: usize| match &combo.origin {
        Origin::Axes(index) => axis_path(k, index[k]),
        Origin::Include(i) if include[*i][k].is_some() => format!("include[{i}].{}", AXES[k].0),
        Origin::Include(_) => axis_path(k, 0),
    };
    // First every file is read and every cell's settings checked, so that no error comes after the first cell has
    // been handed on: what a cell needs is kept as shared pointers, a few words per cell.
    let mut planned = Vec::with_capacity(combos.len());
    for (c, combo) in combos.iter().enumerate() {
        let [app_name, policy_name, scenario_name, seed, backend] = &combo.values[..] else {
            unreachable!("one value per axis")
        };
        if !loaded_apps.contains_key(app_name) {
            let apps_dir = base.join(&file.paths.apps);
            let app_file = apps_dir.join(format!("{app_name}.yaml"));
            match tree::locate(&apps_dir, &app_file) {
                Located::File(_) => {}
                Located::Outside => return Err(err(&field_of(combo, 0), tree::leaves(app_name, &apps_dir))),
                Located::Missing => {
                    return Err(err(
                        &field_of(combo, 0),
                        format!("unknown app {app_name:?}: {} does not exist", app_file.display()),
                    ));
                }
            }
            let app = AppModel::load(&app_file)?;
            if &app.name != app_name {
                return Err(ConfigError::new(
                    &app_file,
                    "name",
                    format!("is {:?} but the file is named {app_name:?}", app.name),
                ));
            }
            loaded_apps.insert(app_name.clone(), Arc::new(app));
        }
        let app = &loaded_apps[app_name];
        let scenario_key = (app_name.clone(), scenario_name.clone());
        if !loaded_scenarios.contains_key(&scenario_key) {
            let scenarios_dir = base.join(&file.paths.scenarios);
            let scenario_file = scenarios_dir.join(app_name).join(format!("{scenario_name}.yaml"));
            match tree::locate(&scenarios_dir, &scenario_file) {
                Located::File(_) => {}
                Located::Outside => return Err(err(&field_of(combo, 2), tree::leaves(scenario_name, &scenarios_dir))),
                Located::Missing => {
                    return Err(err(
                        &field_of(combo, 2),
                        format!(
                            "unknown scenario {scenario_name:?} for app {app_name:?}: {} does not exist",
                            scenario_file.display()
                        ),
                    ));
                }
            }
            // A trace the scenario replays may be anywhere under the scenarios folder, and nowhere else.
            let scenario = limits::load_scenario(&scenario_file, &scenarios_dir)?;
            check_scenario_routes(app, &scenario, &scenario_file)?;
            loaded_scenarios.insert(scenario_key.clone(), Arc::new(scenario));
        }
        let p = policies.iter().position(|spec| &spec.name == policy_name).expect("include policies are checked");
        let policy_key = (p, app_name.clone());
        if !resolved_policies.contains_key(&policy_key) {
            let spec = &policies[p];
            let at = axis_path(1, p);
            if spec.kind != PolicyKind::Rl && spec.rl.is_some() {
                return Err(err(&format!("{at}.rl"), "only a policy of kind rl takes an rl block".into()));
            }
            // None: an rl policy limited to other apps (`rl.apps`) has no cell for this one.
            let policy = match spec.kind {
                PolicyKind::Rl => {
                    crate::matrix::rl_policy::resolve_entry(spec, &at, path, base, &file.paths, app, &apps, &scenarios)?
                }
                _ => Some(resolve_policy(spec, &at, path, base, &file.paths, app)?),
            };
            resolved_policies.insert(policy_key.clone(), policy.map(Arc::new));
        }
        let Some(policy) = resolved_policies[&policy_key].clone() else { continue };

        let mut layers: Vec<(String, &CellSettings)> = vec![("defaults".into(), &file.defaults)];
        for (k, axis_overrides) in overrides.iter().enumerate() {
            if let Some((key, settings)) = axis_overrides
                .iter()
                .find(|(pattern, _, _)| pattern.matches(&combo.values[k]))
                .map(|(_, key, s)| (key, s))
            {
                layers.push((format!("overrides.{}.{key}", AXES[k].0), settings));
            }
        }
        for &i in &combo.includes {
            layers.push((format!("include[{i}]"), &include_settings[i]));
        }
        let mut slo = app.slo.clone();
        let mut timeout = default_timeout;
        for (at, settings) in layers {
            if let Some(slo_override) = &settings.slo {
                if let Some(route) = &slo_override.route {
                    if app.route_index(route).is_none() {
                        return Err(err(
                            &format!("{at}.slo.route"),
                            format!("app {:?} has no route {route:?}", app.name),
                        ));
                    }
                    slo.route = route.clone();
                }
                if let Some(percentile) = slo_override.percentile {
                    slo.percentile = percentile;
                }
                if let Some(threshold) = slo_override.threshold_ms {
                    slo.threshold_ms = threshold;
                }
            }
            if let Some(t) = settings.timeout {
                timeout = t;
            }
        }
        let app = if slo == app.slo {
            Arc::clone(app)
        } else {
            let key = (app_name.clone(), slo.route.clone(), slo.percentile.to_bits(), slo.threshold_ms.to_bits());
            let variant = app_variants.entry(key).or_insert_with(|| {
                let mut variant = AppModel::clone(app);
                variant.slo = slo;
                Arc::new(variant)
            });
            Arc::clone(variant)
        };
        let backend = Backend::parse(backend).expect("backends are parsed");
        if backend == Backend::Emulated && emulation_checked.insert(scenario_key.clone()) {
            let app_file = base.join(&file.paths.apps).join(format!("{app_name}.yaml"));
            let scenario_file = base.join(&file.paths.scenarios).join(app_name).join(format!("{scenario_name}.yaml"));
            emulated_settings::check_cell(&app, &app_file, &loaded_scenarios[&scenario_key], &scenario_file)?;
        }
        let config = CellConfig {
            format_version: CELL_FORMAT_VERSION,
            backend,
            emulated: emulated_model.clone().filter(|_| backend == Backend::Emulated),
            seed: seed.parse().map_err(|_| err(&field_of(combo, 3), format!("{seed:?} is not a seed")))?,
            app,
            scenario: Arc::clone(&loaded_scenarios[&scenario_key]),
            policy,
        };
        planned.push((c, config, timeout));
    }
    let longest = planned.iter().map(|(_, _, timeout)| *timeout).max().unwrap_or(default_timeout);
    let executor = executor::resolve(file.executor.as_ref(), longest, path)?;

    // Then the cells, one at a time. The maps above hold every shared part until the end, as the hasher needs.
    let mut hasher = ConfigHasher::default();
    let mut ids = BTreeSet::new();
    for (c, config, timeout) in planned {
        let id = cell_id_with(&config, &mut hasher);
        if !ids.insert(id.clone()) {
            return Err(err(&field_of(&combos[c], 0), format!("cell {id} appears twice")));
        }
        on_cell(Cell { id, config, timeout });
    }
    Ok(Matrix {
        file: path.to_path_buf(),
        name: file.name,
        max_parallel,
        strategy: execution,
        baseline,
        cells: Vec::new(),
        emulated: emulated_run,
        kubernetes: kubernetes_run,
        executor,
    })
}

/// Refuses a product of axes beyond [`limits::MAX_CELLS`] before it is expanded, naming the longest axis.
fn check_cell_count(file: &Path, axes: &[Axis]) -> Result<(), ConfigError> {
    let product = axes.iter().map(|a| a.values.len()).fold(1usize, usize::saturating_mul);
    if product <= limits::MAX_CELLS {
        return Ok(());
    }
    let longest = axes.iter().max_by_key(|a| a.values.len()).expect("five axes");
    let factors: Vec<String> = axes.iter().map(|a| format!("{} {}", a.values.len(), a.list)).collect();
    Err(ConfigError::new(
        file,
        longest.list,
        limits::above(format!("{} = {product} cells", factors.join(" x ")), limits::MAX_CELLS),
    ))
}

fn axis(k: usize, values: Vec<String>) -> Axis {
    Axis { key: AXES[k].0, list: AXES[k].1, values }
}

fn axis_index(key: &str) -> Option<usize> {
    AXES.iter().position(|(k, _)| *k == key)
}

const AXIS_KEYS: &str = "app, policy, scenario, seed or backend";

fn parse_exclude(
    file: &Path,
    entries: &[serde_json::Map<String, Value>],
) -> Result<Vec<Vec<Option<Pattern>>>, ConfigError> {
    let mut out = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        let mut patterns = vec![None; AXES.len()];
        for (key, value) in entry {
            let at = format!("exclude[{e}].{key}");
            let Some(k) = axis_index(key) else {
                return Err(ConfigError::new(file, at, format!("unknown axis; exclude names {AXIS_KEYS}")));
            };
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => Pattern::escape(&n.to_string()),
                other => {
                    return Err(ConfigError::new(file, at, format!("must be a name, a glob or a seed, got {other}")));
                }
            };
            let pattern =
                Pattern::new(&text).map_err(|e| ConfigError::new(file, &at, format!("bad glob {text:?}: {e}")))?;
            patterns[k] = Some(pattern);
        }
        out.push(patterns);
    }
    Ok(out)
}

/// An include entry's value per axis (in [`AXES`] order), where it names one.
type IncludeValues = Vec<Option<String>>;

/// Splits each include entry into its axis values and its settings.
fn parse_include(
    file: &Path,
    entries: Vec<serde_json::Map<String, Value>>,
    policies: &[PolicySpec],
) -> Result<(Vec<IncludeValues>, Vec<CellSettings>), ConfigError> {
    let mut values = Vec::new();
    let mut settings = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let mut axis_values = vec![None; AXES.len()];
        let mut rest = serde_json::Map::new();
        for (key, value) in entry {
            let at = format!("include[{i}].{key}");
            let Some(k) = axis_index(&key) else {
                rest.insert(key, value);
                continue;
            };
            let text = match (k, &value) {
                (3, _) => typed::<u64>(value, file, &at)?.to_string(),
                (_, Value::String(s)) => s.clone(),
                (_, other) => return Err(ConfigError::new(file, at, format!("must be a name, got {other}"))),
            };
            match k {
                0 | 2 => check_id_part(file, &at, &text)?,
                1 if !policies.iter().any(|p| p.name == text) => {
                    let known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
                    return Err(ConfigError::new(file, at, format!("unknown policy {text:?}; policies: {known:?}")));
                }
                4 if Backend::parse(&text).is_none() => {
                    return Err(ConfigError::new(file, at, format!("unknown backend {text:?}")));
                }
                _ => {}
            }
            axis_values[k] = Some(text);
        }
        let at = format!("include[{i}]");
        let entry_settings: CellSettings = typed(Value::Object(rest), file, &at)?;
        check_settings(file, &at, &entry_settings)?;
        values.push(axis_values);
        settings.push(entry_settings);
    }
    Ok((values, settings))
}

/// Per axis: (pattern, key as written, settings). Each key must match a value of its axis, and no value two keys.
type AxisOverrides<'a> = Vec<(Pattern, &'a str, &'a CellSettings)>;

fn parse_overrides<'a>(
    file: &Path,
    overrides: &'a Overrides,
    combos: &[combinations::Combination],
) -> Result<Vec<AxisOverrides<'a>>, ConfigError> {
    let mut out = Vec::new();
    for (k, map) in overrides.by_axis().into_iter().enumerate() {
        let values: BTreeSet<&str> = combos.iter().map(|c| c.values[k].as_str()).collect();
        let mut parsed: AxisOverrides = Vec::new();
        for (key, settings) in map {
            let at = format!("overrides.{}.{key}", AXES[k].0);
            let pattern =
                Pattern::new(key).map_err(|e| ConfigError::new(file, &at, format!("bad glob {key:?}: {e}")))?;
            if !values.iter().any(|v| pattern.matches(v)) {
                return Err(ConfigError::new(file, at, format!("matches no {} of the matrix: {values:?}", AXES[k].0)));
            }
            for (other, other_key, _) in &parsed {
                if let Some(both) = values.iter().find(|v| pattern.matches(v) && other.matches(v)) {
                    return Err(ConfigError::new(
                        file,
                        at,
                        format!("{both:?} is matched by {other_key:?} too; give each value one override"),
                    ));
                }
            }
            check_settings(file, &at, settings)?;
            parsed.push((pattern, key.as_str(), settings));
        }
        out.push(parsed);
    }
    Ok(out)
}

/// Checks what can be checked of settings without knowing the cell.
fn check_settings(file: &Path, at: &str, settings: &CellSettings) -> Result<(), ConfigError> {
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

fn check_id_part(file: &Path, at: &str, name: &str) -> Result<(), ConfigError> {
    if is_id_part(name) {
        Ok(())
    } else {
        Err(ConfigError::new(
            file,
            at,
            format!("{name:?} must be letters, digits, '-' or '_' (it is part of cell ids)"),
        ))
    }
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
            let baselines_dir = base.join(&paths.baselines);
            let manifest_file = baselines_dir.join(&app.name).join(manifest);
            match tree::locate(&baselines_dir, &manifest_file) {
                Located::File(_) => {}
                Located::Outside => return Err(err("manifest", tree::leaves(manifest, &baselines_dir))),
                Located::Missing => {
                    return Err(err(
                        "manifest",
                        format!(
                            "unknown baseline {manifest:?} for app {:?}: {} does not exist",
                            app.name,
                            manifest_file.display()
                        ),
                    ));
                }
            }
            let manifests = hpa::load_manifests(&manifest_file)?;
            check_manifests_against_app(&manifests, &manifest_file, app)?;
            Ok(ResolvedPolicy::Hpa { name: spec.name.clone(), manifest_file, manifests })
        }
        PolicyKind::Rl => unreachable!("rl entries are resolved by rl::spec"),
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

pub(crate) fn check_manifests_against_app(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::config::canonical;
    use crate::cell::config_hash;
    use sha2::{Digest, Sha256};

    /// The definition of the hash: the canonical JSON of the whole config, policy paths left out.
    fn reference_hash(config: &CellConfig) -> String {
        let mut tree = serde_json::to_value(config).expect("cell config serializes");
        if let Some(Value::Object(policy)) = tree.get_mut("policy") {
            policy.retain(|key, _| !key.ends_with("_file"));
        }
        let json = serde_json::to_vec(&canonical(tree)).expect("cell config serializes");
        Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn ids_put_together_from_shared_parts_hash_the_whole_config() {
        let experiments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let mut checked = 0;
        for matrix in ["quick.yaml", "matrix.yaml", "emulated.yaml", "kubernetes.yaml", "rl-quality.yaml"] {
            let matrix = Matrix::load(&experiments.join(matrix)).unwrap();
            for cell in &matrix.cells {
                let reference = reference_hash(&cell.config);
                assert_eq!(config_hash(&cell.config), reference);
                assert!(cell.id.ends_with(&format!("-{}", &reference[..8])), "{}", cell.id);
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked} cells");
    }
}
