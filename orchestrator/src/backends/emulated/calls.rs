//! One request walking its route's call tree: at each call, wait for a pod of the service (admission), hold it for
//! a service time drawn from the call's CPU demand (exponential, as the simulator's M/M/c servers), then make the
//! child calls one after another, then the call's non-CPU latency. A call refused (no endpoints, or the request's
//! deadline passed) fails the request, and every call still open on the way back up.
//!
//! Service times are slept, unless the emulator burns CPU ([`super::burn_pods`]): then the call's CPU demand (its
//! drawn hold times the cores it holds) is burned on a pod's worker thread and the pacer is not involved.
//!
//! Slept service times: Tokio's timers fire on millisecond ticks, so a request keeps a debt of
//! time overslept and takes it off its next holds: its total latency stays within a tick of the sum of its holds,
//! and pods are held for their service times on average. Non-CPU latency holds no pod, so it is owed rather than
//! slept until it adds up to a timer tick (before the next call, at the latest at the end of the request): fewer
//! timers, the same total latency, calls at most a tick early.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::admission::Refusal;
use super::cluster::Cluster;

/// Tokio's timer resolution: owed time below it waits for more.
const TICK: Duration = Duration::from_millis(1);

/// Sleeps requested holds, paying back time overslept and collecting time owed.
#[derive(Debug, Default)]
pub struct Pacer {
    /// Slept beyond what was asked.
    debt: Duration,
    /// Asked for (non-CPU latency) but not slept yet.
    owed: Duration,
}

impl Pacer {
    /// Sleeps `wanted` now (a pod is held meanwhile), less the debt.
    pub async fn hold(&mut self, wanted: Duration) {
        if wanted <= self.debt {
            self.debt -= wanted;
            return;
        }
        let deadline = Instant::now() + (wanted - self.debt);
        tokio::time::sleep_until(deadline.into()).await;
        self.debt = Instant::now().saturating_duration_since(deadline);
    }

    /// Time that holds nothing: slept once enough is owed for a timer tick, or at [`Pacer::settle`].
    pub fn owe(&mut self, wanted: Duration) {
        let paid = wanted.min(self.debt);
        self.debt -= paid;
        self.owed += wanted - paid;
    }

    /// Sleeps what is owed if it has reached a tick (before a call: it must not be slept while holding a pod).
    pub async fn catch_up(&mut self) {
        if self.owed >= TICK {
            self.settle().await;
        }
    }

    /// Sleeps everything owed (at the end of a request).
    pub async fn settle(&mut self) {
        let owed = std::mem::take(&mut self.owed);
        self.hold(owed).await;
    }
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    node: usize,
    /// Calls of this node still to make.
    remaining: u32,
    next_child: usize,
    /// When the call in progress started (before admission); `None` between calls.
    started: Option<Instant>,
}

