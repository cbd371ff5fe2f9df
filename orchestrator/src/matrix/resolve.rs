//! Expansion of a parsed matrix into cells: the axes' combinations (see [`crate::matrix::combinations`]), each
//! made typed, its app, scenario and policy loaded, its settings layered, its config hashed into an id.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use load_agent::scenario::Scenario;
use load_agent::tree::{self, Located};
use load_agent::yaml::ConfigError;

use crate::app::{AppModel, Slo, check_scenario_routes};
use crate::cell::config::{CELL_FORMAT_VERSION, ConfigHasher, cell_id_with};
use crate::cell::{Backend, Cell, CellConfig, ResolvedPolicy};
use crate::limits;
use crate::matrix::axes::{Axes, Combination, IncludeValues, parse_exclude, parse_include};
use crate::matrix::combinations;
use crate::matrix::file::AxisKey;
use crate::matrix::file::check_settings;
use crate::matrix::file::{MatrixFile, Paths, PolicyKind, Strategy};
use crate::matrix::layers::{Layers, ParsedOverrides};
use crate::matrix::{DEFAULT_RETRY_BACKOFF, DEFAULT_TIMEOUT, ExecutionStrategy, Matrix, executor, policies};
use crate::settings::emulated as emulated_settings;
use crate::settings::simulator::{SimulatorSection, SimulatorSettings};

