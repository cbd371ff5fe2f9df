//! Experiment matrices: parse, resolve every file they name, validate, and expand into cells.
//!
//! ```yaml
//! name: main
//! apps: [online-boutique, redis-cluster]     # experiments/apps/<app>.yaml; every axis takes a value or a list
//! scenarios: [peak, rushsale]                # experiments/scenarios/<app>/<scenario>.yaml
//! policies:
//!   - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}   # baselines/<app>/hpa-cpu-60.yaml
//!   - {name: static-max, kind: static, replicas: max}
//! seeds: [1, 2, 3]
//! backend: sim
//! exclude: [{app: redis-cluster, policy: static-max}]            # partial match, globs allowed
//! include: [{app: online-boutique, slo: {threshold_ms: 80}}]     # merged into matching cells, else added
//! defaults: {timeout: 10m}
//! overrides: {app: {redis-cluster: {slo: {threshold_ms: 5}}}}
//! strategy: {max_parallel: 2, fail_fast: false, max_failures: 5, retries: 2, retry_backoff: 1s, timeout: 1h}
//! report: {baseline: hpa-cpu-60}
//! simulator: {cpu: cfs, percentiles: sampled}                   # the simulator's model (settings::simulator)
//! ```
//!
//! Expansion follows GitHub Actions' matrix rules (see [`crate::matrix::combinations`]); a cell's settings are layered
//! `defaults`, then `overrides` by axis (app, policy, scenario, seed, backend), then the include entries merged
//! into it, later layers replacing the fields they set.
//!
//! The parts: `file` the file as written, `axes` its axes and the typed combination, [`combinations`] the
//! expansion rules, `layers` a cell's settings, `policies` and [`rl_policy`] the policy entries (`manifests`: HPA
//! manifests checked against their app), `resolve` the whole into cells, [`executor`] where they run.

mod axes;
pub mod combinations;
pub mod executor;
mod file;
mod layers;
mod manifests;
mod policies;
mod resolve;
pub mod rl_policy;

use std::path::{Path, PathBuf};
use std::time::Duration;

use load_agent::yaml::{self, ConfigError};
use serde_json::Value;

use crate::cell::Cell;
use crate::limits;
use crate::settings::emulated::EmulatedRun;

pub use file::AxisKey;
pub use file::{CellSettings, MatrixFile, Overrides, Paths, PolicyKind, PolicySpec, ReportSpec, SloOverride, Strategy};

/// A cell's timeout when neither the strategy nor its settings give one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The wait before the first retry of a transient failure; it doubles with every further retry.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// The strategy as the runner applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionStrategy {
    pub max_failures: Option<u32>,
    pub retries: u32,
    pub retry_backoff: Duration,
}

/// A parsed, validated and expanded matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub file: PathBuf,
    pub name: String,
    pub max_parallel: usize,
    pub strategy: ExecutionStrategy,
    /// `report.baseline`: a policy name.
    pub baseline: Option<String>,
    /// In plan order: the axes' product in axis order, then cells added by `include`.
    pub cells: Vec<Cell>,
    /// Where emulated cells get their load from, when any cell is emulated.
    pub emulated: Option<EmulatedRun>,
    /// The cluster and load of kubernetes cells, when any cell runs on one.
    pub kubernetes: Option<crate::backends::kubernetes::settings::KubernetesRun>,
    /// `executor: kubernetes`: cells run as Jobs.
    pub executor: Option<executor::JobExecutor>,
}

impl Matrix {
    /// Loads `path` and everything it names. Any problem is one error naming the file and field.
    pub fn load(path: &Path) -> Result<Matrix, ConfigError> {
        let mut cells = Vec::new();
        let mut matrix = Matrix::load_each(path, &mut |cell| cells.push(cell))?;
        matrix.cells = cells;
        Ok(matrix)
    }

    /// [`Matrix::load`] that hands each cell to `on_cell` as soon as it is resolved, in plan order, and keeps none
    /// (`cells` is empty): what `orch plan` prints, in memory that does not grow with the cells. Every file is read
    /// and checked before the first cell is handed on, so an error comes before any cell.
    pub fn load_each(path: &Path, on_cell: &mut dyn FnMut(Cell)) -> Result<Matrix, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read matrix: {e}")))?;
        limits::check_matrix_size(&text, path)?;
        let mut tree: Value = yaml::from_str(&text, path)?;
        // Top-level `x-` keys hold YAML anchors for later aliases, as in Compose files; they are not settings.
        if let Value::Object(map) = &mut tree {
            map.retain(|key, _| !key.starts_with("x-"));
        }
        let file: MatrixFile = file::typed(tree, path, "")?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve::resolve(file, path, base, on_cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::CellConfig;
    use crate::cell::config::canonical;
    use crate::cell::config_hash;
    use sha2::{Digest, Sha256};

    /// The definition of the hash: the canonical JSON of the whole config, policy paths left out.
    fn reference_hash(config: &CellConfig) -> String {
        let mut tree = serde_json::to_value(config).expect("cell config serializes");
        if let Some(Value::Object(policy)) = tree.get_mut("policy") {
            policy.retain(|key, _| !key.ends_with("_file"));
        }
        let json = serde_json::to_vec(&canonical(tree)).expect("cell config serializes");
        Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn ids_put_together_from_shared_parts_hash_the_whole_config() {
        let experiments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let mut checked = 0;
        for matrix in ["quick.yaml", "matrix.yaml", "emulated.yaml", "kubernetes.yaml", "rl-quality.yaml"] {
            let matrix = Matrix::load(&experiments.join(matrix)).unwrap();
            for cell in &matrix.cells {
                let reference = reference_hash(&cell.config);
                assert_eq!(config_hash(&cell.config), reference);
                assert!(cell.id.ends_with(&format!("-{}", &reference[..8])), "{}", cell.id);
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked} cells");
    }
}
