//! A2C, DQN and behaviour cloning: targets and schedules by hand, replay sampling, determinism, NaN handling, and
//! the time-limit bootstrap of rollouts.

use std::path::Path;

use dfdx::prelude::*;
use load_agent::scenario::{LoadShape, Scenario};
use orchestrator::app::AppModel;
use orchestrator::rl::a2c::A2c;
use orchestrator::rl::actor_critic::ActorCritic;
use orchestrator::rl::bc::{self};
use orchestrator::rl::dqn::{Dqn, ReplayBuffer, Transition, greedy, linear_schedule, td_targets};
use orchestrator::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use orchestrator::rl::graph::{NormalizedAdjacency, node_inputs};
use orchestrator::rl::learner::LearnerError;
use orchestrator::rl::mlp::{MlpActorCritic, MlpConfig};
use orchestrator::rl::rollout::Workers;
use orchestrator::rl::scenarios::TrainingScenarios;
use orchestrator::rl::{AutoscaleEnv, EnvConfig};
use orchestrator::settings::rl::A2cConfig;
use orchestrator::settings::rl::ActionSpace;
use orchestrator::settings::rl::BcConfig;
use orchestrator::settings::rl::DqnConfig;
use orchestrator::settings::rl::Randomization;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn load(app: &str, scenario: &str) -> (AppModel, Scenario) {
    let app_model = AppModel::load(&root().join(format!("experiments/apps/{app}.yaml"))).expect("app");
    let scenario =
        Scenario::load(&root().join(format!("experiments/scenarios/{app}/{scenario}.yaml"))).expect("scenario");
    (app_model, scenario)
}

fn envs(app: &str, scenario: &str, count: u64, interval: u64) -> Vec<AutoscaleEnv> {
    let (app, scenario) = load(app, scenario);
    let config = EnvConfig { decision_interval_s: interval, ..EnvConfig::default() };
    (0..count).map(|i| AutoscaleEnv::new(&app, &scenario, 500 + i, config.clone())).collect()
}

fn gnn(env: &mut AutoscaleEnv, seed: u64) -> ActorCritic {
    let dev: Cpu = Default::default();
    let observation = env.reset();
    let inputs = node_inputs(&observation).len() / observation.num_nodes;
    let model = GnnActorCritic::new(&dev, GnnConfig { inputs, hidden: 8, layers: 1, actions: 5 }, seed);
    let graph = GraphTensors::new(&dev, &NormalizedAdjacency::new(observation.num_nodes, env.edges()));
    ActorCritic::Gnn(Box::new(model), graph)
}

fn mlp(env: &mut AutoscaleEnv, seed: u64) -> ActorCritic {
    let observation = env.reset();
    let config =
        MlpConfig { inputs: observation.flatten().len(), nodes: observation.num_nodes, hidden: vec![16], actions: 5 };
    ActorCritic::Mlp(MlpActorCritic::new(&Cpu::default(), config, seed))
}

fn bits(model: &ActorCritic) -> Vec<u32> {
    model.parameter_values().iter().flatten().map(|v| v.to_bits()).collect()
}

#[test]
fn a2c_updates_every_parameter_deterministically() {
    let run = || {
        let mut e = envs("redis-cluster", "rushsale", 2, 15);
        let model = gnn(&mut e[0], 3);
        let before = model.parameter_values();
        let mut a2c = A2c::new(A2cConfig::default(), model, e, 3);
        assert_eq!(a2c.steps_per_iteration(), 10);
        let mut stats = Vec::new();
        for _ in 0..3 {
            stats.push(a2c.iterate().expect("finite losses"));
        }
        let after = a2c.model.parameter_values();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            assert_ne!(b, a, "parameter {i} did not change");
        }
        (stats, bits(&a2c.model))
    };
    let (stats, params) = run();
    assert_eq!(stats[0].env_steps, 10);
    assert!(stats.iter().all(|s| s.policy_loss.is_finite() && s.value_loss > 0.0 && s.entropy > 0.0));
    assert_eq!((stats, params), run(), "same seed, same updates");
}