/// Resolves a parsed matrix, handing its cells to `on_cell` in plan order; the returned matrix has no cells.
pub(crate) fn resolve(
    mut file: MatrixFile,
    path: &Path,
    base: &Path,
    on_cell: &mut dyn FnMut(Cell),
) -> Result<Matrix, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(path, field, message);
    if file.name.trim().is_empty() {
        return Err(err("name", "must not be empty".into()));
    }
    let axes = Axes::read(&mut file, path)?;
    let (max_parallel, execution, default_timeout) = execution_strategy(&file.strategy, path)?;
    check_settings(path, "defaults", &file.defaults)?;

    axes.check_cell_count(path)?;
    let exclude = parse_exclude(path, &file.exclude)?;
    let (include, include_settings) = parse_include(path, std::mem::take(&mut file.include), &axes.policies)?;
    let generic = combinations::expand(&axes.generic(), &exclude, &include).map_err(|e| err(&e.field, e.message))?;
    if generic.is_empty() {
        return Err(err("exclude", "removes every cell: nothing would run".into()));
    }
    if generic.len() > limits::MAX_CELLS {
        return Err(err("include", limits::above(format!("{} cells", generic.len()), limits::MAX_CELLS)));
    }
    let combos = generic
        .iter()
        .map(|c| axes.combination(c).map_err(|e| err(&axes.field_of(&c.origin, e.axis, &include), e.to_string())))
        .collect::<Result<Vec<Combination>, ConfigError>>()?;
    drop(generic);
    let overrides = ParsedOverrides::parse(path, &file.overrides, &axes, &combos)?;
    let layers = Layers { defaults: &file.defaults, overrides: &overrides, include: &include_settings };
    let uses_emulated = combos.iter().any(|c| c.backend == Backend::Emulated);
    let (emulated_model, emulated_run) =
        emulated_settings::resolve(file.emulated.as_ref(), uses_emulated, path)?.unzip();
    let uses_kubernetes = combos.iter().any(|c| c.backend == Backend::Kubernetes);
    let kubernetes_run =
        crate::backends::kubernetes::settings::resolve(file.kubernetes.as_ref(), uses_kubernetes, path)?;
    let uses_simulator =
        combos.iter().any(|c| c.backend == Backend::Sim) || axes.policies.iter().any(|p| p.kind == PolicyKind::Rl);
    let simulator = simulator_settings(file.simulator.as_ref(), uses_simulator, path)?;
    let baseline = file.report.as_ref().and_then(|r| r.baseline.clone());
    if let Some(name) = &baseline
        && !axes.policies.iter().any(|p| &p.name == name)
    {
        let known: Vec<&str> = axes.policies.iter().map(|p| p.name.as_str()).collect();
        return Err(err("report.baseline", format!("{name:?} is not a policy of this matrix; policies: {known:?}")));
    }

    // First every file is read and every cell's settings checked, so that no error comes after the first cell has
    // been handed on: what a cell needs is kept as shared pointers, a few words per cell.
    let mut loader = Loader::new(path, base, &file.paths, &axes, &include, simulator);
    let mut planned = Vec::with_capacity(combos.len());
    for (c, combo) in combos.iter().enumerate() {
        let app = loader.app(combo)?;
        let scenario = loader.scenario(combo, &app)?;
        let Some(policy) = loader.policy(combo, &app)? else { continue };
        let (slo, timeout) = layers.apply(path, &axes, combo, &app, default_timeout)?;
        let app = loader.variant(&app, slo);
        if combo.backend == Backend::Emulated {
            loader.check_emulation(combo, &app, &scenario)?;
        }
        let config = CellConfig {
            format_version: CELL_FORMAT_VERSION,
            backend: combo.backend,
            emulated: emulated_model.clone().filter(|_| combo.backend == Backend::Emulated),
            seed: combo.seed,
            app,
            scenario,
            policy,
            simulator: simulator.unless_legacy().filter(|_| combo.backend == Backend::Sim),
        };
        planned.push((c, config, timeout));
    }
    let longest = planned.iter().map(|(_, _, timeout)| *timeout).max().unwrap_or(default_timeout);
    let executor = executor::resolve(file.executor.as_ref(), longest, path)?;

    // Then the cells, one at a time. The loader holds every shared part until the end, as the hasher needs.
    let mut hasher = ConfigHasher::default();
    let mut ids = BTreeSet::new();
    for (c, config, timeout) in planned {
        let id = cell_id_with(&config, &mut hasher);
        if !ids.insert(id.clone()) {
            let field = axes.field_of(&combos[c].origin, AxisKey::App, &include);
            return Err(err(&field, format!("cell {id} appears twice")));
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

/// The strategy as the runner applies it: cells at once, the failure and retry rules, a cell's default timeout.
fn execution_strategy(strategy: &Strategy, path: &Path) -> Result<(usize, ExecutionStrategy, Duration), ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(path, field, message);
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
    Ok((max_parallel, execution, strategy.timeout.unwrap_or(DEFAULT_TIMEOUT)))
}

/// The `simulator:` section resolved (the faithful model when it is absent); `uses_simulator` says whether any
/// cell runs on the simulator or any policy trains on it.
fn simulator_settings(
    section: Option<&SimulatorSection>,
    uses_simulator: bool,
    path: &Path,
) -> Result<SimulatorSettings, ConfigError> {
    match section {
        Some(_) if !uses_simulator => Err(ConfigError::new(
            path,
            "simulator",
            "is given but no cell runs on the simulator (backend sim) and no rl policy trains on it",
        )),
        Some(section) => {
            section.resolve().map_err(|(field, message)| ConfigError::new(path, format!("simulator.{field}"), message))
        }
        None => Ok(SimulatorSettings::default()),
    }
}

/// Loads what the combinations name, each file once: cells share what they load, so memory grows with the files
/// and variants, not the cells.
struct Loader<'a> {
    path: &'a Path,
    base: &'a Path,
    paths: &'a Paths,
    axes: &'a Axes,
    include: &'a [IncludeValues],
    apps: HashMap<String, Arc<AppModel>>,
    scenarios: HashMap<(String, String), Arc<Scenario>>,
    /// By policy index and app; None where an rl policy's `rl.apps` leaves the app out.
    policies: HashMap<(usize, String), Option<Arc<ResolvedPolicy>>>,
    /// An app with a cell's SLO settings applied, by app and SLO.
    app_variants: HashMap<(String, String, u64, u64), Arc<AppModel>>,
    /// (app, scenario) pairs checked for emulation.
    emulation_checked: BTreeSet<(String, String)>,
    /// The model rl policies train on.
    simulator: SimulatorSettings,
}

impl<'a> Loader<'a> {
    fn new(
        path: &'a Path,
        base: &'a Path,
        paths: &'a Paths,
        axes: &'a Axes,
        include: &'a [IncludeValues],
        simulator: SimulatorSettings,
    ) -> Self {
        Loader {
            path,
            base,
            paths,
            axes,
            include,
            apps: HashMap::new(),
            scenarios: HashMap::new(),
            policies: HashMap::new(),
            app_variants: HashMap::new(),
            emulation_checked: BTreeSet::new(),
            simulator,
        }
    }

    fn field_error(&self, combo: &Combination, axis: AxisKey, message: String) -> ConfigError {
        ConfigError::new(self.path, self.axes.field_of(&combo.origin, axis, self.include), message)
    }

    fn app_file(&self, app_name: &str) -> PathBuf {
        self.base.join(&self.paths.apps).join(format!("{app_name}.yaml"))
    }

    fn scenario_file(&self, app_name: &str, scenario_name: &str) -> PathBuf {
        self.base.join(&self.paths.scenarios).join(app_name).join(format!("{scenario_name}.yaml"))
    }

