//! Training throughput: environment steps per wall-clock second of whole PPO iterations (rollout in parallel
//! environment threads, GAE, minibatch updates), on Online Boutique under `peak`.
//!
//! Run through `benchmarks/rl/speed.sh`, which runs stable-baselines3 side by side; alone:
//! `cargo bench -p orchestrator --bench rl_speed -- [ITERATIONS]`.
//! Settings match the stable-baselines3 run: 2 environments, 512 steps each per iteration, minibatches of 64,
//! 10 epochs, Adam 3e-4; the MLP is SB3's default (separate actor and critic, two tanh layers of 64).
//! Prints one `RESULT name env_steps_per_s` line per configuration, and the environment's own step cost.

use std::path::Path;
use std::time::Instant;

use dfdx::prelude::*;
use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::rl::actor_critic::ActorCritic;
use orchestrator::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use orchestrator::rl::graph::{NormalizedAdjacency, node_inputs};
use orchestrator::rl::mlp::{MlpActorCritic, MlpConfig};
use orchestrator::rl::ppo::Ppo;
use orchestrator::rl::{AutoscaleEnv, EnvConfig};
use orchestrator::settings::rl::PpoConfig;

fn envs(app: &AppModel, scenario: &Scenario) -> Vec<AutoscaleEnv> {
    (0..2).map(|i| AutoscaleEnv::new(app, scenario, 40 + i, EnvConfig::default())).collect()
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let app = AppModel::load(&root.join("experiments/apps/online-boutique.yaml")).unwrap();
    let scenario = Scenario::load(&root.join("experiments/scenarios/online-boutique/peak.yaml")).unwrap();
    let dev: Cpu = Default::default();

    // The environment alone: decisions per second with fixed actions, one thread.
    let mut env = AutoscaleEnv::new(&app, &scenario, 1, EnvConfig::default());
    let observation = env.reset();
    let start = Instant::now();
    let mut steps = 0;
    while start.elapsed().as_secs_f64() < 1.0 {
        let step = env.step(&[2; 11]);
        steps += 1;
        if step.done {
            env.reset();
        }
    }
    let step_us = start.elapsed().as_secs_f64() * 1e6 / steps as f64;
    println!("ENV step_us {step_us:.2} obs {} actions 11x5", observation.flatten().len());

    let config = PpoConfig { n_steps: 512, batch_size: 64, n_epochs: 10, ..PpoConfig::default() };
    let mlp = {
        let mut e = envs(&app, &scenario);
        let inputs = e[0].reset().flatten().len();
        let model = MlpActorCritic::new(&dev, MlpConfig { inputs, nodes: 11, hidden: vec![64, 64], actions: 5 }, 1);
        ("mlp-ppo", Ppo::new(config.clone(), ActorCritic::Mlp(model), e, 1))
    };
    let gnn = {
        let mut e = envs(&app, &scenario);
        let o = e[0].reset();
        let inputs = node_inputs(&o).len() / o.num_nodes;
        let model = GnnActorCritic::new(&dev, GnnConfig { inputs, hidden: 64, layers: 2, actions: 5 }, 1);
        let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(11, e[0].edges()));
        ("gnn-ppo", Ppo::new(config.clone(), ActorCritic::Gnn(Box::new(model), graph), e, 1))
    };
    for (name, mut ppo) in [mlp, gnn] {
        ppo.iterate().expect("warm-up iteration");
        let start = Instant::now();
        let mut steps = 0;
        for _ in 0..iterations {
            steps += ppo.iterate().expect("finite losses").env_steps;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!("RESULT {name} {:.1} ({steps} env steps in {seconds:.2} s)", steps as f64 / seconds);
    }
}
