//! The burning mode's pods (`emulated: {cpu: burn}`): each pod is a CPU cgroup whose CFS quota is the service's
//! CPU limit (per [`PERIOD`]), holding `pod_concurrency` OS worker threads. A call admitted to the service sends
//! its CPU demand to one pod's workers and awaits it; a worker burns it on its own CPU clock, so the kernel's
//! scheduler and throttling, not a model of them, decide how long it takes.
//!
//! Which pod serves a call: the least busy ready pod (fewest calls sent and not yet burned), ties taken in turn,
//! as a Kubernetes Service behind Envoy's least-request balancing spreads calls. Admission already caps the calls
//! in progress at ready pods × concurrency, so the chosen pod has a free worker except in the moment a pod goes.
//!
//! Pods follow the cluster's deployments ([`BurnPods::sync`]): a new pod gets its group and threads when it is
//! created and takes calls once ready; a removed pod takes no new calls, its workers finish what they were sent and
//! exit, then its throttling counters are added to the service's totals and its group goes. [`BurnPods::shutdown`]
//! (the emulator stopping) cuts calls short, joins every worker and removes every group; a process leaving by
//! `exit` without dropping the emulator removes them at exit.
//!
//! Cgroup v1 only: single threads join a v1 group through its `tasks` file; v2 would need a threaded subtree.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::admission::Refusal;
use super::cgroup::{self, CgroupError, CgroupRoot, CgroupVersion, CpuCgroup};
use super::pod::Pod;
use super::served_app::CompiledApp;

/// The CFS enforcement period of every pod's group (Kubernetes' default).
pub const PERIOD: Duration = Duration::from_millis(100);
/// A worker checks for the emulator stopping between slices of a burn.
const SLICE: Duration = Duration::from_millis(2);

/// Emulators made by this process, to tell their groups apart (tests run several at once).
static EMULATORS: AtomicU32 = AtomicU32::new(0);

/// Every pod group this process holds, for [`remove_live_groups`].
static LIVE_GROUPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Runs at `exit` (a cell cancelled past its grace leaves by `std::process::exit`, which runs no destructors):
/// moves our workers out of the groups still there and removes them. A group it cannot take (its list locked by
/// another thread at that moment) is left to the next start's sweep, as after a `kill -9`.
extern "C" fn remove_live_groups() {
    let Ok(groups) = LIVE_GROUPS.try_lock() else { return };
    for group in groups.iter() {
        let _ = cgroup::remove_group_at(group);
    }
}

fn track_group(path: &Path) {
    static AT_EXIT: Once = Once::new();
    // SAFETY: registers a plain function with no arguments; atexit has no other effect.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(remove_live_groups);
    });
    LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_path_buf());
}

fn untrack_group(path: &Path) {
    LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p != path);
}

#[derive(Debug, thiserror::Error)]
pub enum BurnError {
    #[error(
        "the burning mode (emulated.cpu: burn) supports cgroup v1 only for now; the cpu controller at {root} is \
         cgroup v2"
    )]
    V2Only { root: String },
    #[error("the burning mode (emulated.cpu: burn) needs time_scale 1: real CPU cannot run compressed, got {0}")]
    Compressed(f64),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot start a worker thread for pod {pod}: {cause}")]
    Thread { pod: String, cause: std::io::Error },
}

/// Throttling counters summed over pods, as cAdvisor's `container_cpu_cfs_*` totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled: Duration,
}

impl Throttling {
    fn add(&mut self, stats: cgroup::ThrottleStats) {
        self.periods += stats.periods;
        self.throttled_periods += stats.throttled_periods;
        self.throttled += stats.throttled;
    }

    /// What these totals gained since `earlier` (counters only grow; a reset baseline never exceeds them).
    pub fn since(&self, earlier: &Throttling) -> Throttling {
        Throttling {
            periods: self.periods.saturating_sub(earlier.periods),
            throttled_periods: self.throttled_periods.saturating_sub(earlier.throttled_periods),
            throttled: self.throttled.saturating_sub(earlier.throttled),
        }
    }
}

/// Every burning pod of an emulator.
pub struct BurnPods {
    root: CgroupRoot,
    /// Put before each pod's name in its group's: `e<n>`, this emulator's number in the process.
    prefix: String,
    concurrency: u32,
    services: Vec<ServicePods>,
    stopped: AtomicBool,
}

