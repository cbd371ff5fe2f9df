//! The matrix's `emulated:` section: the emulator's parameters (part of each emulated cell's config and id) and
//! where the load comes from (run infrastructure, not part of cell ids: the same cells may run with local agents on
//! a laptop and remote ones in a lab).
//!
//! ```yaml
//! backend: [emulated, sim]          # every emulated cell gets a simulator twin
//! emulated:
//!   time_scale: 20                  # control time runs 20x: a 900 s scenario takes 45 s
//!   pod_concurrency: 1              # requests a pod serves at once (1 = the simulator's M/M/c servers)
//!   cpu: sleep                      # sleep each call's service time (default), or `burn` its CPU for real in a
//!                                   # cgroup per pod, quota = the pod's limit (cgroup v1, root, time_scale 1)
//!   listen: 127.0.0.1:0             # where the app is served; remote agents must reach this address
//!   agents:
//!     local: 2                      # load-agent processes orch starts on loopback (the default)
//!     # urls: [http://10.0.0.7:8089, http://10.0.0.8:8089]
//!     # token_env: ORCH_AGENT_TOKEN  # the variable holding the agents' bearer token
//!     on_loss: redistribute         # a lost agent's users move to the others; `fail` fails the cell
//! ```
//!
//! `orch run --agents URL,...` or ORCH_AGENTS replace `agents.local`/`agents.urls`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use load_agent::engine::Target;
use load_agent::scenario::{RequestKind, Scenario};
use load_agent::yaml::ConfigError;
use serde::{Deserialize, Serialize};

use crate::app::AppModel;

/// The environment variable holding the agents' token unless `agents.token_env` names another.
pub const DEFAULT_TOKEN_ENV: &str = "ORCH_AGENT_TOKEN";
/// Local agents started when the matrix names none.
pub const DEFAULT_LOCAL_AGENTS: u32 = 2;
/// Beyond this, control time outruns what one-second agent windows can resolve.
pub const MAX_TIME_SCALE: f64 = 60.0;
/// Local agents one cell may start.
const MAX_LOCAL_AGENTS: u32 = 64;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatedSection {
    #[serde(default)]
    pub time_scale: Option<f64>,
    #[serde(default)]
    pub pod_concurrency: Option<u32>,
    #[serde(default)]
    pub cpu: Option<CpuMode>,
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub agents: Option<AgentsSection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsSection {
    #[serde(default)]
    pub local: Option<u32>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub on_loss: Option<OnLoss>,
}

/// What a cell does when an agent stops answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLoss {
    /// The lost agent's users start again on the remaining agents, from the shape's point in time.
    Redistribute,
    /// The cell fails, naming the agent.
    #[default]
    Fail,
}

/// The emulator's parameters: results depend on them, so they are part of the cell config (and id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorSettings {
    /// Control time (pod start-up, metrics windows, policy intervals, the scenario's timeline) runs this many times
    /// faster than request time (service times, waits between a user's requests, latencies).
    pub time_scale: f64,
    /// Requests one pod serves at once; each then runs at 1/pod_concurrency of the pod's CPU limit.
    pub pod_concurrency: u32,
    /// How a call's CPU demand is served. Written only when it is `burn`, so sleeping cells keep their ids.
    #[serde(default, skip_serializing_if = "CpuMode::is_sleep")]
    pub cpu: CpuMode,
}

/// How the emulator serves a call's CPU demand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuMode {
    /// The service time is slept: two cores can emulate a cluster, the CPU limit is a smooth speed.
    #[default]
    Sleep,
    /// The CPU time is burned by worker threads in a cgroup per pod whose CFS quota is the pod's limit, so the
    /// kernel's throttling decides latency. Real CPU cannot run compressed: needs time_scale 1.
    Burn,
}

impl CpuMode {
    pub fn is_sleep(&self) -> bool {
        *self == CpuMode::Sleep
    }
}

/// Where emulated cells get their load and how they treat a lost agent. `orch run` writes it into the run folder
/// ([`RUN_FILE`]) for the `orch cell` processes; agents' tokens stay in the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatedRun {
    pub agents: AgentSource,
    pub on_loss: OnLoss,
    /// The app's address (port 0: any free port).
    pub listen: SocketAddr,
    /// The load-agent binary for local agents; default: next to the orch executable.
    pub load_agent_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentSource {
    /// `count` load-agent processes started by orch on 127.0.0.1.
    Local { count: u32 },
    /// Agents already running elsewhere; their token is read from the variable `token_env`.
    Remote { urls: Vec<String>, token_env: String },
}

