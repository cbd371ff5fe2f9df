//! One simulated user: on_start, then tasks picked at random by weight, each followed by its wait.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, header::HeaderName};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use super::http::{HttpUser, form_encode};
use super::redis::RedisUser;
use crate::scenario::{Request, RequestKind, Scenario, Template, Variable, WaitTime};
use crate::stats::Collector;

/// A request with its templates parsed once.
struct CompiledRequest {
    /// What the statistics call the request's type: the HTTP method, or "REDIS".
    method_name: String,
    name: String,
    kind: Kind,
}

enum Kind {
    Http { method: Method, path: Template, headers: Vec<(HeaderName, Template)>, body: Body },
    Redis { args: Vec<Template> },
}

/// A user's client for the run's target.
pub enum Client {
    Http(HttpUser),
    Redis(RedisUser),
}

enum Body {
    None,
    Form(Vec<(String, Template)>),
    Json(serde_json::Value),
}

struct CompiledTask {
    weight: u32,
    requests: Vec<CompiledRequest>,
}

/// A user class ready to run: templates parsed, weights summed.
pub struct CompiledClass {
    on_start: Vec<CompiledRequest>,
    tasks: Vec<CompiledTask>,
    total_weight: u32,
    wait: Option<WaitTime>,
}

/// Compiles every user class of a validated scenario; every request must suit the target (`redis` or HTTP).
pub fn compile(scenario: &Scenario, redis_target: bool) -> Result<Vec<CompiledClass>, String> {
    let compile_request = |request: &Request| compile_request(request, redis_target);
    scenario
        .users
        .iter()
        .map(|user| {
            let tasks = user
                .tasks
                .iter()
                .map(|task| {
                    let requests = task.requests.iter().map(&compile_request).collect::<Result<Vec<_>, _>>()?;
                    Ok(CompiledTask { weight: task.weight, requests })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(CompiledClass {
                on_start: user.on_start.iter().map(&compile_request).collect::<Result<Vec<_>, _>>()?,
                total_weight: tasks.iter().map(|t| t.weight).sum(),
                tasks,
                wait: user.wait,
            })
        })
        .collect()
}

fn compile_request(request: &Request, redis_target: bool) -> Result<CompiledRequest, String> {
    let (method, path) = match (request.kind(), redis_target) {
        (RequestKind::Redis { .. }, true) => {
            let args = request.redis.iter().flatten().map(|a| Template::parse(a)).collect::<Result<Vec<_>, _>>()?;
            return Ok(CompiledRequest {
                method_name: "REDIS".into(),
                name: request.stats_name(),
                kind: Kind::Redis { args },
            });
        }
        (RequestKind::Http { method, path }, false) => (method, path),
        (RequestKind::Redis { .. }, false) => return Err("redis requests need a redis:// target".to_string()),
        (RequestKind::Http { .. }, true) => return Err("HTTP requests need an http:// target".to_string()),
    };
    let headers = request
        .headers
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
            Ok((name, Template::parse(v)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let body = match (&request.form, &request.json) {
        (Some(form), _) => {
            Body::Form(form.iter().map(|(k, v)| Ok((k.clone(), Template::parse(v)?))).collect::<Result<_, String>>()?)
        }
        (None, Some(json)) => Body::Json(json.clone()),
        (None, None) => Body::None,
    };
    Ok(CompiledRequest {
        method_name: method.to_string(),
        name: request.stats_name(),
        kind: Kind::Http {
            method: Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?,
            path: Template::parse(path)?,
            headers,
            body,
        },
    })
}

/// Values drawn for one task execution, so all its requests agree (e.g. the product added to the cart).
struct Draws<'a> {
    values: Vec<(&'a str, String)>,
}

impl<'a> Draws<'a> {
    fn draw(scenario: &'a Scenario, rng: &mut ChaCha8Rng) -> Draws<'a> {
        let values = scenario
            .variables
            .iter()
            .map(|(name, variable)| {
                let value = match variable {
                    Variable::Values(values) => values[rng.gen_range(0..values.len())].clone(),
                    Variable::Range([low, high]) => rng.gen_range(*low..=*high).to_string(),
                };
                (name.as_str(), value)
            })
            .collect();
        Draws { values }
    }

    fn render(&self, template: &Template) -> String {
        template.render(|name| self.values.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str()))
    }

    fn render_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(s) => match Template::parse(s) {
                Ok(t) => serde_json::Value::String(self.render(&t)),
                Err(_) => value.clone(),
            },
            serde_json::Value::Array(items) => items.iter().map(|v| self.render_json(v)).collect(),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), self.render_json(v))).collect(),
            other => other.clone(),
        }
    }
}

/// What a user needs from its run.
pub struct UserEnv {
    pub scenario: Arc<Scenario>,
    pub classes: Arc<Vec<CompiledClass>>,
    pub collector: Arc<Mutex<Collector>>,
    pub in_flight: Arc<std::sync::atomic::AtomicU64>,
    pub timeout: Duration,
}

