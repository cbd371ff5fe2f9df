//! Semantic checks a scenario must pass after parsing. Each error carries the field path it concerns.

use super::template::Template;
use super::{HTTP_METHODS, LoadShape, Request, Scenario, Variable, WaitTime};

type Invalid = (String, String);

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    (field.into(), message.into())
}

fn positive(field: &str, value: f64) -> Result<(), Invalid> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a positive number, got {value}")))
    }
}

fn non_negative(field: &str, value: f64) -> Result<(), Invalid> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be zero or positive, got {value}")))
    }
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
    positive("request_timeout_s", scenario.request_timeout_s)?;
    if scenario.users.is_empty() {
        return Err(invalid("users", "needs at least one user class"));
    }
    for (u, user) in scenario.users.iter().enumerate() {
        let at = format!("users[{u}]");
        if user.weight == 0 {
            return Err(invalid(format!("{at}.weight"), "must be at least 1"));
        }
        if let Some(wait) = user.wait {
            validate_wait(&format!("{at}.wait"), wait)?;
        }
        for (r, request) in user.on_start.iter().enumerate() {
            validate_request(scenario, &format!("{at}.on_start[{r}]"), request)?;
        }
        if user.tasks.is_empty() {
            return Err(invalid(format!("{at}.tasks"), "needs at least one task"));
        }
        for (t, task) in user.tasks.iter().enumerate() {
            let at = format!("{at}.tasks[{t}]");
            if task.weight == 0 {
                return Err(invalid(format!("{at}.weight"), "must be at least 1"));
            }
            if task.requests.is_empty() {
                return Err(invalid(format!("{at}.requests"), "needs at least one request"));
            }
            for (r, request) in task.requests.iter().enumerate() {
                validate_request(scenario, &format!("{at}.requests[{r}]"), request)?;
            }
        }
    }
    validate_shape(&scenario.shape)
}

fn validate_wait(field: &str, wait: WaitTime) -> Result<(), Invalid> {
    match wait {
        WaitTime::Constant(t) => non_negative(&format!("{field}.constant"), t),
        WaitTime::Between([low, high]) => {
            non_negative(&format!("{field}.between[0]"), low)?;
            non_negative(&format!("{field}.between[1]"), high)?;
            if low > high {
                return Err(invalid(format!("{field}.between"), format!("low {low} is above high {high}")));
            }
            Ok(())
        }
        WaitTime::ConstantPacing(t) => positive(&format!("{field}.constant_pacing"), t),
        WaitTime::ConstantThroughput(r) => positive(&format!("{field}.constant_throughput"), r),
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

fn validate_shape(shape: &LoadShape) -> Result<(), Invalid> {
    match shape {
        LoadShape::Stages(stages) => {
            if stages.is_empty() {
                return Err(invalid("shape.stages", "needs at least one stage"));
            }
            let mut previous_end = 0.0;
            for (i, stage) in stages.iter().enumerate() {
                let at = format!("shape.stages[{i}]");
                positive(&format!("{at}.end"), stage.end)?;
                if stage.end <= previous_end {
                    return Err(invalid(
                        format!("{at}.end"),
                        format!("end times are cumulative and must increase: {} follows {previous_end}", stage.end),
                    ));
                }
                positive(&format!("{at}.spawn_rate"), stage.spawn_rate)?;
                previous_end = stage.end;
            }
        }
        LoadShape::Ramps(ramps) => {
            if ramps.is_empty() {
                return Err(invalid("shape.ramps", "needs at least one ramp"));
            }
            for (i, ramp) in ramps.iter().enumerate() {
                let at = format!("shape.ramps[{i}]");
                non_negative(&format!("{at}.over"), ramp.over)?;
                non_negative(&format!("{at}.hold"), ramp.hold)?;
                if ramp.over + ramp.hold <= 0.0 {
                    return Err(invalid(at, "over + hold must be positive"));
                }
            }
        }
        LoadShape::Trace(_) => {
            return Err(invalid(
                "shape.trace",
                "a trace is read from a file: send the stages or arrival_rate it gives",
            ));
        }
        LoadShape::ArrivalRate(open) => {
            non_negative("shape.arrival_rate.start_rate", open.start_rate)?;
            if open.stages.is_empty() {
                return Err(invalid("shape.arrival_rate.stages", "needs at least one stage"));
            }
            for (i, stage) in open.stages.iter().enumerate() {
                let at = format!("shape.arrival_rate.stages[{i}]");
                positive(&format!("{at}.duration"), stage.duration)?;
                non_negative(&format!("{at}.target"), stage.target)?;
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
