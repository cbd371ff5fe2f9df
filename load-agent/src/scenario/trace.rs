//! Replaying a recorded load: a CSV column over time becomes stages (a user count) or an arrival rate.
//!
//! Resolved when the scenario file is read, so the shape sent to agents and simulated by `orch` is self-contained.
//! Locust's own `PREFIX_stats_history.csv` works as it is: its `Aggregated` rows are used, timed by `Timestamp`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::shape::{ArrivalRate, LoadShape, RateStage, Stage};
use crate::tree::{self, Located};

/// `shape: {trace: {file: run_stats_history.csv, column: "User Count"}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSpec {
    /// CSV file, relative to the scenario file, inside the scenarios' folder tree.
    pub file: String,
    /// Column with the load: a user count (closed model) or, with `rate: true`, task starts per second.
    pub column: String,
    /// Column with the time in seconds (absolute or relative; the first row is time 0).
    #[serde(default = "default_time_column")]
    pub time_column: String,
    #[serde(default)]
    pub rate: bool,
    /// Closed model: users started or stopped per second between points.
    #[serde(default = "default_spawn_rate")]
    pub spawn_rate: f64,
    /// Open model: users created up front, and the most there may be.
    #[serde(default)]
    pub preallocated_users: Option<u32>,
    #[serde(default)]
    pub max_users: Option<u32>,
}

fn default_time_column() -> String {
    "Timestamp".to_string()
}

fn default_spawn_rate() -> f64 {
    1000.0
}

/// Splits one CSV line, honouring double quotes.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Reads the trace into a shape; errors are `(field, message)` with fields under `shape.trace`. The CSV file must
/// lie under `within` (see [`crate::tree`]), and errors say where in it something is wrong, never what it holds.
pub fn resolve(spec: &TraceSpec, scenario_file: &Path, within: &Path) -> Result<LoadShape, (String, String)> {
    let err = |field: &str, message: String| (format!("shape.trace.{field}"), message);
    let path = tree::folder_of(scenario_file).join(&spec.file);
    match tree::locate(within, &path) {
        Located::File(_) => {}
        Located::Outside => return Err(err("file", tree::leaves(&spec.file, within))),
        Located::Missing => return Err(err("file", format!("{} does not exist", path.display()))),
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| err("file", format!("cannot read {}: {e}", path.display())))?;
    // (1-based line number, line) of the lines holding something.
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header) = lines.next().ok_or_else(|| err("file", format!("{} is empty", path.display())))?;
    let header = fields(header);
    let find = |name: &str, field: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            err(field, format!("no column {name:?} in the header of {} (line {header_line})", path.display()))
        })
    };
    let time = find(&spec.time_column, "time_column")?;
    let value = find(&spec.column, "column")?;
    // Locust's history has a row per request name and one "Aggregated" row per time: keep the latter.
    let name = header.iter().position(|h| h == "Name");
    // (line number, time, value)
    let mut points: Vec<(usize, f64, f64)> = Vec::new();
    for (line_number, line) in lines {
        let row = fields(line);
        if let Some(n) = name
            && row.get(n).map(String::as_str) != Some("Aggregated")
        {
            continue;
        }
        let number = |index: usize, what: &str| -> Result<f64, (String, String)> {
            let cell = row.get(index);
            cell.and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                let got = cell.map_or("nothing".to_string(), |v| format!("text of {} characters", v.chars().count()));
                err(what, format!("line {line_number}, column {}: expected a number ≥ 0, got {got}", index + 1))
            })
        };
        points.push((line_number, number(time, "time_column")?, number(value, "column")?));
    }
    if points.len() < 2 {
        return Err(err("file", format!("{} needs at least two rows of data", path.display())));
    }
    for pair in points.windows(2) {
        if pair[1].1 <= pair[0].1 {
            return Err(err(
                "time_column",
                format!("times must increase: line {} is not later than line {}", pair[1].0, pair[0].0),
            ));
        }
    }
    let points: Vec<(f64, f64)> = points.into_iter().map(|(_, time, value)| (time, value)).collect();
    let start = points[0].0;
    // Each point holds until the next; the last holds for the trace's typical interval.
    let last_interval = points[points.len() - 1].0 - points[points.len() - 2].0;
    let ends: Vec<f64> = points
        .iter()
        .skip(1)
        .map(|p| p.0 - start)
        .chain(std::iter::once(points[points.len() - 1].0 - start + last_interval))
        .collect();
    if spec.rate {
        let (Some(preallocated_users), Some(max_users)) = (spec.preallocated_users, spec.max_users) else {
            return Err(err("rate", "a rate trace needs preallocated_users and max_users".into()));
        };
        let mut previous_end = 0.0;
        let stages = points
            .iter()
            .zip(&ends)
            .map(|(&(_, rate), &end)| {
                let stage = RateStage { duration: end - previous_end, target: rate };
                previous_end = end;
                stage
            })
            .collect();
        Ok(LoadShape::ArrivalRate(ArrivalRate {
            start_rate: points[0].1,
            stages,
            preallocated_users,
            max_users,
            arrivals: Default::default(),
        }))
    } else {
        if !(spec.spawn_rate.is_finite() && spec.spawn_rate > 0.0) {
            return Err(err("spawn_rate", format!("must be a positive number, got {}", spec.spawn_rate)));
        }
        Ok(LoadShape::Stages(
            points
                .iter()
                .zip(&ends)
                .map(|(&(_, users), &end)| Stage { end, users: users.round() as u32, spawn_rate: spec.spawn_rate })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_honour_quotes() {
        assert_eq!(fields("a,\"b,c\",\"d\"\"e\""), vec!["a", "b,c", "d\"e"]);
    }
}
