//! A `kind: rl` policy as a resolved cell config carries it: the learner, its hyperparameters (with the defaults
//! of Stable-Baselines3 where it has them), the features, actions, reward and training load. Data only: the
//! algorithms that read these live in [`crate::rl`], the matrix's `rl:` block is read in
//! [`crate::matrix::rl_policy`]. Every field is part of the cell hash, so a change here changes cell ids.

use std::path::PathBuf;

use load_agent::scenario::Scenario;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::AppModel;
use crate::hpa::HorizontalPodAutoscaler;
use crate::settings::simulator::SimulatorSettings;

// The policy and its training.

/// Bumped whenever the meaning of a resolved training changes, so cached models are not reused across it.
pub const TRAINING_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algo {
    Ppo,
    A2c,
    Dqn,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::A2c => "a2c",
            Algo::Dqn => "dqn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Gnn,
    Mlp,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Gnn => "gnn",
            ModelKind::Mlp => "mlp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Width of every hidden layer.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Graph convolutions (GNN) or hidden layers (MLP).
    #[serde(default = "default_layers")]
    pub layers: usize,
}

fn default_hidden() -> usize {
    64
}

fn default_layers() -> usize {
    2
}

impl Default for NetworkSpec {
    fn default() -> NetworkSpec {
        NetworkSpec { hidden: default_hidden(), layers: default_layers() }
    }
}

/// The learner's hyperparameters, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algo", rename_all = "snake_case")]
pub enum AlgoConfig {
    Ppo(PpoConfig),
    A2c(A2cConfig),
    Dqn(DqnConfig),
}

impl AlgoConfig {
    pub fn algo(&self) -> Algo {
        match self {
            AlgoConfig::Ppo(_) => Algo::Ppo,
            AlgoConfig::A2c(_) => Algo::A2c,
            AlgoConfig::Dqn(_) => Algo::Dqn,
        }
    }

    /// The discount the learner uses (the warm start fits its critic with it too).
    pub fn gamma(&self) -> f32 {
        match self {
            AlgoConfig::Ppo(c) => c.gamma,
            AlgoConfig::A2c(c) => c.gamma,
            AlgoConfig::Dqn(c) => c.gamma,
        }
    }
}

/// A warm start, resolved: the teacher's manifests and the cloning settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStart {
    pub manifest_file: PathBuf,
    pub manifests: Vec<HorizontalPodAutoscaler>,
    pub bc: BcConfig,
}

/// Everything one training run reads, apart from the app and the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub model: ModelKind,
    pub network: NetworkSpec,
    pub algorithm: AlgoConfig,
    pub budget: u64,
    pub envs: usize,
    pub decision_interval_s: u64,
    pub reward: RewardKind,
    pub features: FeatureLayout,
    #[serde(default, skip_serializing_if = "ActionSpace::is_default")]
    pub actions: ActionSpace,
    /// The training scenarios' full content, so editing one retrains.
    pub scenarios: Vec<Scenario>,
    pub randomization: Randomization,
    pub warm_start: Option<WarmStart>,
    /// The simulator's model the episodes run on; absent for the legacy model, so models trained on it keep their
    /// training hash (and are reused) while those of any other model are trained afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSettings>,
}

impl TrainingConfig {
    /// The model training episodes run on (absent: the legacy one).
    pub fn simulator_settings(&self) -> SimulatorSettings {
        self.simulator.unwrap_or(SimulatorSettings::LEGACY)
    }
}

/// A `kind: rl` policy resolved for one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlPolicyConfig {
    pub name: String,
    pub training: TrainingConfig,
    /// Set when the run has trained (or found) the model: `<run>/models/<hash>/model` (without extension).
    /// Not part of the cell hash: it is filled in after cell ids are fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
}

/// The hash a trained model is cached by: the training config, the app and the seed (hex SHA-256).
pub fn training_hash(training: &TrainingConfig, app: &AppModel, seed: u64) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        format_version: u32,
        training: &'a TrainingConfig,
        app: &'a AppModel,
        seed: u64,
    }
    let json = serde_json::to_vec(&Key { format_version: TRAINING_FORMAT_VERSION, training, app, seed })
        .expect("training config serializes");
    Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
}

