//! One emulated cell from start to end: the emulator up, the agents checked and started, the policy driving the
//! backend second by second, then the agents' CSVs, agents.json and emulator.json in the cell folder.
//!
//! Emulated cells of one run take turns (a lock file in the run folder): two of them at once on the same cores
//! would measure each other. Simulator cells still run alongside.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

use super::backend::EmulatedBackend;
use super::compress::compress;
use super::server::Emulator;
use super::telemetry::CODES;
use crate::agents;
use crate::agents::pool::Plan;
use crate::backends::CellRun;
use crate::backends::agent_driven::{AgentDriven, finish_agents, take_turn};
use crate::cell::{CellSummary, Policy, SecondMetrics, drive};
use crate::settings::emulated::EmulatedRun;

/// emulator.json: what the app served.
#[derive(Debug, Serialize)]
pub struct EmulatorReport {
    pub format: u32,
    pub app_url: String,
    pub control_url: String,
    pub time_scale: f64,
    pub pod_concurrency: u32,
    /// Requests as a client counts them: everything received, less the redirects (a redirect and the request
    /// that follows it are one request to the client).
    pub client_requests: u64,
    pub received: u64,
    /// Answers by status code; received minus answered were cut off (the client went away).
    pub answered: std::collections::BTreeMap<String, u64>,
    pub routes: Vec<RouteReport>,
    pub services: Vec<ServiceReport>,
}

#[derive(Debug, Serialize)]
pub struct RouteReport {
    pub name: String,
    pub received: u64,
    pub answered: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct ServiceReport {
    pub name: String,
    pub calls: u64,
    pub refused: u64,
    pub cpu_seconds: f64,
    /// Burning mode only: CFS counters summed over the service's pods, removed ones included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_periods: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periods: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_s: Option<f64>,
}

/// What `emulator` served so far; in the burning mode read before its cgroups go.
pub fn emulator_report(emulator: &Emulator) -> EmulatorReport {
    let cluster = &emulator.cluster;
    let mut answered = std::collections::BTreeMap::new();
    let mut routes = Vec::new();
    let mut received = 0;
    for (route, stats) in cluster.app.routes.iter().zip(&cluster.telemetry.routes) {
        let mut by_code = std::collections::BTreeMap::new();
        for (code, count) in CODES.iter().zip(&stats.answered) {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                by_code.insert(code.to_string(), count);
                *answered.entry(code.to_string()).or_insert(0) += count;
            }
        }
        let route_received = stats.received.load(Ordering::Relaxed);
        received += route_received;
        routes.push(RouteReport { name: route.name.clone(), received: route_received, answered: by_code });
    }
    let redirects = answered.get("302").copied().unwrap_or(0);
    EmulatorReport {
        format: 1,
        app_url: emulator.target_url(),
        control_url: emulator.control_url(),
        time_scale: cluster.time_scale,
        pod_concurrency: cluster.pod_concurrency,
        client_requests: received - redirects,
        received,
        answered,
        routes,
        services: cluster
            .app
            .services
            .iter()
            .zip(&cluster.services)
            .enumerate()
            .map(|(index, (spec, runtime))| {
                let throttling = cluster.burn.as_ref().map(|burn| burn.throttling(index));
                ServiceReport {
                    name: spec.name.clone(),
                    calls: runtime.calls.load(Ordering::Relaxed),
                    refused: runtime.failures.load(Ordering::Relaxed),
                    cpu_seconds: runtime.admission.busy_cpu_ns() as f64 / 1e9,
                    throttled_periods: throttling.map(|t| t.throttled_periods),
                    periods: throttling.map(|t| t.periods),
                    throttled_s: throttling.map(|t| t.throttled.as_secs_f64()),
                }
            })
            .collect(),
    }
}

/// Runs an emulated cell into its folder, handing every second to `on_second` and each scaling action to
/// `on_scale`.
pub fn run_cell(
    cell: &CellRun<'_>,
    run: &EmulatedRun,
    mut policy: Box<dyn Policy>,
    on_second: impl FnMut(&SecondMetrics),
    on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> Result<CellSummary> {
    let (config, dir) = (cell.config, cell.dir);
    let model = config.emulated.as_ref().ok_or_else(|| anyhow!("an emulated cell without emulator settings"))?;
    let _turn = take_turn(dir.parent().unwrap_or(Path::new(".")), "emulated")?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("emulator")
            .enable_all()
            .build()
            .context("starting the emulator's runtime")?,
    );
    let timeout = Duration::from_secs_f64(config.scenario.request_timeout_s);
    let control_listen = "127.0.0.1:0".parse().expect("a socket address");
    let emulator = runtime
        .block_on(Emulator::start(&config.app, model, run.listen, control_listen, config.seed, timeout))
        .context("starting the emulated app")?;
    tracing::info!(app_url = %emulator.target_url(), control_url = %emulator.control_url(), "emulator listening");
    let scenario = compress(&config.scenario, model.time_scale);
    let agents_dir = dir.join("agents");
    let target = emulator.target_url();
    let pool =
        agents::pool_for_cell(runtime.handle().clone(), run.agents_setup(), &agents_dir, &target, &scenario.shape)?;
    let plan = Plan { scenario, target, seed: config.seed, time_scale: model.time_scale };
    let load = AgentDriven::new(pool, plan, config, cell.cancel);
    let mut backend = EmulatedBackend::new(runtime.clone(), emulator, load);
    let summary = drive(cell.id, config, &mut backend, policy.as_mut(), on_second, on_scale);

    let report = finish_agents(&mut backend.load_mut().pool, &agents_dir, dir)?;
    let served = emulator_report(backend.emulator());
    tracing::info!(
        agents_requests = report.requests,
        app_client_requests = served.client_requests,
        losses = report.losses.len(),
        "load finished"
    );
    let json = serde_json::to_vec_pretty(&served).context("serializing emulator.json")?;
    crate::run_folder::write_atomically(&dir.join(crate::run_folder::EMULATOR_JSON), &json)?;
    cell.cancel.check()?;
    if let Some(failure) = backend.load_mut().take_failure() {
        return Err(failure);
    }
    Ok(summary)
}
