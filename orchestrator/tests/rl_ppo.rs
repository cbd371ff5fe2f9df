//! PPO: the clipped objective and a tiny training run over parallel environments.

use std::path::Path;

use dfdx::prelude::*;
use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::rl::actor_critic::ActorCritic;
use orchestrator::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use orchestrator::rl::graph::{NormalizedAdjacency, node_inputs};
use orchestrator::rl::mlp::{MlpActorCritic, MlpConfig};
use orchestrator::rl::ppo::{Ppo, clipped_surrogate};
use orchestrator::rl::{AutoscaleEnv, EnvConfig};
use orchestrator::settings::rl::PpoConfig;

#[test]
fn the_clip_stops_the_gradient_once_the_ratio_leaves_the_trust_region_in_the_advantage_direction() {
    let dev: Cpu = Default::default();
    // Samples: ρ = e^0.5 ≈ 1.65 with A > 0 (clipped at 1.2: no gradient), ρ = e^0.05 ≈ 1.05 with A > 0 (inside),
    // ρ = e^0.5 with A < 0 (min picks the unclipped, worse term: gradient flows), ρ = e^−0.5 ≈ 0.61 with A < 0
    // (clipped at 0.8: no gradient).
    let log_ratio = dev.tensor_from_vec(vec![0.5f32, 0.05, 0.5, -0.5], (4,));
    let advantages = dev.tensor_from_vec(vec![1.0f32, 2.0, -1.0, -1.0], (4,));
    let loss = clipped_surrogate(log_ratio.leaky_trace(), advantages, 0.2);
    // Terms ρ·A or clipped ρ·A: 1.2·1, e^0.05·2, e^0.5·(−1), 0.8·(−1).
    let expected = -(1.2 + 0.05f32.exp() * 2.0 - 0.5f32.exp() - 0.8) / 4.0;
    assert!((loss.array() - expected).abs() < 1e-5, "{} vs {expected}", loss.array());
    let grads = loss.backward();
    let g = grads.get(&log_ratio).as_vec();
    assert_eq!(g[0], 0.0);
    assert!((g[1] - -(0.05f32.exp() * 2.0) / 4.0).abs() < 1e-5);
    assert!((g[2] - 0.5f32.exp() / 4.0).abs() < 1e-5);
    assert_eq!(g[3], 0.0);
}

fn envs(count: u64) -> Vec<AutoscaleEnv> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let app = AppModel::load(&root.join("experiments/apps/redis-cluster.yaml")).expect("app");
    let scenario = Scenario::load(&root.join("experiments/scenarios/redis-cluster/rushsale.yaml")).expect("scenario");
    (0..count).map(|i| AutoscaleEnv::new(&app, &scenario, 100 + i, EnvConfig::default())).collect()
}

fn tiny() -> PpoConfig {
    PpoConfig { n_steps: 16, batch_size: 8, n_epochs: 2, ..PpoConfig::default() }
}

fn gnn_ppo(seed: u64) -> Ppo {
    let dev: Cpu = Default::default();
    let mut envs = envs(2);
    let observation = envs[0].reset();
    let inputs = node_inputs(&observation).len() / observation.num_nodes;
    let model = GnnActorCritic::new(&dev, GnnConfig { inputs, hidden: 16, layers: 2, actions: 5 }, seed);
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(2, envs[0].edges()));
    Ppo::new(tiny(), ActorCritic::Gnn(Box::new(model), graph), envs, seed)
}

#[test]
fn a_gnn_ppo_iteration_updates_every_parameter_and_is_deterministic() {
    let mut ppo = gnn_ppo(1);
    let before: Vec<Vec<f32>> = ppo.model.parameters().iter().map(|(_, p)| p.values()).collect();
    let stats = ppo.iterate().expect("finite losses");
    assert_eq!(stats.env_steps, 32);
    assert!(stats.policy_loss.is_finite() && stats.value_loss.is_finite() && stats.entropy > 0.0);
    let after: Vec<Vec<f32>> = ppo.model.parameters().iter().map(|(_, p)| p.values()).collect();
    for ((name, _), (b, a)) in ppo.model.parameters().iter().zip(before.iter().zip(&after)) {
        assert_ne!(b, a, "{name} did not change");
    }
    let mut again = gnn_ppo(1);
    let stats_again = again.iterate().expect("finite losses");
    assert_eq!(stats, stats_again, "same seed, same iteration");
    let again_params: Vec<Vec<f32>> = again.model.parameters().iter().map(|(_, p)| p.values()).collect();
    assert_eq!(after, again_params);
}

#[test]
fn an_mlp_ppo_iteration_runs() {
    let dev: Cpu = Default::default();
    let mut envs = envs(2);
    let observation = envs[0].reset();
    let config = MlpConfig { inputs: observation.flatten().len(), nodes: 2, hidden: vec![32, 32], actions: 5 };
    let model = MlpActorCritic::new(&dev, config, 4);
    let mut ppo = Ppo::new(tiny(), ActorCritic::Mlp(model), envs, 4);
    let stats = ppo.iterate().expect("finite losses");
    assert!(stats.value_loss.is_finite() && stats.mean_reward.is_finite());
}
