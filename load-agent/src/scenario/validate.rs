//! Semantic checks a scenario must pass after parsing. Each error carries the field path it concerns.

use std::collections::BTreeSet;

use super::limits::{
    MAX_ARRIVAL_RATE, MAX_DURATION_S, MAX_NAME_CHARS, MAX_PATH_CHARS, MAX_REQUEST_TIMEOUT_S, MAX_REQUESTS,
    MAX_SPAWN_RATE, MAX_STAGES, MAX_STATS_NAMES_BYTES, MAX_THROUGHPUT_PER_USER, MAX_WAIT_S, in_range, not_too_long,
};
use super::template::Template;
use super::{HTTP_METHODS, LoadShape, Request, RequestKind, Scenario, Variable, WaitTime};

type Invalid = (String, String);

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    (field.into(), message.into())
}

/// Above 0 and at most `max`.
fn positive(field: &str, value: f64, max: f64) -> Result<(), Invalid> {
    in_range(field, value, 0.0, true, max)
}

/// From 0 to `max`.
fn non_negative(field: &str, value: f64, max: f64) -> Result<(), Invalid> {
    in_range(field, value, 0.0, false, max)
}

pub(super) fn validate(scenario: &Scenario) -> Result<(), Invalid> {
    for (name, variable) in &scenario.variables {
        let field = format!("variables.{name}");
        match variable {
            Variable::Values(values) if values.is_empty() => {
                return Err(invalid(field, "needs at least one value"));
            }
            Variable::Range([low, high]) if low > high => {
                return Err(invalid(field, format!("range low {low} is above high {high}")));
            }
            _ => {}
        }
    }
    positive("request_timeout_s", scenario.request_timeout_s, MAX_REQUEST_TIMEOUT_S)?;
    not_too_long("name", &scenario.name, MAX_NAME_CHARS)?;
    if scenario.users.is_empty() {
        return Err(invalid("users", "needs at least one user class"));
    }
    let mut requests = 0;
    for (u, user) in scenario.users.iter().enumerate() {
        let at = format!("users[{u}]");
        not_too_long(&format!("{at}.name"), &user.name, MAX_NAME_CHARS)?;
        if user.weight == 0 {
            return Err(invalid(format!("{at}.weight"), "must be at least 1"));
        }
        if let Some(wait) = user.wait {
            validate_wait(&format!("{at}.wait"), wait)?;
        }
        for (r, request) in user.on_start.iter().enumerate() {
            validate_request(scenario, &format!("{at}.on_start[{r}]"), request)?;
        }
        requests += user.on_start.len();
        if user.tasks.is_empty() {
            return Err(invalid(format!("{at}.tasks"), "needs at least one task"));
        }
        for (t, task) in user.tasks.iter().enumerate() {
            let at = format!("{at}.tasks[{t}]");
            not_too_long(&format!("{at}.name"), &task.name, MAX_NAME_CHARS)?;
            if task.weight == 0 {
                return Err(invalid(format!("{at}.weight"), "must be at least 1"));
            }
            if task.requests.is_empty() {
                return Err(invalid(format!("{at}.requests"), "needs at least one request"));
            }
            for (r, request) in task.requests.iter().enumerate() {
                validate_request(scenario, &format!("{at}.requests[{r}]"), request)?;
            }
            requests += task.requests.len();
            if requests > MAX_REQUESTS {
                return Err(invalid(
                    format!("{at}.requests"),
                    format!("the scenario holds more than {MAX_REQUESTS} requests in all: its limit"),
                ));
            }
        }
    }
    validate_stats_names(scenario)?;
    validate_shape(&scenario.shape)
}

/// Every stats name is written into each per-second window: their total is bounded, so is a window.
fn validate_stats_names(scenario: &Scenario) -> Result<(), Invalid> {
    let mut names = BTreeSet::new();
    let mut bytes = 0;
    for user in &scenario.users {
        let requests = user.on_start.iter().chain(user.tasks.iter().flat_map(|task| task.requests.iter()));
        for request in requests {
            let name = request.stats_name();
            if !names.contains(&name) {
                bytes += name.len();
                names.insert(name);
            }
        }
    }
    if bytes > MAX_STATS_NAMES_BYTES {
        return Err(invalid(
            "users",
            format!(
                "the requests' distinct stats names take {bytes} bytes together; at most {MAX_STATS_NAMES_BYTES}: their limit"
            ),
        ));
    }
    Ok(())
}