#[test]
fn a2c_stops_on_a_nan_loss_without_touching_the_model() {
    let mut e = envs("redis-cluster", "peak", 1, 15);
    let mut model = mlp(&mut e[0], 1);
    model.parameters_mut().last_mut().unwrap().set(&[f32::NAN]);
    let before = bits(&model);
    let mut a2c = A2c::new(A2cConfig::default(), model, e, 1);
    let err = a2c.iterate().expect_err("NaN value");
    assert!(matches!(err, LearnerError::NonFiniteLoss { update: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("update 1"));
    assert_eq!(bits(&a2c.model), before);
}

#[test]
fn linear_epsilon_schedule_matches_cleanrl() {
    // 1.0 → 0.05 over 100 steps.
    assert_eq!(linear_schedule(1.0, 0.05, 100.0, 0), 1.0);
    assert!((linear_schedule(1.0, 0.05, 100.0, 50) - 0.525).abs() < 1e-12);
    assert!((linear_schedule(1.0, 0.05, 100.0, 100) - 0.05).abs() < 1e-12);
    assert_eq!(linear_schedule(1.0, 0.05, 100.0, 1000), 0.05);
    assert_eq!(linear_schedule(1.0, 0.05, 0.0, 0), 0.05);
}

#[test]
fn td_targets_take_the_max_over_allowed_next_moves() {
    // Two samples, one service; γ = 0.9.
    let next_q = [1.0, 5.0, 2.0, 3.0, 4.0, /* second */ 9.0, 0.5, 0.0, -1.0, 7.0];
    // First: the best move (+5 at index 1) is masked, so the max is 4.0. Second: everything but stay and +2.
    let masks = [true, false, true, true, true, false, false, true, false, true];
    let targets = td_targets(&[-1.0, 0.5], &next_q, &masks, 1, 0.9);
    assert!((targets[0] - (-1.0 + 0.9 * 4.0)).abs() < 1e-6, "{targets:?}");
    assert!((targets[1] - (0.5 + 0.9 * 7.0)).abs() < 1e-6, "{targets:?}");
    // Two services in one sample: one target each, from its own row.
    let targets = td_targets(&[1.0], &next_q, &[true; 10], 2, 0.5);
    assert_eq!(targets, vec![1.0 + 0.5 * 5.0, 1.0 + 0.5 * 9.0]);
    // Greedy actions honour the mask too.
    assert_eq!(greedy(&next_q, &masks, 5, 2), vec![4, 4]);
}

#[test]
fn the_replay_buffer_overwrites_the_oldest_and_samples_uniformly() {
    let (app, scenario) = load("image-classifier", "peak");
    let mut env = AutoscaleEnv::new(&app, &scenario, 1, EnvConfig::default());
    let observation = env.reset();
    let transition = |reward: f32| Transition {
        observation: observation.clone(),
        actions: vec![2],
        reward,
        next_observation: observation.clone(),
        next_mask: vec![true; 5],
    };
    let mut buffer = ReplayBuffer::new(4);
    for r in 0..6 {
        buffer.push(transition(r as f32));
    }
    assert_eq!(buffer.len(), 4);
    let mut rewards: Vec<f32> = (0..4).map(|i| buffer.get(i).reward).collect();
    rewards.sort_by(f32::total_cmp);
    assert_eq!(rewards, vec![2.0, 3.0, 4.0, 5.0], "the two oldest were overwritten");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut counts = [0usize; 4];
    for i in buffer.sample(8000, &mut rng) {
        counts[i] += 1;
    }
    assert!(counts.iter().all(|&c| (1700..2300).contains(&c)), "{counts:?}");
}

#[test]
fn dqn_learns_on_the_classifier_deterministically_and_stops_on_nan() {
    let config = DqnConfig {
        learning_starts: 20,
        batch_size: 8,
        train_freq: 2,
        target_update_interval: 10,
        log_interval: 60,
        ..DqnConfig::default()
    };
    let run = || {
        let mut e = envs("image-classifier", "fluctuating", 1, 15);
        let model = mlp(&mut e[0], 2);
        let before = model.parameter_values();
        let mut dqn = Dqn::new(config.clone(), model, e, 120, 2);
        assert_eq!(dqn.epsilon(), 1.0);
        let first = dqn.iterate().expect("finite");
        let second = dqn.iterate().expect("finite");
        assert_eq!(first.env_steps, 60);
        // ε decays over 10 % of the 120-step budget, so it is at its floor by now.
        assert!((second.epsilon - 0.05).abs() < 1e-6, "{}", second.epsilon);
        assert!(second.policy_loss > 0.0 && second.policy_loss.is_finite());
        // The actor head (the Q-values) moved; the critic head DQN does not use did not.
        let after = dqn.model.parameter_values();
        assert_ne!(before[0], after[0]);
        assert_eq!(before.last(), after.last());
        ((first, second), bits(&dqn.model))
    };
    assert_eq!(run(), run(), "same seed, same Q-network");

    let mut e = envs("image-classifier", "peak", 1, 15);
    let mut model = mlp(&mut e[0], 2);
    model.parameters_mut()[0].set(&vec![f32::NAN; 16 * e[0].observation().flatten().len()]);
    let before = bits(&model);
    let mut dqn = Dqn::new(config, model, e, 120, 2);
    let err = dqn.iterate().expect_err("NaN Q-values");
    assert!(matches!(err, LearnerError::NonFiniteLoss { update: 1, .. }), "{err:?}");
    assert_eq!(bits(&dqn.model), before, "the failed update was not applied");
}

#[test]
fn a_truncated_episode_bootstraps_from_the_value_of_its_final_state() {
    // 900 s of offpeak in 150 s decisions: an episode of 6 steps, cut by the scenario's end.
    let mut e = envs("redis-cluster", "offpeak", 1, 150);
    let mut model = mlp(&mut e[0], 4);
    // A critic that says 10 for every state: V(final) = 10.
    {
        let mut params = model.parameters_mut();
        let n = params.len();
        let weight_len = 16;
        params[n - 2].set(&vec![0.0; weight_len]);
        params[n - 1].set(&[10.0]);
    }
    let mut workers = Workers::new(e, 4);
    let rollout = workers.collect(&model, 6, 0.9, false).remove(0);
    assert_eq!(rollout.dones, vec![false, false, false, false, false, true]);
    let stored: f64 = rollout.rewards.iter().map(|&r| r as f64).sum();
    assert!((stored - rollout.raw_reward_sum - 0.9 * 10.0).abs() < 1e-4, "{stored} vs {}", rollout.raw_reward_sum);
    assert!(rollout.values.iter().all(|&v| (v - 10.0).abs() < 1e-5));
}

#[test]
fn randomized_scenarios_scale_and_perturb_the_load_reproducibly() {
    let (_, fluctuating) = load("online-boutique", "fluctuating");
    let (_, peak) = load("online-boutique", "peak");
    let users = |s: &Scenario| match &s.shape {
        LoadShape::Stages(stages) => stages.iter().map(|st| st.users).collect::<Vec<_>>(),
        other => panic!("stages expected, got {other:?}"),
    };
    let fixed = Randomization { scale: [2.0, 2.0], noise: 0.0 };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(
        users(&fixed.apply(&fluctuating, &mut rng)),
        users(&fluctuating).iter().map(|u| u * 2).collect::<Vec<_>>()
    );
    let noisy = TrainingScenarios {
        scenarios: vec![fluctuating.clone(), peak.clone()],
        randomization: Randomization { scale: [0.5, 1.5], noise: 0.2 },
    };
    let draw = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..20).map(|_| noisy.sample(&mut rng)).collect::<Vec<_>>()
    };
    let a = draw(5);
    assert_eq!(a, draw(5), "same seed, same episodes");
    assert_ne!(a, draw(6));
    assert!(a.iter().any(|s| s.name == "peak") && a.iter().any(|s| s.name == "fluctuating"), "both are drawn");
    for s in &a {
        let base = if s.name == "peak" { &peak } else { &fluctuating };
        for (got, was) in users(s).iter().zip(users(base)) {
            // scale 0.5–1.5 times a noise factor ≥ 0.1, so never more than 1.5 × (1 + 0.2 · a few σ).
            assert!((*got as f64) <= was as f64 * 1.5 * 2.5, "{got} from {was}");
        }
        assert_eq!(s.duration_s(), base.duration_s(), "timing is unchanged");
    }
    assert!(a.iter().any(|s| users(s) != users(if s.name == "peak" { &peak } else { &fluctuating })));
}

