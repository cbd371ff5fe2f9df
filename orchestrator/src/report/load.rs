//! Reads a run folder (logs/<run-tag>/) into what the report shows: the run's metadata and, per cell, its
//! identity, state and summary. Files other branches of the tool add over time (run.json, status.json,
//! training.csv, agents/) are used when present; a cell whose files are missing or corrupt is kept, marked
//! incomplete, with the reason. [`super::files`] reads each file as the type the runner writes it with.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;
use serde_yaml::Value as Yaml;
use sha2::{Digest, Sha256};

use super::files::{Gives, StatusFile, SummaryFile, read_status, read_summary, read_typed, said};
pub use crate::run_folder::CellState;
use crate::run_folder::{
    AGENTS_JSON, CONFIG_YAML, EVENTS_JSONL, MATRIX_YAML, METRICS_CSV, RUN_JSON, RUN_LOG, RunInfo, STATUS_JSON,
    SUMMARY_CSV, SUMMARY_JSON, TRAINING_CSV,
};

/// Files of a cell folder the report links to, when they exist.
pub const CELL_FILES: [&str; 8] =
    [CONFIG_YAML, RUN_LOG, METRICS_CSV, SUMMARY_JSON, STATUS_JSON, EVENTS_JSONL, TRAINING_CSV, AGENTS_JSON];

/// Where the run's start and end times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimesFrom {
    RunJson,
    CellStatus,
    FileTimes,
    Unknown,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunMeta {
    pub matrix_name: Option<String>,
    pub matrix_file: Option<String>,
    pub matrix_sha256: Option<String>,
    pub git_commit: Option<String>,
    pub host: Option<String>,
    pub orch_version: Option<String>,
    pub started_unix_s: Option<f64>,
    pub finished_unix_s: Option<f64>,
    pub times_from: Option<TimesFrom>,
    /// run.json's `baseline`.
    pub baseline: Option<String>,
}

/// The latency objective of a cell's app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloInfo {
    pub route: String,
    pub percentile: f64,
    pub threshold_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellRecord {
    pub id: String,
    #[serde(skip)]
    pub dir: PathBuf,
    pub app: String,
    pub policy: String,
    pub policy_kind: Option<String>,
    pub scenario: String,
    pub seed: Option<u64>,
    pub backend: String,
    pub state: CellState,
    /// Why the cell is not in the statistics (failed, corrupt, missing files).
    pub reason: Option<String>,
    /// Last lines of run.log for a failed cell (from status.json).
    pub log_tail: Vec<String>,
    /// Problems with files that do not keep the cell out of the statistics.
    pub warnings: Vec<String>,
    pub started_unix_s: Option<f64>,
    pub finished_unix_s: Option<f64>,
    /// Numeric fields of summary.json; present only for a complete cell.
    pub summary: Option<BTreeMap<String, f64>>,
    pub slo: Option<SloInfo>,
    /// The files of CELL_FILES that exist, and agents/<name>/ folders.
    pub files: Vec<String>,
    pub agents: Vec<String>,
    /// The service graph from config.yaml, or why it cannot be drawn.
    #[serde(skip)]
    pub topology: Option<Result<super::graph::Topology, super::graph::TopologyError>>,
}

impl CellRecord {
    /// In the statistics: succeeded (or no status at all) with a valid summary.
    pub fn is_complete(&self) -> bool {
        self.state == CellState::Succeeded && self.summary.is_some()
    }

    /// A figure of summary.json; dust counts as zero, so that 1e-15 % failures against 0 % is a tie, not a
    /// verdict.
    pub fn metric(&self, key: &str) -> Option<f64> {
        let value = self.summary.as_ref()?.get(key).copied().filter(|v| v.is_finite())?;
        Some(if value.abs() < super::format::DUST { 0.0 } else { value })
    }

