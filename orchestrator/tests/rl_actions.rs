//! Action spaces (the −2…+2 reference, wider steps, relative moves), their masks, the optional reward terms and
//! the PPO schedules, by hand; and a relative-move policy trained and evaluated through `orch run`.

mod common;

use std::path::Path;

use common::Scratch;
use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::matrix::Matrix;
use orchestrator::rl::train::train;
use orchestrator::rl::{AutoscaleEnv, EnvConfig, IntervalStats};
use orchestrator::run::rl_training::{model_key, rl_config};
use orchestrator::settings::rl::PpoConfig;
use orchestrator::settings::rl::{ActionSpace, RewardKind};

const T: bool = true;
const F: bool = false;

fn load(app: &str, scenario: &str) -> (AppModel, Scenario) {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let app_model = AppModel::load(&root.join(format!("experiments/apps/{app}.yaml"))).expect("app");
    let scenario =
        Scenario::load(&root.join(format!("experiments/scenarios/{app}/{scenario}.yaml"))).expect("scenario");
    (app_model, scenario)
}

#[test]
fn relative_moves_reach_their_targets_and_masks_keep_bounds_and_distinct_targets() {
    let relative = ActionSpace::Relative;
    assert_eq!((relative.len(), relative.stay()), (6, 2));
    let labels: Vec<String> = (0..6).map(|a| relative.label(a)).collect();
    assert_eq!(labels, ["/2", "-1", "+0", "+1", "x2", "x3"]);
    let targets: Vec<i64> = (0..6).map(|a| relative.target(a, 5)).collect();
    assert_eq!(targets, [2, 4, 5, 6, 10, 15]);
    // At min 1: halving and −1 would leave the bounds; doubling reaches 2 as +1 does, so only +1 offers it.
    assert_eq!(relative.service_mask(1, 1, 10), [F, F, T, T, F, T]);
    // At 2: halving and −1 both reach 1, so only halving (listed first) offers it.
    assert_eq!(relative.service_mask(2, 1, 10), [T, F, T, T, T, T]);
    assert_eq!(relative.service_mask(4, 1, 10), [T, T, T, T, T, F], "tripling 4 passes max 10");
    assert_eq!(relative.service_mask(10, 1, 10), [T, T, T, F, F, F]);
    assert_eq!(relative.service_mask(1, 1, 1), [F, F, T, F, F, F], "a fixed service can only stay");
    // A masked move taken anyway is clamped.
    assert_eq!(relative.apply(5, 4, 1, 10), 10);
    assert_eq!(relative.apply(0, 1, 1, 10), 1);
    // A teacher's target, in relative moves: the allowed move nearest to it.
    assert_eq!(relative.toward(2, 7, 1, 10), 5, "x3 reaches 6");
    assert_eq!(relative.toward(8, 3, 1, 10), 0, "halving reaches 4");
    assert_eq!(relative.toward(3, 3, 1, 10), 2);
    assert_eq!(relative.toward(1, 2, 1, 10), 3, "+1, as x2 is masked there");
}

#[test]
fn wider_steps_are_masked_at_min_and_max_like_the_reference() {
    let wide = ActionSpace::Steps { max_step: 4 };
    assert_eq!((wide.len(), wide.stay()), (9, 4));
    assert_eq!(wide.service_mask(1, 1, 10), [F, F, F, F, T, T, T, T, T]);
    assert_eq!(wide.service_mask(8, 1, 10), [T, T, T, T, T, T, T, F, F]);
    assert_eq!(wide.label(0), "-4");
    assert_eq!(wide.toward(1, 9, 1, 10), 8, "clipped to +4");
    let reference = ActionSpace::default();
    assert_eq!((reference.len(), reference.stay()), (5, 2));
    assert!(reference.is_default() && !wide.is_default() && !ActionSpace::Relative.is_default());
    assert!(ActionSpace::Steps { max_step: 0 }.check().is_err());
}