#[test]
fn behaviour_cloning_reproduces_most_hpa_moves() {
    let steps = ActionSpace::default();
    assert_eq!(steps.toward(3, 9, 1, 10), 4, "clipped to +2");
    assert_eq!(steps.toward(3, 2, 1, 10), 1);
    assert_eq!(steps.toward(3, 3, 1, 10), 2);
    assert_eq!(steps.toward(5, 1, 1, 10), 0, "clipped to −2");

    let mut e = envs("image-classifier", "rushsale", 1, 15);
    let manifests = orchestrator::hpa::load_manifests(&root().join("baselines/image-classifier/hpa-cpu-60.yaml"))
        .expect("manifest");
    let demos = bc::demonstrate(&mut e, &manifests, 2, 0.99);
    assert_eq!(demos.observations.len(), 120, "two 900 s episodes of 15 s decisions");
    assert!(demos.actions.iter().any(|a| a[0] > 2) && demos.actions.iter().any(|a| a[0] < 2), "it scales both ways");
    assert!(demos.returns.iter().all(|r| r.is_finite() && *r < 0.0));
    let model = mlp(&mut e[0], 9);
    // Most decisions keep the replicas; what matters is whether the scaling moves are reproduced.
    let moves_right = |m: &ActorCritic| {
        let dev: Cpu = Default::default();
        let (mut right, mut total) = (0, 0);
        for ((o, mask), a) in demos.observations.iter().zip(&demos.masks).zip(&demos.actions) {
            if a[0] != 2 {
                let (logits, _) = m.infer(&dev, &[o]);
                let d = orchestrator::rl::distributions::MaskedCategorical::new(&logits, mask);
                right += (d.mode() == a[0]) as u32;
                total += 1;
            }
        }
        right as f32 / total as f32
    };
    let config = BcConfig { epochs: 60, batch_size: 32, learning_rate: 1e-2, ..BcConfig::default() };
    let mut once = model.clone();
    let first = bc::clone_behaviour(&mut once, &demos, &BcConfig { epochs: 1, ..config.clone() }, 1).expect("finite");
    let mut trained = model.clone();
    let stats = bc::clone_behaviour(&mut trained, &demos, &config, 1).expect("finite");
    assert_eq!(stats.samples, 120);
    assert!(stats.final_loss < 0.5 * first.final_loss, "cross-entropy {} → {}", first.final_loss, stats.final_loss);
    assert!(stats.accuracy >= 0.9, "{}", stats.accuracy);
    let (before, after) = (moves_right(&model), moves_right(&trained));
    assert!(after > before, "scaling moves reproduced: {before} → {after}");
}

#[test]
fn reward_normalization_divides_by_the_running_std_of_the_return_whatever_the_scale() {
    use orchestrator::rl::rollout::RewardNormalizer;
    // γ = 0: the return is the reward, alternating ±s, whose standard deviation is s.
    for scale in [0.01, 1.0, 100.0] {
        let mut n = RewardNormalizer::default();
        let mut last = 0.0;
        for t in 0..2000 {
            let reward = if t % 2 == 0 { scale } else { -scale };
            last = n.normalize(reward, 0.0, false);
        }
        assert!((last.abs() - 1.0).abs() < 0.02, "scale {scale}: {last}");
    }
    // The first reward meets a variance estimated from one return: clipped to ±10.
    let mut n = RewardNormalizer::default();
    assert_eq!(n.normalize(-0.5, 0.99, false), -10.0);
    assert!(n.normalize(-0.5, 0.99, false) > -10.0);
}
