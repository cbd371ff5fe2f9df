//! Generalized advantage estimation (Schulman et al. 2016), as in CleanRL and stable-baselines3.
//!
//! `δ_t = r_t + γ·V(s_{t+1})·(1 − done_t) − V(s_t)`, `A_t = δ_t + γ·λ·(1 − done_t)·A_{t+1}`, returns `A_t + V(s_t)`.
//! `done_t` means the episode ended with step `t`; after the last stored step the bootstrap value is
//! `last_value` (the value of the state the rollout stopped in) unless `last_done`.

/// Advantages and returns of one environment's rollout.
pub fn gae(
    rewards: &[f32],
    values: &[f32],
    dones: &[bool],
    last_value: f32,
    gamma: f32,
    lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = rewards.len();
    assert!(values.len() == n && dones.len() == n, "a value and a done flag per reward");
    let mut advantages = vec![0.0; n];
    let mut next_advantage = 0.0;
    let mut next_value = last_value;
    for t in (0..n).rev() {
        let not_done = if dones[t] { 0.0 } else { 1.0 };
        let delta = rewards[t] + gamma * next_value * not_done - values[t];
        next_advantage = delta + gamma * lambda * not_done * next_advantage;
        advantages[t] = next_advantage;
        next_value = values[t];
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// Scales advantages to zero mean and unit standard deviation (eps 1e-8, as CleanRL).
pub fn normalize(advantages: &mut [f32]) {
    let n = advantages.len() as f32;
    if advantages.len() < 2 {
        return;
    }
    let mean = advantages.iter().sum::<f32>() / n;
    let variance = advantages.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / (n - 1.0);
    let std = variance.sqrt();
    advantages.iter_mut().for_each(|a| *a = (*a - mean) / (std + 1e-8));
}
