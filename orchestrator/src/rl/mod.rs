//! Reinforcement-learning autoscalers, trained on the simulator. The rest of the code sees them only as a
//! [`crate::cell::Policy`] built from a checkpoint ([`policy::RlPolicy`]).
//!
//! - [`features`]: what a policy sees, as per-service node features, per-edge features and global features;
//! - [`reward`]: the selectable rewards (SLO-aware cost, gym-hpa's cost and latency, an AHPA-style log reward);
//! - [`actions`]: the moves of one decision per service (−2…+2 replicas by default, wider steps, or relative moves
//!   such as double and halve), masked at min/max;
//! - [`env`], [`scenarios`]: the simulated cluster as an environment: one multi-discrete action per service every
//!   decision interval, episodes drawn from randomized training scenarios;
//! - [`graph`], [`layers`], [`gnn`], [`mlp`], [`actor_critic`]: the graph and the flat actor-critics in dfdx,
//!   batch-correct, behind one interface;
//! - [`distributions`], [`returns`], [`optim`], [`rollout`]: the host-side pieces of training: masked
//!   categoricals, GAE, global-norm gradient clipping, Adam and RMSprop, parallel rollouts with time-limit
//!   bootstrapping and reward normalization;
//! - [`ppo`], [`a2c`], [`dqn`], [`bc`]: the learners, each readable top to bottom, and behaviour cloning from an HPA;
//!   [`learner`]: what they share (iteration statistics, the failed update);
//! - [`checkpoint`]: weights in safetensors, hyperparameters, feature layout and service order in JSON;
//! - [`train`]: one training run (the settings it reads are [`crate::settings::rl`]; a matrix's `rl:` entries are
//!   read in [`crate::matrix::rl_policy`] and trained during a run in [`crate::run::rl_training`]);
//! - [`policy`]: [`RlPolicy`](policy::RlPolicy), a checkpoint driving a cell.

pub mod a2c;
pub mod actions;
pub mod actor_critic;
pub mod bc;
pub mod checkpoint;
pub mod distributions;
pub mod dqn;
pub mod env;
pub mod features;
pub mod gnn;
pub mod graph;
pub mod layers;
pub mod learner;
pub mod mlp;
pub mod optim;
pub mod policy;
pub mod ppo;
pub mod returns;
pub mod reward;
pub mod rollout;
pub mod scenarios;
pub mod train;

pub use env::{AutoscaleEnv, EnvConfig, Step};
pub use features::GraphObservation;
pub use reward::IntervalStats;
