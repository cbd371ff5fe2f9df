//! Mutations of StartRun bodies, shared by the deterministic fuzz test (tests/fuzz_start_run.rs, seeded) and the
//! cargo-fuzz target (fuzz/fuzz_targets/start_run.rs, driven by libFuzzer's bytes).
//!
//! A body is mutated as JSON: numbers become extreme or out of range, strings become templates, URLs of either
//! protocol or odd text, lists grow, shrink or repeat, fields vanish or appear (known fragments of the format and
//! unknown keys). [`bound_for_running`] then keeps what a run may cost small: a deadline under a second, no
//! scheduled start, the test's own targets.

#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

/// Where mutation choices come from.
pub trait Choices {
    fn next(&mut self) -> u64;

    /// A choice in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A seeded stream (SplitMix64), for runs that must repeat exactly.
pub struct Seeded(pub u64);

impl Choices for Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Choices read from a fuzzer's input, a byte at a time; zeros once it is used up.
pub struct FromBytes<'a>(pub &'a [u8]);

impl Choices for FromBytes<'_> {
    fn next(&mut self) -> u64 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte as u64
            }
            None => 0,
        }
    }
}

const NUMBERS: [f64; 20] = [
    0.0,
    -1.0,
    1.0,
    0.5,
    1e-308,
    1e308,
    -1e308,
    4_294_967_296.0,
    9_007_199_254_740_993.0,
    1.8446744073709552e19,
    -9.2e18,
    1e7,
    1.0000001e7,
    1e9,
    86_400.0,
    86_401.0,
    604_801.0,
    3_600.5,
    64.0,
    1e6,
];

const STRINGS: [&str; 14] = [
    "",
    "/",
    "/{{v}}",
    "{{",
    "{{nope}}",
    "GET",
    "FETCH",
    "http://127.0.0.1:9",
    "redis://127.0.0.1:9",
    "http://[::1",
    "/x?a=b c",
    "é\u{0}\n",
    "key:{{v}}",
    "Content-Type",
];

/// Where in a StartRun body an object lies, by its JSON pointer.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Body,
    Scenario,
    UserClass,
    Request,
    Other,
}

fn place_of(pointer: &str) -> Place {
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    match parts.as_slice() {
        [] => Place::Body,
        ["scenario"] => Place::Scenario,
        ["scenario", "users", _] => Place::UserClass,
        [.., "requests" | "on_start", _] => Place::Request,
        _ => Place::Other,
    }
}

/// Pieces of the format a mutation may insert into an object at its place: (place, key, value).
fn fragments() -> Vec<(Place, &'static str, Value)> {
    use Place::*;
    vec![
        (UserClass, "wait", json!({"constant_throughput": 1e-308})),
        (UserClass, "wait", json!({"between": [5, 1]})),
        (UserClass, "wait", json!({"constant_pacing": 0.001})),
        (UserClass, "wait", json!({"constant": 0})),
        (UserClass, "on_start", json!([{"redis": ["PING"]}, {"method": "GET", "path": "/"}])),
        (Request, "headers", json!({"X-Test": "{{v}}", "bad header": "x"})),
        (Request, "form", json!({"a": "{{v}}"})),
        (Request, "json", json!({"a": ["{{v}}", 1, null, {"b": true}]})),
        (Request, "redis", json!(["SET", "k", "{{v}}"])),
        (Request, "method", json!("GET")),
        (Scenario, "variables", json!({"v": {"values": ["a", "b"]}})),
        (Scenario, "variables", json!({"v": {"range": [5, 1]}})),
        (Scenario, "variables", json!({"v": {"range": [-9_223_372_036_854_775_808i64, 9_223_372_036_854_775_807i64]}})),
        (Scenario, "variables", json!({"v": {"values": []}})),
        (Scenario, "request_timeout_s", json!(0.05)),
        (Scenario, "request_timeout_s", json!(1e308)),
        (Scenario, "shape", json!({"stages": [{"end": 0.5, "users": 5, "spawn_rate": 1e6}]})),
        (Scenario, "shape", json!({"ramps": [{"users": 5, "over": 0.0, "hold": 0.3}, {"users": 0, "over": 0.2}]})),
        (
            Scenario,
            "shape",
            json!({"arrival_rate": {"start_rate": 1e7, "stages": [{"duration": 1, "target": 1e7}],
                                    "preallocated_users": 5, "max_users": 50}}),
        ),
        (
            Scenario,
            "shape",
            json!({"arrival_rate": {"start_rate": 1e308, "stages": [{"duration": 1, "target": 1e9}],
                                    "preallocated_users": 5, "max_users": 50}}),
        ),
        (Scenario, "shape", json!({"trace": {"file": "../x.csv", "column": "Users"}})),
        (Body, "deadline_s", json!(0.2)),
        (Body, "agent_count", json!(3)),
        (Body, "agent_index", json!(2)),
        (Body, "start_at_unix_ms", json!(0)),
        (Body, "seed", json!(7)),
    ]
}

/// Every JSON pointer in `value`, containers before their children.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            out.push(at.clone());
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            out.push(at.clone());
            for (key, item) in map {
                pointers(item, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        _ => out.push(at),
    }
}