/// The run folder's copy of the run's [`EmulatedRun`].
pub const RUN_FILE: &str = "emulated-run.json";

impl EmulatedRun {
    /// Replaces the matrix's agents by `urls` (from `--agents` or ORCH_AGENTS), keeping token_env and on_loss.
    pub fn with_agent_urls(mut self, urls: Vec<String>) -> EmulatedRun {
        self.agents = self.agents.with_urls(urls);
        self
    }

    pub fn agents_setup(&self) -> AgentsSetup<'_> {
        AgentsSetup { source: &self.agents, on_loss: self.on_loss, load_agent_bin: self.load_agent_bin.as_deref() }
    }
}

impl AgentSource {
    /// Remote agents at `urls` (from `--agents` or ORCH_AGENTS), keeping the token variable of remote ones.
    pub fn with_urls(&self, urls: Vec<String>) -> AgentSource {
        let token_env = match self {
            AgentSource::Remote { token_env, .. } => token_env.clone(),
            AgentSource::Local { .. } => DEFAULT_TOKEN_ENV.to_string(),
        };
        AgentSource::Remote { urls, token_env }
    }
}

/// Where a cell's load agents come from and what losing one does: what the agent pool reads, from the matrix's
/// `emulated:` or `kubernetes:` section.
#[derive(Debug, Clone, Copy)]
pub struct AgentsSetup<'a> {
    pub source: &'a AgentSource,
    pub on_loss: OnLoss,
    /// The load-agent binary for local agents; default: next to the orch executable.
    pub load_agent_bin: Option<&'a Path>,
}

/// Resolves the section; `uses_emulated` says whether any cell runs on the emulated backend.
pub fn resolve(
    section: Option<&EmulatedSection>,
    uses_emulated: bool,
    file: &Path,
) -> Result<Option<(EmulatorSettings, EmulatedRun)>, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(file, field, message);
    if !uses_emulated {
        return match section {
            Some(_) => Err(err("emulated", "is given but no cell uses backend emulated".into())),
            None => Ok(None),
        };
    }
    let default = EmulatedSection::default();
    let section = section.unwrap_or(&default);
    let time_scale = section.time_scale.unwrap_or(1.0);
    if !(time_scale.is_finite() && (1.0..=MAX_TIME_SCALE).contains(&time_scale)) {
        return Err(err("emulated.time_scale", format!("must be between 1 and {MAX_TIME_SCALE}, got {time_scale}")));
    }
    let pod_concurrency = section.pod_concurrency.unwrap_or(1);
    if !(1..=1024).contains(&pod_concurrency) {
        return Err(err("emulated.pod_concurrency", format!("must be between 1 and 1024, got {pod_concurrency}")));
    }
    let cpu = section.cpu.unwrap_or_default();
    if cpu == CpuMode::Burn && time_scale != 1.0 {
        return Err(err(
            "emulated.cpu",
            format!("burn needs time_scale 1 (real CPU time cannot be compressed), got time_scale {time_scale}"),
        ));
    }
    let listen_text = section.listen.as_deref().unwrap_or("127.0.0.1:0");
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| err("emulated.listen", format!("{listen_text:?} is not IP:PORT, e.g. 127.0.0.1:0")))?;
    if listen.ip().is_unspecified() {
        return Err(err(
            "emulated.listen",
            format!("{listen_text:?}: give the address agents reach the app on, not an unspecified one"),
        ));
    }
    let (source, on_loss) = resolve_agents(section.agents.as_ref(), file, "emulated.agents")?;
    Ok(Some((
        EmulatorSettings { time_scale, pod_concurrency, cpu },
        EmulatedRun { agents: source, on_loss, listen, load_agent_bin: None },
    )))
}