fn validate_wait(field: &str, wait: WaitTime) -> Result<(), Invalid> {
    match wait {
        WaitTime::Constant(t) => non_negative(&format!("{field}.constant"), t, MAX_WAIT_S),
        WaitTime::Between([low, high]) => {
            non_negative(&format!("{field}.between[0]"), low, MAX_WAIT_S)?;
            non_negative(&format!("{field}.between[1]"), high, MAX_WAIT_S)?;
            if low > high {
                return Err(invalid(format!("{field}.between"), format!("low {low} is above high {high}")));
            }
            Ok(())
        }
        WaitTime::ConstantPacing(t) => positive(&format!("{field}.constant_pacing"), t, MAX_WAIT_S),
        // At least one task a day: a slower rate is a wait longer than MAX_WAIT_S.
        WaitTime::ConstantThroughput(r) => {
            in_range(&format!("{field}.constant_throughput"), r, 1.0 / MAX_WAIT_S, false, MAX_THROUGHPUT_PER_USER)
        }
    }
}

fn validate_request(scenario: &Scenario, at: &str, request: &Request) -> Result<(), Invalid> {
    let mut templates: Vec<(String, &str)> = Vec::new();
    match (&request.method, &request.path, &request.redis) {
        (Some(method), Some(path), None) => {
            if !HTTP_METHODS.contains(&method.as_str()) {
                return Err(invalid(
                    format!("{at}.method"),
                    format!("unknown HTTP method {method:?}; use one of {HTTP_METHODS:?}"),
                ));
            }
            not_too_long(&format!("{at}.path"), path, MAX_PATH_CHARS)?;
            if !path.starts_with('/') {
                return Err(invalid(format!("{at}.path"), format!("must start with '/', got {path:?}")));
            }
            templates.push((format!("{at}.path"), path));
        }
        (None, None, Some(command)) => {
            if command.is_empty() || command[0].trim().is_empty() {
                return Err(invalid(format!("{at}.redis"), "needs a command, e.g. [GET, key]"));
            }
            for (i, arg) in command.iter().enumerate() {
                templates.push((format!("{at}.redis[{i}]"), arg));
            }
            if request.form.is_some() || request.json.is_some() || !request.headers.is_empty() {
                return Err(invalid(at, "a redis request takes no headers, form or json"));
            }
        }
        (_, _, Some(_)) => {
            return Err(invalid(at, "give either method and path (HTTP) or redis, not both"));
        }
        (None, _, None) => {
            return Err(invalid(format!("{at}.method"), "missing: an HTTP request needs method and path"));
        }
        (Some(_), None, None) => {
            return Err(invalid(format!("{at}.path"), "missing: an HTTP request needs method and path"));
        }
    }
    // The stats name is the request's name, else its path or command (read once the kind is known to be valid).
    let name_field = if request.name.is_some() {
        "name"
    } else if request.path.is_some() {
        "path"
    } else {
        "redis"
    };
    not_too_long(&format!("{at}.{name_field}"), &request.stats_name(), MAX_NAME_CHARS).map_err(
        |(field, message)| {
            if name_field == "name" {
                (field, message)
            } else {
                (field, format!("{message} as the request's stats name (give it a shorter `name`)"))
            }
        },
    )?;
    if request.form.is_some() && request.json.is_some() {
        return Err(invalid(at, "give form or json, not both"));
    }
    for (key, value) in &request.headers {
        templates.push((format!("{at}.headers.{key}"), value));
    }
    if let Some(form) = &request.form {
        for (key, value) in form {
            templates.push((format!("{at}.form.{key}"), value));
        }
    }
    let mut json_strings = Vec::new();
    if let Some(json) = &request.json {
        collect_json_strings(json, &format!("{at}.json"), &mut json_strings);
    }
    for (field, text) in
        templates.iter().map(|(f, t)| (f.clone(), *t)).chain(json_strings.iter().map(|(f, t)| (f.clone(), t.as_str())))
    {
        let template = Template::parse(text).map_err(|message| invalid(field.clone(), message))?;
        for name in template.variables() {
            if !scenario.variables.contains_key(name) {
                let known: Vec<&str> = scenario.variables.keys().map(String::as_str).collect();
                return Err(invalid(field, format!("unknown template variable {name:?}; defined: {known:?}")));
            }
        }
    }
    Ok(())
}

