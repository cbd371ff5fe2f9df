//! Checking request bodies before anything runs: a [`StartRun`] becomes a [`RunPlan`] (or a 400 naming the field,
//! or a 403 for a target not allowed), a [`ChangeRun`] is checked against its run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::ServerConfig;
use super::errors::AgentError;
use crate::engine::{RunPlan, Target};
use crate::protocol::{ChangeRun, StartRun};
use crate::scenario::limits::{MAX_DURATION_S, MAX_SPAWN_RATE};
use crate::scenario::{LoadShape, Scenario};

/// How far ahead a common start time may lie: a run scheduled further out would hold a slot for nothing.
const MAX_START_DELAY_S: u64 = 24 * 3600;
/// Most agents one run may be split over: each agent walks the users of all of them (user classes are dealt in
/// spawn order over all agents), so its work grows with the count.
pub const MAX_AGENT_COUNT: u32 = 256;

/// Deserializes a JSON body; errors name the JSON path of the offending value.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AgentError> {
    // Structs would also read from arrays, by position: a body must be an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AgentError::Invalid { field: None, message: "the body must be a JSON object".into() });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| AgentError::from_json_path(e.path(), e.inner()))?;
    deserializer.end().map_err(|e| AgentError::Invalid { field: None, message: e.to_string() })?;
    Ok(value)
}

/// Users `i` with `i % count == index` among `0..users`: this agent's exact share.
fn local_share(users: u32, index: u32, count: u32) -> u64 {
    let (users, index, count) = (users as u64, index as u64, count.max(1) as u64);
    users / count + u64::from(index < users % count)
}

/// The first place (field path under the shape, e.g. `stages[1].users`) where `shape` asks agent `index` of `count`
/// for more than `max_users` users, with the number it asks for.
pub fn shape_over_cap(shape: &LoadShape, index: u32, count: u32, max_users: u32) -> Option<(String, u64)> {
    let over = |users: u32| Some(local_share(users, index, count)).filter(|&share| share > max_users as u64);
    match shape {
        LoadShape::Stages(stages) => {
            stages.iter().enumerate().find_map(|(i, s)| Some((format!("stages[{i}].users"), over(s.users)?)))
        }
        LoadShape::Ramps(ramps) => {
            ramps.iter().enumerate().find_map(|(i, r)| Some((format!("ramps[{i}].users"), over(r.users)?)))
        }
        LoadShape::ArrivalRate(open) => Some(("arrival_rate.max_users".to_string(), over(open.max_users)?)),
        // Rejected by validation: a trace is resolved into stages or a rate when its file is read.
        LoadShape::Trace(_) => None,
    }
}

fn too_many(field: String, share: u64, index: u32, count: u32, max_users: u32) -> AgentError {
    let of = if count > 1 { format!(" (its share as agent {index} of {count})") } else { String::new() };
    AgentError::invalid(
        field,
        format!("asks this agent for {share} users{of}; it allows at most {max_users} (--max-users)"),
    )
}

/// Whether runs may use `authority` (`host:port`): an allow-list is always enforced (names compared without regard
/// to case, as DNS does). Without one, an agent beyond loopback allows no target; one on loopback allows any target
/// with a token, and only loopback targets without one: any web page open in a browser on its host can reach an
/// open agent, and must not be able to aim load elsewhere.
pub fn check_target(config: &ServerConfig, authority: &str) -> Result<(), AgentError> {
    if config.allow_targets.is_empty() {
        if !config.listening_on_loopback {
            return Err(AgentError::Forbidden(format!(
                "target {authority} is not allowed: this agent listens beyond loopback and has no allow-list; \
                 restart it with --allow-target {authority}"
            )));
        }
        if config.token.is_some() || is_loopback_authority(authority) {
            return Ok(());
        }
        return Err(AgentError::Forbidden(format!(
            "target {authority} is not allowed: an agent without a token drives load only to loopback \
             (127.0.0.0/8, [::1], localhost) unless its allow-list names the target; restart it with \
             --allow-target {authority} (or give it a token)"
        )));
    }
    if config.allow_targets.iter().any(|allowed| allowed.eq_ignore_ascii_case(authority)) {
        return Ok(());
    }
    Err(AgentError::Forbidden(format!(
        "target {authority} is not allowed (allowed: {}); restart the agent with --allow-target {authority} to allow it",
        config.allow_targets.join(", ")
    )))
}

