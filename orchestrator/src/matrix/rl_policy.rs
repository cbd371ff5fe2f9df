//! `kind: rl` policy entries of a matrix: the settings as written, their validation, and their resolution for one
//! app into everything a training run reads (so the cell hash covers it all, training scenarios included).
//!
//! ```yaml
//! policies:
//!   - name: gnn-ppo
//!     kind: rl
//!     rl:
//!       algo: ppo                 # ppo | a2c | dqn
//!       model: gnn                # gnn | mlp
//!       budget: 30000             # environment steps (decisions) of training
//!       reward: {kind: slo_cost, pod_cost: 1.0, slo_penalty: 4.0, failure_penalty: 4.0}
//!       training: {scenarios: [peak, rushsale, fluctuating], scale: [0.6, 1.4], noise: 0.1}
//!       actions: {kind: steps, max_step: 2}   # or {kind: relative}: halve, -1, keep, +1, double, triple
//!       hyperparameters: {n_steps: 120, ent_coef: 0.01}     # overrides of the algorithm's defaults
//!       network: {hidden: 64, layers: 2}
//!       warm_start: {manifest: hpa-cpu-60.yaml, episodes: 2, epochs: 10}   # behaviour cloning before PPO/A2C
//!       apps: [online-boutique]   # only these apps of the matrix [default: all]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use load_agent::tree::{self, Located};
use load_agent::yaml::ConfigError;
use serde::Serialize;

use crate::app::{AppModel, check_scenario_routes};
use crate::hpa::{self};
use crate::settings::rl::A2cConfig;
use crate::settings::rl::BcConfig;
use crate::settings::rl::DqnConfig;
use crate::settings::rl::FeatureLayout;
use crate::settings::rl::PpoConfig;
use crate::settings::rl::Randomization;
use crate::settings::rl::RewardKind;
use crate::settings::rl::{Algo, AlgoConfig, RlPolicyConfig, TrainingConfig, WarmStart};
use crate::settings::simulator::SimulatorSettings;

pub use super::file::{RlSpec, TrainingSpec, WarmStartSpec};

/// Where the files an rl entry names live, and what the matrix around it says.
pub struct ResolveContext<'a> {
    pub matrix_file: &'a Path,
    /// The entry's field path, e.g. `policies[2]`.
    pub at: &'a str,
    pub scenarios_dir: &'a Path,
    pub baselines_dir: &'a Path,
    pub app: &'a AppModel,
    /// The matrix's scenario names, the default training scenarios.
    pub matrix_scenarios: &'a [String],
    /// The simulator's model training episodes run on (the matrix's `simulator:` section).
    pub simulator: SimulatorSettings,
}

impl ResolveContext<'_> {
    /// An error at `field` of the entry's `rl:` block (the block itself when `field` is empty).
    fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let field = if field.is_empty() { format!("{}.rl", self.at) } else { format!("{}.rl.{field}", self.at) };
        ConfigError::new(self.matrix_file, field, message)
    }
}