// PPO.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoConfig {
    /// Decisions per environment per rollout.
    pub n_steps: usize,
    /// Samples per minibatch (SB3: 64).
    pub batch_size: usize,
    /// Passes over each rollout (SB3: 10).
    pub n_epochs: usize,
    /// Discount (SB3: 0.99).
    pub gamma: f32,
    /// GAE λ (SB3: 0.95).
    pub gae_lambda: f32,
    /// Policy ratio clip ε (SB3: 0.2).
    pub clip_range: f32,
    /// Entropy bonus (SB3: 0.0).
    pub ent_coef: f32,
    /// Value loss weight (SB3: 0.5).
    pub vf_coef: f32,
    /// Global gradient norm limit (SB3: 0.5).
    pub max_grad_norm: f32,
    /// Adam step size (SB3: 3e-4), eps 1e-5.
    pub learning_rate: f32,
    /// Normalize advantages per minibatch (SB3: true).
    pub normalize_advantage: bool,
    /// Divide rewards by the running std of the discounted return (SB3: off unless wrapped in
    /// `VecNormalize(norm_reward=True)`; ours: on, as rewards here range from -0.01 to +11 per decision).
    #[serde(default = "default_true")]
    pub normalize_reward: bool,
    /// Decay the learning rate linearly to 0 over the training budget (CleanRL's `anneal_lr`; SB3: constant).
    #[serde(default, skip_serializing_if = "is_false")]
    pub anneal_lr: bool,
    /// If set, the entropy bonus moves linearly from `ent_coef` to this over the training budget (explore early,
    /// commit late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ent_coef_final: Option<f32>,
}

fn default_true() -> bool {
    true
}

// Options that are off are not serialized, so configs that do not use them keep their hashes.
fn is_false(value: &bool) -> bool {
    !*value
}

impl Default for PpoConfig {
    fn default() -> PpoConfig {
        PpoConfig {
            n_steps: 64,
            batch_size: 64,
            n_epochs: 10,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_range: 0.2,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            learning_rate: 3e-4,
            normalize_reward: true,
            normalize_advantage: true,
            anneal_lr: false,
            ent_coef_final: None,
        }
    }
}

// A2C.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct A2cConfig {
    /// Decisions per environment per update (SB3: 5).
    pub n_steps: usize,
    /// Discount (SB3: 0.99).
    pub gamma: f32,
    /// GAE λ; 1.0 gives plain n-step returns (SB3: 1.0).
    pub gae_lambda: f32,
    /// Entropy bonus (SB3: 0.0).
    pub ent_coef: f32,
    /// Value loss weight (SB3: 0.5).
    pub vf_coef: f32,
    /// Global gradient norm limit (SB3: 0.5).
    pub max_grad_norm: f32,
    /// RMSprop step size (SB3: 7e-4), alpha 0.99, eps 1e-5.
    pub learning_rate: f32,
    /// Normalize advantages over each update (SB3: false).
    pub normalize_advantage: bool,
    /// Divide rewards by the running std of the discounted return (SB3: off unless wrapped in
    /// `VecNormalize(norm_reward=True)`; ours: on, as rewards here range from -0.01 to +11 per decision).
    #[serde(default = "default_true")]
    pub normalize_reward: bool,
}

impl Default for A2cConfig {
    fn default() -> A2cConfig {
        A2cConfig {
            n_steps: 5,
            gamma: 0.99,
            gae_lambda: 1.0,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            learning_rate: 7e-4,
            normalize_reward: true,
            normalize_advantage: false,
        }
    }
}

// DQN.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DqnConfig {
    /// Adam step size (SB3: 1e-4), eps 1e-8 as PyTorch's default that SB3's DQN keeps.
    pub learning_rate: f32,
    /// Transitions the replay buffer holds (SB3: 1,000,000; ours: 50,000, more than any budget we train with).
    pub buffer_size: usize,
    /// Steps of pure exploration before learning starts (SB3: 100).
    pub learning_starts: usize,
    /// Transitions per gradient step (SB3: 32).
    pub batch_size: usize,
    /// Target network update coefficient; 1.0 copies (SB3: 1.0).
    pub tau: f32,
    /// Discount (SB3: 0.99).
    pub gamma: f32,
    /// Environment steps between training rounds (SB3: 4).
    pub train_freq: usize,
    /// Gradient steps per training round (SB3: 1).
    pub gradient_steps: usize,
    /// Environment steps between target updates (SB3: 10,000; ours: 500, as budgets are tens of thousands).
    pub target_update_interval: usize,
    /// Share of the budget over which ε decays (SB3: 0.1).
    pub exploration_fraction: f64,
    /// ε at the start (SB3: 1.0).
    pub exploration_initial_eps: f64,
    /// ε after the decay (SB3: 0.05).
    pub exploration_final_eps: f64,
    /// Global gradient norm limit (SB3: 10).
    pub max_grad_norm: f32,
    /// Environment steps per reported iteration (a row of training.csv); not a learning parameter.
    pub log_interval: usize,
}

