//! Load shapes: how many users (closed model) or how many task starts per second (open model) over time.

use serde::{Deserialize, Serialize};

use super::limits::{self, MAX_STAGES};

/// The load over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LoadShape {
    /// Locust `StagesShape`: cumulative end times. A new stage pre-empts an unfinished ramp (Locust blocks on it).
    Stages(#[serde(deserialize_with = "limits::list::<MAX_STAGES, _, _>")] Vec<Stage>),
    /// Goose-style linear ramps: reach `users` over `over` seconds, then hold for `hold` seconds.
    Ramps(#[serde(deserialize_with = "limits::list::<MAX_STAGES, _, _>")] Vec<Ramp>),
    /// Open model: task starts per second, independent of response times.
    ArrivalRate(ArrivalRate),
    /// A recorded load from a CSV file; replaced by stages or an arrival rate when the scenario file is read.
    Trace(super::trace::TraceSpec),
}

/// One Locust stage: until `end` seconds since the start, aim for `users`, spawning/stopping `spawn_rate` per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub end: f64,
    pub users: u32,
    pub spawn_rate: f64,
}

/// One Goose-style ramp.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub users: u32,
    /// Seconds to move linearly from the previous count to `users`; 0 jumps at once.
    pub over: f64,
    #[serde(default)]
    pub hold: f64,
}

/// An open-model (arrival-rate) load, as k6's ramping-arrival-rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalRate {
    /// Rate at time 0, in task starts per second; each stage moves linearly from the previous target to its own.
    #[serde(default)]
    pub start_rate: f64,
    #[serde(deserialize_with = "limits::list::<MAX_STAGES, _, _>")]
    pub stages: Vec<RateStage>,
    /// Users created up front to run iterations.
    pub preallocated_users: u32,
    /// Users may grow to this many when all are busy; beyond it iterations are dropped and counted.
    pub max_users: u32,
    /// How starts are spaced: `even` (k6's arrival-rate executors) or `poisson` (independent clients: exponential
    /// gaps, drawn from the run's seed). Written only when not `even`, so existing scenarios keep their ids.
    #[serde(default, skip_serializing_if = "Arrivals::is_even")]
    pub arrivals: Arrivals,
}

/// The spacing of an open model's task starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Start k is due when the integral of the rate reaches k + 1/2.
    #[default]
    Even,
    /// Start k is due when the integral reaches the sum of k + 1 unit exponentials: a Poisson process of the
    /// shape's rate.
    Poisson,
}

impl Arrivals {
    pub fn is_even(&self) -> bool {
        *self == Arrivals::Even
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateStage {
    pub duration: f64,
    pub target: f64,
}

/// What a closed-model shape asks for at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsersTarget {
    pub users: u32,
    pub spawn_rate: f64,
}

impl LoadShape {
    /// Total run time in seconds.
    pub fn duration_s(&self) -> f64 {
        match self {
            LoadShape::Stages(stages) => stages.last().map_or(0.0, |s| s.end),
            LoadShape::Ramps(ramps) => ramps.iter().map(|r| r.over + r.hold).sum(),
            LoadShape::ArrivalRate(open) => open.stages.iter().map(|s| s.duration).sum(),
            LoadShape::Trace(_) => 0.0,
        }
    }

    /// True for the open (arrival-rate) model.
    pub fn is_open(&self) -> bool {
        matches!(self, LoadShape::ArrivalRate(_))
    }

    /// Closed model: the user target in force at `t` seconds, `None` once the shape has ended (or for open shapes).
    pub fn users_target(&self, t: f64) -> Option<UsersTarget> {
        match self {
            LoadShape::Stages(stages) => {
                stages.iter().find(|s| t < s.end).map(|s| UsersTarget { users: s.users, spawn_rate: s.spawn_rate })
            }
            LoadShape::Ramps(ramps) => {
                let mut start = 0.0;
                let mut previous = 0u32;
                for ramp in ramps {
                    let end = start + ramp.over + ramp.hold;
                    if t < end {
                        // A ramp is a stage whose spawn rate covers the distance in `over` seconds.
                        let distance = (ramp.users as f64 - previous as f64).abs();
                        let spawn_rate = if ramp.over > 0.0 { distance / ramp.over } else { f64::INFINITY };
                        return Some(UsersTarget { users: ramp.users, spawn_rate });
                    }
                    start = end;
                    previous = ramp.users;
                }
                None
            }
            LoadShape::ArrivalRate(_) | LoadShape::Trace(_) => None,
        }
    }

    /// Open model: task starts per second at `t`, `None` once ended (or for closed shapes).
    pub fn arrival_rate(&self, t: f64) -> Option<f64> {
        let LoadShape::ArrivalRate(open) = self else {
            return None;
        };
        let mut start = 0.0;
        let mut from = open.start_rate;
        for stage in &open.stages {
            if t < start + stage.duration {
                let progress = (t - start) / stage.duration;
                return Some(from + (stage.target - from) * progress);
            }
            start += stage.duration;
            from = stage.target;
        }
        None
    }
}

/// Moves a user count toward `target` at `target.spawn_rate` users per second for `dt` seconds.
///
/// Both the agent and the simulator ramp users with this, so they agree on the user curve.
pub fn step_users(current: f64, target: UsersTarget, dt: f64) -> f64 {
    let goal = target.users as f64;
    let step = target.spawn_rate * dt;
    if current < goal { (current + step).min(goal) } else { (current - step).max(goal) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(shape: &LoadShape) -> Vec<f64> {
        let mut users = 0.0;
        let mut out = Vec::new();
        let mut t = 0.0;
        while let Some(target) = shape.users_target(t) {
            users = step_users(users, target, 1.0);
            out.push(users);
            t += 1.0;
        }
        out
    }

    #[test]
    fn a_new_stage_preempts_an_unfinished_ramp() {
        // Locust would keep spawning to 100 before obeying stage 2; we turn around at once.
        let shape = LoadShape::Stages(vec![
            Stage { end: 5.0, users: 100, spawn_rate: 10.0 },
            Stage { end: 10.0, users: 20, spawn_rate: 10.0 },
        ]);
        let users = curve(&shape);
        assert_eq!(users.len(), 10);
        assert_eq!(users[4], 50.0);
        assert_eq!(users[5], 40.0);
        assert_eq!(users[7], 20.0);
        assert_eq!(users[9], 20.0);
    }

    #[test]
    fn ramps_are_linear_and_hold() {
        let shape =
            LoadShape::Ramps(vec![Ramp { users: 10, over: 5.0, hold: 3.0 }, Ramp { users: 0, over: 2.0, hold: 0.0 }]);
        let users = curve(&shape);
        assert_eq!(users, vec![2.0, 4.0, 6.0, 8.0, 10.0, 10.0, 10.0, 10.0, 5.0, 0.0]);
        assert_eq!(shape.duration_s(), 10.0);
    }

    #[test]
    fn arrival_rate_interpolates_between_targets() {
        let shape = LoadShape::ArrivalRate(ArrivalRate {
            start_rate: 10.0,
            stages: vec![RateStage { duration: 10.0, target: 30.0 }, RateStage { duration: 5.0, target: 30.0 }],
            preallocated_users: 5,
            max_users: 50,
            arrivals: Default::default(),
        });
        assert_eq!(shape.arrival_rate(0.0), Some(10.0));
        assert_eq!(shape.arrival_rate(5.0), Some(20.0));
        assert_eq!(shape.arrival_rate(12.0), Some(30.0));
        assert_eq!(shape.arrival_rate(15.0), None);
        assert!(shape.is_open());
    }
}
