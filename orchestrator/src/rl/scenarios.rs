//! Randomized training scenarios: each episode draws one of the training scenarios, scales its load by a factor
//! drawn uniformly from `scale`, and multiplies every stage's load by its own `1 + noise·z` (z standard normal,
//! the factor kept ≥ 0.1), so a policy sees loads between and beyond the ones it is evaluated on.
//!
//! Closed-model stages and ramps scale their user counts (and spawn rates, so ramps keep their duration);
//! open-model stages scale their arrival rates and user caps.

use crate::settings::rl::Randomization;
use load_agent::scenario::{LoadShape, Scenario};
use rand::Rng;
use rand_distr::StandardNormal;

impl Randomization {
    /// True when every episode replays its scenario unchanged.
    pub fn is_identity(&self) -> bool {
        self.scale == [1.0, 1.0] && self.noise == 0.0
    }

    /// `scenario` with its load scaled and perturbed as drawn from `rng`.
    pub fn apply(&self, scenario: &Scenario, rng: &mut impl Rng) -> Scenario {
        if self.is_identity() {
            return scenario.clone();
        }
        let [low, high] = self.scale;
        let scale = if high > low { rng.r#gen_range(low..=high) } else { low };
        let factor = |rng: &mut dyn rand::RngCore| {
            let z: f64 = if self.noise > 0.0 { rng.sample(StandardNormal) } else { 0.0 };
            scale * (1.0 + self.noise * z).max(0.1)
        };
        let mut out = scenario.clone();
        match &mut out.shape {
            LoadShape::Stages(stages) => {
                for stage in stages {
                    let f = factor(rng);
                    stage.users = (stage.users as f64 * f).round() as u32;
                    stage.spawn_rate *= f.max(1.0);
                }
            }
            LoadShape::Ramps(ramps) => {
                for ramp in ramps {
                    ramp.users = (ramp.users as f64 * factor(rng)).round() as u32;
                }
            }
            LoadShape::ArrivalRate(open) => {
                open.start_rate *= scale;
                for stage in &mut open.stages {
                    stage.target *= factor(rng);
                }
                open.max_users = (open.max_users as f64 * high.max(1.0) * (1.0 + 3.0 * self.noise)).ceil() as u32;
            }
            // Traces are replaced by stages or an arrival rate when a scenario file is read.
            LoadShape::Trace(_) => {}
        }
        out
    }
}

/// The scenarios an environment draws its episodes from.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingScenarios {
    pub scenarios: Vec<Scenario>,
    pub randomization: Randomization,
}

impl TrainingScenarios {
    /// One scenario replayed unchanged.
    pub fn fixed(scenario: &Scenario) -> TrainingScenarios {
        TrainingScenarios { scenarios: vec![scenario.clone()], randomization: Randomization::default() }
    }

    /// The scenario of the next episode: one of the list, uniformly, randomized.
    pub fn sample(&self, rng: &mut impl Rng) -> Scenario {
        let pick = if self.scenarios.len() > 1 { rng.r#gen_range(0..self.scenarios.len()) } else { 0 };
        self.randomization.apply(&self.scenarios[pick], rng)
    }
}
