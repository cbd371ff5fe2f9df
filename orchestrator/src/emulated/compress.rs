//! Time compression: a scenario's timeline replayed `time_scale` times faster.
//!
//! Only control time is compressed: the shape's stage ends, ramps and arrival-rate stages shrink and spawn rates
//! grow by the factor, so the user count follows the same curve in emulated seconds. What a request experiences
//! stays in real time: a user still waits its `wait` between tasks, requests take their real latency, and request
//! rates are what the app really serves. The emulator compresses the rest of control time the same way (pod
//! start-up, metrics windows, policy intervals).

use load_agent::scenario::{ArrivalRate, LoadShape, Ramp, RateStage, Scenario, Stage};

/// `scenario` with its shape compressed by `time_scale` (≥ 1).
pub fn compress(scenario: &Scenario, time_scale: f64) -> Scenario {
    let k = time_scale;
    let mut out = scenario.clone();
    out.shape = match &scenario.shape {
        LoadShape::Stages(stages) => LoadShape::Stages(
            stages.iter().map(|s| Stage { end: s.end / k, users: s.users, spawn_rate: s.spawn_rate * k }).collect(),
        ),
        LoadShape::Ramps(ramps) => LoadShape::Ramps(
            ramps.iter().map(|r| Ramp { users: r.users, over: r.over / k, hold: r.hold / k }).collect(),
        ),
        LoadShape::ArrivalRate(open) => LoadShape::ArrivalRate(ArrivalRate {
            stages: open.stages.iter().map(|s| RateStage { duration: s.duration / k, target: s.target }).collect(),
            ..open.clone()
        }),
        // Traces are resolved into stages or an arrival rate when the scenario file is read.
        LoadShape::Trace(spec) => LoadShape::Trace(spec.clone()),
    };
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_user_curve_is_the_same_in_emulated_seconds() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/scenarios/online-boutique/rushsale.yaml"),
        )
        .unwrap();
        let scenario = Scenario::parse(&text, Path::new("rushsale.yaml")).unwrap();
        let fast = compress(&scenario, 20.0);
        assert_eq!(fast.duration_s(), 45.0);
        assert!(fast.validate().is_ok());
        for emulated_s in [0.0, 100.0, 179.0, 181.0, 300.0, 481.0, 899.0] {
            let slow = scenario.shape.users_target(emulated_s).unwrap();
            let quick = fast.shape.users_target(emulated_s / 20.0).unwrap();
            assert_eq!(slow.users, quick.users, "at {emulated_s}");
            assert_eq!(slow.spawn_rate * 20.0, quick.spawn_rate);
        }
        assert_eq!(fast.users, scenario.users, "waits between requests stay in real time");
        assert_eq!(compress(&scenario, 1.0), scenario);
    }
}
