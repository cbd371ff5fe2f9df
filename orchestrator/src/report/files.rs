//! Reads the JSON files of a run folder for the report, each as the type the runner writes it with ([`RunInfo`],
//! [`CellStatus`], [`CellSummary`]): a missing file is nothing, a corrupt one a warning or reason that names the
//! file and, where one is at fault, the field.
//!
//! [`RunInfo`]: crate::run_folder::RunInfo

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::cell::CellSummary;
use crate::run_folder::{CellState, CellStatus};

/// A cell's status.json as the report uses it.
pub(super) struct StatusFile {
    /// The state, when it is one this version knows.
    pub(super) state: Option<CellState>,
    /// The rest of the status, when it reads.
    pub(super) status: Option<CellStatus>,
    pub(super) gives: Gives,
}

/// status.json; `None` (with a warning) when the file is not a JSON object.
pub(super) fn read_status(path: &Path, warnings: &mut Vec<String>) -> Option<StatusFile> {
    let mut object = read_json_object(path, warnings)?;
    let state = object.get("state").cloned();
    let known = state.clone().and_then(|s| serde_json::from_value::<CellState>(s).ok());
    if known.is_none() {
        let word = state.as_ref().and_then(Json::as_str).unwrap_or("(none)");
        warnings.push(format!("status.json: unknown state {word:?}"));
        // The rest of a status whose state is not known here (written by a newer orch) is still worth reading.
        object.insert("state".into(), Json::from(CellState::Planned.name()));
    }
    let gives = Gives::of(&object);
    let status = match deserialize_object::<CellStatus>(object) {
        Ok(status) => Some(status),
        Err(e) => {
            warnings.push(format!("status.json: {}", describe(&e)));
            None
        }
    };
    Some(StatusFile { state: known, status, gives })
}

/// A cell's summary.json as the report uses it.
pub(super) struct SummaryFile {
    /// Every numeric field, by name.
    pub(super) figures: BTreeMap<String, f64>,
    pub(super) summary: CellSummary,
    pub(super) gives: Gives,
}

/// Whether a status or summary gives the cell's seed and backend: without them it reads as seed 0 and a default
/// backend, which must not overrule what config.yaml or the cell's id say.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gives {
    pub(super) seed: bool,
    pub(super) backend: bool,
}

impl Gives {
    fn of(object: &serde_json::Map<String, Json>) -> Gives {
        Gives { seed: object.contains_key("seed"), backend: object.contains_key("backend") }
    }
}

/// Why a cell's summary.json cannot be used; the report gives it as the reason the cell is incomplete.
#[derive(Debug, thiserror::Error)]
pub(super) enum SummaryError {
    #[error("summary.json is missing: the cell did not finish")]
    Missing,
    #[error("summary.json cannot be read: {0}")]
    Unreadable(std::io::Error),
    #[error("summary.json is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("summary.json is not a JSON object")]
    NotAnObject,
    #[error("summary.json: field `{0}` is null, not a number")]
    NullField(String),
    /// A headline figure (every field a summary cannot do without is one) is missing or not a number.
    #[error("summary.json: field `{0}` is missing or not a number")]
    NoFigure(String),
    /// Any other field that does not fit, as [`describe`] words it.
    #[error("summary.json: {0}")]
    BadField(String),
}

/// summary.json, or why it cannot be used.
pub(super) fn read_summary(path: &Path) -> Result<SummaryFile, SummaryError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SummaryError::Missing),
        Err(e) => return Err(SummaryError::Unreadable(e)),
    };
    let value: Json = serde_json::from_str(&text).map_err(SummaryError::NotJson)?;
    let Json::Object(object) = value else {
        return Err(SummaryError::NotAnObject);
    };
    // A figure written as null (NaN or infinity through JSON, by an older orch) is no figure at all.
    if let Some((field, _)) = object.iter().find(|(_, v)| v.is_null()) {
        return Err(SummaryError::NullField(field.clone()));
    }
    let figures = object.iter().filter_map(|(key, v)| v.as_f64().map(|v| (key.clone(), v))).collect();
    let gives = Gives::of(&object);
    let summary = deserialize_object::<CellSummary>(object).map_err(|e| match e.field() {
        // The fields a summary cannot do without are its headline figures: all numbers.
        Some(field) if e.is_missing() || e.wanted_a_number() => SummaryError::NoFigure(field),
        _ => SummaryError::BadField(describe(&e)),
    })?;
    Ok(SummaryFile { figures, summary, gives })
}

/// Why a JSON object does not read as the type of its file.
struct FieldError(serde_path_to_error::Error<serde_json::Error>);

impl FieldError {
    /// The field at fault: the one missing, or the one whose value does not fit.
    fn field(&self) -> Option<String> {
        if self.is_missing() {
            let message = self.0.inner().to_string();
            return message.strip_prefix("missing field `")?.split('`').next().map(String::from);
        }
        let path = self.0.path().to_string();
        (path != ".").then_some(path)
    }

    fn is_missing(&self) -> bool {
        self.0.inner().to_string().starts_with("missing field `")
    }

    fn wanted_a_number(&self) -> bool {
        let message = self.0.inner().to_string();
        message.ends_with("expected f64") || message.ends_with("expected u64")
    }
}

fn describe(e: &FieldError) -> String {
    match e.field() {
        Some(field) if !e.is_missing() => format!("field `{field}`: {}", e.0.inner()),
        _ => e.0.inner().to_string(),
    }
}

fn deserialize_object<T: DeserializeOwned>(object: serde_json::Map<String, Json>) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(Json::Object(object)).map_err(FieldError)
}

/// A JSON object file as `T`; a missing file is `None` silently, a corrupt one is `None` with a warning.
pub(super) fn read_typed<T: DeserializeOwned>(path: &Path, warnings: &mut Vec<String>) -> Option<T> {
    let object = read_json_object(path, warnings)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    deserialize_object(object).map_err(|e| warnings.push(format!("{name}: {}", describe(&e)))).ok()
}

/// A text field of a file, where empty means the file does not say.
pub(super) fn said(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// A JSON object file; a missing file is `None` silently, a corrupt one is `None` with a warning.
fn read_json_object(path: &Path, warnings: &mut Vec<String>) -> Option<serde_json::Map<String, Json>> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = fs::read_to_string(path).ok()?;
    match serde_json::from_str::<Json>(&text) {
        Ok(Json::Object(object)) => Some(object),
        Ok(_) => {
            warnings.push(format!("{name}: not a JSON object"));
            None
        }
        Err(e) => {
            warnings.push(format!("{name}: not valid JSON: {e}"));
            None
        }
    }
}
