//! Reinforcement-learning autoscalers: the environment they are trained in.
//!
//! - [`features`]: what a policy sees, as per-service node features, per-edge features and global features;
//! - [`reward`]: the selectable rewards (SLO-aware cost, gym-hpa's cost and latency, an AHPA-style log reward);
//! - [`env`]: the simulated cluster as an environment: one multi-discrete action (−2…+2 replicas per service,
//!   masked at min/max) every decision interval;
//! - [`graph`], [`layers`], [`gnn`], [`mlp`]: the graph and the flat actor-critics in dfdx, batch-correct;
//! - [`distributions`], [`returns`], [`optim`]: the host-side pieces of policy-gradient training: masked
//!   categoricals, GAE, global-norm gradient clipping and Adam;
//! - [`ppo`]: PPO over several environments stepped in parallel threads;
//! - [`checkpoint`]: weights in safetensors, hyperparameters, feature layout and service order in JSON;
//! - [`policy`]: [`RlPolicy`](policy::RlPolicy), a checkpoint driving a cell.

pub mod a2c;
pub mod bc;
pub mod checkpoint;
pub mod cli;
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

pub use env::{ACTIONS_PER_SERVICE, AutoscaleEnv, EnvConfig, MAX_STEP, Step, action_delta, action_mask};
pub use features::{EDGE_FEATURES, FeatureLayout, GLOBAL_FEATURES, GraphObservation, NODE_FEATURES};
pub use reward::{IntervalStats, RewardKind};
