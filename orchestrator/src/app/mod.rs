//! App models (experiments/apps/NAME.yaml): services, their resources and the call trees of each entry route.
//!
//! The simulator, the emulated app and the Kubernetes backend all read this one description; [`kubernetes`] is its
//! optional block for real clusters.

pub mod kubernetes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use load_agent::scenario::{RequestKind, Scenario, Template, TemplatePart, Variable};
use load_agent::yaml::{self, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppModel {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Kubernetes namespace of the deployments (for the cluster backend).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub slo: Slo,
    /// Deployments, in the order metrics columns list them.
    pub services: Vec<Service>,
    /// HTTP or Redis entry points and the calls each makes.
    pub routes: Vec<Route>,
    /// How the services are found and observed in a cluster (deployment names, selectors, query templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<kubernetes::KubernetesApp>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// The latency objective: `percentile` of `route` under `threshold_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub route: String,
    pub percentile: f64,
    pub threshold_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub cpu: Cpu,
    pub memory: Memory,
    pub replicas: Replicas,
    /// Seconds from pod creation until it is ready to serve (image pull, start, readiness probe).
    pub startup_s: f64,
    /// Time per call that uses no CPU (network, I/O), in milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// Requested millicores per pod (what HPA utilization is relative to).
    pub request_m: f64,
    /// Limit in millicores per pod: a pod serves at most this much CPU work per second.
    pub limit_m: f64,
    /// CPU milliseconds one call costs, unless the call overrides it.
    pub per_request_ms: f64,
    /// Millicores a ready pod burns while idle.
    #[serde(default)]
    pub idle_m: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub request_mib: f64,
    pub limit_mib: f64,
    /// Resident memory of an idle pod.
    pub base_mib: f64,
    /// Extra memory per request in flight.
    #[serde(default)]
    pub per_inflight_mib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replicas {
    pub min: u32,
    pub max: u32,
    /// Replicas at the start of a cell; defaults to `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<u32>,
}

impl Replicas {
    pub fn initial(&self) -> u32 {
        self.initial.unwrap_or(self.min)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The call tree one request to this route causes, rooted at the entry service.
    pub call: Call,
    /// A route answering with a redirect that clients follow: that route's work is part of this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
}

/// Which requests a route serves: HTTP `method` + `path` (segments like `{id}` match anything), or a Redis command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

/// One call to a service and the calls it makes in turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub service: String,
    /// Mean number of times this call happens per parent call.
    #[serde(default = "one")]
    pub count: f64,
    /// CPU milliseconds of this operation, overriding the service's `per_request_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<Call>,
}

fn one() -> f64 {
    1.0
}

impl AppModel {
    pub fn load(path: &Path) -> Result<AppModel, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read app model: {e}")))?;
        AppModel::parse(&text, path)
    }

    pub fn parse(text: &str, file: &Path) -> Result<AppModel, ConfigError> {
        let app: AppModel = yaml::from_str(text, file)?;
        app.validate(file)?;
        Ok(app)
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
    }

    /// The route serving `request`, as the scenario file writes it. Template variables take a sample value.
    pub fn route_for(&self, scenario: &Scenario, kind: RequestKind<'_>) -> Option<usize> {
        match kind {
            RequestKind::Http { method, path } => {
                let rendered = sample_render(scenario, path);
                let path = rendered.split('?').next().unwrap_or("");
                self.routes.iter().position(|r| {
                    r.matcher.method.as_deref() == Some(method)
                        && r.matcher.path.as_deref().is_some_and(|pattern| path_matches(pattern, path))
                })
            }
            RequestKind::Redis { command, .. } => self
                .routes
                .iter()
                .position(|r| r.matcher.redis.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(command))),
        }
    }

    /// Caller → callee edges over all routes, deduplicated, by service index.
    pub fn edges(&self) -> BTreeSet<(usize, usize)> {
        fn walk(app: &AppModel, call: &Call, out: &mut BTreeSet<(usize, usize)>) {
            let from = app.service_index(&call.service).expect("validated");
            for child in &call.calls {
                out.insert((from, app.service_index(&child.service).expect("validated")));
                walk(app, child, out);
            }
        }
        let mut out = BTreeSet::new();
        for route in &self.routes {
            walk(self, &route.call, &mut out);
        }
        out
    }

    /// Checks the parsed model; `file` only labels the error.
    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |field: String, message: String| Err(ConfigError::new(file, field, message));
        if self.services.is_empty() {
            return err("services".into(), "needs at least one service".into());
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            if !names.insert(s.name.as_str()) {
                return err(format!("{at}.name"), format!("duplicate service name {:?}", s.name));
            }
            if !is_dns_label(&s.name) {
                return err(format!("{at}.name"), format!("{:?} is not a valid Kubernetes name (a DNS label)", s.name));
            }
            for (field, value) in [
                ("cpu.request_m", s.cpu.request_m),
                ("cpu.limit_m", s.cpu.limit_m),
                ("cpu.per_request_ms", s.cpu.per_request_ms),
                ("memory.request_mib", s.memory.request_mib),
                ("memory.limit_mib", s.memory.limit_mib),
                ("memory.base_mib", s.memory.base_mib),
                ("startup_s", s.startup_s),
            ] {
                if !(value.is_finite() && value > 0.0) {
                    return err(format!("{at}.{field}"), format!("must be a positive number, got {value}"));
                }
            }
            for (field, value) in [
                ("cpu.idle_m", s.cpu.idle_m),
                ("memory.per_inflight_mib", s.memory.per_inflight_mib),
                ("latency_ms", s.latency_ms),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    return err(format!("{at}.{field}"), format!("must be zero or positive, got {value}"));
                }
            }
            if s.cpu.limit_m < s.cpu.request_m {
                return err(
                    format!("{at}.cpu.limit_m"),
                    format!("{} is below the request {}", s.cpu.limit_m, s.cpu.request_m),
                );
            }
            if s.memory.limit_mib < s.memory.request_mib {
                return err(
                    format!("{at}.memory.limit_mib"),
                    format!("{} is below the request {}", s.memory.limit_mib, s.memory.request_mib),
                );
            }
            if s.replicas.min == 0 {
                return err(format!("{at}.replicas.min"), "must be at least 1".into());
            }
            if s.replicas.max > crate::limits::MAX_REPLICAS {
                return err(
                    format!("{at}.replicas.max"),
                    crate::limits::above(format!("{} replicas", s.replicas.max), crate::limits::MAX_REPLICAS),
                );
            }
            if s.replicas.min > s.replicas.max {
                return err(
                    format!("{at}.replicas.min"),
                    format!("min {} is above max {}", s.replicas.min, s.replicas.max),
                );
            }
            let initial = s.replicas.initial();
            if initial < s.replicas.min || initial > s.replicas.max {
                return err(
                    format!("{at}.replicas.initial"),
                    format!("{initial} is outside min..max ({}..{})", s.replicas.min, s.replicas.max),
                );
            }
        }
        if self.routes.is_empty() {
            return err("routes".into(), "needs at least one route".into());
        }
        let mut route_names = BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if !route_names.insert(route.name.as_str()) {
                return err(format!("{at}.name"), format!("duplicate route name {:?}", route.name));
            }
            let m = &route.matcher;
            match (&m.method, &m.path, &m.redis) {
                (Some(method), Some(path), None) => {
                    if !load_agent::scenario::HTTP_METHODS.contains(&method.as_str()) {
                        return err(format!("{at}.match.method"), format!("unknown HTTP method {method:?}"));
                    }
                    if !path.starts_with('/') {
                        return err(format!("{at}.match.path"), format!("must start with '/', got {path:?}"));
                    }
                }
                (None, None, Some(_)) => {}
                _ => return err(format!("{at}.match"), "give method and path, or redis".into()),
            }
            self.validate_call(&route.call, &format!("{at}.call"), &mut Vec::new(), file)?;
            let calls = calls_per_request(&route.call, 1.0);
            if calls > crate::limits::MAX_CALLS_PER_REQUEST {
                return err(
                    format!("{at}.call"),
                    crate::limits::above(
                        format!("{calls} calls per request over the call tree"),
                        crate::limits::MAX_CALLS_PER_REQUEST,
                    ),
                );
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(target) = &route.redirect {
                let Some(t) = self.route_index(target) else {
                    return err(format!("routes[{i}].redirect"), format!("unknown route {target:?}"));
                };
                if self.routes[t].redirect.is_some() {
                    return err(
                        format!("routes[{i}].redirect"),
                        format!("route {target:?} redirects again; chains are not supported"),
                    );
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            return err("routes".into(), format!("the call graph has a cycle: {}", cycle.join(" -> ")));
        }
        crate::app::kubernetes::validate(self, file)?;
        if self.route_index(&self.slo.route).is_none() {
            return err("slo.route".into(), format!("unknown route {:?}", self.slo.route));
        }
        if !(self.slo.percentile > 0.0 && self.slo.percentile < 100.0) {
            return err("slo.percentile".into(), format!("must be between 0 and 100, got {}", self.slo.percentile));
        }
        if !(self.slo.threshold_ms.is_finite() && self.slo.threshold_ms > 0.0) {
            return err("slo.threshold_ms".into(), format!("must be a positive number, got {}", self.slo.threshold_ms));
        }
        Ok(())
    }

    fn validate_call<'a>(
        &'a self,
        call: &'a Call,
        at: &str,
        path: &mut Vec<&'a str>,
        file: &Path,
    ) -> Result<(), ConfigError> {
        let err = |field: String, message: String| Err(ConfigError::new(file, field, message));
        if self.service_index(&call.service).is_none() {
            let known: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
            return err(format!("{at}.service"), format!("unknown service {:?}; services: {known:?}", call.service));
        }
        if path.contains(&call.service.as_str()) {
            path.push(&call.service);
            return err(format!("{at}.service"), format!("the call tree has a cycle: {}", path.join(" -> ")));
        }
        if !(call.count.is_finite() && call.count > 0.0) {
            return err(format!("{at}.count"), format!("must be a positive number, got {}", call.count));
        }
        if call.count > crate::limits::MAX_CALL_COUNT {
            return err(
                format!("{at}.count"),
                crate::limits::above(format!("{} calls per parent call", call.count), crate::limits::MAX_CALL_COUNT),
            );
        }
        if let Some(cpu) = call.cpu_ms
            && !(cpu.is_finite() && cpu > 0.0)
        {
            return err(format!("{at}.cpu_ms"), format!("must be a positive number, got {cpu}"));
        }
        path.push(&call.service);
        for (i, child) in call.calls.iter().enumerate() {
            self.validate_call(child, &format!("{at}.calls[{i}]"), path, file)?;
        }
        path.pop();
        Ok(())
    }

    /// A cycle in the union of all routes' caller → callee edges, if any (each tree alone may be acyclic).
    fn find_cycle(&self) -> Option<Vec<String>> {
        let mut adjacency: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (from, to) in self.edges() {
            adjacency.entry(from).or_default().push(to);
        }
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state = vec![0u8; self.services.len()];
        let mut stack = Vec::new();
        fn visit(
            node: usize,
            adjacency: &BTreeMap<usize, Vec<usize>>,
            state: &mut [u8],
            stack: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            state[node] = 1;
            stack.push(node);
            for &next in adjacency.get(&node).map(Vec::as_slice).unwrap_or(&[]) {
                if state[next] == 1 {
                    let start = stack.iter().position(|&n| n == next).expect("on path");
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                if state[next] == 0
                    && let Some(cycle) = visit(next, adjacency, state, stack)
                {
                    return Some(cycle);
                }
            }
            stack.pop();
            state[node] = 2;
            None
        }
        for start in 0..self.services.len() {
            if state[start] == 0
                && let Some(cycle) = visit(start, &adjacency, &mut state, &mut stack)
            {
                return Some(cycle.into_iter().map(|i| self.services[i].name.clone()).collect());
            }
        }
        None
    }
}

