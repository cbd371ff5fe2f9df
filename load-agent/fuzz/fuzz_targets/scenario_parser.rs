//! Any bytes fed to the scenario parser (YAML, as files are read) and to the control API's JSON body must give a
//! value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(scenario) = load_agent::scenario::Scenario::parse(text, Path::new("fuzz.yaml")) {
            // A scenario that parsed must describe a shape that can be evaluated.
            let _ = scenario.duration_s();
            let _ = scenario.shape.users_target(0.0);
            let _ = scenario.shape.arrival_rate(0.0);
        }
    }
    if let Ok(start) = serde_json::from_slice::<load_agent::protocol::StartRun>(data) {
        let _ = start.scenario.validate();
    }
});