    /// What identifies a cell up to its backend: a sim cell and its emulated twin share it.
    pub fn twin_key(&self) -> Option<(String, String, String, u64)> {
        Some((self.app.clone(), self.policy.clone(), self.scenario.clone(), self.seed?))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunFolder {
    #[serde(skip)]
    pub dir: PathBuf,
    pub tag: String,
    pub meta: RunMeta,
    /// Policy names in the matrix's order, with their kinds where known.
    pub policies: Vec<(String, Option<String>)>,
    /// The matrix copy's `report.baseline`.
    pub matrix_baseline: Option<String>,
    pub cells: Vec<CellRecord>,
    /// Problems with run-level files.
    pub warnings: Vec<String>,
}

/// Where the baseline policy name was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineFrom {
    RunJson,
    MatrixReport,
    FirstHpaPolicy,
}

impl RunFolder {
    /// The policy verdicts are judged against: run.json's `baseline`, else the matrix's `report.baseline`, else
    /// the first hpa policy.
    pub fn baseline(&self) -> Option<(String, BaselineFrom)> {
        if let Some(name) = &self.meta.baseline {
            return Some((name.clone(), BaselineFrom::RunJson));
        }
        if let Some(name) = &self.matrix_baseline {
            return Some((name.clone(), BaselineFrom::MatrixReport));
        }
        let hpa = |kind: &Option<String>| kind.as_deref() == Some("hpa");
        if let Some((name, _)) = self.policies.iter().find(|(_, kind)| hpa(kind)) {
            return Some((name.clone(), BaselineFrom::FirstHpaPolicy));
        }
        self.cells.iter().find(|c| hpa(&c.policy_kind)).map(|c| (c.policy.clone(), BaselineFrom::FirstHpaPolicy))
    }

    /// Policy names: the matrix's order first, then any others the cells name, alphabetically.
    pub fn policy_order(&self) -> Vec<String> {
        let mut names: Vec<String> = self.policies.iter().map(|(name, _)| name.clone()).collect();
        let mut others: Vec<String> =
            self.cells.iter().map(|c| c.policy.clone()).filter(|p| !names.contains(p)).collect();
        others.sort();
        others.dedup();
        names.extend(others);
        names
    }
}

/// Reads `dir`. Fails only when `dir` is not a run folder at all; anything wrong inside is reported in place.
pub fn read_run(dir: &Path) -> Result<RunFolder> {
    if !dir.is_dir() {
        bail!("{} is not a directory (expected a run folder such as logs/<run-tag>)", dir.display());
    }
    let tag = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let mut warnings = Vec::new();
    let run_json: Option<RunInfo> = read_typed(&dir.join(RUN_JSON), &mut warnings);
    let matrix_path = dir.join(MATRIX_YAML);
    let matrix_text = fs::read_to_string(&matrix_path).ok();
    let matrix: Option<Yaml> = matrix_text.as_deref().and_then(|text| match serde_yaml::from_str(text) {
        Ok(value) => Some(value),
        Err(e) => {
            warnings.push(format!("matrix.yaml: not valid YAML: {e}"));
            None
        }
    });

    let mut meta = RunMeta::default();
    if let Some(run) = &run_json {
        meta.matrix_name = said(&run.matrix_name);
        meta.matrix_file = said(&run.matrix_file);
        meta.matrix_sha256 = said(&run.matrix_sha256);
        meta.git_commit = run.git_commit.clone();
        meta.host = said(&run.host);
        meta.orch_version = said(&run.orch_version);
        // Time 0 is what a run.json that does not say reads as.
        meta.started_unix_s = Some(run.started_unix_s).filter(|&t| t > 0.0);
        meta.finished_unix_s = run.finished_unix_s;
        meta.baseline = run.baseline.clone();
        if meta.started_unix_s.is_some() {
            meta.times_from = Some(TimesFrom::RunJson);
        }
    }
    if let Some(text) = &matrix_text {
        if meta.matrix_sha256.is_none() {
            meta.matrix_sha256 = Some(hex(&Sha256::digest(text.as_bytes())));
        }
        if meta.matrix_file.is_none() {
            meta.matrix_file = Some("matrix.yaml (the copy in the run folder)".into());
        }
    }
    let mut policies = Vec::new();
    let mut matrix_baseline = None;
    if let Some(matrix) = &matrix {
        if meta.matrix_name.is_none() {
            meta.matrix_name = matrix.get("name").and_then(Yaml::as_str).map(String::from);
        }
        if let Some(list) = matrix.get("policies").and_then(Yaml::as_sequence) {
            for policy in list {
                if let Some(name) = policy.get("name").and_then(Yaml::as_str) {
                    policies.push((name.to_string(), policy.get("kind").and_then(Yaml::as_str).map(String::from)));
                }
            }
        }
        matrix_baseline = matrix.get("report").and_then(|r| r.get("baseline")).and_then(Yaml::as_str).map(String::from);
    }

    let mut planned: Vec<String> = run_json.map(|run| run.cells).unwrap_or_default();
    // An id names a folder of this run and, in the report, a page file: it must be one plain path component.
    if let Some(bad) = planned.iter().find(|id| !is_plain_component(id)) {
        warnings.push(format!("run.json: cell id {bad:?} is not a folder name; ids like it are left out"));
    }
    planned.retain(|id| is_plain_component(id));
    let mut ids = planned.clone();
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && looks_like_cell(&path) && !ids.contains(&name) {
            found.push(name);
        }
    }
    found.sort();
    ids.extend(found);
    if ids.is_empty() && matrix_text.is_none() {
        bail!("{} is not a run folder: it has no matrix.yaml, run.json or cell folders", dir.display());
    }
    let cells: Vec<CellRecord> = super::parallel_map(&ids, |id| read_cell(&dir.join(id), id));

