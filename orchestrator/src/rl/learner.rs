//! What every learner (PPO, A2C, DQN, behaviour cloning) reports: the statistics of an iteration and the one way an
//! update fails. Each algorithm's file reads top to bottom on its own; these are the types they share.

/// Statistics of one iteration (of any learner).
#[derive(Debug, Clone, PartialEq)]
pub struct IterationStats {
    pub iteration: usize,
    pub env_steps: usize,
    /// Mean reward per decision over the rollout.
    pub mean_reward: f64,
    pub finished_episode_returns: Vec<f64>,
    pub policy_loss: f32,
    pub value_loss: f32,
    pub entropy: f32,
    pub clip_fraction: f32,
    /// Exploration rate at the end of the iteration (DQN's ε; 0 for policy-gradient learners).
    pub epsilon: f32,
}

/// A failed update of any learner (PPO, A2C, DQN, behaviour cloning): nothing of that update was applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LearnerError {
    #[error("update {update} (iteration {iteration}): loss is {loss} (policy {policy}, value {value})")]
    NonFiniteLoss { iteration: usize, update: usize, loss: f32, policy: f32, value: f32 },
}