#[test]
fn an_environment_with_relative_moves_scales_by_factors_and_counts_the_replicas_it_changed() {
    // Redis: the leader has max 3, the follower max 10; both start at 1.
    let (app, scenario) = load("redis-cluster", "peak");
    let config = EnvConfig { actions: ActionSpace::Relative, ..EnvConfig::default() };
    let mut env = AutoscaleEnv::new(&app, &scenario, 3, config);
    env.reset();
    assert_eq!(env.action_mask().len(), 2 * 6);
    let desired =
        |env: &AutoscaleEnv| -> Vec<u32> { env.raw_observation().services.iter().map(|s| s.spec_replicas).collect() };
    let step = env.step(&[5, 5]);
    assert_eq!(desired(&env), [3, 3], "x3 from 1");
    assert_eq!(step.stats.replica_changes, 4);
    assert_eq!(&env.action_mask()[..6], &[T, T, T, F, F, F], "the leader is at its max");
    let step = env.step(&[4, 4]);
    assert_eq!(desired(&env), [3, 6], "the leader's masked x2 is clamped; the follower doubles");
    assert_eq!(step.stats.replica_changes, 3);
    let step = env.step(&[2, 0]);
    assert_eq!(desired(&env), [3, 3], "stay; halve");
    assert_eq!(step.stats.replica_changes, 3);
    assert_eq!(env.step(&[2, 2]).stats.replica_changes, 0);
}