    if meta.started_unix_s.is_none() {
        let started = cells.iter().filter_map(|c| c.started_unix_s).reduce(f64::min);
        let finished = cells.iter().filter_map(|c| c.finished_unix_s).reduce(f64::max);
        if started.is_some() {
            meta.started_unix_s = started;
            meta.finished_unix_s = finished;
            meta.times_from = Some(TimesFrom::CellStatus);
        } else {
            // Older runs: the matrix copy is written first and summary.csv last.
            meta.started_unix_s = modified_unix_s(&matrix_path);
            meta.finished_unix_s = modified_unix_s(&dir.join(SUMMARY_CSV));
            meta.times_from =
                Some(if meta.started_unix_s.is_some() { TimesFrom::FileTimes } else { TimesFrom::Unknown });
        }
    }
    Ok(RunFolder { dir: dir.to_path_buf(), tag, meta, policies, matrix_baseline, cells, warnings })
}

fn is_plain_component(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\', '\0'])
}

fn looks_like_cell(dir: &Path) -> bool {
    [CONFIG_YAML, SUMMARY_JSON, STATUS_JSON, METRICS_CSV, RUN_LOG].iter().any(|f| dir.join(f).is_file())
}

/// Reads one cell folder; never fails, records what is wrong instead.
pub fn read_cell(dir: &Path, id: &str) -> CellRecord {
    let mut cell = CellRecord {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        app: String::new(),
        policy: String::new(),
        policy_kind: None,
        scenario: String::new(),
        seed: None,
        backend: "sim".to_string(),
        state: CellState::Succeeded,
        reason: None,
        log_tail: Vec::new(),
        warnings: Vec::new(),
        started_unix_s: None,
        finished_unix_s: None,
        summary: None,
        slo: None,
        files: Vec::new(),
        agents: Vec::new(),
        topology: None,
    };
    if !dir.is_dir() {
        cell.state = CellState::Incomplete;
        cell.reason = Some("no folder: the cell never started".into());
        fill_identity_from_id(&mut cell);
        return cell;
    }
    cell.files = CELL_FILES.iter().filter(|f| dir.join(f).is_file()).map(|f| f.to_string()).collect();
    cell.agents = list_agents(dir);

    // Identity and app facts from the resolved config.
    match fs::read_to_string(dir.join(CONFIG_YAML)) {
        Ok(text) => match serde_yaml::from_str::<Yaml>(&text) {
            Ok(config) => {
                apply_config(&mut cell, &config);
                cell.topology = Some(super::graph::topology(&config));
            }
            Err(e) => cell.warnings.push(format!("config.yaml: not valid YAML: {e}")),
        },
        Err(_) => cell.warnings.push("config.yaml is missing".into()),
    }

    // Lifecycle from status.json, when the runner writes one.
    let mut status_state = None;
    if dir.join(STATUS_JSON).is_file() {
        let mut problems = Vec::new();
        if let Some(StatusFile { state, status, gives }) = read_status(&dir.join(STATUS_JSON), &mut problems) {
            status_state = state;
            if let Some(status) = status {
                cell.started_unix_s = status.started_unix_s;
                cell.finished_unix_s = status.finished_unix_s;
                if let Some(error) = status.error {
                    cell.reason = Some(error);
                }
                cell.log_tail = status.log_tail;
                let said_here = Identity { app: &status.app, policy: &status.policy, scenario: &status.scenario };
                fill_identity(&mut cell, said_here, status.seed, status.backend, gives);
            }
        }
        cell.warnings.extend(problems);
    }

    // The figures.
    let summary = read_summary(&dir.join(SUMMARY_JSON));
    match (&summary, status_state) {
        (Ok(file), None | Some(CellState::Succeeded)) => {
            cell.summary = Some(file.figures.clone());
            cell.state = CellState::Succeeded;
        }
        (Err(problem), None | Some(CellState::Succeeded)) => {
            cell.state = CellState::Incomplete;
            cell.reason = Some(problem.to_string());
        }
        (_, Some(state)) => {
            cell.state = state;
            if cell.reason.is_none() {
                cell.reason = Some(match state {
                    CellState::Running => "still running when the report was made".into(),
                    CellState::Planned => "not started".into(),
                    CellState::Cancelled => "cancelled".into(),
                    CellState::Skipped => "skipped".into(),
                    _ => "failed without an error message".into(),
                });
            }
        }
    }
    if let Ok(SummaryFile { summary, gives, .. }) = summary {
        let said_here = Identity { app: &summary.app, policy: &summary.policy, scenario: &summary.scenario };
        fill_identity(&mut cell, said_here, summary.seed, summary.backend, gives);
    }
    fill_identity_from_id(&mut cell);
    if cell.is_complete() && !dir.join(METRICS_CSV).is_file() {
        cell.warnings.push("metrics.csv is missing: no time series".into());
    }
    cell
}

