//! The scenario format: a Locust-equivalent description of user behaviour and load over time.
//!
//! Sizes and numbers are bounded ([`limits`]): a scenario over a limit is refused, naming the field.
//!
//! One file is the single source of truth for a load: `load-agent` replays it against a real target and the
//! orchestrator's simulator derives its request mix and arrival rates from it.
//!
//! ```yaml
//! name: peak
//! variables:
//!   product: {values: [OLJCESPC7Z, 66VCHSJNUP]}
//!   quantity: {range: [1, 10]}
//! users:
//!   - name: shopper
//!     wait: {between: [1, 10]}           # or constant, constant_pacing, constant_throughput; absent = no wait
//!     on_start: [{method: GET, path: /}]
//!     tasks:
//!       - {name: browse, weight: 10, requests: [{method: GET, path: "/product/{{product}}", name: "/product/[id]"}]}
//! shape:
//!   stages: [{end: 900, users: 400, spawn_rate: 50}]
//! ```

pub mod limits;
mod shape;
mod template;
mod trace;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::tree;
use crate::yaml::{self, ConfigError};

pub use shape::{ArrivalRate, Arrivals, LoadShape, Ramp, RateStage, Stage, UsersTarget, step_users};
pub use template::{Template, TemplatePart};
pub use trace::TraceSpec;

/// A whole scenario file. Reading one counts its elements against [`limits::MAX_ELEMENTS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Scenario {
    /// Defaults to the file name without extension.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Values that request templates draw from, once per task execution (so one task's requests agree).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "limits::map::<{ limits::MAX_VARIABLES }, _, _>"
    )]
    pub variables: BTreeMap<String, Variable>,
    /// User classes, picked in proportion to their weights when users are spawned.
    #[serde(deserialize_with = "limits::list::<{ limits::MAX_USER_CLASSES }, _, _>")]
    pub users: Vec<UserClass>,
    pub shape: LoadShape,
    /// Per-request timeout in seconds; a slower request counts as failed.
    #[serde(default = "default_timeout_s")]
    pub request_timeout_s: f64,
}

fn default_timeout_s() -> f64 {
    10.0
}

impl<'de> Deserialize<'de> for Scenario {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scenario, D::Error> {
        let _budget = limits::ElementBudget::begin();
        Scenario::deserialize(d)
    }
}

impl Serialize for Scenario {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Scenario::serialize(self, s)
    }
}

fn one() -> u32 {
    1
}

/// Where a template variable draws its values from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Variable {
    /// One of these strings, uniformly.
    Values(#[serde(deserialize_with = "limits::list::<{ limits::MAX_VALUES_PER_VARIABLE }, _, _>")] Vec<String>),
    /// An integer in `[low, high]`, both inclusive, uniformly.
    Range([i64; 2]),
}

/// A Locust `User` class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserClass {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Wait after each task; absent means no wait (Locust's default `constant(0)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitTime>,
    /// Requests each user sends once when it starts, without a wait before them.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "limits::list::<{ limits::MAX_REQUESTS_PER_TASK }, _, _>"
    )]
    pub on_start: Vec<Request>,
    #[serde(deserialize_with = "limits::list::<{ limits::MAX_TASKS_PER_CLASS }, _, _>")]
    pub tasks: Vec<Task>,
}

/// Locust's wait_time functions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WaitTime {
    /// Always wait this many seconds.
    Constant(f64),
    /// Uniform in `[low, high]` seconds.
    Between([f64; 2]),
    /// Start a task every `t` seconds: wait `max(0, t - task time)`.
    ConstantPacing(f64),
    /// At most `r` tasks per second per user: `constant_pacing(1 / r)`.
    ConstantThroughput(f64),
}

impl WaitTime {
    /// Mean idle time after a task that took `task_s` seconds.
    pub fn mean_wait_after(&self, task_s: f64) -> f64 {
        match *self {
            WaitTime::Constant(t) => t,
            WaitTime::Between([low, high]) => 0.5 * (low + high),
            WaitTime::ConstantPacing(t) => (t - task_s).max(0.0),
            WaitTime::ConstantThroughput(r) => (1.0 / r - task_s).max(0.0),
        }
    }
}

