//! `orch train`: one training run outside a matrix; the work is in crate::rl::train. Also the loading of the app and
//! scenarios and the exit codes `orch eval` shares.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use load_agent::scenario::Scenario;

use super::EXIT_CONFIG;
use crate::app::{AppModel, check_scenario_routes};
use crate::matrix::rl_policy::{RlSpec, TrainingSpec, WarmStartSpec};
use crate::settings::rl::{Algo, ModelKind, NetworkSpec};
use crate::settings::simulator::SimulatorSettings;

/// Train one RL autoscaler on the simulator and write its checkpoint.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The app model, e.g. experiments/apps/online-boutique.yaml.
    #[arg(long)]
    pub app: PathBuf,
    /// Training scenario files (repeat for several; episodes draw from them), laid out as the experiments folder
    /// is: <dir>/<app>/<name>.yaml, e.g. experiments/scenarios/online-boutique/peak.yaml.
    #[arg(long = "scenario", required = true)]
    pub scenarios: Vec<PathBuf>,
    #[arg(long, value_parser = parse_algo, default_value = "ppo")]
    pub algo: Algo,
    #[arg(long, value_parser = parse_model, default_value = "gnn")]
    pub model: ModelKind,
    /// Environment steps (decisions) of training.
    #[arg(long)]
    pub budget: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder: model.safetensors, model.json, training.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Load scale range per episode, e.g. 0.5,1.5.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 1.0])]
    pub scale: Vec<f64>,
    /// Standard deviation of the per-stage load factor.
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// The reward as YAML, e.g. "{kind: slo_cost, pod_cost: 1, slo_penalty: 4, failure_penalty: 4}".
    #[arg(long)]
    pub reward: Option<String>,
    /// The moves of one decision as YAML, e.g. "{kind: relative}" or "{kind: steps, max_step: 4}" [default: −2…+2].
    #[arg(long)]
    pub actions: Option<String>,
    /// A hyperparameter override NAME=VALUE (repeatable), e.g. n_steps=120.
    #[arg(long = "set")]
    pub hyperparameters: Vec<String>,
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 2)]
    pub envs: usize,
    /// Behaviour cloning from this HPA manifest before PPO or A2C.
    #[arg(long)]
    pub warm_start: Option<PathBuf>,
    /// Train on the simulator's model before calibration against real CPUs [default: the most faithful one].
    #[arg(long)]
    pub simulator_legacy: bool,
}

/// The simulator's model `--simulator-legacy` chooses (`orch train` and `orch eval`).
pub(super) fn simulator_model(legacy: bool) -> SimulatorSettings {
    if legacy { SimulatorSettings::LEGACY } else { SimulatorSettings::default() }
}

fn parse_algo(s: &str) -> Result<Algo, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("{s:?}: expected ppo, a2c or dqn"))
}

fn parse_model(s: &str) -> Result<ModelKind, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("{s:?}: expected gnn or mlp"))
}

/// Errors of bad arguments or input files, reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub(super) fn load_app_and_scenarios(
    app: &std::path::Path,
    scenarios: &[PathBuf],
) -> Result<(AppModel, Vec<Scenario>), BadInput> {
    let app = AppModel::load(app).map_err(|e| BadInput(e.to_string()))?;
    let mut out = Vec::new();
    for file in scenarios {
        let scenario = crate::limits::load_scenario(file, &load_agent::tree::folder_of(file))
            .map_err(|e| BadInput(e.to_string()))?;
        check_scenario_routes(&app, &scenario, file).map_err(|e| BadInput(e.to_string()))?;
        out.push(scenario);
    }
    Ok((app, out))
}

/// `orch train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let (app, _) = load_app_and_scenarios(&args.app, &args.scenarios)?;
    if args.scale.len() != 2 {
        bail!(BadInput(format!("--scale takes two numbers LOW,HIGH, got {:?}", args.scale)));
    }
    let mut hyperparameters = std::collections::BTreeMap::new();
    for item in &args.hyperparameters {
        let Some((key, value)) = item.split_once('=') else {
            bail!(BadInput(format!("--set {item:?}: expected NAME=VALUE")));
        };
        let value: serde_json::Value =
            serde_yaml::from_str(value).map_err(|e| BadInput(format!("--set {item:?}: {e}")))?;
        hyperparameters.insert(key.to_string(), value);
    }
    let reward = match &args.reward {
        Some(text) => serde_yaml::from_str(text).map_err(|e| BadInput(format!("--reward: {e}")))?,
        None => Default::default(),
    };
    let actions = match &args.actions {
        Some(text) => serde_yaml::from_str(text).map_err(|e| BadInput(format!("--actions: {e}")))?,
        None => Default::default(),
    };
    // The scenario files' folder plays the matrix's scenarios directory: <dir>/<app>/<name>.yaml.
    let names: Vec<String> =
        args.scenarios.iter().map(|f| f.file_stem().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let scenario_root = args.scenarios[0].parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_default();
    let warm_start_dir = args.warm_start.as_ref().and_then(|f| f.parent()).and_then(|p| p.parent()).map(PathBuf::from);
    let spec = RlSpec {
        algo: args.algo,
        model: args.model,
        budget: args.budget,
        reward,
        actions,
        training: TrainingSpec { scenarios: Some(names), scale: [args.scale[0], args.scale[1]], noise: args.noise },
        hyperparameters,
        network: NetworkSpec { hidden: args.hidden, layers: args.layers },
        envs: args.envs,
        decision_interval_s: 15,
        apps: None,
        warm_start: args.warm_start.as_ref().map(|f| WarmStartSpec {
            manifest: f.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            episodes: None,
            epochs: None,
        }),
    };
    let command_line = PathBuf::from("command line");
    let ctx = crate::matrix::rl_policy::ResolveContext {
        matrix_file: &command_line,
        at: "train",
        scenarios_dir: &scenario_root,
        baselines_dir: warm_start_dir.as_deref().unwrap_or(std::path::Path::new(".")),
        app: &app,
        matrix_scenarios: &[],
        simulator: simulator_model(args.simulator_legacy),
    };
    let resolved =
        crate::matrix::rl_policy::resolve("train", Some(&spec), &ctx).map_err(|e| BadInput(e.to_string()))?;
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(args.budget);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} env steps {per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let outcome = crate::rl::train::train(&resolved.training, &app, args.seed, &args.out, bar.as_ref())?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!("{}", serde_json::to_string_pretty(&outcome).context("serializing the outcome")?);
    Ok(())
}

/// Exit status of `orch train` / `orch eval`: 2 for bad input, 1 for other failures.
pub fn rl_exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE }
        }
    }
}