fn apply_config(cell: &mut CellRecord, config: &Yaml) {
    let text = |value: Option<&Yaml>| value.and_then(Yaml::as_str).map(String::from);
    if let Some(backend) = text(config.get("backend")) {
        cell.backend = backend;
    }
    cell.seed = config.get("seed").and_then(Yaml::as_u64);
    if let Some(app) = config.get("app") {
        fill_if_empty(&mut cell.app, text(app.get("name")));
        if let Some(slo) = app.get("slo") {
            let number = |key: &str| slo.get(key).and_then(Yaml::as_f64);
            if let (Some(route), Some(percentile), Some(threshold_ms)) =
                (text(slo.get("route")), number("percentile"), number("threshold_ms"))
            {
                cell.slo = Some(SloInfo { route, percentile, threshold_ms });
            }
        }
    }
    fill_if_empty(&mut cell.scenario, text(config.get("scenario").and_then(|s| s.get("name"))));
    if let Some(policy) = config.get("policy") {
        fill_if_empty(&mut cell.policy, text(policy.get("name")));
        cell.policy_kind = text(policy.get("kind"));
    }
}

/// Falls back on the id's readable part, `<app>.<policy>.<scenario>.s<seed>-<hash>`.
fn fill_identity_from_id(cell: &mut CellRecord) {
    let readable = cell.id.rsplit_once('-').map_or(cell.id.as_str(), |(head, _)| head);
    let parts: Vec<&str> = readable.split('.').collect();
    if let [app, policy, scenario, seed] = parts[..] {
        fill_if_empty(&mut cell.app, Some(app.to_string()));
        fill_if_empty(&mut cell.policy, Some(policy.to_string()));
        fill_if_empty(&mut cell.scenario, Some(scenario.to_string()));
        if cell.seed.is_none() {
            cell.seed = seed.strip_prefix('s').and_then(|s| s.parse().ok());
        }
    }
    for field in [&mut cell.app, &mut cell.policy, &mut cell.scenario] {
        if field.is_empty() {
            *field = "(unknown)".into();
        }
    }
}