/// A Locust task: a weighted sequence of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(deserialize_with = "limits::list::<{ limits::MAX_REQUESTS_PER_TASK }, _, _>")]
    pub requests: Vec<Request>,
}

/// One request: HTTP (`method` + `path`) or Redis (`redis: [COMMAND, args...]`).
///
/// Strings may hold `{{variable}}` placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "limits::map::<{ limits::MAX_FIELDS_PER_REQUEST }, _, _>"
    )]
    pub headers: BTreeMap<String, String>,
    /// Form fields, sent URL-encoded.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::optional_map::<{ limits::MAX_FIELDS_PER_REQUEST }, _, _>"
    )]
    pub form: Option<BTreeMap<String, String>>,
    /// A JSON body; string leaves are templates.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "limits::optional_json")]
    pub json: Option<serde_json::Value>,
    /// A Redis command and its arguments.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "limits::optional_list::<{ limits::MAX_FIELDS_PER_REQUEST }, _, _>"
    )]
    pub redis: Option<Vec<String>>,
    /// Stats name grouping requests (Locust's `name=`); defaults to the path or command template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The kind of a validated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind<'a> {
    Http { method: &'a str, path: &'a str },
    Redis { command: &'a str, args: &'a [String] },
}

/// HTTP methods a request may use.
pub const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

impl Request {
    /// The request's kind. Call only on validated scenarios.
    pub fn kind(&self) -> RequestKind<'_> {
        match (&self.method, &self.path, &self.redis) {
            (Some(method), Some(path), None) => RequestKind::Http { method, path },
            (None, None, Some(command)) => RequestKind::Redis { command: &command[0], args: &command[1..] },
            _ => panic!("request kind read before validation"),
        }
    }

    /// The stats name requests are grouped under.
    pub fn stats_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match self.kind() {
            RequestKind::Http { path, .. } => path.to_string(),
            RequestKind::Redis { command, .. } => command.to_ascii_uppercase(),
        }
    }
}

impl Scenario {
    /// Reads, parses and validates a scenario file; a trace it replays must lie in the file's folder (or below).
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        Scenario::load_within(path, &tree::folder_of(path))
    }

    /// [`Scenario::load`] for a scenario of a larger tree (an experiment's scenarios folder): a trace it replays
    /// may be anywhere under `within`, and nowhere else.
    pub fn load_within(path: &Path, within: &Path) -> Result<Scenario, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read scenario: {e}")))?;
        Scenario::parse_within(&text, path, within)
    }

    /// Parses and validates scenario text; `file` labels errors and names the scenario when `name` is absent.
    pub fn parse(text: &str, file: &Path) -> Result<Scenario, ConfigError> {
        Scenario::parse_within(text, file, &tree::folder_of(file))
    }

    /// [`Scenario::parse`] with a trace read from under `within`.
    pub fn parse_within(text: &str, file: &Path, within: &Path) -> Result<Scenario, ConfigError> {
        let mut scenario: Scenario = yaml::from_str(text, file)?;
        if scenario.name.is_empty() {
            scenario.name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        if let LoadShape::Trace(spec) = &scenario.shape {
            scenario.shape = trace::resolve(spec, file, within)
                .map_err(|(field, message)| ConfigError::new(file, field, message))?;
        }
        validate::validate(&scenario).map_err(|(field, message)| ConfigError::new(file, field, message))?;
        Ok(scenario)
    }

    /// Checks a scenario that did not come through [`Scenario::parse`] (e.g. from JSON): `(field path, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        validate::validate(self)
    }

    /// Checks that every request suits the target's protocol (after [`Scenario::validate`]): `(field path,
    /// message)` of the first that does not.
    pub fn check_requests_suit(&self, redis_target: bool) -> Result<(), (String, String)> {
        validate::requests_suit(self, redis_target)
    }

    /// How long the scenario runs, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.shape.duration_s()
    }
}
