//! `--filter key=glob` and `--only <cell-id>`: which cells of the plan one `orch run` runs.
//!
//! Filters are ANDed; `--only` ids (repeatable) are ORed among themselves and ANDed with the filters. An id may
//! be given without its `-hash` suffix when that is unambiguous.

use glob::Pattern;

use crate::cell::Cell;

pub const FILTER_KEYS: [&str; 6] = ["app", "policy", "scenario", "seed", "backend", "cell"];

/// A selection that cannot be made; the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("--filter {filter:?}: write key=glob, e.g. app=online-boutique")]
    NotKeyGlob { filter: String },
    #[error("--filter {filter:?}: unknown key {key:?}; keys: {}", FILTER_KEYS.join(", "))]
    UnknownKey { filter: String, key: String },
    #[error("--filter {filter:?}: bad glob: {error}")]
    BadGlob { filter: String, error: glob::PatternError },
    #[error("--only {0}: no such cell in the plan (see `orch plan`)")]
    NoSuchCell(String),
    #[error("--only {id}: names several cells: {}", .cells.join(", "))]
    SeveralCells { id: String, cells: Vec<String> },
    #[error("--filter/--only select no cell of the plan")]
    NothingSelected,
}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    filters: Vec<(String, Pattern)>,
    only: Vec<String>,
}

impl Selection {
    /// Parses the command line's filters and ids; errors name the flag.
    pub fn new(filters: &[String], only: &[String]) -> Result<Selection, SelectionError> {
        let mut parsed = Vec::new();
        for filter in filters {
            let Some((key, glob)) = filter.split_once('=') else {
                return Err(SelectionError::NotKeyGlob { filter: filter.clone() });
            };
            let key = key.trim();
            if !FILTER_KEYS.contains(&key) {
                return Err(SelectionError::UnknownKey { filter: filter.clone(), key: key.to_string() });
            }
            let pattern =
                Pattern::new(glob).map_err(|error| SelectionError::BadGlob { filter: filter.clone(), error })?;
            parsed.push((key.to_string(), pattern));
        }
        Ok(Selection { filters: parsed, only: only.to_vec() })
    }

    pub fn is_everything(&self) -> bool {
        self.filters.is_empty() && self.only.is_empty()
    }

    pub fn matches(&self, cell: &Cell) -> bool {
        let c = &cell.config;
        let filters_pass = self.filters.iter().all(|(key, pattern)| {
            let value = match key.as_str() {
                "app" => c.app.name.clone(),
                "policy" => c.policy.name().to_string(),
                "scenario" => c.scenario.name.clone(),
                "seed" => c.seed.to_string(),
                "backend" => c.backend.name().to_string(),
                _ => cell.id.clone(),
            };
            pattern.matches(&value)
        });
        filters_pass && (self.only.is_empty() || self.only.iter().any(|id| names(id, cell)))
    }

    /// Refuses ids that name no cell (or several) and filters that leave nothing to run.
    pub fn check(&self, cells: &[Cell]) -> Result<(), SelectionError> {
        for id in &self.only {
            let hits: Vec<String> = cells.iter().filter(|c| names(id, c)).map(|c| c.id.clone()).collect();
            match hits.len() {
                0 => return Err(SelectionError::NoSuchCell(id.clone())),
                1 => {}
                _ => return Err(SelectionError::SeveralCells { id: id.clone(), cells: hits }),
            }
        }
        if !cells.iter().any(|c| self.matches(c)) {
            return Err(SelectionError::NothingSelected);
        }
        Ok(())
    }
}

/// `id` is the cell's full id, or its id without the hash.
fn names(id: &str, cell: &Cell) -> bool {
    cell.id == id || cell.id.rsplit_once('-').is_some_and(|(name, _)| name == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_key_equals_glob_with_known_keys() {
        assert!(Selection::new(&["app=online-*".into(), "seed=[12]".into()], &[]).is_ok());
        for bad in ["app", "colour=red", "app=[x"] {
            let err = Selection::new(&[bad.to_string()], &[]).unwrap_err();
            assert!(err.to_string().starts_with("--filter"), "{err}");
        }
        assert!(Selection::default().is_everything());
    }
}