impl Default for DqnConfig {
    fn default() -> DqnConfig {
        DqnConfig {
            learning_rate: 1e-4,
            buffer_size: 50_000,
            learning_starts: 100,
            batch_size: 32,
            tau: 1.0,
            gamma: 0.99,
            train_freq: 4,
            gradient_steps: 1,
            target_update_interval: 500,
            exploration_fraction: 0.1,
            exploration_initial_eps: 1.0,
            exploration_final_eps: 0.05,
            max_grad_norm: 10.0,
            log_interval: 1000,
        }
    }
}

// Behaviour cloning (the warm start).

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BcConfig {
    /// Teacher episodes per environment.
    pub episodes: usize,
    /// Passes over the demonstrations.
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f32,
    /// Discount of the teacher's returns the critic is fitted to (as the learner's γ).
    pub gamma: f32,
    /// Weight of the critic's squared error.
    pub vf_coef: f32,
    pub max_grad_norm: f32,
    /// Repeat decisions in which the teacher moved some service so they weigh as much as those in which it kept
    /// every replica count (at most 10 times): an HPA mostly waits, and a clone fitted to the raw counts learns to
    /// wait always.
    #[serde(default = "default_true")]
    pub balance_moves: bool,
}

impl Default for BcConfig {
    fn default() -> BcConfig {
        BcConfig {
            episodes: 2,
            epochs: 10,
            batch_size: 64,
            learning_rate: 1e-3,
            gamma: 0.99,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            balance_moves: true,
        }
    }
}

// Action spaces.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSpace {
    /// Add −max_step…+max_step replicas.
    Steps { max_step: u32 },
    /// Halve, −1, keep, +1, double, triple.
    Relative,
}

/// The reference move range: −2…+2 replicas.
pub const DEFAULT_MAX_STEP: u32 = 2;

impl Default for ActionSpace {
    fn default() -> ActionSpace {
        ActionSpace::Steps { max_step: DEFAULT_MAX_STEP }
    }
}

// Features.

/// Per-service features, in this order.
pub const NODE_FEATURES: [&str; 9] = [
    "ready_replicas_rel_max",
    "desired_replicas_rel_max",
    "pending_replicas_rel_max",
    "cpu_utilization",
    "memory_utilization",
    "in_rate",
    "out_rate",
    "p95_rel_slo",
    "failure_rate",
];
/// Per-edge features (caller → callee), in this order.
pub const EDGE_FEATURES: [&str; 1] = ["rate"];
/// Whole-cluster features, in this order.
pub const GLOBAL_FEATURES: [&str; 1] = ["offered_load"];

/// How raw observations become features; saved with a checkpoint so evaluation encodes as training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureLayout {
    pub node_features: Vec<String>,
    pub edge_features: Vec<String>,
    pub global_features: Vec<String>,
    /// A rate of this many requests per second reads as 1.0.
    pub rate_reference_rps: f64,
    /// Ratios (utilization, latency relative to the SLO) are clipped to this.
    pub ratio_clip: f64,
}

impl Default for FeatureLayout {
    fn default() -> FeatureLayout {
        FeatureLayout {
            node_features: NODE_FEATURES.iter().map(|s| s.to_string()).collect(),
            edge_features: EDGE_FEATURES.iter().map(|s| s.to_string()).collect(),
            global_features: GLOBAL_FEATURES.iter().map(|s| s.to_string()).collect(),
            rate_reference_rps: 1000.0,
            ratio_clip: 10.0,
        }
    }
}

// Rewards.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardKind {
    SloCost {
        pod_cost: f64,
        slo_penalty: f64,
        failure_penalty: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        violation_penalty: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        change_penalty: f64,
    },
    GymHpaCost,
    GymHpaLatency {
        cap_ms: f64,
    },
    AhpaLog {
        cost_weight: f64,
    },
}

// Optional weights left at 0 are not serialized, so configs that do not use them keep their hashes.
fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl RewardKind {
    /// `slo_cost` with the three main weights and no optional terms.
    pub fn slo_cost(pod_cost: f64, slo_penalty: f64, failure_penalty: f64) -> RewardKind {
        RewardKind::SloCost { pod_cost, slo_penalty, failure_penalty, violation_penalty: 0.0, change_penalty: 0.0 }
    }
}

impl Default for RewardKind {
    fn default() -> RewardKind {
        RewardKind::slo_cost(1.0, 2.0, 2.0)
    }
}

// Training load.

/// How training episodes vary the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Randomization {
    /// Whole-scenario load factor, drawn uniformly from `[low, high]` per episode.
    #[serde(default = "unit_scale")]
    pub scale: [f64; 2],
    /// Standard deviation of the per-stage load factor around 1.
    #[serde(default)]
    pub noise: f64,
}

fn unit_scale() -> [f64; 2] {
    [1.0, 1.0]
}

impl Default for Randomization {
    fn default() -> Randomization {
        Randomization { scale: unit_scale(), noise: 0.0 }
    }
}