/// Resolves an `agents:` block (of `emulated:` or `kubernetes:`); `at` is its field path for errors.
pub fn resolve_agents(
    agents: Option<&AgentsSection>,
    file: &Path,
    at: &str,
) -> Result<(AgentSource, OnLoss), ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(file, field, message);
    let agents = agents.cloned().unwrap_or_default();
    let on_loss = agents.on_loss.unwrap_or_default();
    let source = match (agents.local, agents.urls) {
        (Some(_), Some(_)) => {
            return Err(err(at, "give local (agents orch starts) or urls (running agents), not both".into()));
        }
        (_, Some(urls)) => {
            if urls.is_empty() {
                return Err(err(&format!("{at}.urls"), "needs at least one URL".into()));
            }
            for (i, url) in urls.iter().enumerate() {
                check_agent_url(url).map_err(|e| err(&format!("{at}.urls[{i}]"), e.to_string()))?;
            }
            if let Some(i) = (1..urls.len()).find(|&i| urls[..i].contains(&urls[i])) {
                return Err(err(&format!("{at}.urls[{i}]"), format!("duplicate agent {:?}", urls[i])));
            }
            let token_env = agents.token_env.unwrap_or_else(|| DEFAULT_TOKEN_ENV.to_string());
            if token_env.is_empty() || !token_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(&format!("{at}.token_env"), format!("{token_env:?} is not a variable name")));
            }
            AgentSource::Remote { urls, token_env }
        }
        (local, None) => {
            if agents.token_env.is_some() {
                return Err(err(
                    &format!("{at}.token_env"),
                    "local agents listen on loopback and need no token".into(),
                ));
            }
            let count = local.unwrap_or(DEFAULT_LOCAL_AGENTS);
            if !(1..=MAX_LOCAL_AGENTS).contains(&count) {
                return Err(err(
                    &format!("{at}.local"),
                    format!("must be between 1 and {MAX_LOCAL_AGENTS}, got {count}"),
                ));
            }
            AgentSource::Local { count }
        }
    };
    Ok((source, on_loss))
}

/// Why an agent's base URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentUrlError {
    #[error("{0:?}: an agent URL takes no path; give http://HOST:PORT")]
    HasPath(String),
    #[error("{0:?}: an agent URL is http://HOST:PORT")]
    NotHttp(String),
    /// Not a target URL at all; the load agent's own words.
    #[error("{0}")]
    Unreadable(String),
}

/// Why a list of agent URLs (`--agents`, ORCH_AGENTS) was refused; each message starts with where it came from.
#[derive(Debug, thiserror::Error)]
pub enum AgentListError {
    #[error("{origin}: give at least one agent URL, e.g. http://10.0.0.7:8089")]
    Empty { origin: String },
    #[error("{origin}: {error}")]
    BadUrl { origin: String, error: AgentUrlError },
    #[error("{origin}: duplicate agent {url:?}")]
    Duplicate { origin: String, url: String },
}

/// Checks an agent's base URL: `http://host:port` (the agents' control API speaks plain HTTP).
pub fn check_agent_url(url: &str) -> Result<(), AgentUrlError> {
    match Target::parse(url) {
        Ok(Target::Http { base_path, .. }) if base_path.is_empty() => Ok(()),
        Ok(Target::Http { .. }) => Err(AgentUrlError::HasPath(url.to_string())),
        Ok(Target::Redis { .. }) => Err(AgentUrlError::NotHttp(url.to_string())),
        Err(e) => Err(AgentUrlError::Unreadable(e)),
    }
}

/// Parses `--agents` / ORCH_AGENTS: comma-separated agent URLs.
pub fn parse_agent_list(text: &str, origin: &str) -> Result<Vec<String>, AgentListError> {
    let urls: Vec<String> =
        text.split(',').map(str::trim).filter(|u| !u.is_empty()).map(|u| u.trim_end_matches('/').to_string()).collect();
    if urls.is_empty() {
        return Err(AgentListError::Empty { origin: origin.to_string() });
    }
    for url in &urls {
        check_agent_url(url).map_err(|error| AgentListError::BadUrl { origin: origin.to_string(), error })?;
    }
    if let Some(i) = (1..urls.len()).find(|&i| urls[..i].contains(&urls[i])) {
        return Err(AgentListError::Duplicate { origin: origin.to_string(), url: urls[i].clone() });
    }
    Ok(urls)
}

