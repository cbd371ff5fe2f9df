//! Upper bounds on what input files may ask for, so that a slip of the keyboard (`max: 1000000000`) is refused
//! when the file is read instead of exhausting memory or time in the middle of a run.
//!
//! Each limit is a constant here and a row of docs/LIMITS.md, the one page that documents them (a test keeps the
//! two in step). They are generous: every experiment of the project stays far below them.

use std::path::Path;

use load_agent::scenario::{LoadShape, Scenario};
use load_agent::yaml::ConfigError;

/// Where the limits are documented; errors point there.
pub const DOC: &str = "docs/LIMITS.md";

/// `services[].replicas.max` of an app model: pods one deployment may have.
pub const MAX_REPLICAS: u32 = 1_000;
/// `count` of one call in a route's call tree: mean calls per parent call.
pub const MAX_CALL_COUNT: f64 = 100.0;
/// Calls one request to a route causes, over its whole call tree (the counts multiplied down each branch).
pub const MAX_CALLS_PER_REQUEST: f64 = 10_000.0;
/// How long a scenario's load shape runs, in simulated seconds: 7 days.
pub const MAX_SCENARIO_DURATION_S: f64 = 7.0 * 24.0 * 3600.0;
/// Users a scenario asks for at once (stages, ramps, arrival-rate user pools).
pub const MAX_USERS: u32 = 100_000;
/// Task starts per second of an arrival-rate scenario.
pub const MAX_ARRIVAL_RATE: f64 = 100_000.0;
/// Entries of a matrix's `seeds` list.
pub const MAX_SEEDS: usize = 10_000;
/// Cells of one matrix, after exclude and include.
pub const MAX_CELLS: usize = 100_000;
/// Bytes of a matrix file (4 MiB): parsing YAML takes many times its size in memory, so a file far beyond any
/// real matrix (a seed list of millions) is refused before it is parsed.
pub const MAX_MATRIX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// "X is above the limit of Y (see docs/LIMITS.md)".
pub fn above(what: impl std::fmt::Display, limit: impl std::fmt::Display) -> String {
    format!("{what} is above the limit of {limit} (see {DOC})")
}

/// Refuses matrix text beyond [`MAX_MATRIX_FILE_BYTES`], naming the top-level field that takes most of it (the
/// text is not parsed: that is what the limit spares).
pub fn check_matrix_size(text: &str, file: &Path) -> Result<(), ConfigError> {
    if text.len() <= MAX_MATRIX_FILE_BYTES {
        return Ok(());
    }
    // Top-level keys of a block mapping start a line at column 0: `seeds: [...]`.
    let mut largest: Option<(&str, usize)> = None;
    let mut current: Option<(&str, usize)> = None;
    for line in text.split_inclusive('\n') {
        let key = line.split_once(':').map(|(key, _)| key).filter(|key| {
            !key.is_empty() && !key.starts_with([' ', '\t', '#', '-']) && !key.contains(char::is_whitespace)
        });
        if let Some(key) = key {
            largest = larger(largest, current);
            current = Some((key, 0));
        }
        if let Some((_, bytes)) = current.as_mut() {
            *bytes += line.len();
        }
    }
    largest = larger(largest, current);
    let (field, detail) = match largest {
        Some((key, bytes)) => (key, format!(", {bytes} of them in `{key}`")),
        None => ("", String::new()),
    };
    Err(ConfigError::new(
        file,
        field,
        above(format!("a matrix file of {} bytes{detail}", text.len()), format!("{MAX_MATRIX_FILE_BYTES} bytes")),
    ))
}

/// The larger of two (key, bytes) spans.
fn larger<'a>(a: Option<(&'a str, usize)>, b: Option<(&'a str, usize)>) -> Option<(&'a str, usize)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.1 > a.1 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Reads a scenario file for a cell: the load-agent's own checks (a trace it replays must lie under `within`),
/// then these limits.
pub fn load_scenario(path: &Path, within: &Path) -> Result<Scenario, ConfigError> {
    let scenario = Scenario::load_within(path, within)?;
    check_scenario(&scenario).map_err(|e| ConfigError::new(path, e.field, e.message))?;
    Ok(scenario)
}

/// A field of a scenario above its limit; [`load_scenario`] names the file.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OverLimit {
    /// Dotted field path inside the scenario file.
    pub field: String,
    pub message: String,
}

