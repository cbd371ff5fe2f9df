//! The dfdx actor-critics: batch correctness, gradients per sample, topology transfer.

use std::path::Path;

use dfdx::prelude::*;
use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors, encode_batch};
use orchestrator::rl::graph::{NormalizedAdjacency, node_inputs};
use orchestrator::rl::{AutoscaleEnv, EnvConfig, GraphObservation};

fn env(app: &str, scenario: &str, seed: u64) -> AutoscaleEnv {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let app_model = AppModel::load(&root.join(format!("experiments/apps/{app}.yaml"))).expect("app");
    let scenario =
        Scenario::load(&root.join(format!("experiments/scenarios/{app}/{scenario}.yaml"))).expect("scenario");
    AutoscaleEnv::new(&app_model, &scenario, seed, EnvConfig::default())
}

/// Two clearly different states of Online Boutique: at the start, and after scaling up under load.
fn two_states() -> (AutoscaleEnv, GraphObservation, GraphObservation) {
    let mut env = env("online-boutique", "peak", 1);
    let first = env.reset();
    let mut later = first.clone();
    for _ in 0..4 {
        later = env.step(&[4; 11]).observation;
    }
    assert_ne!(first, later);
    (env, first, later)
}

fn gnn(dev: &Cpu, observation: &GraphObservation) -> GnnActorCritic {
    let inputs = node_inputs(observation).len() / observation.num_nodes;
    GnnActorCritic::new(dev, GnnConfig { inputs, hidden: 16, layers: 2, actions: 5 }, 5)
}

#[test]
fn each_sample_of_a_batch_gets_its_own_encoding_equal_to_running_it_alone() {
    let dev: Cpu = Default::default();
    let (env, a, b) = two_states();
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(11, env.edges()));
    let model = gnn(&dev, &a);
    let (logits, values) = model.forward(encode_batch(&dev, &[&a, &b]), &graph);
    assert_eq!(*logits.shape(), (2, 11, 5));
    let logits = logits.as_vec();
    let values = values.as_vec();
    let (alone_a, value_a) = model.forward(encode_batch(&dev, &[&a]), &graph);
    let (alone_b, value_b) = model.forward(encode_batch(&dev, &[&b]), &graph);
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
    assert!(close(&logits[..55], &alone_a.as_vec()));
    assert!(close(&logits[55..], &alone_b.as_vec()));
    assert!(close(&values, &[value_a.as_vec()[0], value_b.as_vec()[0]]));
    let differs = logits[..55].iter().zip(&logits[55..]).any(|(p, q)| (p - q).abs() > 1e-6);
    assert!(differs, "two different states must not share one encoding");
    assert!((values[0] - values[1]).abs() > 1e-6);
}

#[test]
fn gradients_reach_every_sample_and_every_parameter() {
    let dev: Cpu = Default::default();
    let (env, a, b) = two_states();
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(11, env.edges()));
    let model = gnn(&dev, &a);
    let x = encode_batch(&dev, &[&a, &b]);
    let (logits, values) = model.forward(x.leaky_trace(), &graph);
    let (logits_no_tape, tape) = logits.split_tape();
    let weights = dev.tensor_from_vec((0..110).map(|i| (i % 7) as f32 - 3.0).collect(), (2, 11, 5));
    let loss = (logits_no_tape.put_tape(tape) * weights).sum::<(), _>() + values.sum::<(), _>();
    let grads = loss.backward();
    let dx = grads.get(&x).as_vec();
    let half = dx.len() / 2;
    assert!(dx[..half].iter().any(|g| g.abs() > 0.0), "no gradient reached sample 0");
    assert!(dx[half..].iter().any(|g| g.abs() > 0.0), "no gradient reached sample 1");
    for (name, param) in model.parameters() {
        let g = param.gradient(&grads);
        assert!(g.iter().any(|v| v.abs() > 0.0), "{name} has no gradient");
    }
}

#[test]
fn a_gnn_built_for_online_boutique_runs_on_redis_cluster() {
    let dev: Cpu = Default::default();
    let (_, a, _) = two_states();
    let model = gnn(&dev, &a);
    let mut redis = env("redis-cluster", "peak", 2);
    let observation = redis.reset();
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(2, redis.edges()));
    let (logits, values) = model.forward(encode_batch(&dev, &[&observation]), &graph);
    assert_eq!(*logits.shape(), (1, 2, 5));
    assert!(logits.as_vec().iter().chain(&values.as_vec()).all(|v| v.is_finite()));
}

#[test]
fn normalized_adjacency_averages_per_direction() {
    // 0 → 1, 0 → 2, 1 → 2.
    let adjacency = NormalizedAdjacency::new(3, &[(0, 1), (0, 2), (1, 2)]);
    assert_eq!(adjacency.from_callers, vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.0]);
    assert_eq!(adjacency.from_callees, vec![0.0, 0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn the_mlp_encodes_each_sample_on_its_own_and_gradients_reach_both() {
    use orchestrator::rl::mlp::{MlpActorCritic, MlpConfig, encode_flat_batch};
    let dev: Cpu = Default::default();
    let (_, a, b) = two_states();
    let inputs = a.flatten().len();
    let model = MlpActorCritic::new(&dev, MlpConfig { inputs, nodes: 11, hidden: vec![64, 64], actions: 5 }, 3);
    let x = encode_flat_batch(&dev, &[&a, &b]);
    let (logits, values) = model.forward(x.leaky_trace());
    assert_eq!(*logits.shape(), (2, 11, 5));
    let (alone_b, _) = model.forward(encode_flat_batch(&dev, &[&b]));
    let both = logits.as_vec();
    assert!(both[55..].iter().zip(alone_b.as_vec()).all(|(p, q)| (p - q).abs() < 1e-5));
    assert!(both[..55].iter().zip(&both[55..]).any(|(p, q)| (p - q).abs() > 1e-7));
    let (logits_no_tape, tape) = logits.split_tape();
    let weights = dev.tensor_from_vec((0..110).map(|i| (i % 5) as f32 - 2.0).collect(), (2, 11, 5));
    let loss = (logits_no_tape.put_tape(tape) * weights).sum::<(), _>() + values.sum::<(), _>();
    let grads = loss.backward();
    let dx = grads.get(&x).as_vec();
    assert!(dx[..inputs].iter().any(|g| g.abs() > 0.0) && dx[inputs..].iter().any(|g| g.abs() > 0.0));
    for (name, param) in model.parameters() {
        assert!(param.gradient(&grads).iter().any(|v| v.abs() > 0.0), "{name} has no gradient");
    }
}
