//! The matrix's `executor:` section: where cells run. `local` (the default) runs each cell as an `orch cell`
//! process here; `kubernetes` runs each attempt as a Kubernetes Job ([`crate::run::executor::kubernetes_jobs`]).
//!
//! ```yaml
//! executor:
//!   kind: kubernetes                 # default: local
//!   namespace: orch-runs
//!   image: registry.example.org/orch:3f2c1e0    # built from run.json's git_commit
//!   service_account: orch-cell
//!   resources: {cpu: "1", memory: 1Gi}          # requests = limits of the cell's pod
//!   results: {pvc: orch-results}                # ReadWriteMany claim, mounted here as the logs directory
//!   ttl_after_finished: 1h
//!   # kubeconfig, context: as kubernetes.kubeconfig / .context [default: kubectl's]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use load_agent::yaml::ConfigError;
use serde::{Deserialize, Serialize};

use crate::duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Kubernetes,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    #[serde(default)]
    pub kind: ExecutorKind,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub resources: Option<ResourcesSection>,
    #[serde(default)]
    pub results: Option<ResultsSection>,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub ttl_after_finished: Option<Duration>,
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSection {
    pub cpu: String,
    pub memory: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsSection {
    #[serde(default)]
    pub pvc: Option<String>,
    #[serde(default)]
    pub collect: Option<bool>,
}

/// The resolved executor, as `orch cell-job` reads it from the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobExecutor {
    pub namespace: String,
    pub image: String,
    pub service_account: Option<String>,
    pub cpu: String,
    pub memory: String,
    pub pvc: String,
    pub ttl_after_finished_s: Option<u64>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// activeDeadlineSeconds of every Job: the longest cell timeout plus a minute.
    pub deadline_s: u64,
    /// Variables passed to the cells' containers (set when `orch run` started).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Resolves `executor:`; `None` for the local executor.
pub fn resolve(
    section: Option<&ExecutorSection>,
    longest_timeout: Duration,
    file: &Path,
) -> Result<Option<JobExecutor>, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(file, field, message);
    let Some(section) = section.filter(|s| s.kind == ExecutorKind::Kubernetes) else {
        if let Some(s) = section
            && (s.image.is_some() || s.namespace.is_some() || s.results.is_some())
        {
            return Err(err(
                "executor.kind",
                "the local executor takes no other settings; say kind: kubernetes".into(),
            ));
        }
        return Ok(None);
    };
    let namespace = section.namespace.clone().unwrap_or_else(|| "default".into());
    if !is_dns_label(&namespace) {
        return Err(err("executor.namespace", format!("{namespace:?} is not a namespace name")));
    }
    let Some(image) = section.image.clone().filter(|i| !i.trim().is_empty()) else {
        return Err(err("executor.image", "missing: the image with orch, built from this commit".into()));
    };
    let pvc = match &section.results {
        Some(ResultsSection { pvc: Some(pvc), collect: None | Some(false) }) if is_dns_label(pvc) => pvc.clone(),
        Some(ResultsSection { pvc: Some(pvc), collect: None | Some(false) }) => {
            return Err(err("executor.results.pvc", format!("{pvc:?} is not a claim name")));
        }
        Some(ResultsSection { collect: Some(true), .. }) => {
            return Err(err(
                "executor.results.collect",
                "collecting results through exec is not built; give a ReadWriteMany claim as results.pvc".into(),
            ));
        }
        _ => return Err(err("executor.results", "missing: {pvc: CLAIM}, the claim holding the run folders".into())),
    };
    let resources = section.resources.clone().unwrap_or(ResourcesSection { cpu: "1".into(), memory: "1Gi".into() });
    for (field, value) in [("cpu", &resources.cpu), ("memory", &resources.memory)] {
        crate::hpa::Quantity::parse(value)
            .map_err(|e| err(&format!("executor.resources.{field}"), format!("{value:?}: {e}")))?;
    }
    Ok(Some(JobExecutor {
        namespace,
        image,
        service_account: section.service_account.clone(),
        cpu: resources.cpu,
        memory: resources.memory,
        pvc,
        ttl_after_finished_s: section.ttl_after_finished.map(|d| d.as_secs()),
        kubeconfig: section.kubeconfig.as_ref().map(|p| file.parent().unwrap_or(Path::new(".")).join(p)),
        context: section.context.clone(),
        deadline_s: longest_timeout.as_secs().saturating_add(60),
        env: BTreeMap::new(),
    }))
}

pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