/// Checks a parsed scenario against the limits.
pub fn check_scenario(scenario: &Scenario) -> Result<(), OverLimit> {
    let over = |field: String, message: String| Err(OverLimit { field, message });
    let users = |field: String, users: u32| {
        if users > MAX_USERS { over(field, above(format!("{users} users"), MAX_USERS)) } else { Ok(()) }
    };
    let duration = |field: String, end_s: f64| {
        if end_s > MAX_SCENARIO_DURATION_S {
            over(
                field,
                above(
                    format!("a load shape ending at {end_s} s"),
                    format!("{MAX_SCENARIO_DURATION_S} s (7 days of simulated time)"),
                ),
            )
        } else {
            Ok(())
        }
    };
    let rate = |field: String, rate: f64| {
        if rate > MAX_ARRIVAL_RATE {
            over(field, above(format!("{rate} task starts per second"), MAX_ARRIVAL_RATE))
        } else {
            Ok(())
        }
    };
    match &scenario.shape {
        LoadShape::Stages(stages) => {
            for (i, stage) in stages.iter().enumerate() {
                users(format!("shape.stages[{i}].users"), stage.users)?;
                duration(format!("shape.stages[{i}].end"), stage.end)?;
            }
        }
        LoadShape::Ramps(ramps) => {
            let mut end = 0.0;
            for (i, ramp) in ramps.iter().enumerate() {
                users(format!("shape.ramps[{i}].users"), ramp.users)?;
                end += ramp.over;
                duration(format!("shape.ramps[{i}].over"), end)?;
                end += ramp.hold;
                duration(format!("shape.ramps[{i}].hold"), end)?;
            }
        }
        LoadShape::ArrivalRate(open) => {
            rate("shape.arrival_rate.start_rate".into(), open.start_rate)?;
            let mut end = 0.0;
            for (i, stage) in open.stages.iter().enumerate() {
                rate(format!("shape.arrival_rate.stages[{i}].target"), stage.target)?;
                end += stage.duration;
                duration(format!("shape.arrival_rate.stages[{i}].duration"), end)?;
            }
            users("shape.arrival_rate.preallocated_users".into(), open.preallocated_users)?;
            users("shape.arrival_rate.max_users".into(), open.max_users)?;
        }
        // Resolved into stages or an arrival rate when the file is read.
        LoadShape::Trace(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_page_documents_every_limit() {
        let page = include_str!("../../docs/LIMITS.md");
        for (name, value) in [
            ("MAX_REPLICAS", MAX_REPLICAS.to_string()),
            ("MAX_CALL_COUNT", MAX_CALL_COUNT.to_string()),
            ("MAX_CALLS_PER_REQUEST", MAX_CALLS_PER_REQUEST.to_string()),
            ("MAX_SCENARIO_DURATION_S", MAX_SCENARIO_DURATION_S.to_string()),
            ("MAX_USERS", MAX_USERS.to_string()),
            ("MAX_ARRIVAL_RATE", MAX_ARRIVAL_RATE.to_string()),
            ("MAX_SEEDS", MAX_SEEDS.to_string()),
            ("MAX_CELLS", MAX_CELLS.to_string()),
            ("MAX_MATRIX_FILE_BYTES", MAX_MATRIX_FILE_BYTES.to_string()),
        ] {
            let row = page.lines().find(|l| l.contains(&format!("`{name}`")));
            let row = row.unwrap_or_else(|| panic!("{DOC} has no row for {name}"));
            assert!(
                row.replace(',', "").contains(&format!(" {value} ")),
                "{DOC}: the row of {name} does not say {value}"
            );
        }
    }

    #[test]
    fn scenarios_beyond_the_limits_name_the_field() {
        let text = |shape: &str| {
            format!(
                "users: [{{name: u, tasks: [{{name: t, requests: [{{method: GET, path: /}}]}}]}}]\nshape: {shape}\n"
            )
        };
        for (shape, field) in [
            (
                "{stages: [{end: 60, users: 10, spawn_rate: 1}, {end: 1e9, users: 10, spawn_rate: 1}]}",
                "shape.stages[1].end",
            ),
            ("{stages: [{end: 60, users: 100001, spawn_rate: 1}]}", "shape.stages[0].users"),
            ("{ramps: [{users: 10, over: 600000, hold: 4801}]}", "shape.ramps[0].hold"),
            (
                "{arrival_rate: {stages: [{duration: 60, target: 1e6}], preallocated_users: 1, max_users: 2}}",
                "shape.arrival_rate.stages[0].target",
            ),
            (
                "{arrival_rate: {stages: [{duration: 60, target: 1}], preallocated_users: 1, max_users: 200000}}",
                "shape.arrival_rate.max_users",
            ),
        ] {
            // The load agent's own ranges (the same 7 days) may refuse a shape first; either way the field is named.
            let (at, message) = match Scenario::parse(&text(shape), Path::new("s.yaml")) {
                Ok(scenario) => {
                    let over = check_scenario(&scenario).unwrap_err();
                    (over.field, over.message)
                }
                Err(refused) => (refused.field, refused.message.replace("604800", DOC)),
            };
            // (the agent names a ramp whose over and hold together pass 7 days by the ramp)
            assert!(!at.is_empty() && field.starts_with(&at), "{shape}: {at} for {field}");
            assert!(message.contains(DOC), "{message}");
        }
        let fine = "{stages: [{end: 604800, users: 100000, spawn_rate: 1}]}";
        check_scenario(&Scenario::parse(&text(fine), Path::new("s.yaml")).unwrap()).unwrap();
    }
}
