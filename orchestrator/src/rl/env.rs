//! The simulated cluster as an RL environment.
//!
//! Every `decision_interval_s` of simulated time the agent picks one move per service, all at once
//! (multi-discrete), from the config's [`ActionSpace`] (default −2…+2 replicas). Moves that would leave
//! `[min, max]` are masked; a masked move, if taken anyway, is clamped to the bound.
//! An episode is one run of a scenario drawn from the environment's training scenarios (randomized per episode,
//! see [`crate::rl::scenarios`]); `reset` starts the next with a seed derived from the env's seed. An episode ends
//! when its scenario does: a time limit, not a terminal state, so learners bootstrap from the final state's value.

use load_agent::scenario::Scenario;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::app::AppModel;
use crate::cell::{ClusterBackend, Observation};
use crate::rl::features::GraphObservation;
use crate::rl::reward::IntervalStats;
use crate::rl::scenarios::TrainingScenarios;
use crate::settings::rl::ActionSpace;
use crate::settings::rl::{FeatureLayout, RewardKind};
use crate::settings::simulator::SimulatorSettings;
use crate::sim::Simulator;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Simulated seconds between decisions.
    pub decision_interval_s: u64,
    pub reward: RewardKind,
    pub features: FeatureLayout,
    /// The moves of one decision (checkpoints written before it was configurable have the default).
    #[serde(default, skip_serializing_if = "ActionSpace::is_default")]
    pub actions: ActionSpace,
    /// The simulator's model episodes run on. Checkpoints written before it was configurable were trained on the
    /// legacy model and do not name it; it is written only when it is another.
    #[serde(default = "legacy_simulator", skip_serializing_if = "SimulatorSettings::is_legacy")]
    pub simulator: SimulatorSettings,
}

fn legacy_simulator() -> SimulatorSettings {
    SimulatorSettings::LEGACY
}

impl Default for EnvConfig {
    fn default() -> EnvConfig {
        EnvConfig {
            decision_interval_s: 15,
            reward: RewardKind::default(),
            features: FeatureLayout::default(),
            actions: ActionSpace::default(),
            simulator: SimulatorSettings::default(),
        }
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
            edges: app.edges().into_iter().collect(),
            sim: Simulator::with_settings(app, &first, seed, &config.simulator),
            config,
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
        self.sim = Simulator::with_settings(&self.app, &scenario, seed, &self.config.simulator);
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

    /// The moves of one decision.
    pub fn actions(&self) -> &ActionSpace {
        &self.config.actions
    }

    /// `num_services × actions().len()` flags, row-major: the allowed moves of every service (see
    /// [`ActionSpace::mask`]). Staying is always allowed.
    pub fn action_mask(&self) -> Vec<bool> {
        self.config.actions.mask(&self.app, &self.sim.observe())
    }

    /// Applies one move per service, then runs the cluster for one decision interval.
    pub fn step(&mut self, actions: &[usize]) -> Step {
        assert_eq!(actions.len(), self.num_services(), "one action per service");
        assert!(!self.done, "step after the episode ended: call reset");
        let observation = self.sim.observe();
        let space = &self.config.actions;
        let mut replica_changes = 0;
        for (index, (&action, service)) in actions.iter().zip(&self.app.services).enumerate() {
            assert!(action < space.len(), "action {action} out of range for service {index}");
            let current = observation.services[index].spec_replicas;
            let target = space.apply(action, current, service.replicas.min, service.replicas.max);
            if target != current {
                self.sim.scale(index, target);
                replica_changes += target.abs_diff(current);
            }
        }
        let max_pods = self.app.services.iter().map(|s| s.replicas.max as f64).sum();
        let mut stats = IntervalStats::new(max_pods, self.app.slo.threshold_ms);
        stats.replica_changes = replica_changes;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoints_env_without_simulator_settings_was_trained_on_the_legacy_model() {
        let faithful = EnvConfig::default();
        let json = serde_json::to_value(&faithful).unwrap();
        assert!(json.get("simulator").is_some());
        assert_eq!(serde_json::from_value::<EnvConfig>(json.clone()).unwrap(), faithful);
        let mut old = json;
        old.as_object_mut().unwrap().remove("simulator");
        let legacy = serde_json::from_value::<EnvConfig>(old.clone()).unwrap();
        assert!(legacy.simulator.is_legacy());
        assert_eq!(serde_json::to_value(&legacy).unwrap(), old, "the legacy model is not written");
    }
}