    /// `experiments/apps/<app>.yaml`, whose `name` must be the file's.
    fn app(&mut self, combo: &Combination) -> Result<Arc<AppModel>, ConfigError> {
        let app_name = &combo.app;
        if let Some(app) = self.apps.get(app_name) {
            return Ok(Arc::clone(app));
        }
        let apps_dir = self.base.join(&self.paths.apps);
        let app_file = self.app_file(app_name);
        match tree::locate(&apps_dir, &app_file) {
            Located::File(_) => {}
            Located::Outside => return Err(self.field_error(combo, AxisKey::App, tree::leaves(app_name, &apps_dir))),
            Located::Missing => {
                let message = format!("unknown app {app_name:?}: {} does not exist", app_file.display());
                return Err(self.field_error(combo, AxisKey::App, message));
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
        let app = Arc::new(app);
        self.apps.insert(app_name.clone(), Arc::clone(&app));
        Ok(app)
    }

    /// `experiments/scenarios/<app>/<scenario>.yaml`, whose routes must be the app's.
    fn scenario(&mut self, combo: &Combination, app: &AppModel) -> Result<Arc<Scenario>, ConfigError> {
        let (app_name, scenario_name) = (&combo.app, &combo.scenario);
        let key = (app_name.clone(), scenario_name.clone());
        if let Some(scenario) = self.scenarios.get(&key) {
            return Ok(Arc::clone(scenario));
        }
        let scenarios_dir = self.base.join(&self.paths.scenarios);
        let scenario_file = self.scenario_file(app_name, scenario_name);
        match tree::locate(&scenarios_dir, &scenario_file) {
            Located::File(_) => {}
            Located::Outside => {
                let message = tree::leaves(scenario_name, &scenarios_dir);
                return Err(self.field_error(combo, AxisKey::Scenario, message));
            }
            Located::Missing => {
                let message = format!(
                    "unknown scenario {scenario_name:?} for app {app_name:?}: {} does not exist",
                    scenario_file.display()
                );
                return Err(self.field_error(combo, AxisKey::Scenario, message));
            }
        }
        // A trace the scenario replays may be anywhere under the scenarios folder, and nowhere else.
        let scenario = limits::load_scenario(&scenario_file, &scenarios_dir)?;
        check_scenario_routes(app, &scenario, &scenario_file)?;
        let scenario = Arc::new(scenario);
        self.scenarios.insert(key, Arc::clone(&scenario));
        Ok(scenario)
    }

    /// The combination's policy resolved for its app; None when the policy has no cell for this app.
    fn policy(&mut self, combo: &Combination, app: &AppModel) -> Result<Option<Arc<ResolvedPolicy>>, ConfigError> {
        let key = (combo.policy, combo.app.clone());
        if let Some(policy) = self.policies.get(&key) {
            return Ok(policy.clone());
        }
        let axes = self.axes;
        let spec = &axes.policies[combo.policy];
        let at = axes.path(AxisKey::Policy, combo.policy);
        let policy = policies::resolve_for_app(
            spec,
            &at,
            self.path,
            self.base,
            self.paths,
            app,
            &axes.apps,
            &axes.scenarios,
            self.simulator,
        )?
        .map(Arc::new);
        self.policies.insert(key, policy.clone());
        Ok(policy)
    }

    /// `app` with `slo`: the app itself when the SLO is its own, else a variant shared by the cells that have it.
    fn variant(&mut self, app: &Arc<AppModel>, slo: Slo) -> Arc<AppModel> {
        if slo == app.slo {
            return Arc::clone(app);
        }
        let key = (app.name.clone(), slo.route.clone(), slo.percentile.to_bits(), slo.threshold_ms.to_bits());
        let variant = self.app_variants.entry(key).or_insert_with(|| {
            let mut variant = AppModel::clone(app);
            variant.slo = slo;
            Arc::new(variant)
        });
        Arc::clone(variant)
    }

    /// Whether the emulator can run the combination's scenario against its app; once per pair.
    fn check_emulation(&mut self, combo: &Combination, app: &AppModel, scenario: &Scenario) -> Result<(), ConfigError> {
        if !self.emulation_checked.insert((combo.app.clone(), combo.scenario.clone())) {
            return Ok(());
        }
        let app_file = self.app_file(&combo.app);
        let scenario_file = self.scenario_file(&combo.app, &combo.scenario);
        emulated_settings::check_cell(app, &app_file, scenario, &scenario_file)
    }
}