/// Validates an entry's `rl:` block and resolves it for `ctx.app`.
pub fn resolve(name: &str, spec: Option<&RlSpec>, ctx: &ResolveContext<'_>) -> Result<RlPolicyConfig, ConfigError> {
    let err = |field: &str, message: String| ctx.error(field, message);
    let Some(spec) = spec else {
        return Err(ctx.error("", "missing: an rl policy needs an rl block with at least algo, model and budget"));
    };
    if spec.budget == 0 {
        return Err(err("budget", "must be at least 1 environment step".into()));
    }
    if spec.envs == 0 || spec.envs > 64 {
        return Err(err("envs", format!("must be 1 to 64, got {}", spec.envs)));
    }
    if spec.decision_interval_s == 0 {
        return Err(err("decision_interval_s", "must be at least 1 second".into()));
    }
    if spec.network.hidden == 0 || spec.network.hidden > 4096 {
        return Err(err("network.hidden", format!("must be 1 to 4096, got {}", spec.network.hidden)));
    }
    if spec.network.layers == 0 || spec.network.layers > 16 {
        return Err(err("network.layers", format!("must be 1 to 16, got {}", spec.network.layers)));
    }
    check_reward(&spec.reward, ctx)?;
    spec.actions.check().map_err(|e| err("actions", e.to_string()))?;
    let [low, high] = spec.training.scale;
    if !(low.is_finite() && high.is_finite() && low > 0.0 && low <= high && high <= 100.0) {
        return Err(err(
            "training.scale",
            format!("must be [low, high] with 0 < low <= high <= 100, got [{low}, {high}]"),
        ));
    }
    let noise = spec.training.noise;
    if !(noise.is_finite() && (0.0..=5.0).contains(&noise)) {
        return Err(err("training.noise", format!("must be between 0 and 5, got {noise}")));
    }

    let names = spec.training.scenarios.clone().unwrap_or_else(|| ctx.matrix_scenarios.to_vec());
    if names.is_empty() {
        return Err(err("training.scenarios", "needs at least one scenario".into()));
    }
    let mut scenarios = Vec::new();
    for (i, scenario_name) in names.iter().enumerate() {
        let file = ctx.scenarios_dir.join(&ctx.app.name).join(format!("{scenario_name}.yaml"));
        let field = if spec.training.scenarios.is_some() {
            format!("training.scenarios[{i}]")
        } else {
            "training.scenarios".into()
        };
        match tree::locate(ctx.scenarios_dir, &file) {
            Located::File(_) => {}
            Located::Outside => return Err(err(&field, tree::leaves(scenario_name, ctx.scenarios_dir))),
            Located::Missing => {
                return Err(err(
                    &field,
                    format!(
                        "unknown scenario {scenario_name:?} for app {:?}: {} does not exist",
                        ctx.app.name,
                        file.display()
                    ),
                ));
            }
        }
        let scenario = crate::limits::load_scenario(&file, ctx.scenarios_dir)?;
        check_scenario_routes(ctx.app, &scenario, &file)?;
        scenarios.push(scenario);
    }

    if spec.warm_start.is_some() && spec.algo == Algo::Dqn {
        return Err(err(
            "warm_start",
            "behaviour cloning warm-starts an actor: use it with ppo or a2c, not dqn".into(),
        ));
    }
    let algorithm = resolve_hyperparameters(spec.algo, &spec.hyperparameters, ctx)?;
    let warm_start = match &spec.warm_start {
        None => None,
        Some(w) => Some(resolve_warm_start(w, &algorithm, ctx)?),
    };
    Ok(RlPolicyConfig {
        name: name.to_string(),
        training: TrainingConfig {
            model: spec.model,
            network: spec.network,
            algorithm,
            budget: spec.budget,
            envs: spec.envs,
            decision_interval_s: spec.decision_interval_s,
            reward: spec.reward.clone(),
            features: FeatureLayout::default(),
            actions: spec.actions.clone(),
            scenarios,
            randomization: Randomization { scale: spec.training.scale, noise },
            warm_start,
            simulator: ctx.simulator.unless_legacy(),
        },
        checkpoint: None,
    })
}

fn check_reward(reward: &RewardKind, ctx: &ResolveContext<'_>) -> Result<(), ConfigError> {
    let check = |field: &str, value: f64| {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(ctx.error(&format!("reward.{field}"), format!("must be a finite number >= 0, got {value}")))
        }
    };
    match *reward {
        RewardKind::SloCost { pod_cost, slo_penalty, failure_penalty, violation_penalty, change_penalty } => {
            check("pod_cost", pod_cost)?;
            check("slo_penalty", slo_penalty)?;
            check("failure_penalty", failure_penalty)?;
            check("violation_penalty", violation_penalty)?;
            check("change_penalty", change_penalty)
        }
        RewardKind::GymHpaCost => Ok(()),
        RewardKind::GymHpaLatency { cap_ms } => check("cap_ms", cap_ms),
        RewardKind::AhpaLog { cost_weight } => check("cost_weight", cost_weight),
    }
}

