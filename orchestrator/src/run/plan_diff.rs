//! What changed between the plan a run folder recorded and the plan a matrix gives now: cells added and removed,
//! and for a cell whose inputs changed (same name, new hash), which input and which fields.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::cell::Cell;
use crate::run_folder;

/// Fields listed per changed cell before "and N more".
const FIELDS_SHOWN: usize = 6;

#[derive(Debug, Default)]
pub struct PlanDiff {
    pub removed: Vec<String>,
    pub added: Vec<String>,
    /// (old id, new id, changed fields as `path: old -> new`)
    pub changed: Vec<(String, String, Vec<String>)>,
    pub reordered: bool,
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty() && self.changed.is_empty() && !self.reordered
    }

    /// Ids of the recorded plan that the new plan no longer has (changed cells included).
    pub fn gone(&self) -> impl Iterator<Item = &str> {
        self.removed.iter().map(String::as_str).chain(self.changed.iter().map(|(old, _, _)| old.as_str()))
    }
}

/// Compares the recorded plan (`old` ids, with their config.yaml under `run_dir`) with `new`.
pub fn diff(run_dir: &Path, old: &[String], new: &[Cell]) -> PlanDiff {
    let new_ids: Vec<&str> = new.iter().map(|c| c.id.as_str()).collect();
    let old_set: BTreeSet<&str> = old.iter().map(String::as_str).collect();
    let new_set: BTreeSet<&str> = new_ids.iter().copied().collect();
    let mut out = PlanDiff::default();
    let mut added: Vec<&Cell> = new.iter().filter(|c| !old_set.contains(c.id.as_str())).collect();
    for id in old.iter().filter(|id| !new_set.contains(id.as_str())) {
        let name = readable_name(id);
        match added.iter().position(|c| readable_name(&c.id) == name) {
            Some(i) => {
                let cell = added.remove(i);
                let fields = changed_fields(run_dir, id, cell);
                out.changed.push((id.clone(), cell.id.clone(), fields));
            }
            None => out.removed.push(id.clone()),
        }
    }
    out.added = added.iter().map(|c| c.id.clone()).collect();
    out.reordered = out.removed.is_empty() && out.added.is_empty() && out.changed.is_empty() && old != &new_ids[..];
    out
}

/// Cells listed by name before "and N more".
const CELLS_SHOWN: usize = 8;

fn list(f: &mut std::fmt::Formatter<'_>, label: &str, ids: &[&str]) -> std::fmt::Result {
    for id in ids.iter().take(CELLS_SHOWN) {
        writeln!(f, "  {label} {id}")?;
    }
    if ids.len() > CELLS_SHOWN {
        writeln!(f, "  {label} ... and {} more", ids.len() - CELLS_SHOWN)?;
    }
    Ok(())
}

impl std::fmt::Display for PlanDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        list(f, "removed:", &self.removed.iter().map(String::as_str).collect::<Vec<_>>())?;
        list(f, "added:  ", &self.added.iter().map(String::as_str).collect::<Vec<_>>())?;
        // One edit of an app model changes many cells the same way: group cells by what changed.
        let mut groups: Vec<(&[String], Vec<&str>)> = Vec::new();
        for (old, _, fields) in &self.changed {
            match groups.iter_mut().find(|(f, _)| *f == &fields[..]) {
                Some((_, ids)) => ids.push(old),
                None => groups.push((fields, vec![old])),
            }
        }
        for (fields, ids) in groups {
            writeln!(f, "  inputs changed of {} cell(s):", ids.len())?;
            for field in fields.iter().take(FIELDS_SHOWN) {
                writeln!(f, "      {field}")?;
            }
            if fields.len() > FIELDS_SHOWN {
                writeln!(f, "      and {} more fields", fields.len() - FIELDS_SHOWN)?;
            }
            list(f, "  ", &ids)?;
        }
        if self.reordered {
            writeln!(f, "  the same cells in another order")?;
        }
        Ok(())
    }
}

/// `app.policy.scenario.sN`, the id without its hash.
fn readable_name(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(name, _)| name)
}

/// Fields of the resolved config that differ, named by input: `app model: slo.threshold_ms: 60.0 -> 80.0`.
fn changed_fields(run_dir: &Path, old_id: &str, new: &Cell) -> Vec<String> {
    let config_file = run_folder::cell_dir(run_dir, old_id).join(run_folder::CONFIG_YAML);
    let old: Value = match load_agent::yaml::read_file(&config_file) {
        Ok(v) => v,
        Err(e) => return vec![format!("(cannot read the recorded config: {e})")],
    };
    let new_tree = match crate::cell::config_yaml(&new.config)
        .map(|text| load_agent::yaml::from_str::<Value>(&text, &config_file))
    {
        Ok(Ok(v)) => v,
        _ => return vec!["(cannot serialize the new config)".into()],
    };
    let mut out = Vec::new();
    leaf_diff("", &old, &new_tree, &mut out);
    out.into_iter()
        .map(|(path, change)| {
            let input = match path.split(['.', '[']).next().unwrap_or("") {
                "app" => "app model",
                "scenario" => "scenario",
                "policy" => "policy",
                "seed" => "seed",
                "backend" => "backend",
                "format_version" => "cell format",
                _ => "config",
            };
            format!("{input}: {path}: {change}")
        })
        .collect()
}

fn leaf_diff(path: &str, old: &Value, new: &Value, out: &mut Vec<(String, String)>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                leaf_diff(&sub, a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                leaf_diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push((path.to_string(), format!("{} -> {}", short(a), short(b)))),
        _ => {}
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::Null => "(absent)".to_string(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 { format!("{}...", text.chars().take(57).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaf_diff_names_the_changed_paths() {
        let old = json!({"app": {"slo": {"threshold_ms": 60.0}, "services": [{"cpu": 100}, {"cpu": 200}]}, "seed": 1});
        let new = json!({"app": {"slo": {"threshold_ms": 80.0}, "services": [{"cpu": 100}, {"cpu": 250}]}, "seed": 1});
        let mut out = Vec::new();
        leaf_diff("", &old, &new, &mut out);
        assert_eq!(
            out,
            [
                ("app.services[1].cpu".to_string(), "200 -> 250".to_string()),
                ("app.slo.threshold_ms".to_string(), "60.0 -> 80.0".to_string())
            ]
        );
    }

    #[test]
    fn a_field_that_appears_or_goes_is_shown_as_absent() {
        let mut out = Vec::new();
        leaf_diff("", &json!({"a": 1}), &json!({"b": 2}), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, "1 -> (absent)");
        assert_eq!(out[1].1, "(absent) -> 2");
    }
}
