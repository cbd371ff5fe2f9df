//! One simulated user: `on_start` once, then tasks picked at random by weight, each followed by its wait (closed
//! model); or one task per iteration it is handed (open model).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Uri};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{Notify, mpsc};

use super::compile::{BodyTpl, Compiled, Draws, Escape, FORM, HeaderTpl, HttpReq, JSON, PathTpl, Req, ReqKind};
use super::http::{HttpUser, Outgoing};
use super::record::{Record, Recorder};
use super::redis::RedisUser;
use super::target::Target;
use crate::scenario::WaitTime;

/// What every user of a run shares.
pub struct RunCtx {
    pub compiled: Arc<Compiled>,
    pub recorder: Arc<Recorder>,
    pub in_flight: Arc<AtomicU64>,
    pub timeout: Duration,
    /// The run's start; records carry their completion time relative to it.
    pub started: Instant,
    pub target: Target,
}

/// Tells a user (or all users of an open-model pool) to stop: it finishes the request in flight and starts no other.
#[derive(Default)]
pub struct StopFlag {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopFlag {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sleeps for `duration` unless stopped first; false when stopped.
    async fn sleep(&self, duration: Duration) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_stopped() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => !self.is_stopped(),
            _ = notified => false,
        }
    }
}

/// A user's client for the run's target.
enum Client {
    Http(HttpUser),
    Redis(RedisUser),
}

/// One user: its class, random stream, connection, cookie jar and buffers.
pub struct User {
    ctx: Arc<RunCtx>,
    class: usize,
    rng: ChaCha8Rng,
    client: Client,
    draws: Draws,
    shard: usize,
    text: String,
}

impl User {
    pub fn new(ctx: Arc<RunCtx>, global_index: u64, class: usize, rng: ChaCha8Rng) -> Result<User, String> {
        let client = match &ctx.target {
            Target::Http { host, port, .. } => Client::Http(HttpUser::new(host, *port)),
            Target::Redis { host, port } => Client::Redis(RedisUser::new(host, *port)?),
        };
        Ok(User {
            ctx,
            class,
            rng,
            client,
            draws: Draws::default(),
            shard: Recorder::shard_of(global_index),
            text: String::new(),
        })
    }

    /// Runs `on_start` (variables drawn once for it), unless stopped first; false when stopped.
    async fn on_start(&mut self, ctx: &RunCtx, stop: &StopFlag) -> bool {
        let class = &ctx.compiled.classes[self.class];
        ctx.compiled.draw(&mut self.rng, &mut self.draws);
        for request in &class.on_start {
            if stop.is_stopped() {
                return false;
            }
            self.execute(ctx, request, None).await;
        }
        !stop.is_stopped()
    }

    /// The closed model: runs until `stop`.
    pub async fn run_closed(mut self, stop: Arc<StopFlag>) {
        let ctx = self.ctx.clone();
        let class = &ctx.compiled.classes[self.class];
        if !self.on_start(&ctx, &stop).await {
            return;
        }
        loop {
            let task = ctx.compiled.pick_task(class, &mut self.rng);
            let began = Instant::now();
            ctx.compiled.draw(&mut self.rng, &mut self.draws);
            for request in &task.requests {
                if stop.is_stopped() {
                    return;
                }
                self.execute(&ctx, request, None).await;
            }
            let wait_s = match class.wait {
                None => 0.0,
                Some(WaitTime::Constant(t)) => t,
                Some(WaitTime::Between([low, high])) => low + (high - low) * self.rng.r#gen::<f64>(),
                Some(WaitTime::ConstantPacing(t)) => t - began.elapsed().as_secs_f64(),
                Some(WaitTime::ConstantThroughput(r)) => 1.0 / r - began.elapsed().as_secs_f64(),
            };
            if wait_s > 0.0 {
                if !stop.sleep(Duration::from_secs_f64(wait_s)).await {
                    return;
                }
            } else {
                if stop.is_stopped() {
                    return;
                }
                // Without a wait, still let other users and the run's timers in.
                tokio::task::yield_now().await;
            }
        }
    }

