//! The calibration file (experiments/calibration.yaml): which apps at which pod counts, the offered loads as
//! fractions of capacity, and how long each point runs.
//!
//! ```yaml
//! name: calibration
//! apps:
//!   - {name: calibration-classifier, pods: [1, 2, 3, 4]}
//!   - {name: calibration-cart, pods: [1, 2]}
//! loads: [0.1, 0.3, 0.5, 0.7, 0.9, 1.1]   # offered load / capacity of the pods
//! duration_s: 40
//! seed: 1
//! pod_concurrency: 1                      # worker threads per burning pod
//! local_agents: 1
//! paths: {apps: apps}                     # relative to this file
//! ```

use std::path::{Path, PathBuf};

use load_agent::yaml::{self, ConfigError};
use serde::Deserialize;

use crate::app::AppModel;

/// At most this many points (app × pods × load): each runs for real on the burning emulation.
const MAX_POINTS: usize = 400;
/// Longest run of one point.
const MAX_DURATION_S: u64 = 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: String,
    #[serde(default)]
    description: String,
    apps: Vec<AppEntry>,
    loads: Vec<f64>,
    duration_s: u64,
    #[serde(default = "one")]
    seed: u64,
    #[serde(default = "one_u32")]
    pod_concurrency: u32,
    #[serde(default = "one_u32")]
    local_agents: u32,
    #[serde(default)]
    paths: SpecPaths,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppEntry {
    name: String,
    pods: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecPaths {
    #[serde(default = "apps_dir")]
    apps: PathBuf,
}

impl Default for SpecPaths {
    fn default() -> Self {
        SpecPaths { apps: apps_dir() }
    }
}

fn one() -> u64 {
    1
}
fn one_u32() -> u32 {
    1
}
fn apps_dir() -> PathBuf {
    "apps".into()
}

/// A calibration file, checked, with its app models loaded.
#[derive(Debug, Clone)]
pub struct CalibrationSpec {
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    /// Each app with the pod counts it is measured at (each within the app's replica bounds).
    pub apps: Vec<(AppModel, Vec<u32>)>,
    pub apps_dir: PathBuf,
    /// Offered load as a fraction of the pods' capacity.
    pub loads: Vec<f64>,
    pub duration_s: u64,
    pub seed: u64,
    pub pod_concurrency: u32,
    pub local_agents: u32,
}

impl CalibrationSpec {
    pub fn load(file: &Path) -> Result<CalibrationSpec, ConfigError> {
        let raw: SpecFile = yaml::read_file(file)?;
        let error = |field: &str, message: String| ConfigError::new(file, field, message);
        if raw.name.is_empty() || !raw.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return Err(error("name", format!("{:?} must be letters, digits, '-' or '_'", raw.name)));
        }
        if raw.loads.is_empty() {
            return Err(error("loads", "list at least one load".into()));
        }
        for (i, load) in raw.loads.iter().enumerate() {
            if !(load.is_finite() && *load > 0.0 && *load <= 3.0) {
                return Err(error(&format!("loads[{i}]"), format!("{load} is not a fraction of capacity in (0, 3]")));
            }
        }
        if raw.duration_s < 5 || raw.duration_s > MAX_DURATION_S {
            return Err(error("duration_s", format!("{} s is not within 5..={MAX_DURATION_S}", raw.duration_s)));
        }
        if raw.pod_concurrency == 0 || raw.pod_concurrency > 64 {
            return Err(error("pod_concurrency", format!("{} is not within 1..=64", raw.pod_concurrency)));
        }
        if raw.local_agents == 0 || raw.local_agents > 16 {
            return Err(error("local_agents", format!("{} is not within 1..=16", raw.local_agents)));
        }
        if raw.apps.is_empty() {
            return Err(error("apps", "list at least one app".into()));
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let apps_dir = base.join(&raw.paths.apps);
        let mut apps = Vec::new();
        let mut points = 0;
        for (i, entry) in raw.apps.iter().enumerate() {
            let app = AppModel::load(&apps_dir.join(format!("{}.yaml", entry.name)))?;
            if entry.pods.is_empty() {
                return Err(error(&format!("apps[{i}].pods"), "list at least one pod count".into()));
            }
            // Every service runs `pods` pods (a static deployment), so each must allow that many.
            for (j, &pods) in entry.pods.iter().enumerate() {
                if let Some(s) = app.services.iter().find(|s| pods < s.replicas.min || pods > s.replicas.max) {
                    return Err(error(
                        &format!("apps[{i}].pods[{j}]"),
                        format!("{pods} pods is outside {}'s replicas {}..{}", s.name, s.replicas.min, s.replicas.max),
                    ));
                }
            }
            points += entry.pods.len() * raw.loads.len();
            apps.push((app, entry.pods.clone()));
        }
        if points > MAX_POINTS {
            return Err(error("apps", format!("{points} points (apps x pods x loads): at most {MAX_POINTS}")));
        }
        Ok(CalibrationSpec {
            file: file.to_path_buf(),
            name: raw.name,
            description: raw.description,
            apps,
            apps_dir,
            loads: raw.loads,
            duration_s: raw.duration_s,
            seed: raw.seed,
            pod_concurrency: raw.pod_concurrency,
            local_agents: raw.local_agents,
        })
    }
}
