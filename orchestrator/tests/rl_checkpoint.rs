//! Checkpoints: round trip, errors naming both sides, topology transfer, and a NaN stopping training cleanly.

use std::path::Path;

use dfdx::prelude::*;
use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::rl::actor_critic::ActorCritic;
use orchestrator::rl::checkpoint::{self, CheckpointError, CheckpointMeta, ModelSpec};
use orchestrator::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use orchestrator::rl::graph::{NormalizedAdjacency, node_inputs};
use orchestrator::rl::learner::LearnerError;
use orchestrator::rl::mlp::{MlpActorCritic, MlpConfig};
use orchestrator::rl::ppo::Ppo;
use orchestrator::rl::{AutoscaleEnv, EnvConfig};
use orchestrator::settings::rl::AlgoConfig;
use orchestrator::settings::rl::PpoConfig;

fn env(app: &str) -> AutoscaleEnv {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let app_model = AppModel::load(&root.join(format!("experiments/apps/{app}.yaml"))).expect("app");
    let scenario = Scenario::load(&root.join(format!("experiments/scenarios/{app}/peak.yaml"))).expect("scenario");
    AutoscaleEnv::new(&app_model, &scenario, 1, EnvConfig::default())
}

fn meta(env: &AutoscaleEnv, model: ModelSpec) -> CheckpointMeta {
    CheckpointMeta {
        model,
        algorithm: AlgoConfig::Ppo(PpoConfig::default()),
        env: env.config().clone(),
        app: env.app().name.clone(),
        services: env.app().services.iter().map(|s| s.name.clone()).collect(),
        edges: env.edges().to_vec(),
        seed: 1,
        iterations: 0,
        env_steps: 0,
    }
}

fn gnn_for(env: &mut AutoscaleEnv) -> (ActorCritic, GnnConfig) {
    let dev: Cpu = Default::default();
    let observation = env.reset();
    let inputs = node_inputs(&observation).len() / observation.num_nodes;
    let config = GnnConfig { inputs, hidden: 8, layers: 2, actions: 5 };
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(observation.num_nodes, env.edges()));
    (ActorCritic::Gnn(Box::new(GnnActorCritic::new(&dev, config.clone(), 9)), graph), config)
}

#[test]
fn a_gnn_checkpoint_round_trips_and_runs_on_another_topology() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("boutique-gnn");
    let mut boutique = env("online-boutique");
    let (model, config) = gnn_for(&mut boutique);
    checkpoint::save(&base, &model, &meta(&boutique, ModelSpec::Gnn(config.clone()))).unwrap();
    // Save again over it: still one pair of files, no temporary left behind.
    checkpoint::save(&base, &model, &meta(&boutique, ModelSpec::Gnn(config.clone()))).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["boutique-gnn.json", "boutique-gnn.safetensors"]);

    let (loaded, loaded_meta) = checkpoint::load(&base, "gnn", config.inputs, 11, boutique.edges()).unwrap();
    assert_eq!(loaded_meta.services.len(), 11);
    assert_eq!(loaded_meta.services[0], "frontend");
    let values = |m: &ActorCritic| m.parameters().iter().map(|(_, p)| p.values()).collect::<Vec<_>>();
    assert_eq!(values(&model), values(&loaded));
    let dev: Cpu = Default::default();
    let observation = boutique.observation();
    assert_eq!(model.infer(&dev, &[&observation]), loaded.infer(&dev, &[&observation]));

    // The same weights on redis-cluster's two services.
    let mut redis = env("redis-cluster");
    let (on_redis, _) = checkpoint::load(&base, "gnn", config.inputs, 2, redis.edges()).unwrap();
    let (logits, values) = on_redis.infer(&dev, &[&redis.reset()]);
    assert_eq!((logits.len(), values.len()), (10, 1));
}

#[test]
fn a_checkpoint_from_before_action_spaces_loads_with_the_reference_moves() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("old");
    let mut boutique = env("online-boutique");
    let (model, config) = gnn_for(&mut boutique);
    checkpoint::save(&base, &model, &meta(&boutique, ModelSpec::Gnn(config.clone()))).unwrap();
    // Such a checkpoint names no action space and no head width: strip both, as it was written then.
    let (_, json_path) = checkpoint::paths(&base);
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert!(json["env"].get("actions").is_none(), "the reference space is not written: {json}");
    let removed = json["model"].as_object_mut().unwrap().remove("actions");
    assert_eq!(removed, Some(5.into()));
    std::fs::write(&json_path, serde_json::to_vec(&json).unwrap()).unwrap();

    let (loaded, loaded_meta) = checkpoint::load(&base, "gnn", config.inputs, 11, boutique.edges()).unwrap();
    assert!(loaded_meta.env.actions.is_default());
    assert_eq!(loaded_meta.model.actions(), 5);
    let dev: Cpu = Default::default();
    let observation = boutique.observation();
    assert_eq!(loaded.infer(&dev, &[&observation]), model.infer(&dev, &[&observation]));
}

