//! `orch eval`: one RL checkpoint evaluated in one simulated cell, outside a matrix.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::train::{BadInput, load_app_and_scenarios, simulator_model};
use crate::cell::config::CELL_FORMAT_VERSION;
use crate::cell::{Backend, CellConfig, ResolvedPolicy};
use crate::rl::checkpoint;
use crate::settings::rl::{ModelKind, NetworkSpec, RlPolicyConfig, TrainingConfig};

/// Evaluate a checkpoint in one simulated cell and print its summary as JSON.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The checkpoint's base path (without .safetensors/.json), e.g. models/ob/model.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub app: PathBuf,
    #[arg(long)]
    pub scenario: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run the cell on the simulator's model before calibration against real CPUs [default: the most faithful one].
    #[arg(long)]
    pub simulator_legacy: bool,
}

/// `orch eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let (app, scenarios) = load_app_and_scenarios(&args.app, std::slice::from_ref(&args.scenario))?;
    let meta = checkpoint::load_meta(&args.checkpoint).map_err(|e| BadInput(e.to_string()))?;
    crate::rl::policy::RlPolicy::from_checkpoint(&args.checkpoint, &app).map_err(|e| BadInput(e.to_string()))?;
    // The cell's policy describes the checkpoint as far as its JSON tells (no training scenarios).
    let training = TrainingConfig {
        model: match meta.model {
            checkpoint::ModelSpec::Gnn(_) => ModelKind::Gnn,
            checkpoint::ModelSpec::Mlp(_) => ModelKind::Mlp,
        },
        network: NetworkSpec::default(),
        algorithm: meta.algorithm.clone(),
        budget: meta.env_steps,
        envs: 1,
        decision_interval_s: meta.env.decision_interval_s,
        reward: meta.env.reward.clone(),
        features: meta.env.features.clone(),
        actions: meta.env.actions.clone(),
        scenarios: Vec::new(),
        randomization: Default::default(),
        warm_start: None,
        simulator: meta.env.simulator.unless_legacy(),
    };
    let config = CellConfig {
        format_version: CELL_FORMAT_VERSION,
        backend: Backend::Sim,
        emulated: None,
        seed: args.seed,
        app: std::sync::Arc::new(app),
        scenario: std::sync::Arc::new(scenarios.into_iter().next().expect("one scenario")),
        policy: std::sync::Arc::new(ResolvedPolicy::Rl(Box::new(RlPolicyConfig {
            name: format!("rl-{}-{}", meta.algorithm.algo().name(), training.model.name()),
            training,
            checkpoint: Some(args.checkpoint.clone()),
        }))),
        simulator: simulator_model(args.simulator_legacy).unless_legacy(),
    };
    let id = format!("eval.{}.s{}", config.scenario.name, args.seed);
    let mut policy = crate::run::policies::build_policy(&config);
    let summary = crate::backends::sim::simulate(&id, &config, policy.as_mut(), |_| {}, |_, _, _, _, _| {});
    summary.check_figures()?;
    println!("{}", serde_json::to_string_pretty(&summary).context("serializing the summary")?);
    Ok(())
}