#[test]
fn the_optional_slo_cost_terms_match_hand_computed_values() {
    let mut stats = IntervalStats::new(20.0, 50.0);
    for violated in [false, true, true, false] {
        stats.add(&orchestrator::cell::SecondMetrics {
            time_s: 0,
            users: 10.0,
            offered_rps: 100.0,
            achieved_rps: 100.0,
            failures: 0.0,
            slo_p50_ms: 10.0,
            slo_p95_ms: if violated { 80.0 } else { 30.0 },
            slo_p99_ms: 90.0,
            slo_violated: violated,
            slo_requests: 100.0,
            slo_bad_requests: if violated { 10.0 } else { 0.0 },
            services: vec![
                orchestrator::cell::ServiceSecond {
                    ready: 5,
                    desired: 5,
                    pods: 5,
                    cpu_utilization_pct: 50.0,
                    cfs_periods: None,
                    cfs_throttled_periods: None,
                    memory_mib: 10.0,
                };
                2
            ],
        });
    }
    stats.replica_changes = 3;
    // 10 of 20 pods; 20 of 400 SLO requests bad; no failures; 2 of 4 seconds violated; 3 replicas moved of 20.
    let plain = RewardKind::slo_cost(1.0, 2.0, 2.0).reward(&stats);
    assert!((plain - -(0.5 + 2.0 * 0.05)).abs() < 1e-12, "{plain}");
    let with_terms = RewardKind::SloCost {
        pod_cost: 1.0,
        slo_penalty: 2.0,
        failure_penalty: 2.0,
        violation_penalty: 4.0,
        change_penalty: 0.5,
    }
    .reward(&stats);
    assert!((with_terms - -(0.5 + 2.0 * 0.05 + 4.0 * 0.5 + 0.5 * 3.0 / 20.0)).abs() < 1e-12, "{with_terms}");
    // Optional terms left at 0 are not written, so configs without them keep their hashes.
    let json = serde_json::to_string(&RewardKind::slo_cost(1.0, 2.0, 2.0)).unwrap();
    assert_eq!(json, r#"{"kind":"slo_cost","pod_cost":1.0,"slo_penalty":2.0,"failure_penalty":2.0}"#);
}

#[test]
fn learning_rate_and_entropy_schedules_run_linearly_over_the_budget() {
    let constant = PpoConfig { learning_rate: 3e-4, ent_coef: 0.01, ..PpoConfig::default() };
    assert_eq!(constant.scheduled(0.5), (3e-4, 0.01));
    let scheduled = PpoConfig { anneal_lr: true, ent_coef_final: Some(0.002), ..constant };
    let (lr, ent) = scheduled.scheduled(0.0);
    assert!((lr - 3e-4).abs() < 1e-9 && (ent - 0.01).abs() < 1e-9);
    let (lr, ent) = scheduled.scheduled(0.25);
    assert!((lr - 2.25e-4).abs() < 1e-9, "{lr}");
    assert!((ent - 0.008).abs() < 1e-7, "{ent}");
    let (lr, ent) = scheduled.scheduled(1.2);
    assert!(lr == 0.0 && (ent - 0.002).abs() < 1e-9, "past the budget: {lr} {ent}");
}

const RELATIVE_RL: &str = "  - name: gnn-relative
    kind: rl
    rl:
      algo: ppo
      model: gnn
      budget: 120
      reward: {kind: slo_cost, pod_cost: 1.0, slo_penalty: 2.0, failure_penalty: 2.0, change_penalty: 0.5}
      actions: {kind: relative}
      training: {scenarios: [peak, rushsale], scale: [0.5, 1.5], noise: 0.1}
      hyperparameters: {n_steps: 30, batch_size: 30, n_epochs: 1, anneal_lr: true}
      network: {hidden: 8, layers: 1}
";

fn matrix_with(policy: &str) -> String {
    format!(
        "name: rl-actions\nseeds: [4]\napps: [redis-cluster]\nscenarios: [rushsale]\npolicies:\n{policy}strategy: {{max_parallel: 1}}\n"
    )
}

#[test]
fn the_action_space_is_part_of_the_model_key_only_when_it_is_not_the_reference() {
    let scratch = Scratch::new();
    let key_of = |policy: &str| {
        scratch.write("experiments/m.yaml", &matrix_with(policy));
        let matrix = Matrix::load(&scratch.path("experiments/m.yaml")).expect("valid matrix");
        model_key(&matrix.cells[0].config).expect("an rl cell")
    };
    let reference = RELATIVE_RL.replace("      actions: {kind: relative}\n", "");
    let explicit = RELATIVE_RL.replace("{kind: relative}", "{kind: steps, max_step: 2}");
    let wide = RELATIVE_RL.replace("{kind: relative}", "{kind: steps, max_step: 4}");
    assert_eq!(key_of(&reference), key_of(&explicit), "naming the default changes nothing");
    assert_ne!(key_of(&reference), key_of(RELATIVE_RL));
    assert_ne!(key_of(&reference), key_of(&wide));
    assert_ne!(key_of(&wide), key_of(RELATIVE_RL));
}

#[test]
fn specs_without_the_new_options_keep_their_serialized_config_and_hash() {
    let scratch = Scratch::new();
    // On the simulator's model of before (the faithful one is part of the config, as any other new option).
    let legacy = "simulator: {cpu: smooth, percentiles: model, metrics: aligned, pod_spread: false, startup: fixed}\n";
    let resolve = |policy: &str| {
        scratch.write("experiments/m.yaml", &(matrix_with(policy) + legacy));
        let matrix = Matrix::load(&scratch.path("experiments/m.yaml")).expect("valid matrix");
        let cell = &matrix.cells[0];
        let training = serde_json::to_value(&rl_config(&cell.config).expect("an rl cell").training).unwrap();
        (model_key(&cell.config).unwrap(), training)
    };
    let plain = RELATIVE_RL
        .replace("      actions: {kind: relative}\n", "")
        .replace(", change_penalty: 0.5", "")
        .replace(", anneal_lr: true", "");
    let (key, training) = resolve(&plain);
    // The fields a training config had before action spaces, reward options and schedules: nothing more.
    let mut fields: Vec<&str> = training.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    let before = [
        "algorithm",
        "budget",
        "decision_interval_s",
        "envs",
        "features",
        "model",
        "network",
        "randomization",
        "reward",
        "scenarios",
        "warm_start",
    ];
    assert_eq!(fields, before);
    let text = training.to_string();
    for new in ["actions", "violation_penalty", "change_penalty", "anneal_lr", "ent_coef_final", "simulator"] {
        assert!(!text.contains(new), "{new} serialized though unused: {text}");
    }
    // Naming the options at their defaults changes nothing either.
    let explicit = plain
        .replace("failure_penalty: 2.0}", "failure_penalty: 2.0, violation_penalty: 0, change_penalty: 0}")
        .replace("n_epochs: 1}", "n_epochs: 1, anneal_lr: false}")
        .replace("      training:", "      actions: {kind: steps, max_step: 2}\n      training:");
    assert_ne!(explicit, plain);
    assert_eq!(resolve(&explicit), (key.clone(), training));
    // And each option in use does change the key.
    let with = |from: &str, to: &str| resolve(&plain.replace(from, to)).0;
    assert_ne!(with("failure_penalty: 2.0}", "failure_penalty: 2.0, change_penalty: 1}"), key);
    assert_ne!(with("failure_penalty: 2.0}", "failure_penalty: 2.0, violation_penalty: 1}"), key);
    assert_ne!(with("n_epochs: 1}", "n_epochs: 1, anneal_lr: true}"), key);
    assert_ne!(with("n_epochs: 1}", "n_epochs: 1, ent_coef_final: 0.001}"), key);
}

#[test]
fn training_with_every_new_option_is_deterministic() {
    let scratch = Scratch::new();
    let policy = RELATIVE_RL
        .replace("change_penalty: 0.5}", "change_penalty: 0.5, violation_penalty: 1.0}")
        .replace("anneal_lr: true}", "anneal_lr: true, ent_coef: 0.02, ent_coef_final: 0.0}");
    scratch.write("experiments/m.yaml", &matrix_with(&policy));
    let matrix = Matrix::load(&scratch.path("experiments/m.yaml")).expect("valid matrix");
    let cell = &matrix.cells[0];
    let rl = rl_config(&cell.config).expect("an rl cell");
    let out = tempfile::tempdir().unwrap();
    let a = train(&rl.training, &cell.config.app, 4, &out.path().join("a"), None).expect("trains");
    let b = train(&rl.training, &cell.config.app, 4, &out.path().join("b"), None).expect("trains");
    assert_eq!((a.iterations, a.env_steps), (2, 120));
    assert_eq!(a.final_return_mean, b.final_return_mean);
    let read = |dir: &str, file: &str| std::fs::read(out.path().join(dir).join(file)).unwrap();
    for file in ["model.safetensors", "model.json", "training.csv"] {
        if file == "training.csv" {
            // Timings differ between runs; everything else must not.
            let strip = |dir: &str| {
                let text = String::from_utf8(read(dir, file)).unwrap();
                let header: Vec<String> = text.lines().next().unwrap().split(',').map(String::from).collect();
                let timed: Vec<usize> = header
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.as_str() == "env_steps_per_s" || h.as_str() == "elapsed_s")
                    .map(|(i, _)| i)
                    .collect();
                text.lines()
                    .map(|l| l.split(',').enumerate().filter(|(i, _)| !timed.contains(i)).map(|(_, v)| v).collect())
                    .collect::<Vec<Vec<&str>>>()
                    .concat()
                    .join(",")
            };
            assert_eq!(strip("a"), strip("b"));
        } else {
            assert_eq!(read("a", file), read("b", file), "{file}");
        }
    }
}

