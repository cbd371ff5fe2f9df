//! The RL environment over the simulator: features, masks, rewards, determinism.

use std::path::Path;

use load_agent::scenario::Scenario;
use orchestrator::app::AppModel;
use orchestrator::cell::SecondMetrics;
use orchestrator::rl::{AutoscaleEnv, EnvConfig, IntervalStats};
use orchestrator::settings::rl::{ActionSpace, FeatureLayout, NODE_FEATURES, RewardKind};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn load(app: &str, scenario: &str) -> (AppModel, Scenario) {
    let app_model = AppModel::load(&root().join(format!("experiments/apps/{app}.yaml"))).expect("app");
    let file = root().join(format!("experiments/scenarios/{app}/{scenario}.yaml"));
    let scenario = Scenario::load(&file).expect("scenario");
    (app_model, scenario)
}

const STAY: usize = 2;

#[test]
fn observation_has_a_row_per_service_an_edge_per_call_and_sane_ranges() {
    let (app, scenario) = load("online-boutique", "peak");
    let mut env = AutoscaleEnv::new(&app, &scenario, 1, EnvConfig::default());
    let first = env.reset();
    assert_eq!(first.num_nodes, 11);
    assert_eq!(first.nodes.len(), 11 * NODE_FEATURES.len());
    assert_eq!(first.edges, app.edges().into_iter().collect::<Vec<_>>());
    assert_eq!(first.edge_features.len(), first.edges.len());
    let step = env.step(&[STAY; 11]);
    let obs = &step.observation;
    assert!(obs.nodes.iter().chain(&obs.edge_features).chain(&obs.global).all(|v| v.is_finite() && *v >= 0.0));
    let frontend = app.service_index("frontend").unwrap();
    let cart = app.service_index("cartservice").unwrap();
    // Under load, the frontend receives and sends calls, and its frontend → cart edge carries traffic.
    let node = obs.node(frontend);
    assert!(node[5] > 0.0 && node[6] > 0.0, "frontend in/out rates: {node:?}");
    let edge = obs.edges.iter().position(|&e| e == (frontend, cart)).expect("frontend → cart edge");
    assert!(obs.edge_features[edge] > 0.0);
    assert!(obs.global[0] > 0.0, "offered load is seen");
    // A leaf (redis-cart) calls nobody.
    assert_eq!(obs.node(app.service_index("redis-cart").unwrap())[6], 0.0);
    // Ready replicas relative to max: initial replicas are ready.
    let max = app.services[frontend].replicas.max as f32;
    assert!((node[0] - app.services[frontend].replicas.initial() as f32 / max).abs() < 1e-6);
    let layout = FeatureLayout::default();
    assert_eq!(obs.flatten().len(), layout.flat_width(11, obs.edges.len()));
}

#[test]
fn masks_forbid_moves_past_min_and_max_and_every_service_moves_in_one_step() {
    let (app, scenario) = load("redis-cluster", "peak");
    let mut env = AutoscaleEnv::new(&app, &scenario, 3, EnvConfig::default());
    env.reset();
    // Both start at min = 1: −2 and −1 are masked, 0…+2 allowed (leader max 3, follower max 10).
    let mask = env.action_mask();
    assert_eq!(mask.len(), 2 * ActionSpace::default().len());
    assert_eq!(&mask[..5], &[false, false, true, true, true]);
    assert_eq!(&mask[5..], &[false, false, true, true, true]);
    // Both services move at once; the leader hits its max of 3.
    let step = env.step(&[4, 4]);
    assert!(!step.done);
    let mask = env.action_mask();
    assert_eq!(&mask[..5], &[true, true, true, false, false], "leader at max 3");
    assert_eq!(&mask[5..], &[true, true, true, true, true], "follower at 3 of 10");
    // Desired replicas relative to max, as features.
    assert!((step.observation.node(0)[1] - 1.0).abs() < 1e-6);
    assert!((step.observation.node(1)[1] - 0.3).abs() < 1e-6);
    // A masked move, taken anyway, is clamped to the bound.
    let step = env.step(&[4, 0]);
    assert!((step.observation.node(0)[1] - 1.0).abs() < 1e-6);
    assert!((step.observation.node(1)[1] - 0.1).abs() < 1e-6);
    assert_eq!(ActionSpace::default().target(0, 5), 3);
    assert_eq!(ActionSpace::default().target(4, 5), 7);
}