fn collect_json_strings(value: &serde_json::Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::String(s) => out.push((at.to_string(), s.clone())),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_json_strings(item, &format!("{at}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                collect_json_strings(item, &format!("{at}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// At most [`MAX_STAGES`] (a trace read from a file is not bounded while it is read).
fn bounded_stages(field: &str, count: usize) -> Result<(), Invalid> {
    if count > MAX_STAGES {
        return Err(invalid(field, format!("holds {count} stages; at most {MAX_STAGES} are allowed")));
    }
    Ok(())
}

/// Durations that add up over a shape: the total stays within [`MAX_DURATION_S`].
fn within_total(field: &str, total: f64) -> Result<(), Invalid> {
    if total > MAX_DURATION_S {
        return Err(invalid(
            field,
            format!("the shape lasts {total} s in all; at most {MAX_DURATION_S} s are allowed"),
        ));
    }
    Ok(())
}

fn validate_shape(shape: &LoadShape) -> Result<(), Invalid> {
    match shape {
        LoadShape::Stages(stages) => {
            if stages.is_empty() {
                return Err(invalid("shape.stages", "needs at least one stage"));
            }
            bounded_stages("shape.stages", stages.len())?;
            let mut previous_end = 0.0;
            for (i, stage) in stages.iter().enumerate() {
                let at = format!("shape.stages[{i}]");
                positive(&format!("{at}.end"), stage.end, MAX_DURATION_S)?;
                if stage.end <= previous_end {
                    return Err(invalid(
                        format!("{at}.end"),
                        format!("end times are cumulative and must increase: {} follows {previous_end}", stage.end),
                    ));
                }
                positive(&format!("{at}.spawn_rate"), stage.spawn_rate, MAX_SPAWN_RATE)?;
                previous_end = stage.end;
            }
        }
        LoadShape::Ramps(ramps) => {
            if ramps.is_empty() {
                return Err(invalid("shape.ramps", "needs at least one ramp"));
            }
            bounded_stages("shape.ramps", ramps.len())?;
            let mut total = 0.0;
            for (i, ramp) in ramps.iter().enumerate() {
                let at = format!("shape.ramps[{i}]");
                non_negative(&format!("{at}.over"), ramp.over, MAX_DURATION_S)?;
                non_negative(&format!("{at}.hold"), ramp.hold, MAX_DURATION_S)?;
                if ramp.over + ramp.hold <= 0.0 {
                    return Err(invalid(at, "over + hold must be positive"));
                }
                total += ramp.over + ramp.hold;
                within_total(&at, total)?;
            }
        }
        LoadShape::Trace(_) => {
            return Err(invalid(
                "shape.trace",
                "a trace is read from a file: send the stages or arrival_rate it gives",
            ));
        }
        LoadShape::ArrivalRate(open) => {
            non_negative("shape.arrival_rate.start_rate", open.start_rate, MAX_ARRIVAL_RATE)?;
            if open.stages.is_empty() {
                return Err(invalid("shape.arrival_rate.stages", "needs at least one stage"));
            }
            bounded_stages("shape.arrival_rate.stages", open.stages.len())?;
            let mut total = 0.0;
            for (i, stage) in open.stages.iter().enumerate() {
                let at = format!("shape.arrival_rate.stages[{i}]");
                positive(&format!("{at}.duration"), stage.duration, MAX_DURATION_S)?;
                non_negative(&format!("{at}.target"), stage.target, MAX_ARRIVAL_RATE)?;
                total += stage.duration;
                within_total(&at, total)?;
            }
            if open.preallocated_users == 0 {
                return Err(invalid("shape.arrival_rate.preallocated_users", "must be at least 1"));
            }
            if open.max_users < open.preallocated_users {
                return Err(invalid(
                    "shape.arrival_rate.max_users",
                    format!("{} is below preallocated_users {}", open.max_users, open.preallocated_users),
                ));
            }
        }
    }
    Ok(())
}

/// The first request that does not suit a target of the other protocol: `redis` requests need a `redis://` target,
/// HTTP requests an `http://` one.
pub(super) fn requests_suit(scenario: &Scenario, redis_target: bool) -> Result<(), Invalid> {
    for (u, user) in scenario.users.iter().enumerate() {
        let on_start = user.on_start.iter().enumerate().map(|(r, q)| (format!("users[{u}].on_start[{r}]"), q));
        let tasks = user.tasks.iter().enumerate().flat_map(|(t, task)| {
            task.requests.iter().enumerate().map(move |(r, q)| (format!("users[{u}].tasks[{t}].requests[{r}]"), q))
        });
        for (at, request) in on_start.chain(tasks) {
            match (request.kind(), redis_target) {
                (RequestKind::Redis { .. }, false) => {
                    return Err(invalid(
                        format!("{at}.redis"),
                        "a redis request needs a redis://host:port target, and the target is HTTP",
                    ));
                }
                (RequestKind::Http { .. }, true) => {
                    return Err(invalid(
                        format!("{at}.method"),
                        "an HTTP request needs an http:// target, and the target is redis://",
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