/// `host:port` on loopback: 127.0.0.0/8, [::1] or `localhost`. Other names are not resolved to find out: DNS
/// can answer differently when the run connects.
fn is_loopback_authority(authority: &str) -> bool {
    let Some((host, _port)) = authority.rsplit_once(':') else { return false };
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks an `--allow-target` value: `HOST:PORT` written exactly as [`Target::authority`] writes a target URL's,
/// since anything else could never match a run's target.
pub fn check_allow_target(value: &str) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!("--allow-target {value:?}: {why}; give HOST:PORT as in the target URL, e.g. 10.0.0.5:8080"))
    };
    if value.contains("://") || value.contains('/') {
        return refuse("no scheme and no path");
    }
    let Some((host, port)) = value.rsplit_once(':').filter(|(host, _)| !host.is_empty()) else {
        return refuse("it needs a host and a port");
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return refuse(&format!("{port:?} is not a port (1 to 65535)")),
        Ok(number) if number.to_string() != port => {
            return refuse(&format!("targets are matched as {host}:{number}, so write the port {number}"));
        }
        Ok(_) => {}
    }
    match Target::parse(&format!("http://{value}")) {
        Ok(target) if target.authority() == value => Ok(()),
        // The URL parser's own words would quote the made-up URL: name the host instead.
        _ => refuse(&format!("{host:?} is not a host name or IP address (no spaces, no wildcards)")),
    }
}

/// Checks a StartRun body: 400 naming the field, or 403 for a target not allowed; otherwise the request (as it will
/// be stored) and the engine's plan.
pub fn check_start(body: &[u8], config: &ServerConfig) -> Result<(StartRun, RunPlan), AgentError> {
    let mut request: StartRun = parse_body(body)?;
    if request.scenario.name.is_empty() {
        request.scenario.name = "scenario".into();
    }
    request
        .scenario
        .validate()
        .map_err(|(field, message)| AgentError::invalid(format!("scenario.{field}"), message))?;
    let target = Target::parse(&request.target).map_err(|message| AgentError::invalid("target", message))?;
    request
        .scenario
        .check_requests_suit(matches!(target, Target::Redis { .. }))
        .map_err(|(field, message)| AgentError::invalid(format!("scenario.{field}"), message))?;
    if !(1..=MAX_AGENT_COUNT).contains(&request.agent_count) {
        return Err(AgentError::invalid(
            "agent_count",
            format!("must be from 1 to {MAX_AGENT_COUNT}, got {}", request.agent_count),
        ));
    }
    if request.agent_index >= request.agent_count {
        return Err(AgentError::invalid(
            "agent_index",
            format!("{} must be below agent_count {}", request.agent_index, request.agent_count),
        ));
    }
    if let Some(deadline) = request.deadline_s
        && !(deadline.is_finite() && deadline > 0.0 && deadline <= MAX_DURATION_S)
    {
        return Err(AgentError::invalid(
            "deadline_s",
            format!("must be a number of seconds above 0 and at most {MAX_DURATION_S} (7 days), got {deadline:?}"),
        ));
    }
    if let Some(at) = request.start_at_unix_ms {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        if at > now_ms + MAX_START_DELAY_S * 1000 {
            return Err(AgentError::invalid(
                "start_at_unix_ms",
                format!("lies more than {} h ahead of this agent's clock ({now_ms})", MAX_START_DELAY_S / 3600),
            ));
        }
    }
    let (index, count, max) = (request.agent_index, request.agent_count, config.max_users);
    if let Some((field, share)) = shape_over_cap(&request.scenario.shape, index, count, max) {
        return Err(too_many(format!("scenario.shape.{field}"), share, index, count, max));
    }
    check_target(config, &target.authority())?;
    let plan = RunPlan {
        scenario: request.scenario.clone(),
        target,
        seed: request.seed,
        agent_index: index,
        agent_count: count,
        start_at: request.start_at_unix_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        deadline: request.deadline_s.map(Duration::from_secs_f64),
        max_users: max,
    };
    Ok((request, plan))
}

