//! One kubernetes cell from start to end: connect, refuse (or take over) other controllers, record the replicas,
//! reset and await readiness, run the load with the policy acting, then put the cluster back as it was found:
//! the cell's HPAs deleted, the replicas restored, suspended controllers handed back. The clean-up runs whatever
//! ended the cell (an error, Ctrl-C, a panic): [`Restore`] does it when dropped.
//!
//! Kubernetes cells of one run take turns (a lock file in the run folder): they share one cluster.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::runtime::Runtime;

use super::api::ClusterApi;
use super::backend::{Acting, KubernetesBackend, hpa_objects};
use super::observe::Observer;
use super::prometheus::{Prometheus, Telemetry};
use super::safety::{self, Snapshot, TakeOver};
use super::settings::KubernetesRun;
use crate::agents;
use crate::agents::pool::Plan;
use crate::app::kubernetes::ClusterApp;
use crate::backends::CellRun;
use crate::backends::agent_driven::{AgentDriven, finish_agents, take_turn};
use crate::cell::{CellConfig, CellSummary, Decision, Observation, Policy, ResolvedPolicy, SecondMetrics, drive};
use crate::policy::HpaPolicy;

/// An HPA baseline on a real cluster: the cluster's controller decides, the policy only sets the start.
struct InClusterHpa {
    initial: Vec<u32>,
}

impl Policy for InClusterHpa {
    fn initial_replicas(&self) -> Vec<u32> {
        self.initial.clone()
    }
    fn interval_s(&self) -> u64 {
        u64::MAX
    }
    fn decide(&mut self, _: &Observation) -> Vec<Decision> {
        Vec::new()
    }
}

/// Puts the cluster back when dropped: HPAs the cell created deleted, replicas restored, controllers handed back.
pub struct Restore {
    runtime: Arc<Runtime>,
    api: ClusterApi,
    snapshot: Option<Snapshot>,
    pub take_over: TakeOver,
    pub created_hpas: Arc<Mutex<Vec<String>>>,
    done: bool,
}

impl Restore {
    pub fn new(runtime: Arc<Runtime>, api: ClusterApi) -> Restore {
        Restore {
            runtime,
            api,
            snapshot: None,
            take_over: TakeOver::default(),
            created_hpas: Arc::default(),
            done: false,
        }
    }

