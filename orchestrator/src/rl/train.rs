//! One training run: environments over the training scenarios, a model, an optional behaviour-cloning warm start,
//! the learner until the budget of environment steps is spent; training.csv a row per iteration, then the
//! checkpoint (`model.safetensors` + `model.json`).
//!
//! Seeds: the model, every environment and the learner derive their streams from the run's seed, so the same
//! seed gives the same checkpoint bytes. Training simulations use seeds mixed from it (never the small integers
//! evaluation cells run with), so a model is never evaluated on the noise it was trained on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::app::AppModel;
use crate::rl::a2c::A2c;
use crate::rl::actor_critic::ActorCritic;
use crate::rl::bc::{self, BcStats};
use crate::rl::checkpoint::{self, CheckpointMeta, ModelSpec};
use crate::rl::dqn::Dqn;
use crate::rl::env::{AutoscaleEnv, EnvConfig};
use crate::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use crate::rl::graph::{NormalizedAdjacency, node_inputs};
use crate::rl::layers::Device;
use crate::rl::learner::{IterationStats, LearnerError};
use crate::rl::mlp::{MlpActorCritic, MlpConfig};
use crate::rl::ppo::Ppo;
use crate::rl::scenarios::TrainingScenarios;
use crate::settings::rl::{AlgoConfig, ModelKind, NetworkSpec, TrainingConfig};

/// Columns of training.csv.
pub const TRAINING_COLUMNS: &str = "iteration,env_steps,episode_return_mean,policy_loss,value_loss,entropy,\
env_steps_per_s,mean_reward,clip_fraction,epsilon,episodes,elapsed_s";

/// Episodes the `episode_return_mean` column averages over (the most recent ones).
const RETURN_WINDOW: usize = 20;

/// What a finished training run left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// The checkpoint's base path (`.safetensors` and `.json` beside it).
    pub checkpoint: PathBuf,
    pub training_csv: PathBuf,
    pub iterations: usize,
    pub env_steps: u64,
    pub elapsed_s: f64,
    /// Mean return of the last episodes of training, if any ended.
    pub final_return_mean: Option<f64>,
    pub warm_start: Option<WarmStartStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStartStats {
    pub samples: usize,
    pub final_loss: f32,
    pub accuracy: f32,
}

impl From<BcStats> for WarmStartStats {
    fn from(s: BcStats) -> WarmStartStats {
        WarmStartStats { samples: s.samples, final_loss: s.final_loss, accuracy: s.accuracy }
    }
}

/// A 64-bit mix (splitmix64's finalizer), so related seeds give unrelated streams.
pub fn mix_seed(seed: u64, salt: u64) -> u64 {
    let mut z = seed.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const SALT_ENV: u64 = 0x7472_6169_6e00;
const SALT_TEACHER: u64 = 0x7465_6163_6800;
const SALT_MODEL: u64 = 0x6d6f_6465_6c00;
const SALT_LEARNER: u64 = 0x6c65_6172_6e00;

/// The environment settings of a training (saved with its checkpoint).
pub fn env_config(config: &TrainingConfig) -> EnvConfig {
    EnvConfig {
        decision_interval_s: config.decision_interval_s,
        reward: config.reward.clone(),
        features: config.features.clone(),
        actions: config.actions.clone(),
        simulator: config.simulator_settings(),
    }
}

/// The training environments of a run (`salt` separates the learner's from the teacher's).
pub fn training_envs(config: &TrainingConfig, app: &AppModel, seed: u64, salt: u64) -> Vec<AutoscaleEnv> {
    let env_config = env_config(config);
    let scenarios =
        TrainingScenarios { scenarios: config.scenarios.clone(), randomization: config.randomization.clone() };
    (0..config.envs as u64)
        .map(|i| AutoscaleEnv::with_scenarios(app, scenarios.clone(), mix_seed(seed, salt + i), env_config.clone()))
        .collect()
}

/// A freshly initialized model for `env`'s app and its spec.
pub fn build_model(
    kind: ModelKind,
    network: NetworkSpec,
    env: &mut AutoscaleEnv,
    seed: u64,
) -> (ActorCritic, ModelSpec) {
    let dev = Device::default();
    let actions = env.actions().len();
    let observation = env.reset();
    let n = observation.num_nodes;
    match kind {
        ModelKind::Gnn => {
            let inputs = node_inputs(&observation).len() / n;
            let config = GnnConfig { inputs, hidden: network.hidden, layers: network.layers, actions };
            let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(n, env.edges()));
            let model = GnnActorCritic::new(&dev, config.clone(), seed);
            (ActorCritic::Gnn(Box::new(model), graph), ModelSpec::Gnn(config))
        }
        ModelKind::Mlp => {
            let config = MlpConfig {
                inputs: observation.flatten().len(),
                nodes: n,
                hidden: vec![network.hidden; network.layers],
                actions,
            };
            let model = MlpActorCritic::new(&dev, config.clone(), seed);
            (ActorCritic::Mlp(model), ModelSpec::Mlp(config))
        }
    }
}

enum Learner {
    Ppo(Box<Ppo>),
    A2c(Box<A2c>),
    Dqn(Box<Dqn>),
}