struct ServicePods {
    limit_m: u32,
    state: Mutex<PodsState>,
}

#[derive(Default)]
struct PodsState {
    pods: Vec<PodWorkers>,
    /// Where the search for the least busy pod starts, so ties go round.
    turn: usize,
    /// Counters of pods whose groups are gone.
    removed: Throttling,
}

/// A CPU demand sent to a pod; `done` is answered when it is burned (dropped if the emulator stopped first).
struct Job {
    cpu: Duration,
    done: oneshot::Sender<()>,
}

struct PodWorkers {
    id: u64,
    name: String,
    ready: bool,
    /// `None` once the pod is removed: it takes no new calls.
    jobs: Option<Sender<Job>>,
    /// Calls sent and not yet burned.
    in_flight: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    group: CpuCgroup,
}

impl PodWorkers {
    /// Makes the pod's group and its `concurrency` workers, each moved into the group by its thread id.
    fn start(root: &CgroupRoot, prefix: &str, pod: &Pod, limit_m: u32, concurrency: u32) -> Result<Self, BurnError> {
        let group = CpuCgroup::create(root, &format!("{prefix}-{}", pod.name), limit_m, PERIOD)?;
        track_group(group.path());
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut workers = PodWorkers {
            id: pod.id,
            name: pod.name.clone(),
            ready: false,
            jobs: Some(sender),
            in_flight: Arc::new(AtomicU32::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            group,
        };
        for _ in 0..concurrency {
            if let Err(e) = workers.add_worker(&receiver) {
                workers.stop_and_join();
                untrack_group(workers.group.path());
                return Err(e);
            }
        }
        Ok(workers)
    }

    fn add_worker(&mut self, receiver: &Arc<Mutex<Receiver<Job>>>) -> Result<(), BurnError> {
        let (tid_sender, tid_receiver) = mpsc::sync_channel(1);
        let (receiver, in_flight, stop) = (receiver.clone(), self.in_flight.clone(), self.stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("burn-{}", self.name))
            .spawn(move || {
                let _ = tid_sender.send(cgroup::current_tid());
                work(&receiver, &in_flight, &stop);
            })
            .map_err(|cause| BurnError::Thread { pod: self.name.clone(), cause })?;
        let tid = tid_receiver.recv().expect("a new worker sends its thread id first");
        self.threads.push(thread);
        self.group.add_thread(tid)?;
        Ok(())
    }

    /// Cuts burns short, lets the workers exit and waits for them: afterwards the group is empty.
    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// Adds the group's counters to `totals` and removes it; its workers must have exited.
    fn remove(self, totals: &mut Throttling) {
        untrack_group(self.group.path());
        match self.group.stats() {
            Ok(stats) => totals.add(stats),
            Err(e) => tracing::warn!("{e}"),
        }
        if let Err(e) = self.group.remove() {
            tracing::warn!("{e}");
        }
    }
}

/// A worker: burns the demands sent to its pod until the pod is removed (its sender dropped).
fn work(jobs: &Mutex<Receiver<Job>>, in_flight: &AtomicU32, stop: &AtomicBool) {
    loop {
        // One idle worker waits in recv, the others on the lock; a removed pod's workers drain its queue.
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else { return };
        // Measured on the thread's CPU clock as a whole, so slices add no rounding.
        let start = cgroup::thread_cpu_time();
        let burned = loop {
            let used = cgroup::thread_cpu_time().saturating_sub(start);
            if used >= job.cpu {
                break true;
            }
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            cgroup::burn((job.cpu - used).min(SLICE));
        };
        if burned {
            let _ = job.done.send(());
        }
        in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BurnPods {
    /// Checks the root (v1), removes groups a crashed run left there, and prepares the services' pods; no group is
    /// made until [`BurnPods::sync`].
    pub fn new(root: CgroupRoot, app: &CompiledApp, concurrency: u32) -> Result<BurnPods, BurnError> {
        if root.version() != CgroupVersion::V1 {
            return Err(BurnError::V2Only { root: root.path().display().to_string() });
        }
        for stale in cgroup::sweep_stale(&root)? {
            tracing::info!(group = %stale.display(), "removed a cgroup left by a run that is gone");
        }
        let number = EMULATORS.fetch_add(1, Ordering::Relaxed);
        Ok(BurnPods {
            root,
            prefix: format!("e{number}"),
            concurrency,
            services: app
                .services
                .iter()
                .map(|s| ServicePods { limit_m: s.limit_m.round() as u32, state: Mutex::default() })
                .collect(),
            stopped: AtomicBool::new(false),
        })
    }

    fn state(&self, service: usize) -> MutexGuard<'_, PodsState> {
        self.services[service].state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings `service`'s burning pods in line with its deployment's `pods` at emulated time `now_s`: starts new
    /// ones, marks ready ones, retires removed ones and removes the groups of retired pods with no calls left.
    pub fn sync(&self, service: usize, pods: &[Pod], now_s: f64) -> Result<(), BurnError> {
        if self.stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        let limit_m = self.services[service].limit_m;
        let mut state = self.state(service);
        let state = &mut *state;
        for workers in &mut state.pods {
            match pods.iter().find(|p| p.id == workers.id) {
                Some(pod) => workers.ready = pod.is_ready(now_s),
                None => {
                    workers.ready = false;
                    workers.jobs = None;
                }
            }
        }
        let mut kept = Vec::with_capacity(state.pods.len());
        for workers in state.pods.drain(..) {
            // A removed pod with nothing left to burn: its workers are leaving (their queue is closed).
            if workers.jobs.is_none() && workers.in_flight.load(Ordering::Relaxed) == 0 {
                let mut workers = workers;
                workers.stop_and_join();
                workers.remove(&mut state.removed);
            } else {
                kept.push(workers);
            }
        }
        state.pods = kept;
        for pod in pods {
            if !state.pods.iter().any(|w| w.id == pod.id) {
                let mut workers = PodWorkers::start(&self.root, &self.prefix, pod, limit_m, self.concurrency)?;
                workers.ready = pod.is_ready(now_s);
                state.pods.push(workers);
            }
        }
        Ok(())
    }

    /// Burns `cpu` on the least busy ready pod of `service` and waits until it is done.
    pub async fn serve(&self, service: usize, cpu: Duration) -> Result<(), Refusal> {
        let done = {
            let mut state = self.state(service);
            let count = state.pods.len();
            let start = state.turn;
            let chosen = (0..count)
                .map(|i| (start + i) % count.max(1))
                .filter(|&i| state.pods[i].ready && state.pods[i].jobs.is_some())
                .min_by_key(|&i| state.pods[i].in_flight.load(Ordering::Relaxed))
                .ok_or(Refusal::NoEndpoints)?;
            state.turn = (chosen + 1) % count;
            let pod = &state.pods[chosen];
            let (done, receiver) = oneshot::channel();
            let jobs = pod.jobs.as_ref().expect("chosen among pods taking calls");
            jobs.send(Job { cpu, done }).map_err(|_| Refusal::NoEndpoints)?;
            pod.in_flight.fetch_add(1, Ordering::Relaxed);
            receiver
        };
        // Dropped unburned: the emulator is stopping.
        done.await.map_err(|_| Refusal::NoEndpoints)
    }

    /// `service`'s counters: its pods' groups now plus those of pods already removed.
    pub fn throttling(&self, service: usize) -> Throttling {
        let state = self.state(service);
        let mut totals = state.removed;
        for workers in &state.pods {
            match workers.group.stats() {
                Ok(stats) => totals.add(stats),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        totals
    }

    /// The counters of each of `service`'s pods whose group is still there, by pod name (cAdvisor's per-container
    /// series: a pod's go when it does).
    pub fn pod_throttling(&self, service: usize) -> Vec<(String, Throttling)> {
        let state = self.state(service);
        let mut pods = Vec::with_capacity(state.pods.len());
        for workers in &state.pods {
            match workers.group.stats() {
                Ok(stats) => {
                    let mut counters = Throttling::default();
                    counters.add(stats);
                    pods.push((workers.name.clone(), counters));
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        pods
    }

    /// Stops every pod: burns are cut short, workers joined, counters kept, groups removed. Idempotent.
    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for service in 0..self.services.len() {
            let mut state = self.state(service);
            let state = &mut *state;
            for workers in &state.pods {
                workers.stop.store(true, Ordering::Relaxed);
            }
            for mut workers in state.pods.drain(..) {
                workers.stop_and_join();
                workers.remove(&mut state.removed);
            }
        }
    }
}

impl Drop for BurnPods {
    fn drop(&mut self) {
        self.shutdown();
    }
}