/// How many times a call with mean count `count` happens: the whole part, plus one with the fraction's probability.
fn repeats(count: f64, rng: &mut ChaCha8Rng) -> u32 {
    let whole = count.floor();
    let extra = (rng.r#gen::<f64>() < count - whole) as u32;
    whole as u32 + extra
}

/// Runs route `route`'s call tree; the request fails with the first refusal.
pub async fn run_route(cluster: &Cluster, route: usize, deadline: Instant) -> Result<(), Refusal> {
    let mut rng = cluster.request_rng();
    let nodes = &cluster.app.nodes;
    let root = cluster.app.routes[route].root;
    let mut pacer = Pacer::default();
    let mut stack: Vec<Frame> = Vec::with_capacity(8);
    stack.push(Frame { node: root, remaining: repeats(nodes[root].count, &mut rng), next_child: 0, started: None });
    while let Some(&frame) = stack.last() {
        let top = stack.len() - 1;
        let node = &nodes[frame.node];
        match frame.started {
            None if frame.remaining == 0 => {
                stack.pop();
            }
            None => {
                pacer.catch_up().await;
                let started = Instant::now();
                stack[top].started = Some(started);
                if let Err(refusal) = serve(cluster, frame.node, deadline, &mut pacer, &mut rng).await {
                    let now = Instant::now();
                    for open in &stack {
                        let began = open.started.expect("open calls have started");
                        cluster.telemetry.record_call(nodes[open.node].edge, refusal.status(), now - began);
                    }
                    return Err(refusal);
                }
                stack[top].next_child = 0;
            }
            Some(_) if frame.next_child < node.children.len() => {
                let child = node.children[frame.next_child];
                stack[top].next_child += 1;
                let remaining = repeats(nodes[child].count, &mut rng);
                stack.push(Frame { node: child, remaining, next_child: 0, started: None });
            }
            Some(started) => {
                // The call and its subtree are done: its time at the callee includes its own calls and latency.
                pacer.owe(cluster.app.services[node.service].latency);
                if stack.len() == 1 && frame.remaining == 1 {
                    pacer.settle().await;
                }
                cluster.telemetry.record_call(node.edge, 200, started.elapsed());
                stack[top].remaining -= 1;
                stack[top].started = None;
            }
        }
    }
    pacer.settle().await;
    Ok(())
}

/// One call's own work at its service: admission, then the held service time.
async fn serve(
    cluster: &Cluster,
    node: usize,
    deadline: Instant,
    pacer: &mut Pacer,
    rng: &mut ChaCha8Rng,
) -> Result<(), Refusal> {
    let node = &cluster.app.nodes[node];
    let service = &cluster.services[node.service];
    service.calls.fetch_add(1, Ordering::Relaxed);
    let result = async {
        if Instant::now() >= deadline {
            return Err(Refusal::Timeout);
        }
        let permit = service.admission.acquire(deadline).await?;
        // Exponential service time with the call's mean.
        let u: f64 = rng.r#gen();
        let hold_s = -node.mean_hold_s * (1.0 - u).ln();
        match &cluster.burn {
            None => pacer.hold(Duration::from_secs_f64(hold_s)).await,
            // The same draw as CPU time, burned on a pod in its cgroup: the quota stretches it, not a model.
            Some(burn) => burn.serve(node.service, Duration::from_secs_f64(hold_s * node.cores_while_held)).await?,
        }
        permit.finish((hold_s * node.cores_while_held * 1e9) as u64);
        Ok(())
    }
    .await;
    if result.is_err() {
        service.failures.fetch_add(1, Ordering::Relaxed);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::app::AppModel;
    use crate::backends::emulated::served_app::CompiledApp;

    fn boutique(pods: u32) -> Cluster {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/apps/online-boutique.yaml");
        let cluster = Cluster::new(CompiledApp::compile(&AppModel::load(&file).unwrap(), 1), 1.0, 1, 3);
        cluster.reset(&vec![pods; cluster.app.services.len()]);
        cluster
    }

    #[tokio::test]
    async fn owed_latency_is_slept_in_ticks_and_in_full_at_the_end() {
        let mut pacer = Pacer::default();
        let started = Instant::now();
        for _ in 0..30 {
            pacer.owe(Duration::from_micros(200));
            pacer.catch_up().await;
        }
        pacer.settle().await;
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(6), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(50), "{elapsed:?}");
        assert_eq!(pacer.owed, Duration::ZERO);
    }

    #[tokio::test]
    async fn paced_holds_add_up_to_within_a_timer_tick() {
        let mut pacer = Pacer::default();
        let started = Instant::now();
        for _ in 0..40 {
            pacer.hold(Duration::from_micros(250)).await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(10), "{elapsed:?}");
        // 10 ms of holds; timer ticks are 1 ms, a loaded machine adds some.
        assert!(elapsed < Duration::from_millis(60), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_cart_request_calls_every_service_of_its_tree() {
        let cluster = boutique(1);
        let cart = cluster.app.routes.iter().position(|r| r.name == "cart").unwrap();
        run_route(&cluster, cart, Instant::now() + Duration::from_secs(10)).await.unwrap();
        let calls =
            |name: &str| cluster.services[cluster.app.service_index(name).unwrap()].calls.load(Ordering::Relaxed);
        assert_eq!(calls("frontend"), 1);
        assert_eq!(calls("currencyservice"), 4);
        assert_eq!(calls("productcatalogservice"), 3);
        assert_eq!(calls("redis-cart"), 1);
        assert_eq!(calls("paymentservice"), 0);
        assert!(cluster.services.iter().all(|s| s.admission.busy_cpu_ns() > 0 || s.calls.load(Ordering::Relaxed) == 0));
    }

    #[tokio::test]
    async fn no_ready_pod_fails_at_once_and_a_full_queue_times_out() {
        let cluster = boutique(1);
        let cart = cluster.app.routes.iter().position(|r| r.name == "cart").unwrap();
        let shipping = cluster.app.service_index("shippingservice").unwrap();
        cluster.scale(shipping, 0);
        let refused = run_route(&cluster, cart, Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(refused, Err(Refusal::NoEndpoints));
        assert_eq!(cluster.services[shipping].failures.load(Ordering::Relaxed), 1);
        // The frontend's call recorded the failure too, as 503.
        let entry = cluster.app.nodes[cluster.app.routes[cart].root].edge;
        assert_eq!(cluster.telemetry.edges[entry].codes[2].requests(), 1);

        let cluster = boutique(1);
        let frontend = cluster.app.service_index("frontend").unwrap();
        let _held = cluster.services[frontend].admission.acquire(Instant::now() + Duration::from_secs(10)).await;
        let timed_out = run_route(&cluster, cart, Instant::now() + Duration::from_millis(50)).await;
        assert_eq!(timed_out, Err(Refusal::Timeout));
    }
}