impl Learner {
    fn iterate(&mut self) -> Result<IterationStats, LearnerError> {
        match self {
            Learner::Ppo(l) => l.iterate(),
            Learner::A2c(l) => l.iterate(),
            Learner::Dqn(l) => l.iterate(),
        }
    }

    fn model(&self) -> &ActorCritic {
        match self {
            Learner::Ppo(l) => &l.model,
            Learner::A2c(l) => &l.model,
            Learner::Dqn(l) => &l.model,
        }
    }
}

/// Trains a model for `app` with `seed` into `dir` (training.csv, model.safetensors, model.json). A non-finite
/// loss stops training with an error naming the update; no checkpoint is written then.
pub fn train(
    config: &TrainingConfig,
    app: &AppModel,
    seed: u64,
    dir: &Path,
    progress: Option<&ProgressBar>,
) -> Result<TrainOutcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let mut envs = training_envs(config, app, seed, SALT_ENV);
    let (mut model, model_spec) = build_model(config.model, config.network, &mut envs[0], mix_seed(seed, SALT_MODEL));

    let warm_start = match &config.warm_start {
        Some(warm) => {
            if let Some(bar) = progress {
                bar.set_message(format!("{} behaviour cloning", bar.message()));
            }
            let mut teacher_envs = training_envs(config, app, seed, SALT_TEACHER);
            let demos = bc::demonstrate(&mut teacher_envs, &warm.manifests, warm.bc.episodes, warm.bc.gamma);
            let stats = bc::clone_behaviour(&mut model, &demos, &warm.bc, mix_seed(seed, SALT_TEACHER))
                .context("behaviour cloning")?;
            Some(WarmStartStats::from(stats))
        }
        None => None,
    };

    let learner_seed = mix_seed(seed, SALT_LEARNER);
    let mut learner = match &config.algorithm {
        AlgoConfig::Ppo(c) => {
            let mut ppo = Ppo::new(c.clone(), model, envs, learner_seed);
            ppo.set_budget(config.budget as usize);
            Learner::Ppo(Box::new(ppo))
        }
        AlgoConfig::A2c(c) => Learner::A2c(Box::new(A2c::new(c.clone(), model, envs, learner_seed))),
        AlgoConfig::Dqn(c) => {
            Learner::Dqn(Box::new(Dqn::new(c.clone(), model, envs, config.budget as usize, learner_seed)))
        }
    };

    let csv_path = dir.join("training.csv");
    let mut csv = BufWriter::new(File::create(&csv_path).with_context(|| format!("creating {}", csv_path.display()))?);
    writeln!(csv, "{TRAINING_COLUMNS}").context("writing training.csv")?;
    let mut recent: VecDeque<f64> = VecDeque::new();
    let (mut env_steps, mut iterations, mut episodes) = (0u64, 0usize, 0usize);
    while env_steps < config.budget {
        let t0 = Instant::now();
        let stats = learner
            .iterate()
            .with_context(|| format!("training {} on {}", config.algorithm.algo().name(), app.name))?;
        let seconds = t0.elapsed().as_secs_f64().max(1e-9);
        iterations += 1;
        env_steps += stats.env_steps as u64;
        episodes += stats.finished_episode_returns.len();
        for r in &stats.finished_episode_returns {
            recent.push_back(*r);
            if recent.len() > RETURN_WINDOW {
                recent.pop_front();
            }
        }
        let return_mean = if recent.is_empty() {
            String::new()
        } else {
            format!("{:.4}", recent.iter().sum::<f64>() / recent.len() as f64)
        };
        writeln!(
            csv,
            "{},{},{},{:.6},{:.6},{:.6},{:.1},{:.6},{:.4},{:.4},{},{:.3}",
            stats.iteration,
            env_steps,
            return_mean,
            stats.policy_loss,
            stats.value_loss,
            stats.entropy,
            stats.env_steps as f64 / seconds,
            stats.mean_reward,
            stats.clip_fraction,
            stats.epsilon,
            episodes,
            started.elapsed().as_secs_f64()
        )
        .context("writing training.csv")?;
        csv.flush().context("writing training.csv")?;
        if let Some(bar) = progress {
            bar.set_position(env_steps.min(config.budget));
        }
    }
    drop(csv);

    let base = dir.join("model");
    let meta = CheckpointMeta {
        model: model_spec,
        algorithm: config.algorithm.clone(),
        env: env_config(config),
        app: app.name.clone(),
        services: app.services.iter().map(|s| s.name.clone()).collect(),
        edges: app.edges().into_iter().collect(),
        seed,
        iterations,
        env_steps,
    };
    checkpoint::save(&base, learner.model(), &meta).context("saving the checkpoint")?;
    Ok(TrainOutcome {
        checkpoint: base,
        training_csv: csv_path,
        iterations,
        env_steps,
        elapsed_s: started.elapsed().as_secs_f64(),
        final_return_mean: if recent.is_empty() {
            None
        } else {
            Some(recent.iter().sum::<f64>() / recent.len() as f64)
        },
        warm_start,
    })
}
