//! The simulated cluster as an RL environment.
//!
//! Every `decision_interval_s` of simulated time the agent picks one move per service, all at once
//! (multi-discrete): action `a` in `0..ACTIONS_PER_SERVICE` changes desired replicas by `a − MAX_STEP`, so −2…+2.
//! Moves that would leave `[min, max]` are masked; a masked move, if taken anyway, is clamped to the bound.
//! An episode is one run of a scenario drawn from the environment's training scenarios (randomized per episode,
//! see [`crate::rl::scenarios`]); `reset` starts the next with a seed derived from the env's seed. An episode ends
//! when its scenario does: a time limit, not a terminal state, so learners bootstrap from the final state's value.

use load_agent::scenario::Scenario;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::app::AppModel;
use crate::backend::{ClusterBackend, Observation};
use crate::rl::features::{FeatureLayout, GraphObservation};
use crate::rl::reward::{IntervalStats, RewardKind};
use crate::rl::scenarios::TrainingScenarios;
use crate::sim::Simulator;

/// The largest move of one decision, in replicas.
pub const MAX_STEP: i32 = 2;
/// Moves −MAX_STEP…+MAX_STEP.
pub const ACTIONS_PER_SERVICE: usize = (2 * MAX_STEP + 1) as usize;

/// Replica change of action index `action`.
pub fn action_delta(action: usize) -> i32 {
    action as i32 - MAX_STEP
}

/// `services × ACTIONS_PER_SERVICE` flags, row-major: whether each move keeps the service's desired replicas
/// within `[min, max]`.
pub fn action_mask(app: &AppModel, observation: &Observation) -> Vec<bool> {
    let mut mask = Vec::with_capacity(app.services.len() * ACTIONS_PER_SERVICE);
    for (service, seen) in app.services.iter().zip(&observation.services) {
        for action in 0..ACTIONS_PER_SERVICE {
            let target = seen.spec_replicas as i64 + action_delta(action) as i64;
            mask.push(target >= service.replicas.min as i64 && target <= service.replicas.max as i64);
        }
    }
    mask
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Simulated seconds between decisions.
    pub decision_interval_s: u64,
    pub reward: RewardKind,
    pub features: FeatureLayout,
}

impl Default for EnvConfig {
    fn default() -> EnvConfig {
        EnvConfig { decision_interval_s: 15, reward: RewardKind::default(), features: FeatureLayout::default() }
    }
}

/// What one decision led to.
#[derive(Debug, Clone)]
pub struct Step {
    pub observation: GraphObservation,
    pub reward: f64,
    /// The scenario has ended; call `reset` before stepping again.
    pub done: bool,
    /// The episode was cut by its time limit (the scenario's end) rather than reaching a terminal state: its
    /// return continues past `observation`, so the value of that state is bootstrapped. Every episode of a
    /// scenario ends this way; the flag keeps the distinction explicit for learners.
    pub truncated: bool,
    pub stats: IntervalStats,
}

pub struct AutoscaleEnv {
    app: AppModel,
    scenarios: TrainingScenarios,
    seed: u64,
    /// Draws each episode's scenario.
    scenario_rng: ChaCha8Rng,
    episode: u64,
    config: EnvConfig,
    edges: Vec<(usize, usize)>,
    sim: Simulator,
    done: bool,
}

impl AutoscaleEnv {
    /// An environment over `app` under `scenario`; the scenario's requests must match the app's routes.
    pub fn new(app: &AppModel, scenario: &Scenario, seed: u64, config: EnvConfig) -> AutoscaleEnv {
        AutoscaleEnv::with_scenarios(app, TrainingScenarios::fixed(scenario), seed, config)
    }

    /// An environment whose episodes draw from `scenarios` (each must match the app's routes).
    pub fn with_scenarios(app: &AppModel, scenarios: TrainingScenarios, seed: u64, config: EnvConfig) -> AutoscaleEnv {
        let first = scenarios.scenarios.first().expect("at least one training scenario").clone();
        AutoscaleEnv {
            app: app.clone(),
            scenarios,
            seed,
            scenario_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5CE7_A210),
            episode: 0,
            config,
            edges: app.edges().into_iter().collect(),
            sim: Simulator::new(app, &first, seed),
            done: false,
        }
    }

    pub fn app(&self) -> &AppModel {
        &self.app
    }

    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    pub fn num_services(&self) -> usize {
        self.app.services.len()
    }

    /// Caller → callee edges of the call graph, sorted.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// Starts a new episode (a fresh run of the scenario, services at their initial replicas).
    pub fn reset(&mut self) -> GraphObservation {
        let seed = self.seed ^ self.episode.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.episode += 1;
        let scenario = self.scenarios.sample(&mut self.scenario_rng);
        self.sim = Simulator::new(&self.app, &scenario, seed);
        self.done = false;
        self.observation()
    }

    /// What a cluster policy (HPA) would see now.
    pub fn raw_observation(&self) -> Observation {
        self.sim.observe()
    }

    pub fn observation(&self) -> GraphObservation {
        self.config.features.encode(&self.app, &self.edges, &self.sim.observe())
    }

    /// `num_services × ACTIONS_PER_SERVICE` flags, row-major: whether each move keeps the service within
    /// `[min, max]` replicas. Staying (the middle action) is always allowed.
    pub fn action_mask(&self) -> Vec<bool> {
        action_mask(&self.app, &self.sim.observe())
    }

    /// Applies one move per service, then runs the cluster for one decision interval.
    pub fn step(&mut self, actions: &[usize]) -> Step {
        assert_eq!(actions.len(), self.num_services(), "one action per service");
        assert!(!self.done, "step after the episode ended: call reset");
        let observation = self.sim.observe();
        for (index, (&action, service)) in actions.iter().zip(&self.app.services).enumerate() {
            assert!(action < ACTIONS_PER_SERVICE, "action {action} out of range for service {index}");
            let current = observation.services[index].spec_replicas;
            let target = (current as i64 + action_delta(action) as i64)
                .clamp(service.replicas.min as i64, service.replicas.max as i64) as u32;
            if target != current {
                self.sim.scale(index, target);
            }
        }
        let max_pods = self.app.services.iter().map(|s| s.replicas.max as f64).sum();
        let mut stats = IntervalStats::new(max_pods, self.app.slo.threshold_ms);
        for _ in 0..self.config.decision_interval_s {
            match self.sim.advance() {
                Some(second) => stats.add(&second),
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        if self.sim_ended() {
            self.done = true;
        }
        Step {
            observation: self.observation(),
            reward: self.config.reward.reward(&stats),
            done: self.done,
            truncated: self.done,
            stats,
        }
    }

    fn sim_ended(&self) -> bool {
        self.sim.observe().time_s >= self.sim.duration_s()
    }
}