/// The names a status.json or summary.json gives its cell.
struct Identity<'a> {
    app: &'a str,
    policy: &'a str,
    scenario: &'a str,
}

/// Names fill only what is still empty; seed and backend count only when the file gives them.
fn fill_identity(cell: &mut CellRecord, said_here: Identity<'_>, seed: u64, backend: String, gives: Gives) {
    fill_if_empty(&mut cell.app, said(said_here.app));
    fill_if_empty(&mut cell.policy, said(said_here.policy));
    fill_if_empty(&mut cell.scenario, said(said_here.scenario));
    if cell.seed.is_none() && gives.seed {
        cell.seed = Some(seed);
    }
    if gives.backend {
        cell.backend = backend;
    }
}

fn fill_if_empty(field: &mut String, value: Option<String>) {
    if field.is_empty()
        && let Some(value) = value
    {
        *field = value;
    }
}

fn list_agents(dir: &Path) -> Vec<String> {
    let mut agents: Vec<String> = fs::read_dir(dir.join("agents"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    agents.sort();
    agents
}

fn modified_unix_s(path: &Path) -> Option<f64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::*;

    /// A summary.json's fields as orch writes them, every figure 1.
    fn summary_fields() -> serde_json::Map<String, Json> {
        let mut summary = serde_json::json!({"seed": 1, "duration_s": 60, "scaling_actions": 1});
        // Every figure but the count of scaling actions (an integer, set above).
        for figure in crate::cell::CellSummary::FIGURE_NAMES.iter().filter(|f| **f != "scaling_actions") {
            summary[*figure] = 1.0.into();
        }
        let Json::Object(summary) = summary else { unreachable!() };
        summary
    }

    #[test]
    fn identity_falls_back_on_the_cell_id() {
        let dir = tempfile::tempdir().unwrap();
        let cell = read_cell(&dir.path().join("nothing"), "online-boutique.hpa-cpu-60.peak.s3-0123abcd");
        assert_eq!(cell.state, CellState::Incomplete);
        assert_eq!(
            (cell.app.as_str(), cell.policy.as_str(), cell.scenario.as_str()),
            ("online-boutique", "hpa-cpu-60", "peak")
        );
        assert_eq!(cell.seed, Some(3));
        assert!(cell.reason.unwrap().contains("never started"));
    }

    #[test]
    fn run_json_ids_that_are_not_folder_names_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("matrix.yaml"), "name: m\n").unwrap();
        fs::write(dir.path().join("run.json"), r#"{"cells": ["../../escape", "ok.cell.s1-00000000", "..", "a\\b"]}"#)
            .unwrap();
        let run = read_run(dir.path()).unwrap();
        let ids: Vec<&str> = run.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["ok.cell.s1-00000000"]);
        assert!(run.warnings[0].contains("../../escape"), "{:?}", run.warnings);
    }

    #[test]
    fn a_summary_without_a_required_field_is_corrupt_and_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("summary.json"), r#"{"pod_minutes": 1.0}"#).unwrap();
        let cell = read_cell(dir.path(), "a.b.c.s1-00000000");
        assert_eq!(cell.state, CellState::Incomplete);
        assert!(cell.reason.unwrap().contains("`cpu_core_hours`"));
    }

    #[test]
    fn a_summary_with_a_null_figure_is_incomplete_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut summary = summary_fields();
        summary.insert("overall_p95_ms".into(), Json::Null);
        fs::write(dir.path().join("summary.json"), Json::Object(summary).to_string()).unwrap();
        let cell = read_cell(dir.path(), "a.b.c.s1-00000000");
        assert_eq!(cell.state, CellState::Incomplete);
        assert_eq!(cell.reason.as_deref(), Some("summary.json: field `overall_p95_ms` is null, not a number"));
    }

    #[test]
    fn floating_point_dust_in_a_summary_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut summary = summary_fields();
        summary.insert("failure_pct".into(), Json::from(7.6e-15));
        summary.insert("slo_violation_seconds_pct".into(), Json::from(-2e-12));
        summary.insert("mean_reward".into(), Json::from(-3e-4));
        fs::write(dir.path().join("summary.json"), Json::Object(summary).to_string()).unwrap();
        let cell = read_cell(dir.path(), "a.b.c.s1-00000000");
        assert_eq!(cell.metric("failure_pct"), Some(0.0));
        assert_eq!(cell.metric("slo_violation_seconds_pct"), Some(0.0));
        assert_eq!(cell.metric("mean_reward"), Some(-3e-4), "a small figure above the dust is kept");
        assert_eq!(cell.metric("pod_minutes"), Some(1.0));
    }

    #[test]
    fn a_summary_with_only_its_headline_figures_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let headline = [
            "pod_minutes",
            "cpu_core_hours",
            "slo_violation_seconds_pct",
            "slo_violation_requests_pct",
            "slo_p50_ms",
            "slo_p95_ms",
            "slo_p99_ms",
            "failure_pct",
            "scaling_actions",
        ];
        let summary: serde_json::Map<String, Json> = headline.iter().map(|f| (f.to_string(), Json::from(2))).collect();
        fs::write(dir.path().join(SUMMARY_JSON), Json::Object(summary).to_string()).unwrap();
        let cell = read_cell(dir.path(), "a.b.c.s1-00000000");
        assert!(cell.is_complete(), "{:?}", cell.reason);
        assert_eq!(cell.metric("scaling_actions"), Some(2.0));
        assert_eq!(cell.metric("overall_p95_ms"), None, "a figure the file does not have stays absent");
        assert_eq!(cell.seed, Some(1), "the seed comes from the id");
    }

    #[test]
    fn a_status_with_a_state_unknown_here_is_named_and_the_rest_still_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SUMMARY_JSON), Json::Object(summary_fields()).to_string()).unwrap();
        fs::write(
            dir.path().join(STATUS_JSON),
            r#"{"state":"incomplete","started_unix_s":5.0,"error":"held","app":"a","policy":"p","scenario":"s","seed":2,"backend":"emulated"}"#,
        )
        .unwrap();
        let cell = read_cell(dir.path(), "whatever");
        assert!(
            cell.warnings.contains(&r#"status.json: unknown state "incomplete""#.to_string()),
            "{:?}",
            cell.warnings
        );
        assert_eq!(cell.state, CellState::Succeeded, "the summary decides");
        assert_eq!((cell.started_unix_s, cell.reason.as_deref()), (Some(5.0), Some("held")));
        assert_eq!((cell.app.as_str(), cell.backend.as_str()), ("a", "emulated"));
    }

    #[test]
    fn a_failed_status_wins_over_a_summary_and_keeps_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let summary = summary_fields();
        fs::write(dir.path().join("summary.json"), Json::Object(summary).to_string()).unwrap();
        fs::write(
            dir.path().join("status.json"),
            r#"{"format":1,"state":"failed","error":"backend died","log_tail":["x"],"app":"a","policy":"p","scenario":"s","seed":2,"backend":"emulated"}"#,
        )
        .unwrap();
        let cell = read_cell(dir.path(), "whatever");
        assert_eq!(cell.state, CellState::Failed);
        assert_eq!(cell.reason.as_deref(), Some("backend died"));
        assert_eq!(cell.log_tail, vec!["x".to_string()]);
        assert_eq!((cell.app.as_str(), cell.backend.as_str(), cell.seed), ("a", "emulated", Some(2)));
        assert!(!cell.is_complete());
    }
}