/// The algorithm's defaults with `overrides` applied, each checked for name, type and range.
fn resolve_hyperparameters(
    algo: Algo,
    overrides: &BTreeMap<String, serde_json::Value>,
    ctx: &ResolveContext<'_>,
) -> Result<AlgoConfig, ConfigError> {
    let check = |name: &str, value: f64, ok: fn(f64) -> bool, what: &str| {
        if ok(value) {
            Ok(())
        } else {
            Err(ctx.error(&format!("hyperparameters.{name}"), format!("must be {what}, got {value}")))
        }
    };
    let positive = |name: &str, value: f64| check(name, value, |v| v.is_finite() && v > 0.0, "> 0");
    let unit = |name: &str, value: f64| check(name, value, |v| (0.0..=1.0).contains(&v), "between 0 and 1");
    let non_negative = |name: &str, value: f64| check(name, value, |v| v.is_finite() && v >= 0.0, ">= 0");
    Ok(match algo {
        Algo::Ppo => {
            let c: PpoConfig = merge_hyperparameters(PpoConfig::default(), overrides, algo, ctx)?;
            positive("n_steps", c.n_steps as f64)?;
            positive("batch_size", c.batch_size as f64)?;
            positive("n_epochs", c.n_epochs as f64)?;
            unit("gamma", c.gamma as f64)?;
            unit("gae_lambda", c.gae_lambda as f64)?;
            positive("clip_range", c.clip_range as f64)?;
            non_negative("ent_coef", c.ent_coef as f64)?;
            if let Some(last) = c.ent_coef_final {
                non_negative("ent_coef_final", last as f64)?;
            }
            non_negative("vf_coef", c.vf_coef as f64)?;
            positive("max_grad_norm", c.max_grad_norm as f64)?;
            positive("learning_rate", c.learning_rate as f64)?;
            AlgoConfig::Ppo(c)
        }
        Algo::A2c => {
            let c: A2cConfig = merge_hyperparameters(A2cConfig::default(), overrides, algo, ctx)?;
            positive("n_steps", c.n_steps as f64)?;
            unit("gamma", c.gamma as f64)?;
            unit("gae_lambda", c.gae_lambda as f64)?;
            non_negative("ent_coef", c.ent_coef as f64)?;
            non_negative("vf_coef", c.vf_coef as f64)?;
            positive("max_grad_norm", c.max_grad_norm as f64)?;
            positive("learning_rate", c.learning_rate as f64)?;
            AlgoConfig::A2c(c)
        }
        Algo::Dqn => {
            let c: DqnConfig = merge_hyperparameters(DqnConfig::default(), overrides, algo, ctx)?;
            positive("learning_rate", c.learning_rate as f64)?;
            positive("buffer_size", c.buffer_size as f64)?;
            positive("batch_size", c.batch_size as f64)?;
            unit("tau", c.tau as f64)?;
            positive("tau", c.tau as f64)?;
            unit("gamma", c.gamma as f64)?;
            positive("train_freq", c.train_freq as f64)?;
            positive("target_update_interval", c.target_update_interval as f64)?;
            unit("exploration_fraction", c.exploration_fraction)?;
            unit("exploration_initial_eps", c.exploration_initial_eps)?;
            unit("exploration_final_eps", c.exploration_final_eps)?;
            positive("max_grad_norm", c.max_grad_norm as f64)?;
            positive("log_interval", c.log_interval as f64)?;
            AlgoConfig::Dqn(c)
        }
    })
}

/// The algorithm's defaults with `overrides` applied, each checked for name and type.
fn merge_hyperparameters<T: Serialize + serde::de::DeserializeOwned>(
    defaults: T,
    overrides: &BTreeMap<String, serde_json::Value>,
    algo: Algo,
    ctx: &ResolveContext<'_>,
) -> Result<T, ConfigError> {
    let mut value = serde_json::to_value(defaults).expect("configs serialize");
    let map = value.as_object_mut().expect("configs are structs");
    // Options that are off by default are left out of the serialized defaults (to keep config hashes).
    let optional: &[&str] = if algo == Algo::Ppo { &["anneal_lr", "ent_coef_final"] } else { &[] };
    for (key, v) in overrides {
        if !map.contains_key(key) && !optional.contains(&key.as_str()) {
            let known: Vec<&str> = map.keys().map(String::as_str).chain(optional.iter().copied()).collect();
            return Err(ctx.error(
                &format!("hyperparameters.{key}"),
                format!("{} has no hyperparameter {key:?}; known: {}", algo.name(), known.join(", ")),
            ));
        }
        map.insert(key.clone(), v.clone());
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| ctx.error(&format!("hyperparameters.{}", e.path()), e.inner().to_string()))
}