#[test]
fn a_policy_with_relative_moves_trains_saves_its_space_and_drives_a_cell_with_it() {
    let scratch = Scratch::new();
    scratch.write("experiments/m.yaml", &matrix_with(RELATIVE_RL));
    let out = scratch.orch(&["run", "experiments/m.yaml", "--tag", "t", "--logs-dir", "logs"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = scratch.path("logs/t");
    let matrix = Matrix::load(&scratch.path("experiments/m.yaml")).unwrap();
    let cell = &matrix.cells[0];
    let key = model_key(&cell.config).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("models").join(&key).join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["env"]["actions"]["kind"], "relative");
    assert_eq!(meta["model"]["actions"], 6, "one logit per relative move");
    assert_eq!(meta["algorithm"]["anneal_lr"], true);
    assert_eq!(meta["env"]["reward"]["change_penalty"], 0.5);

    // The cell's scaling decisions are relative moves within the bounds (leader ≤ 3, follower ≤ 10).
    let metrics = std::fs::read_to_string(run.join(&cell.id).join("metrics.csv")).expect("metrics.csv");
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}: {header:?}"));
    let (leader, follower) = (column("redis-leader_desired"), column("redis-follower_desired"));
    let mut previous: Option<(u32, u32)> = None;
    let mut rows = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let now: (u32, u32) = (fields[leader].parse().unwrap(), fields[follower].parse().unwrap());
        assert!((1..=3).contains(&now.0) && (1..=10).contains(&now.1), "{line}");
        if let Some(before) = previous {
            for (b, n) in [(before.0, now.0), (before.1, now.1)] {
                let reachable = [b / 2, b.saturating_sub(1), b, b + 1, 2 * b, 3 * b];
                assert!(reachable.contains(&n) || n == 3 || n == 10, "{b} → {n} is no relative move (clamped)");
            }
        }
        previous = Some(now);
        rows += 1;
    }
    assert_eq!(rows, 900);
    // Its run.log gives every scaling decision as a relative move.
    let log = std::fs::read_to_string(run.join(&cell.id).join("run.log")).unwrap();
    let reasons: Vec<&str> = log.lines().filter(|l| l.contains(r#""message":"scaled""#)).collect();
    assert!(!reasons.is_empty(), "the policy scaled something: {log}");
    for line in reasons {
        let moves = ["/2", "-1", "+1", "x2", "x3"].map(|m| format!(r#""reason":"rl: {m} (p="#));
        assert!(moves.iter().any(|m| line.contains(m.as_str())), "{line}");
    }
}