#[test]
fn an_episode_runs_the_scenario_in_decision_intervals_and_is_deterministic() {
    let (app, scenario) = load("redis-cluster", "offpeak");
    let config = EnvConfig { decision_interval_s: 30, ..EnvConfig::default() };
    let run = |seed: u64| {
        let mut env = AutoscaleEnv::new(&app, &scenario, seed, config.clone());
        env.reset();
        let mut rewards = Vec::new();
        let mut seconds = 0;
        loop {
            let step = env.step(&[3, 2]);
            seconds += step.stats.seconds;
            rewards.push(step.reward);
            if step.done {
                break;
            }
        }
        (rewards, seconds)
    };
    let (a, seconds) = run(7);
    assert_eq!(seconds, 900, "the whole 15-minute scenario");
    assert_eq!(a.len(), 30);
    assert_eq!(a, run(7).0, "same seed, same rewards");
    assert_ne!(a, run(8).0, "another seed, other noise");
    assert!(a.iter().all(|r| r.is_finite() && *r < 0.0));
}

fn second(
    ready: &[u32],
    desired: &[u32],
    p50: f64,
    p95: f64,
    slo: (f64, f64),
    offered: f64,
    failed: f64,
) -> SecondMetrics {
    SecondMetrics {
        time_s: 0,
        users: 0.0,
        offered_rps: offered,
        achieved_rps: offered - failed,
        failures: failed,
        slo_p50_ms: p50,
        slo_p95_ms: p95,
        slo_p99_ms: p95,
        slo_violated: slo.1 > 0.05 * slo.0,
        slo_requests: slo.0,
        slo_bad_requests: slo.1,
        services: ready
            .iter()
            .zip(desired)
            .map(|(&r, &d)| orchestrator::cell::ServiceSecond {
                ready: r,
                desired: d,
                pods: r,
                cpu_utilization_pct: 0.0,
                cfs_periods: None,
                cfs_throttled_periods: None,
                memory_mib: 0.0,
            })
            .collect(),
    }
}

#[test]
fn rewards_match_hand_computed_values() {
    // Two services with max 10 each; two seconds.
    let mut stats = IntervalStats::new(20.0, 50.0);
    stats.add(&second(&[2, 4], &[2, 4], 10.0, 40.0, (100.0, 10.0), 200.0, 0.0));
    stats.add(&second(&[4, 4], &[4, 6], 30.0, 60.0, (100.0, 30.0), 200.0, 20.0));
    // Mean ready pods 7 of 20; 40 of 200 SLO requests bad; 20 of 400 failed.
    let slo_cost = RewardKind::slo_cost(1.0, 2.0, 3.0).reward(&stats);
    assert!((slo_cost - -(7.0 / 20.0 + 2.0 * 0.2 + 3.0 * 0.05)).abs() < 1e-12, "{slo_cost}");
    // gym-hpa cost: +1 per deployment at its desired replicas at the end (only the first).
    assert_eq!(RewardKind::GymHpaCost.reward(&stats), 1.0);
    // gym-hpa latency: −mean latency, capped.
    assert_eq!(RewardKind::GymHpaLatency { cap_ms: 3000.0 }.reward(&stats), -20.0);
    assert_eq!(RewardKind::GymHpaLatency { cap_ms: 15.0 }.reward(&stats), -15.0);
    // AHPA log: −[ln(1 + 50/50) + 0.5 · ln(1 + 7) / ln(1 + 20)].
    let ahpa = RewardKind::AhpaLog { cost_weight: 0.5 }.reward(&stats);
    assert!((ahpa - -(2f64.ln() + 0.5 * 8f64.ln() / 21f64.ln())).abs() < 1e-12, "{ahpa}");
}

#[test]
fn more_replicas_cost_more_under_light_load() {
    // Offpeak needs few pods: staying at min earns more SLO-cost reward than scaling everything to max.
    let (app, scenario) = load("redis-cluster", "offpeak");
    let total = |action: usize| {
        let mut env = AutoscaleEnv::new(&app, &scenario, 1, EnvConfig::default());
        env.reset();
        (0..20).map(|_| env.step(&[action, action]).reward).sum::<f64>()
    };
    assert!(total(STAY) > total(4));
}