    /// The open model: runs one task per iteration handed to it (its intended start), then reports itself free
    /// under `id`; ends when the iterations channel closes or `stop` is set. An iteration handed out before a stop
    /// still sends its first request (it was due); one a stopped user never started counts in `unrun`.
    pub async fn run_open(
        mut self,
        id: usize,
        stop: Arc<StopFlag>,
        mut iterations: mpsc::Receiver<Instant>,
        free: mpsc::UnboundedSender<usize>,
        unrun: Arc<AtomicU64>,
    ) {
        let ctx = self.ctx.clone();
        let class = &ctx.compiled.classes[self.class];
        if self.on_start(&ctx, &stop).await {
            'iterations: while let Some(intended_start) = iterations.recv().await {
                let task = ctx.compiled.pick_task(class, &mut self.rng);
                ctx.compiled.draw(&mut self.rng, &mut self.draws);
                for (i, request) in task.requests.iter().enumerate() {
                    if i > 0 && stop.is_stopped() {
                        break 'iterations;
                    }
                    // The first request carries any delay between the intended start and now, so a late start is
                    // measured, not hidden (no coordinated omission); later requests follow their predecessors.
                    self.execute(&ctx, request, (i == 0).then_some(intended_start)).await;
                }
                if stop.is_stopped() || free.send(id).is_err() {
                    break;
                }
            }
        }
        iterations.close();
        while iterations.try_recv().is_ok() {
            unrun.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends one request and records it; latency counts from `measured_from` when given, else from now.
    async fn execute(&mut self, ctx: &RunCtx, request: &Req, measured_from: Option<Instant>) {
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = match (&request.kind, &mut self.client) {
            (ReqKind::Http(http), Client::Http(client)) => {
                match build(&ctx.compiled, http, &self.draws, &mut self.text) {
                    Ok(outgoing) => match tokio::time::timeout(ctx.timeout, client.send(outgoing)).await {
                        Ok(Ok(outcome)) if outcome.status.as_u16() < 400 => Ok(outcome.body_bytes),
                        Ok(Ok(outcome)) => Err((
                            outcome.body_bytes,
                            format!(
                                "HTTPError {} {}",
                                outcome.status.as_u16(),
                                outcome.status.canonical_reason().unwrap_or("")
                            )
                            .trim_end()
                            .to_string(),
                        )),
                        Ok(Err(error)) => Err((0, error)),
                        Err(_) => {
                            // The response may still arrive on this connection: start afresh.
                            client.reset_connection();
                            Err((0, timeout_error(ctx.timeout)))
                        }
                    },
                    Err(error) => Err((0, error)),
                }
            }
            (ReqKind::Redis(parts), Client::Redis(client)) => {
                let args: Vec<String> = parts.iter().map(|p| ctx.compiled.render(p, &self.draws)).collect();
                match tokio::time::timeout(ctx.timeout, client.send(&args)).await {
                    Ok(Ok(bytes)) => Ok(bytes),
                    Ok(Err(error)) => Err((0, error)),
                    Err(_) => {
                        client.reset_connection();
                        Err((0, timeout_error(ctx.timeout)))
                    }
                }
            }
            _ => Err((0, "request kind does not suit the target".to_string())),
        };
        let done = Instant::now();
        ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
        let from = measured_from.map_or(started, |intended| intended.min(started));
        let (bytes, error) = match outcome {
            Ok(bytes) => (bytes, None),
            Err((bytes, error)) => (bytes, Some(error.into_boxed_str())),
        };
        ctx.recorder.push(
            self.shard,
            Record {
                done_us: done.duration_since(ctx.started).as_micros() as u64,
                latency_us: done.duration_since(from).as_micros() as u64,
                bytes,
                stat: request.stat,
                error,
            },
        );
    }
}

/// The request to send, rendered with the task's draws; `text` is a reusable buffer.
fn build(compiled: &Compiled, http: &HttpReq, draws: &Draws, text: &mut String) -> Result<Outgoing, String> {
    let uri = match &http.path {
        PathTpl::Static(uri) => uri.clone(),
        PathTpl::Dynamic(tpl) => {
            let mut path = String::with_capacity(64);
            compiled.render_into(tpl, draws, &mut path, Escape::Uri);
            Uri::from_maybe_shared(Bytes::from(path)).map_err(|e| format!("InvalidURL: {e}"))?
        }
    };
    let mut headers = Vec::with_capacity(http.headers.len());
    for (name, value) in &http.headers {
        let value = match value {
            HeaderTpl::Static(value) => value.clone(),
            HeaderTpl::Dynamic(tpl) => {
                text.clear();
                compiled.render_into(tpl, draws, text, Escape::None);
                HeaderValue::from_str(text).map_err(|e| format!("InvalidHeader: {name}: {e}"))?
            }
        };
        headers.push((name.clone(), value));
    }
    let body = match &http.body {
        BodyTpl::None => None,
        BodyTpl::Static(content_type, bytes) => Some((*content_type, bytes.clone())),
        BodyTpl::Form(fields) => Some((FORM, Bytes::from(compiled.render_form(fields, draws)))),
        BodyTpl::Json(json) => {
            let value = compiled.render_json(json, draws);
            Some((JSON, Bytes::from(serde_json::to_vec(&value).map_err(|e| format!("InvalidJSON: {e}"))?)))
        }
    };
    Ok(Outgoing { method: http.method.clone(), uri, headers, body })
}

fn timeout_error(timeout: Duration) -> String {
    format!("Timeout: no response within {:.1} s", timeout.as_secs_f64())
}