#[test]
fn loading_the_wrong_model_type_or_feature_size_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("redis-mlp");
    let mut redis = env("redis-cluster");
    let inputs = redis.reset().flatten().len();
    let config = MlpConfig { inputs, nodes: 2, hidden: vec![8], actions: 5 };
    let model = ActorCritic::Mlp(MlpActorCritic::new(&Cpu::default(), config.clone(), 1));
    checkpoint::save(&base, &model, &meta(&redis, ModelSpec::Mlp(config))).unwrap();

    let err = checkpoint::load(&base, "gnn", inputs, 2, redis.edges()).expect_err("wrong type");
    assert!(matches!(err, CheckpointError::ModelType { .. }));
    let message = err.to_string();
    assert!(message.contains("mlp") && message.contains("gnn"), "{message}");

    let err = checkpoint::load(&base, "mlp", inputs + 3, 2, redis.edges()).expect_err("wrong size");
    let message = err.to_string();
    assert!(message.contains(&inputs.to_string()) && message.contains(&(inputs + 3).to_string()), "{message}");

    assert!(checkpoint::load(&base, "mlp", inputs, 2, redis.edges()).is_ok());
    assert!(checkpoint::load(&dir.path().join("missing"), "mlp", inputs, 2, redis.edges()).is_err());
}

#[test]
fn a_nan_loss_stops_training_with_the_update_named_and_leaves_the_model_and_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("ckpt");
    let mut redis = env("redis-cluster");
    let (mut model, config) = gnn_for(&mut redis);
    checkpoint::save(&base, &model, &meta(&redis, ModelSpec::Gnn(config.clone()))).unwrap();
    let saved = std::fs::read(base.with_extension("safetensors")).unwrap();
    // A NaN critic bias makes every value, hence every advantage and the loss, NaN.
    {
        let mut params = model.parameters_mut();
        let last = params.last_mut().unwrap();
        last.set(&[f32::NAN]);
    }
    let before: Vec<Vec<f32>> = model.parameters().iter().map(|(_, p)| p.values()).collect();
    let config_ppo = PpoConfig { n_steps: 4, batch_size: 4, n_epochs: 1, ..PpoConfig::default() };
    let mut ppo = Ppo::new(config_ppo, model, vec![redis], 1);
    let err = ppo.iterate().expect_err("NaN loss");
    assert!(matches!(err, LearnerError::NonFiniteLoss { iteration: 1, update: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("update 1"), "{err}");
    let after: Vec<Vec<f32>> = ppo.model.parameters().iter().map(|(_, p)| p.values()).collect();
    let same = before.iter().flatten().zip(after.iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "no update was applied");
    assert_eq!(std::fs::read(base.with_extension("safetensors")).unwrap(), saved);
}

#[test]
fn an_rl_policy_from_a_boutique_checkpoint_drives_a_redis_cluster_within_bounds() {
    use orchestrator::cell::ClusterBackend;
    use orchestrator::cell::Policy;
    use orchestrator::rl::policy::RlPolicy;
    use orchestrator::sim::Simulator;

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("boutique-gnn");
    let mut boutique = env("online-boutique");
    let (model, config) = gnn_for(&mut boutique);
    checkpoint::save(&base, &model, &meta(&boutique, ModelSpec::Gnn(config))).unwrap();

    let redis = env("redis-cluster");
    let app = redis.app().clone();
    let mut policy = RlPolicy::from_checkpoint(&base, &app).expect("a GNN loads on another topology");
    assert_eq!(policy.interval_s(), 15);
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let scenario = Scenario::load(&root.join("experiments/scenarios/redis-cluster/rushsale.yaml")).unwrap();
    let mut sim = Simulator::new(&app, &scenario, 3);
    sim.reset(&policy.initial_replicas());
    let run = |policy: &mut RlPolicy, sim: &mut Simulator| {
        let mut log = Vec::new();
        for t in 0..300u64 {
            if t % policy.interval_s() == 0 {
                for d in policy.decide(&sim.observe()) {
                    let s = &app.services[d.service].replicas;
                    assert!(d.replicas >= s.min && d.replicas <= s.max, "{d:?}");
                    sim.scale(d.service, d.replicas);
                    log.push((t, d.service, d.replicas));
                }
            }
            sim.advance();
        }
        log
    };
    let first = run(&mut policy, &mut sim);
    let mut sim_again = Simulator::new(&app, &scenario, 3);
    sim_again.reset(&policy.initial_replicas());
    assert_eq!(first, run(&mut policy, &mut sim_again), "greedy and deterministic");
}