/// One mutation at one place of `body`.
fn mutate_once(body: &mut Value, choices: &mut impl Choices) {
    let mut all = Vec::new();
    pointers(body, String::new(), &mut all);
    // Numbers are where the worst holes were (rates, timeouts): half the mutations go to one.
    let numbers: Vec<&String> = all.iter().filter(|p| body.pointer(p).is_some_and(Value::is_number)).collect();
    let at = if !numbers.is_empty() && choices.below(2) == 0 {
        numbers[choices.below(numbers.len())].clone()
    } else {
        all[choices.below(all.len())].clone()
    };
    let Some(node) = body.pointer_mut(&at) else { return };
    // One time in eight, whatever the node is, it becomes something of another type.
    if choices.below(8) == 0 {
        *node = [json!(null), json!(true), json!({}), json!([]), json!("x"), json!(-1)][choices.below(6)].clone();
        return;
    }
    match node {
        Value::Number(_) => {
            let n = NUMBERS[choices.below(NUMBERS.len())];
            *node = if n.fract() == 0.0 && n.abs() < 9e18 { json!(n as i64) } else { json!(n) };
        }
        Value::String(s) => {
            *s = match choices.below(4) {
                0 => s.repeat(1 + choices.below(50)),
                _ => STRINGS[choices.below(STRINGS.len())].to_string(),
            };
        }
        Value::Array(items) => match choices.below(4) {
            0 if !items.is_empty() => {
                items.remove(choices.below(items.len()));
            }
            1 if !items.is_empty() => {
                let item = items[choices.below(items.len())].clone();
                let times = 1 + choices.below(40);
                items.extend(std::iter::repeat_n(item, times));
            }
            2 => items.clear(),
            _ => items.reverse(),
        },
        Value::Object(map) => {
            let place = place_of(&at);
            let fitting: Vec<(Place, &str, Value)> = fragments().into_iter().filter(|f| f.0 == place).collect();
            match choices.below(4) {
                0 if !map.is_empty() => {
                    let key = map.keys().nth(choices.below(map.len())).unwrap().clone();
                    map.remove(&key);
                }
                1 => {
                    map.insert("unknown_field".into(), json!(1));
                }
                _ if !fitting.is_empty() => {
                    let (_, key, value) = fitting[choices.below(fitting.len())].clone();
                    map.insert(key.to_string(), value);
                }
                _ => {}
            }
        }
        Value::Bool(b) => *b = !*b,
        Value::Null => *node = json!(1),
    }
}

/// `rounds` mutations of `body`.
pub fn mutate(body: &mut Value, choices: &mut impl Choices, rounds: usize) {
    for _ in 0..rounds {
        mutate_once(body, choices);
    }
}

/// Keeps a (mutated) body cheap to run: a deadline of `deadline_s`, no scheduled start, its target replaced by
/// `http` or `redis` by protocol (a target that is no string stays, to be refused).
pub fn bound_for_running(body: &mut Value, deadline_s: f64, http: &str, redis: &str) {
    let Value::Object(map) = body else { return };
    map.insert("deadline_s".into(), json!(deadline_s));
    map.remove("start_at_unix_ms");
    if let Some(Value::String(target)) = map.get_mut("target") {
        *target = if target.starts_with("redis") { redis.to_string() } else { http.to_string() };
    }
}

/// A StartRun body for `scenario` (as JSON) against `target`.
pub fn start_body(target: &str, scenario: Value) -> Value {
    json!({"target": target, "seed": 1, "scenario": scenario})
}

/// Valid bodies to start from: the repository's scenarios (user counts cut to a few) and hand-written edge cases
/// of every shape and request kind.
pub fn corpus(repository: &Path) -> Vec<Value> {
    let mut bodies = Vec::new();
    let scenarios = repository.join("experiments/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&scenarios)
        .map(|dirs| dirs.flatten().flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten()))
        .into_iter()
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let Ok(scenario) = load_agent::scenario::Scenario::load(&file) else { continue };
        let mut scenario = serde_json::to_value(&scenario).unwrap();
        if let Some(stages) = scenario.pointer_mut("/shape/stages").and_then(Value::as_array_mut) {
            for stage in stages {
                stage["users"] = json!(stage["users"].as_u64().unwrap_or(1).min(5));
            }
        }
        let redis = scenario.to_string().contains("\"redis\"");
        bodies.push(start_body(if redis { "redis://127.0.0.1:9" } else { "http://127.0.0.1:9" }, scenario));
    }
    let user = json!({"name": "u", "tasks": [{"name": "t", "requests": [{"method": "GET", "path": "/{{v}}"}]}]});
    let variables = json!({"v": {"values": ["a", "b"]}, "n": {"range": [1, 3]}});
    bodies.push(start_body(
        "http://127.0.0.1:9",
        json!({"variables": variables, "users": [user], "request_timeout_s": 0.5,
               "shape": {"arrival_rate": {"start_rate": 100, "stages": [{"duration": 1, "target": 1000}],
                                          "preallocated_users": 2, "max_users": 20}}}),
    ));
    bodies.push(start_body(
        "http://127.0.0.1:9",
        json!({"variables": variables, "users": [user, {"name": "w", "weight": 3, "wait": {"between": [0, 0.01]},
               "on_start": [{"method": "POST", "path": "/login", "form": {"n": "{{n}}"}}],
               "tasks": [{"name": "j", "requests": [{"method": "PUT", "path": "/j", "json": {"a": ["{{v}}", 1]},
                                                      "headers": {"X-N": "{{n}}"}}]}]}],
               "shape": {"ramps": [{"users": 4, "over": 0.1, "hold": 0.3}]}}),
    ));
    bodies.push(start_body(
        "redis://127.0.0.1:9",
        json!({"variables": variables, "users": [{"name": "r", "wait": {"constant_throughput": 100},
               "tasks": [{"name": "g", "requests": [{"redis": ["GET", "k:{{n}}"]}]}]}],
               "shape": {"stages": [{"end": 1, "users": 3, "spawn_rate": 100}]}}),
    ));
    bodies
}
