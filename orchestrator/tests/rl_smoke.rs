//! A short PPO training of the GNN on Online Boutique under `peak`, printing the mean reward per iteration.
//! Not part of the regular suite (it takes minutes); run it with
//! `cargo test --release -p orchestrator --test rl_smoke -- --ignored --nocapture`.

use std::path::Path;
use std::time::Instant;

use dfdx::prelude::*;
use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::rl::actor_critic::ActorCritic;
use orchestrator::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use orchestrator::rl::graph::{NormalizedAdjacency, node_inputs};
use orchestrator::rl::ppo::Ppo;
use orchestrator::rl::{AutoscaleEnv, EnvConfig};
use orchestrator::settings::rl::PpoConfig;

#[test]
#[ignore = "minutes of training; run by hand"]
fn ppo_gnn_on_online_boutique_peak() {
    let iterations: usize = std::env::var("RL_SMOKE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let app = AppModel::load(&root.join("experiments/apps/online-boutique.yaml")).unwrap();
    let scenario = Scenario::load(&root.join("experiments/scenarios/online-boutique/peak.yaml")).unwrap();
    let mut envs: Vec<AutoscaleEnv> =
        (0..2).map(|i| AutoscaleEnv::new(&app, &scenario, 10 + i, EnvConfig::default())).collect();
    let observation = envs[0].reset();
    let dev: Cpu = Default::default();
    let inputs = node_inputs(&observation).len() / observation.num_nodes;
    let model = GnnActorCritic::new(&dev, GnnConfig { inputs, hidden: 64, layers: 2, actions: 5 }, 1);
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(11, envs[0].edges()));
    let config = PpoConfig { n_steps: 60, ..PpoConfig::default() };
    let mut ppo = Ppo::new(config, ActorCritic::Gnn(Box::new(model), graph), envs, 1);
    for _ in 0..iterations {
        let start = Instant::now();
        let stats = ppo.iterate().expect("finite losses");
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "iteration {:3}  mean reward {:8.4}  episodes {:?}  policy {:7.4}  value {:7.4}  entropy {:6.3}  clip {:5.3}  {:6.0} env-steps/s",
            stats.iteration,
            stats.mean_reward,
            stats.finished_episode_returns.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>(),
            stats.policy_loss,
            stats.value_loss,
            stats.entropy,
            stats.clip_fraction,
            stats.env_steps as f64 / seconds
        );
    }
}