/// Checks a ChangeRun body against the run it changes (its scenario and this agent's share).
pub fn check_change(body: &[u8], run: &StartRun, max_users: u32) -> Result<ChangeRun, AgentError> {
    let change: ChangeRun = parse_body(body)?;
    let (index, count) = (run.agent_index, run.agent_count);
    if change.shape.is_none() && change.users.is_none() {
        return Err(AgentError::invalid("users", "give users (and optionally spawn_rate), or a shape"));
    }
    if change.shape.is_some() && (change.users.is_some() || change.spawn_rate.is_some()) {
        return Err(AgentError::invalid("shape", "give either a shape or users (and spawn_rate), not both"));
    }
    if let Some(users) = change.users {
        if run.scenario.shape.is_open() {
            return Err(AgentError::invalid(
                "users",
                "an open-model (arrival_rate) run has no user target: send a new shape instead",
            ));
        }
        let share = local_share(users, index, count);
        if share > max_users as u64 {
            return Err(too_many("users".into(), share, index, count, max_users));
        }
    }
    if let Some(rate) = change.spawn_rate
        && !(rate.is_finite() && rate > 0.0 && rate <= MAX_SPAWN_RATE)
    {
        return Err(AgentError::invalid(
            "spawn_rate",
            format!("must be a number of users per second above 0 and at most {MAX_SPAWN_RATE}, got {rate:?}"),
        ));
    }
    if let Some(shape) = &change.shape {
        let scenario = Scenario { shape: shape.clone(), ..run.scenario.clone() };
        // Shape errors already read `shape.…`, the path in this body too.
        scenario.validate().map_err(|(field, message)| AgentError::invalid(field, message))?;
        if shape.is_open() != run.scenario.shape.is_open() {
            return Err(AgentError::invalid(
                "shape",
                "a run cannot switch between the closed (users) and the open (arrival_rate) model",
            ));
        }
        if let Some((field, share)) = shape_over_cap(shape, index, count, max_users) {
            return Err(too_many(format!("shape.{field}"), share, index, count, max_users));
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::server::tests::{start_body, test_config};

    fn field_of(result: Result<impl std::fmt::Debug, AgentError>) -> Option<String> {
        match result.unwrap_err() {
            AgentError::Invalid { field, .. } => field,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn shares_are_exact() {
        assert_eq!((0..3).map(|i| local_share(7, i, 3)).collect::<Vec<_>>(), [3, 2, 2]);
        assert_eq!(local_share(5, 0, 1), 5);
        assert_eq!(local_share(0, 0, 2), 0);
    }

    #[test]
    fn starts_are_checked_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.max_users = 10;
        let good = start_body("http://127.0.0.1:9", 1.0);
        assert!(check_start(good.to_string().as_bytes(), &config).is_ok());
        let with = |pointer: &str, value: serde_json::Value| {
            let mut body = good.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            body.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.to_string(), value);
            body.to_string()
        };
        let replaced = |pointer: &str, value: serde_json::Value| {
            let mut body = good.clone();
            *body.pointer_mut(pointer).unwrap() = value;
            body.to_string()
        };
        let cases = [
            (with("/seed", json!(-1)), "seed"),
            (with("/target", json!("localhost:80")), "target"),
            (with("/agent_count", json!(0)), "agent_count"),
            (with("/scenario/shape/stages/0/users", json!(11)), "scenario.shape.stages[0].users"),
            (with("/scenario/users/0/weight", json!(0)), "scenario.users[0].weight"),
            (with("/deadline_s", json!(0.0)), "deadline_s"),
            (with("/deadline_s", json!(1e308)), "deadline_s"),
            (with("/agent_count", json!(MAX_AGENT_COUNT + 1)), "agent_count"),
            (with("/scenario/request_timeout_s", json!(1e308)), "scenario.request_timeout_s"),
            (with("/scenario/shape/stages/0/spawn_rate", json!(1e308)), "scenario.shape.stages[0].spawn_rate"),
            (
                replaced("/scenario/users/0/tasks/0/requests/0", json!({"redis": ["GET", "k"]})),
                "scenario.users[0].tasks[0].requests[0].redis",
            ),
            (with("/target", json!("redis://127.0.0.1:9")), "scenario.users[0].tasks[0].requests[0].method"),
            (with("/start_at_unix_ms", json!(u64::MAX / 2)), "start_at_unix_ms"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(check_start(body.as_bytes(), &config)).as_deref(), Some(field), "{body}");
        }
        // 11 users over two agents is 6 + 5: within the cap of 10 for either agent.
        let mut split = good.clone();
        split["scenario"]["shape"]["stages"][0]["users"] = json!(11);
        split["agent_count"] = json!(2);
        assert!(check_start(split.to_string().as_bytes(), &config).is_ok());
        let missing = json!({"target": "http://127.0.0.1:9"}).to_string();
        assert_eq!(field_of(check_start(missing.as_bytes(), &config)).as_deref(), Some("scenario"));
        assert_eq!(field_of(check_start(format!("{good} trailing").as_bytes(), &config)), None);
    }

    #[test]
    fn targets_follow_the_allow_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        for local in ["127.0.0.1:80", "127.1.2.3:9", "[::1]:80", "LocalHost:80"] {
            assert!(check_target(&config, local).is_ok(), "open loopback agent, no list: {local}");
        }
        for remote in ["10.0.0.5:80", "localhost.evil.example:80", "[::2]:80", "0.0.0.0:80"] {
            let AgentError::Forbidden(message) = check_target(&config, remote).unwrap_err() else { panic!() };
            assert!(message.contains(&format!("--allow-target {remote}")), "{message}");
        }
        config.token = Some("t".into());
        assert!(check_target(&config, "10.0.0.5:80").is_ok(), "loopback with a token, no list: anything");
        config.token = None;
        config.listening_on_loopback = false;
        let AgentError::Forbidden(message) = check_target(&config, "10.0.0.5:80").unwrap_err() else { panic!() };
        assert!(message.contains("--allow-target 10.0.0.5:80"), "{message}");
        config.allow_targets = vec!["10.0.0.5:80".into(), "Frontend.svc:80".into()];
        assert!(check_target(&config, "10.0.0.5:80").is_ok());
        assert!(check_target(&config, "frontend.svc:80").is_ok(), "names match without regard to case");
        assert!(matches!(check_target(&config, "10.0.0.5:8080"), Err(AgentError::Forbidden(_))));
        config.listening_on_loopback = true;
        assert!(matches!(check_target(&config, "10.0.0.6:80"), Err(AgentError::Forbidden(_))), "a list always holds");
    }

    #[test]
    fn allow_targets_that_could_never_match_are_refused() {
        for good in ["10.0.0.5:8080", "localhost:80", "[::1]:8080", "frontend.default.svc:80"] {
            assert_eq!(check_allow_target(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            (" host:8080", "not a host name"),
            ("*:8080", "not a host name"),
            (":08080", "needs a host and a port"),
            ("host:08080", "write the port 8080"),
            ("host:0", "not a port"),
            ("10.0.0.5", "needs a host and a port"),
            ("http://10.0.0.5:80", "no scheme"),
            ("10.0.0.5:http", "not a port"),
            ("h:99999", "not a port"),
            ("::1:80", "not a host name"),
        ] {
            let message = check_allow_target(bad).unwrap_err();
            assert!(message.contains(&format!("{bad:?}")) && message.contains(why), "{bad}: {message}");
        }
    }

    #[test]
    fn changes_are_checked_against_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.max_users = 10;
        let (run, _) = check_start(start_body("http://127.0.0.1:9", 1.0).to_string().as_bytes(), &config).unwrap();
        let check = |body: serde_json::Value| check_change(body.to_string().as_bytes(), &run, 10);
        assert!(check(json!({"users": 10})).is_ok());
        assert!(check(json!({"shape": {"stages": [{"end": 5, "users": 3, "spawn_rate": 1}]}})).is_ok());
        let cases = [
            (json!({"users": 11}), "users"),
            (json!({"users": "many"}), "users"),
            (json!({"users": 3, "spawn_rate": 0}), "spawn_rate"),
            (json!({"users": 3, "spawn_rate": 1e308}), "spawn_rate"),
            (
                json!({"shape": {"stages": [{"end": 5, "users": 3, "spawn_rate": 1}, {"end": 1e9, "users": 3, "spawn_rate": 1}]}}),
                "shape.stages[1].end",
            ),
            (json!({}), "users"),
            (json!({"userz": 3}), "userz"),
            (json!({"shape": {"stages": [{"end": 0, "users": 3, "spawn_rate": 1}]}}), "shape.stages[0].end"),
            (json!({"shape": {"stages": [{"end": 5, "users": 30, "spawn_rate": 1}]}}), "shape.stages[0].users"),
            (json!({"shape": {"stages": [{"end": 5, "users": 3, "spawn_rate": 1}]}, "users": 2}), "shape"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(check(body.clone())).as_deref(), Some(field), "{body}");
        }
    }
}
