//! The `sim` backend: a cell on the embedded simulator.

use crate::cell::{CellConfig, CellSummary, Policy, SecondMetrics, drive};
use crate::sim::Simulator;

/// Runs a cell on the simulator with `policy`, handing every second to `on_second` and each scaling action to
/// `on_scale`.
pub fn simulate(
    id: &str,
    config: &CellConfig,
    policy: &mut dyn Policy,
    on_second: impl FnMut(&SecondMetrics),
    on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> CellSummary {
    let mut backend = simulator_for(config);
    drive(id, config, &mut backend, policy, on_second, on_scale)
}

/// The simulator of a cell, with the model its config chooses.
pub fn simulator_for(config: &CellConfig) -> Simulator {
    Simulator::with_settings(&config.app, &config.scenario, config.seed, &config.simulator_settings())
}

/// Runs a cell and keeps every second in memory (tests and small tools).
pub fn simulate_collect(id: &str, config: &CellConfig, policy: &mut dyn Policy) -> (Vec<SecondMetrics>, CellSummary) {
    let mut seconds = Vec::new();
    let summary = simulate(id, config, policy, |s| seconds.push(s.clone()), |_, _, _, _, _| {});
    (seconds, summary)
}