fn resolve_warm_start(
    spec: &WarmStartSpec,
    algorithm: &AlgoConfig,
    ctx: &ResolveContext<'_>,
) -> Result<WarmStart, ConfigError> {
    let manifest_file = ctx.baselines_dir.join(&ctx.app.name).join(&spec.manifest);
    match tree::locate(ctx.baselines_dir, &manifest_file) {
        Located::File(_) => {}
        Located::Outside => {
            return Err(ctx.error("warm_start.manifest", tree::leaves(&spec.manifest, ctx.baselines_dir)));
        }
        Located::Missing => {
            return Err(ctx.error(
                "warm_start.manifest",
                format!(
                    "unknown baseline {:?} for app {:?}: {} does not exist",
                    spec.manifest,
                    ctx.app.name,
                    manifest_file.display()
                ),
            ));
        }
    }
    let manifests = hpa::load_manifests(&manifest_file)?;
    super::manifests::check_manifests_against_app(&manifests, &manifest_file, ctx.app)?;
    let mut bc = BcConfig { gamma: algorithm.gamma(), ..BcConfig::default() };
    if let Some(episodes) = spec.episodes {
        if episodes == 0 || episodes > 1000 {
            return Err(ctx.error("warm_start.episodes", format!("must be 1 to 1000, got {episodes}")));
        }
        bc.episodes = episodes;
    }
    if let Some(epochs) = spec.epochs {
        if epochs == 0 || epochs > 10_000 {
            return Err(ctx.error("warm_start.epochs", format!("must be 1 to 10000, got {epochs}")));
        }
        bc.epochs = epochs;
    }
    Ok(WarmStart { manifest_file, manifests, bc })
}

/// Resolves a matrix's `kind: rl` entry for one app (the matrix's hook); `None` when the entry's `apps` leaves
/// this app out.
#[allow(clippy::too_many_arguments)]
pub fn resolve_entry(
    spec: &crate::matrix::PolicySpec,
    at: &str,
    matrix_file: &Path,
    base: &Path,
    paths: &crate::matrix::Paths,
    app: &AppModel,
    matrix_apps: &[String],
    matrix_scenarios: &[String],
    simulator: SimulatorSettings,
) -> Result<Option<crate::cell::ResolvedPolicy>, ConfigError> {
    if let Some(apps) = spec.rl.as_ref().and_then(|rl| rl.apps.as_ref()) {
        if apps.is_empty() {
            return Err(ConfigError::new(matrix_file, format!("{at}.rl.apps"), "needs at least one app"));
        }
        for (i, name) in apps.iter().enumerate() {
            if !matrix_apps.contains(name) {
                return Err(ConfigError::new(
                    matrix_file,
                    format!("{at}.rl.apps[{i}]"),
                    format!("{name:?} is not one of the matrix's apps ({})", matrix_apps.join(", ")),
                ));
            }
        }
        if !apps.contains(&app.name) {
            return Ok(None);
        }
    }
    for (field, given) in [("manifest", spec.manifest.is_some()), ("replicas", spec.replicas.is_some())] {
        if given {
            return Err(ConfigError::new(
                matrix_file,
                format!("{at}.{field}"),
                format!("an rl policy takes no {field}: its settings go in the rl block"),
            ));
        }
    }
    let scenarios_dir = base.join(&paths.scenarios);
    let baselines_dir = base.join(&paths.baselines);
    let ctx = ResolveContext {
        matrix_file,
        at,
        scenarios_dir: &scenarios_dir,
        baselines_dir: &baselines_dir,
        app,
        matrix_scenarios,
        simulator,
    };
    Ok(Some(crate::cell::ResolvedPolicy::Rl(Box::new(resolve(&spec.name, spec.rl.as_ref(), &ctx)?))))
}
