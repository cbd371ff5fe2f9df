//! Time compression: a scenario's timeline replayed `time_scale` times faster.
//!
//! Only control time is compressed: the shape's stage ends, ramps and arrival-rate stages shrink by the factor, so
//! the user count follows the same targets in emulated seconds. What a request experiences stays in real time: a
//! user still waits its `wait` between tasks, requests take their real latency, and request rates are what the app
//! really serves. The emulator compresses the rest of control time the same way (pod start-up, metrics windows,
//! policy intervals).
//!
//! Spawn rates grow by the factor too, but a ramp is never squeezed into less than one pacing period of real time
//! (a user's `constant_throughput`, `constant_pacing` or `constant` wait): users started closer together than
//! that keep sending in step, in waves the uncompressed run never has. So a ramp takes at least one period: up to
//! `time_scale` periods of emulated time, instead of the shape's own ramp time. Ramps never run slower than the
//! shape's own spawn rate.

use load_agent::scenario::{ArrivalRate, LoadShape, Ramp, RateStage, Scenario, Stage, WaitTime};

/// The longest pacing period of the scenario's users, in seconds (0 when their waits are random or absent).
fn pacing_period_s(scenario: &Scenario) -> f64 {
    scenario
        .users
        .iter()
        .filter_map(|class| match class.wait? {
            WaitTime::ConstantThroughput(rate) => Some(1.0 / rate),
            WaitTime::ConstantPacing(period) | WaitTime::Constant(period) => Some(period),
            WaitTime::Between(_) => None,
        })
        .fold(0.0, f64::max)
}

/// `scenario` with its shape compressed by `time_scale` (≥ 1).
pub fn compress(scenario: &Scenario, time_scale: f64) -> Scenario {
    let k = time_scale;
    let period = pacing_period_s(scenario);
    let mut out = scenario.clone();
    out.shape = match &scenario.shape {
        LoadShape::Stages(stages) => {
            let mut previous = 0u32;
            let stages = stages
                .iter()
                .map(|s| {
                    let step = s.users.abs_diff(previous) as f64;
                    previous = s.users;
                    // As fast as the factor says, but spread over one pacing period, and no slower than the shape.
                    let spread = if period > 0.0 { step / period } else { f64::INFINITY };
                    let spawn_rate = spread.min(s.spawn_rate * k).max(s.spawn_rate);
                    Stage { end: s.end / k, users: s.users, spawn_rate }
                })
                .collect();
            LoadShape::Stages(stages)
        }
        LoadShape::Ramps(ramps) => LoadShape::Ramps(
            ramps
                .iter()
                .map(|r| {
                    // The same total time; the ramp part at least a pacing period (within that total).
                    let total = (r.over + r.hold) / k;
                    let over = (r.over / k).max(period.min(r.over)).min(total);
                    Ramp { users: r.users, over, hold: total - over }
                })
                .collect(),
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

    fn scenario(name: &str) -> Scenario {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../experiments/scenarios/online-boutique/{name}.yaml"));
        Scenario::load(&file).unwrap()
    }

    #[test]
    fn targets_follow_emulated_time_and_ramps_spread_over_a_pacing_period() {
        let scenario = scenario("rushsale");
        let fast = compress(&scenario, 20.0);
        assert_eq!(fast.duration_s(), 45.0);
        assert!(fast.validate().is_ok());
        for emulated_s in [0.0, 100.0, 179.0, 181.0, 300.0, 481.0, 899.0] {
            let slow = scenario.shape.users_target(emulated_s).unwrap();
            let quick = fast.shape.users_target(emulated_s / 20.0).unwrap();
            assert_eq!(slow.users, quick.users, "at {emulated_s}");
        }
        // One request per second per user: 100 users start over 1 s (the shape's own rate), the 700 of the surge
        // over 1 s too (700/s, not 2000/s, nor the shape's 100/s).
        let LoadShape::Stages(stages) = &fast.shape else { panic!() };
        let rates: Vec<f64> = stages.iter().map(|s| s.spawn_rate).collect();
        assert_eq!(rates, [100.0, 700.0, 700.0]);
        assert_eq!(fast.users, scenario.users, "waits between requests stay in real time");
        assert_eq!(compress(&scenario, 1.0), scenario);
    }

    #[test]
    fn random_waits_keep_the_full_compression() {
        let browse = scenario("browse");
        let LoadShape::Stages(stages) = compress(&browse, 10.0).shape else { panic!() };
        assert_eq!(stages[0].spawn_rate, 100.0);
        assert_eq!(stages[0].end, 90.0);
    }
}