/// What the emulator needs of an app and a scenario beyond what the simulator checks.
pub fn check_cell(
    app: &AppModel,
    app_file: &Path,
    scenario: &Scenario,
    scenario_file: &Path,
) -> Result<(), ConfigError> {
    for (i, route) in app.routes.iter().enumerate() {
        let Some(target) = &route.redirect else { continue };
        let target = &app.routes[app.route_index(target).expect("validated redirect")];
        let fixed_get = target.matcher.method.as_deref() == Some("GET")
            && target.matcher.path.as_deref().is_some_and(|p| !p.contains('{'));
        if !fixed_get {
            return Err(ConfigError::new(
                app_file,
                format!("routes[{i}].redirect"),
                format!("the emulator redirects to a GET route with a fixed path; {:?} is not one", target.name),
            ));
        }
    }
    let mut kinds = scenario
        .users
        .iter()
        .flat_map(|u| u.on_start.iter().chain(u.tasks.iter().flat_map(|t| &t.requests)))
        .map(|r| matches!(r.kind(), RequestKind::Redis { .. }));
    if let Some(first) = kinds.next()
        && kinds.any(|redis| redis != first)
    {
        return Err(ConfigError::new(
            scenario_file,
            "users",
            "mixes HTTP and Redis requests; an emulated app is one target, HTTP or Redis",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> EmulatedSection {
        load_agent::yaml::from_str(yaml, Path::new("m.yaml")).unwrap()
    }

    #[test]
    fn defaults_are_two_local_agents_in_real_time() {
        let (model, run) = resolve(None, true, Path::new("m.yaml")).unwrap().unwrap();
        assert_eq!(model, EmulatorSettings { time_scale: 1.0, pod_concurrency: 1, cpu: CpuMode::Sleep });
        assert_eq!(run.agents, AgentSource::Local { count: 2 });
        assert_eq!(run.on_loss, OnLoss::Fail);
        assert_eq!(run.listen.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn bad_sections_name_their_field() {
        for (yaml, field) in [
            ("time_scale: 0", "emulated.time_scale"),
            ("time_scale: 1000", "emulated.time_scale"),
            ("pod_concurrency: 0", "emulated.pod_concurrency"),
            ("{time_scale: 2, cpu: burn}", "emulated.cpu"),
            ("listen: localhost", "emulated.listen"),
            ("listen: 0.0.0.0:8080", "emulated.listen"),
            ("agents: {local: 2, urls: [http://a:1]}", "emulated.agents"),
            ("agents: {urls: []}", "emulated.agents.urls"),
            ("agents: {urls: ['ftp://a:1']}", "emulated.agents.urls[0]"),
            ("agents: {urls: ['http://a:1/x']}", "emulated.agents.urls[0]"),
            ("agents: {urls: ['http://a:1', 'http://a:1']}", "emulated.agents.urls[1]"),
            ("agents: {urls: ['http://a:1'], token_env: 'A-B'}", "emulated.agents.token_env"),
            ("agents: {local: 0}", "emulated.agents.local"),
            ("agents: {local: 2, token_env: T}", "emulated.agents.token_env"),
        ] {
            let e = resolve(Some(&section(yaml)), true, Path::new("m.yaml")).unwrap_err();
            assert_eq!(e.field, field, "{yaml}: {e}");
        }
        let e = resolve(Some(&section("time_scale: 2")), false, Path::new("m.yaml")).unwrap_err();
        assert_eq!(e.field, "emulated");
    }

    #[test]
    fn the_cpu_mode_is_written_only_when_it_burns() {
        let sleeping = resolve(None, true, Path::new("m.yaml")).unwrap().unwrap().0;
        assert_eq!(serde_json::to_string(&sleeping).unwrap(), r#"{"time_scale":1.0,"pod_concurrency":1}"#);
        let burning = resolve(Some(&section("cpu: burn")), true, Path::new("m.yaml")).unwrap().unwrap().0;
        assert_eq!(burning.cpu, CpuMode::Burn);
        let json = serde_json::to_string(&burning).unwrap();
        assert_eq!(json, r#"{"time_scale":1.0,"pod_concurrency":1,"cpu":"burn"}"#);
        assert_eq!(serde_json::from_str::<EmulatorSettings>(&json).unwrap(), burning);
        let old: EmulatorSettings = serde_json::from_str(r#"{"time_scale":1.0,"pod_concurrency":1}"#).unwrap();
        assert_eq!(old, sleeping);
    }

    #[test]
    fn agent_lists_from_the_command_line() {
        assert_eq!(
            parse_agent_list("http://10.0.0.7:8089, http://10.0.0.8:8089/", "--agents").unwrap(),
            ["http://10.0.0.7:8089", "http://10.0.0.8:8089"]
        );
        assert!(parse_agent_list("", "ORCH_AGENTS").unwrap_err().to_string().starts_with("ORCH_AGENTS"));
        assert!(parse_agent_list("10.0.0.7:8089", "--agents").is_err());
        let run = resolve(Some(&section("agents: {on_loss: redistribute}")), true, Path::new("m.yaml"))
            .unwrap()
            .unwrap()
            .1
            .with_agent_urls(vec!["http://h:1".into()]);
        assert_eq!(
            run.agents,
            AgentSource::Remote { urls: vec!["http://h:1".into()], token_env: DEFAULT_TOKEN_ENV.into() }
        );
        assert_eq!(run.on_loss, OnLoss::Redistribute);
    }
}