    pub fn run(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let api = self.api.clone();
        let hpas: Vec<String> = std::mem::take(&mut *self.created_hpas.lock().expect("created hpas"));
        let snapshot = self.snapshot.take();
        let take_over = &mut self.take_over;
        self.runtime.block_on(async {
            let mut first_error: Option<anyhow::Error> = None;
            for name in &hpas {
                match api.delete_hpa(name).await {
                    Ok(()) => tracing::info!(hpa = %name, "hpa deleted"),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(snapshot) = &snapshot {
                if let Err(e) = snapshot.restore(&api).await {
                    first_error.get_or_insert(e);
                } else {
                    tracing::info!(replicas = ?snapshot.replicas, "replicas restored");
                }
            }
            if let Err(e) = safety::hand_back(&api, take_over).await {
                first_error.get_or_insert(e);
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

impl Restore {
    /// The replicas recorded before the cell, per deployment.
    pub fn snapshot_replicas(&self) -> Vec<(String, i32)> {
        self.snapshot.as_ref().map(|s| s.replicas.clone()).unwrap_or_default()
    }

    /// Nothing to restore (a dry run made no changes).
    pub fn forget(&mut self) {
        self.done = true;
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = self.run() {
            tracing::error!(error = %format!("{e:#}"), "restoring the cluster");
            eprintln!("error: restoring the cluster: {e:#}");
        }
    }
}

/// Everything a cell (or a dry run of it) does to the cluster before the load starts.
pub struct Prepared {
    pub runtime: Arc<Runtime>,
    pub api: ClusterApi,
    pub app: ClusterApp,
    pub restore: Restore,
    pub policy: Box<dyn Policy>,
    /// HPA cells: the objects to create.
    pub hpas: Option<Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>>,
    pub server: String,
}

pub fn runtime() -> Result<Arc<Runtime>> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubernetes")
            .enable_all()
            .build()
            .context("starting the kubernetes backend's runtime")?,
    ))
}

/// Connects, checks for other controllers (refusing, or taking over), records the replicas.
pub fn prepare(id: &str, config: &CellConfig, run: &KubernetesRun, policy: Box<dyn Policy>) -> Result<Prepared> {
    let runtime = runtime()?;
    let (client, server) = runtime.block_on(super::client::connect(run))?;
    let app = ClusterApp::resolve(&config.app);
    let mut api = ClusterApi::new(client, &app.namespace, &app.deployments);
    if run.dry_run {
        api = api.dry_run();
    }
    let mut restore = Restore::new(Arc::clone(&runtime), api.clone());
    let (policy, hpas): (Box<dyn Policy>, _) = match config.policy.as_ref() {
        ResolvedPolicy::Hpa { manifests, .. } => {
            let mut objects = hpa_objects(manifests, &app.namespace, id)?;
            for object in &mut objects {
                let spec = &mut object.spec;
                if let Some(service) = config.app.service_index(&spec.scale_target_ref.name) {
                    spec.scale_target_ref.name = app.deployments[service].clone();
                }
            }
            let initial = HpaPolicy::new(&config.app, manifests).initial_replicas();
            (Box::new(InClusterHpa { initial }), Some(objects))
        }
        _ => (policy, None),
    };
    runtime.block_on(async {
        let conflicts = safety::find_conflicts(&api, &app).await?;
        safety::refuse(&conflicts, &app.namespace, run.take_over)?;
        restore.snapshot = Some(Snapshot::take(&api, &app).await?);
        safety::take_over(&api, &conflicts, &mut restore.take_over).await
    })?;
    Ok(Prepared { runtime, api, app, restore, policy, hpas, server })
}

/// Runs a kubernetes cell into its folder.
pub fn run_cell(
    cell: &CellRun<'_>,
    run: &KubernetesRun,
    policy: Box<dyn Policy>,
    on_second: impl FnMut(&SecondMetrics),
    on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> Result<CellSummary> {
    let (id, config, dir) = (cell.id, cell.config, cell.dir);
    let _turn = take_turn(dir.parent().unwrap_or(Path::new(".")), "kubernetes")?;
    let Prepared { runtime, api, app, mut restore, mut policy, hpas, server } = prepare(id, config, run, policy)?;
    tracing::info!(server = %server, namespace = %app.namespace, deployments = ?app.deployments, "cluster");
    let telemetry = match &run.prometheus {
        Some(url) => Some(Telemetry::new(Prometheus::new(url)?, app.clone())),
        None => None,
    };
    if let Some(telemetry) = &telemetry {
        match runtime.block_on(telemetry.edges()) {
            Ok(edges) if !edges.is_empty() => {
                let names: Vec<String> = edges
                    .iter()
                    .map(|(a, b, _)| format!("{}->{}", config.app.services[*a].name, config.app.services[*b].name))
                    .collect();
                tracing::info!(edges = ?names, "service graph from Prometheus");
            }
            Ok(_) => tracing::info!("Prometheus shows no calls yet: the app model's service graph stands in"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "service graph from Prometheus"),
        }
    }
    let observer = Observer::new(app.clone(), telemetry, 0)?;
    let acting = match hpas {
        Some(objects) => {
            let names = objects
                .iter()
                .map(|o| {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let deployment = o.spec.scale_target_ref.name.clone();
                    let service = app.service_of_deployment(&deployment).expect("targets are the app's");
                    (name, service, deployment)
                })
                .collect();
            Acting::Hpa {
                objects,
                recorder: super::act::HpaRecorder::create(&dir.join(crate::run_folder::HPA_CSV), names)?,
            }
        }
        None => Acting::Scale,
    };
    let agents_dir = dir.join("agents");
    let scenario = load_agent::scenario::Scenario::clone(&config.scenario);
    let pool =
        agents::pool_for_cell(runtime.handle().clone(), run.agents_setup(), &agents_dir, &run.target, &scenario.shape)?;
    let plan = Plan { scenario, target: run.target.clone(), seed: config.seed, time_scale: 1.0 };
    let load = AgentDriven::new(pool, plan, config, cell.cancel);
    let mut backend =
        KubernetesBackend::new(Arc::clone(&runtime), api, observer, load, acting, run.readiness_timeout(), config);
    restore.created_hpas = backend.created_hpas();
    let mut summary = drive(id, config, &mut backend, policy.as_mut(), on_second, on_scale);
    summary.scaling_actions += backend.hpa_actions();
    backend.finish_records()?;
    let failure = backend.load_mut().take_failure();
    // The cluster first: the agents' files can wait, the cancel grace cannot.
    let restored = restore.run();
    finish_agents(&mut backend.load_mut().pool, &agents_dir, dir)?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    cell.cancel.check()?;
    restored.context("restoring the cluster")?;
    Ok(summary)
}
