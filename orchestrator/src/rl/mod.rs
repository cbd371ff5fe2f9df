//! Reinforcement-learning autoscalers, trained on the simulator.
//!
//! - [`features`]: what a policy sees, as per-service node features, per-edge features and global features;
//! - [`reward`]: the selectable rewards (SLO-aware cost, gym-hpa's cost and latency, an AHPA-style log reward);
//! - [`actions`]: the moves of one decision per service (−2…+2 replicas by default, wider steps, or relative moves
//!   such as double and halve), masked at min/max;
//! - [`env`], [`scenarios`]: the simulated cluster as an environment: one multi-discrete action per service every
//!   decision interval, episodes drawn from randomized training scenarios;
//! - [`graph`], [`layers`], [`gnn`], [`mlp`], [`model`]: the graph and the flat actor-critics in dfdx,
//!   batch-correct, behind one interface;
//! - [`distributions`], [`returns`], [`optim`], [`rollout`]: the host-side pieces of training: masked
//!   categoricals, GAE, global-norm gradient clipping, Adam and RMSprop, parallel rollouts with time-limit
//!   bootstrapping and reward normalization;
//! - [`ppo`], [`a2c`], [`dqn`], [`bc`]: the learners, each readable top to bottom, and behaviour cloning from an HPA;
//! - [`checkpoint`]: weights in safetensors, hyperparameters, feature layout and service order in JSON;
//! - [`spec`], [`train`], [`prepare`]: `kind: rl` matrix entries, one training run, and the training step of a
//!   matrix run (train once per app, policy and seed; cache by hash);
//! - [`policy`]: [`RlPolicy`](policy::RlPolicy), a checkpoint driving a cell.

pub mod a2c;
pub mod actions;
pub mod bc;
pub mod checkpoint;
pub mod distributions;
pub mod dqn;
pub mod env;
pub mod features;
pub mod gnn;
pub mod graph;
pub mod layers;
pub mod mlp;
pub mod model;
pub mod optim;
pub mod policy;
pub mod ppo;
pub mod prepare;
pub mod returns;
pub mod reward;
pub mod rollout;
pub mod scenarios;
pub mod spec;
pub mod train;

pub use actions::ActionSpace;
pub use env::{AutoscaleEnv, EnvConfig, Step};
pub use features::{EDGE_FEATURES, FeatureLayout, GLOBAL_FEATURES, GraphObservation, NODE_FEATURES};
pub use reward::{IntervalStats, RewardKind};
