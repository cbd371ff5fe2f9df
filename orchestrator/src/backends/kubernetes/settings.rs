//! The matrix's `kubernetes:` section: which cluster, where the load goes, what may be taken over. It is run
//! infrastructure, not part of any cell's config or id: the same cells can run against a staging and a lab cluster.
//!
//! ```yaml
//! backend: kubernetes
//! kubernetes:
//!   context: lab                      # kubeconfig context [default: the current one]
//!   kubeconfig: ~/.kube/lab.yaml      # [default: as kubectl: KUBECONFIG, ~/.kube/config, in-cluster]
//!   target: http://frontend.online-boutique.svc:80   # where the load agents send requests (required)
//!   prometheus: http://127.0.0.1:9090 # Istio/Linkerd and cAdvisor queries; without it, API figures only
//!   take_over: false                  # true: suspend another controller of a target deployment for the cell
//!   readiness_timeout: 5m             # replicas reset before a cell must be ready within this
//!   agents: {local: 2}                # or {urls: [...], token_env: ORCH_AGENT_TOKEN}, as `emulated.agents`
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use load_agent::engine::Target;
use load_agent::yaml::ConfigError;
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::settings::emulated::{self as emulated_settings, AgentSource, AgentsSection, AgentsSetup, OnLoss};

/// The run folder's copy of the run's [`KubernetesRun`], read by the `orch cell` processes.
pub const RUN_FILE: &str = "kubernetes-run.json";
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub prometheus: Option<String>,
    #[serde(default)]
    pub take_over: bool,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub readiness_timeout: Option<Duration>,
    #[serde(default)]
    pub agents: Option<AgentsSection>,
}

/// Everything a kubernetes cell needs beyond its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubernetesRun {
    pub context: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    /// The app's entry point as the agents reach it.
    pub target: String,
    pub prometheus: Option<String>,
    pub take_over: bool,
    pub readiness_timeout_s: f64,
    pub agents: AgentSource,
    pub on_loss: OnLoss,
    pub load_agent_bin: Option<PathBuf>,
    /// Print the API calls that would change the cluster instead of making them.
    #[serde(default)]
    pub dry_run: bool,
}

impl KubernetesRun {
    pub fn agents_setup(&self) -> AgentsSetup<'_> {
        AgentsSetup { source: &self.agents, on_loss: self.on_loss, load_agent_bin: self.load_agent_bin.as_deref() }
    }

    pub fn readiness_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.readiness_timeout_s)
    }
}

/// Resolves the section; `uses_kubernetes` says whether any cell runs on the kubernetes backend.
pub fn resolve(
    section: Option<&KubernetesSection>,
    uses_kubernetes: bool,
    file: &Path,
) -> Result<Option<KubernetesRun>, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(file, field, message);
    let Some(section) = section.filter(|_| uses_kubernetes) else {
        return match section {
            Some(_) => Err(err("kubernetes", "is given but no cell uses backend kubernetes".into())),
            None if uses_kubernetes => Err(err(
                "kubernetes",
                "missing: kubernetes cells need at least kubernetes.target, the URL the load agents send to".into(),
            )),
            None => Ok(None),
        };
    };
    let Some(target) = section.target.clone() else {
        return Err(err("kubernetes.target", "missing: the URL the load agents send requests to".into()));
    };
    Target::parse(&target).map_err(|m| err("kubernetes.target", m))?;
    if let Some(url) = &section.prometheus {
        check_http_url(url).map_err(|e| err("kubernetes.prometheus", e.to_string()))?;
    }
    if let Some(context) = &section.context
        && context.trim().is_empty()
    {
        return Err(err("kubernetes.context", "must not be empty".into()));
    }
    let readiness = section.readiness_timeout.unwrap_or(DEFAULT_READINESS_TIMEOUT);
    if readiness.is_zero() {
        return Err(err("kubernetes.readiness_timeout", "must be longer than 0s".into()));
    }
    let (agents, on_loss) = emulated_settings::resolve_agents(section.agents.as_ref(), file, "kubernetes.agents")?;
    let base = file.parent().unwrap_or(Path::new("."));
    Ok(Some(KubernetesRun {
        context: section.context.clone(),
        kubeconfig: section.kubeconfig.as_ref().map(|p| expand_home(p, base)),
        target,
        prometheus: section.prometheus.as_ref().map(|u| u.trim_end_matches('/').to_string()),
        take_over: section.take_over,
        readiness_timeout_s: readiness.as_secs_f64(),
        agents,
        on_loss,
        load_agent_bin: None,
        dry_run: false,
    }))
}

/// A URL that is not `http://host...` or `https://host...`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an http:// or https:// URL")]
pub struct NotHttpUrl(String);

/// `http://host:port[/path]` or `https://...`.
pub fn check_http_url(url: &str) -> Result<(), NotHttpUrl> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(NotHttpUrl(url.to_string())),
    }
}

/// `~/x` under the home directory; a relative path from the matrix's folder.
fn expand_home(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if path.is_relative() { base.join(path) } else { path.to_path_buf() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> KubernetesSection {
        load_agent::yaml::from_str(yaml, Path::new("m.yaml")).unwrap()
    }

    #[test]
    fn a_target_is_enough() {
        let run = resolve(Some(&section("target: http://frontend:80")), true, Path::new("x/m.yaml")).unwrap().unwrap();
        assert_eq!(run.target, "http://frontend:80");
        assert_eq!(run.agents, AgentSource::Local { count: 2 });
        assert!(!run.take_over && !run.dry_run);
        assert_eq!(run.readiness_timeout(), DEFAULT_READINESS_TIMEOUT);
        let run = resolve(Some(&section("target: http://f:80\nkubeconfig: k.yaml")), true, Path::new("x/m.yaml"))
            .unwrap()
            .unwrap();
        assert_eq!(run.kubeconfig.unwrap(), Path::new("x/k.yaml"));
    }

    #[test]
    fn bad_sections_name_their_field() {
        for (yaml, field) in [
            ("context: x", "kubernetes.target"),
            ("target: frontend:80", "kubernetes.target"),
            ("target: http://f:80\nprometheus: localhost:9090", "kubernetes.prometheus"),
            ("target: http://f:80\nreadiness_timeout: 0s", "kubernetes.readiness_timeout"),
            ("target: http://f:80\ncontext: ' '", "kubernetes.context"),
            ("target: http://f:80\nagents: {local: 0}", "kubernetes.agents.local"),
            ("target: http://f:80\nagents: {urls: []}", "kubernetes.agents.urls"),
        ] {
            let e = resolve(Some(&section(yaml)), true, Path::new("m.yaml")).unwrap_err();
            assert_eq!(e.field, field, "{yaml}: {e}");
        }
        assert_eq!(resolve(None, true, Path::new("m.yaml")).unwrap_err().field, "kubernetes");
        assert_eq!(
            resolve(Some(&section("target: http://f:1")), false, Path::new("m.yaml")).unwrap_err().field,
            "kubernetes"
        );
        assert!(resolve(None, false, Path::new("m.yaml")).unwrap().is_none());
    }
}