/// Calls one request causes in `call`'s subtree, `parent_calls` times over (counts are validated: finite, bounded).
fn calls_per_request(call: &Call, parent_calls: f64) -> f64 {
    let calls = parent_calls * call.count;
    calls + call.calls.iter().map(|child| calls_per_request(child, calls)).sum::<f64>()
}

/// Checks that every request of `scenario` is served by a route of `app`; the error names the request's field path.
pub fn check_scenario_routes(app: &AppModel, scenario: &Scenario, file: &Path) -> Result<(), ConfigError> {
    for (u, user) in scenario.users.iter().enumerate() {
        let requests =
            user.on_start.iter().enumerate().map(|(r, req)| (format!("users[{u}].on_start[{r}]"), req)).chain(
                user.tasks.iter().enumerate().flat_map(|(t, task)| {
                    task.requests
                        .iter()
                        .enumerate()
                        .map(move |(r, req)| (format!("users[{u}].tasks[{t}].requests[{r}]"), req))
                }),
            );
        for (field, request) in requests {
            if app.route_for(scenario, request.kind()).is_none() {
                let what = match request.kind() {
                    RequestKind::Http { method, path } => format!("{method} {path}"),
                    RequestKind::Redis { command, .. } => format!("redis {command}"),
                };
                return Err(ConfigError::new(file, field, format!("{what} matches no route of app {:?}", app.name)));
            }
        }
    }
    Ok(())
}

/// Renders a template with each variable's first value, to find which route a request reaches.
fn sample_render(scenario: &Scenario, text: &str) -> String {
    let Ok(template) = Template::parse(text) else { return text.to_string() };
    let mut out = String::new();
    for part in &template.parts {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Variable(name) => match scenario.variables.get(name) {
                Some(Variable::Values(values)) => out.push_str(values.first().map_or("", String::as_str)),
                Some(Variable::Range([low, _])) => out.push_str(&low.to_string()),
                None => {}
            },
        }
    }
    out
}

/// Matches a concrete path against a pattern whose `{name}` segments match any one non-empty segment.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) => {
                let wildcard = p.starts_with('{') && p.ends_with('}');
                if !(wildcard && !s.is_empty() || p == s) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_match_segments() {
        assert!(path_matches("/product/{id}", "/product/OLJCESPC7Z"));
        assert!(!path_matches("/product/{id}", "/product/"));
        assert!(!path_matches("/product/{id}", "/product/a/b"));
        assert!(path_matches("/", "/"));
        assert!(!path_matches("/cart", "/cart/checkout"));
    }
}