/// Runs one user until `stop` turns true: it finishes the request in flight, never starts another.
pub async fn run_user(
    env: Arc<UserEnv>,
    class: usize,
    mut rng: ChaCha8Rng,
    mut http: Client,
    mut stop: watch::Receiver<bool>,
) {
    let class = &env.classes[class];
    let scenario = env.scenario.clone();
    let stopped = |stop: &watch::Receiver<bool>| *stop.borrow();
    let draws = Draws::draw(&scenario, &mut rng);
    for request in &class.on_start {
        if stopped(&stop) {
            return;
        }
        execute(&env, &mut http, request, &draws, None).await;
    }
    while !stopped(&stop) {
        let task = pick_task(class, &mut rng);
        let started = Instant::now();
        let draws = Draws::draw(&scenario, &mut rng);
        for request in &task.requests {
            if stopped(&stop) {
                return;
            }
            execute(&env, &mut http, request, &draws, None).await;
        }
        let task_s = started.elapsed().as_secs_f64();
        let wait_s = match class.wait {
            None => 0.0,
            Some(WaitTime::Between([low, high])) => {
                if high > low {
                    rng.gen_range(low..high)
                } else {
                    low
                }
            }
            Some(wait) => wait.mean_wait_after(task_s),
        };
        if wait_s > 0.0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(wait_s)) => {}
                _ = stop.changed() => return,
            }
        } else {
            // Without a wait, still let other users and the run's timers in.
            tokio::task::yield_now().await;
        }
    }
}

/// Picks a task independently at random in proportion to the weights (Locust's semantics, not round robin).
fn pick_task<'a>(class: &'a CompiledClass, rng: &mut ChaCha8Rng) -> &'a CompiledTask {
    let mut pick = rng.gen_range(0..class.total_weight);
    class
        .tasks
        .iter()
        .find(|t| {
            if pick < t.weight {
                true
            } else {
                pick -= t.weight;
                false
            }
        })
        .expect("weights cover the pick")
}

/// An open-model user: runs one task per iteration it is handed, then reports itself free again.
pub async fn run_open_user(
    env: Arc<UserEnv>,
    class: usize,
    id: usize,
    mut rng: ChaCha8Rng,
    mut client: Client,
    mut iterations: tokio::sync::mpsc::Receiver<Instant>,
    free: tokio::sync::mpsc::UnboundedSender<usize>,
) {
    let class = &env.classes[class];
    let scenario = env.scenario.clone();
    let draws = Draws::draw(&scenario, &mut rng);
    for request in &class.on_start {
        execute(&env, &mut client, request, &draws, None).await;
    }
    while let Some(intended_start) = iterations.recv().await {
        let task = pick_task(class, &mut rng);
        let draws = Draws::draw(&scenario, &mut rng);
        for (i, request) in task.requests.iter().enumerate() {
            // The first request carries any delay between the intended start and now (no coordinated omission).
            execute(&env, &mut client, request, &draws, (i == 0).then_some(intended_start)).await;
        }
        if free.send(id).is_err() {
            return;
        }
    }
}

/// Sends one request and records it; latency counts from `measured_from` when given (an open-model iteration's
/// intended start), else from now.
async fn execute(
    env: &UserEnv,
    client: &mut Client,
    request: &CompiledRequest,
    draws: &Draws<'_>,
    measured_from: Option<Instant>,
) {
    env.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = measured_from.unwrap_or_else(Instant::now);
    let (bytes, error) = match (&request.kind, client) {
        (Kind::Http { method, path, headers, body }, Client::Http(http)) => {
            let path = draws.render(path);
            let headers: Vec<(HeaderName, String)> =
                headers.iter().map(|(name, value)| (name.clone(), draws.render(value))).collect();
            let (content_type, body) = match body {
                Body::None => (None, Bytes::new()),
                Body::Form(fields) => {
                    let fields: Vec<(String, String)> =
                        fields.iter().map(|(k, v)| (k.clone(), draws.render(v))).collect();
                    (Some("application/x-www-form-urlencoded"), Bytes::from(form_encode(&fields)))
                }
                Body::Json(json) => (
                    Some("application/json"),
                    Bytes::from(serde_json::to_vec(&draws.render_json(json)).unwrap_or_default()),
                ),
            };
            match tokio::time::timeout(env.timeout, http.send(method.clone(), &path, &headers, content_type, body))
                .await
            {
                Ok(Ok(response)) if response.status.as_u16() < 400 => (response.body_bytes, None),
                Ok(Ok(response)) => (
                    response.body_bytes,
                    Some(format!(
                        "HTTPError {} {}",
                        response.status.as_u16(),
                        response.status.canonical_reason().unwrap_or("")
                    )),
                ),
                Ok(Err(error)) => (0, Some(error)),
                Err(_) => {
                    // The response may still arrive on this connection: start afresh.
                    http.reset_connection();
                    (0, Some(timeout_error(env.timeout)))
                }
            }
        }
        (Kind::Redis { args }, Client::Redis(redis)) => {
            let args: Vec<String> = args.iter().map(|a| draws.render(a)).collect();
            match tokio::time::timeout(env.timeout, redis.send(&args)).await {
                Ok(Ok(bytes)) => (bytes, None),
                Ok(Err(error)) => (0, Some(error)),
                Err(_) => {
                    redis.reset_connection();
                    (0, Some(timeout_error(env.timeout)))
                }
            }
        }
        _ => unreachable!("requests are compiled for the run's target"),
    };
    let latency_us = started.elapsed().as_micros() as u64;
    env.in_flight.fetch_sub(1, Ordering::Relaxed);
    env.collector.lock().expect("collector lock").record(
        &request.method_name,
        &request.name,
        latency_us,
        bytes,
        error.as_deref(),
    );
}

fn timeout_error(timeout: Duration) -> String {
    format!("Timeout after {:.1} s", timeout.as_secs_f64())
}
