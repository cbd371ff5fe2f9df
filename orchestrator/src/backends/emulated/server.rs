//! The emulator's listeners: the app (HTTP or RESP) on the address agents reach, the pod-control API and
//! `/metrics` on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::burn_pods::{BurnError, BurnPods};
use super::cgroup::CgroupRoot;
use super::cluster::Cluster;
use super::control_api;
use super::http::{self, HttpApp};
use super::resp::{self, RespApp};
use super::served_app::CompiledApp;
use super::storefront::Storefront;
use crate::app::AppModel;
use crate::settings::emulated::{CpuMode, EmulatorSettings};

/// A running emulated app.
pub struct Emulator {
    pub cluster: Arc<Cluster>,
    pub app_address: SocketAddr,
    pub control_address: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Serves `app` on `listen` and its control API on `control_listen`; requests inside the app give up after
    /// `request_timeout` (the clients' own timeout). Must run inside a tokio runtime. In the burning mode the pods'
    /// cgroups go under the host's cpu controller.
    pub async fn start(
        app: &AppModel,
        model: &EmulatorSettings,
        listen: SocketAddr,
        control_listen: SocketAddr,
        seed: u64,
        request_timeout: Duration,
    ) -> std::io::Result<Emulator> {
        Emulator::start_in(app, model, listen, control_listen, seed, request_timeout, None).await
    }

    /// [`Emulator::start`] with the burning mode's pods under `cgroups` (`None`: the host's cpu controller);
    /// ignored when service times are slept. A burning emulator that cannot make its groups fails with the
    /// cgroup's error in one line (a [`super::burn_pods::BurnError`] inside the `io::Error`) and leaves none.
    pub async fn start_in(
        app: &AppModel,
        model: &EmulatorSettings,
        listen: SocketAddr,
        control_listen: SocketAddr,
        seed: u64,
        request_timeout: Duration,
        cgroups: Option<CgroupRoot>,
    ) -> std::io::Result<Emulator> {
        let compiled = CompiledApp::compile(app, model.pod_concurrency);
        let redis = compiled.speaks_redis();
        let cluster = match model.cpu {
            CpuMode::Sleep => Cluster::new(compiled, model.time_scale, model.pod_concurrency, seed),
            CpuMode::Burn => {
                if model.time_scale != 1.0 {
                    return Err(std::io::Error::other(BurnError::Compressed(model.time_scale)));
                }
                let root = match cgroups {
                    Some(root) => root,
                    None => CgroupRoot::detect().map_err(std::io::Error::other)?,
                };
                let burn = BurnPods::new(root, &compiled, model.pod_concurrency).map_err(std::io::Error::other)?;
                Cluster::burning(compiled, model.time_scale, model.pod_concurrency, seed, burn)
                    .map_err(std::io::Error::other)?
            }
        };
        let cluster = Arc::new(cluster);
        let bind = |address: SocketAddr, what: &'static str| async move {
            let listener = TcpListener::bind(address).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {address} for the {what}: {e}"))
            })?;
            let bound = listener.local_addr()?;
            Ok::<_, std::io::Error>((listener, bound))
        };
        let (app_listener, app_address) = bind(listen, "emulated app").await?;
        let (control_listener, control_address) = bind(control_listen, "pod-control API").await?;
        let mut tasks = Vec::new();
        if redis {
            let front = Arc::new(RespApp::new(cluster.clone(), request_timeout));
            tasks.push(tokio::spawn(resp::serve(app_listener, front)));
        } else {
            let front = Arc::new(HttpApp {
                cluster: cluster.clone(),
                timeout: request_timeout,
                storefront: Storefront::for_app(&app.name, seed),
            });
            let router = http::router(front);
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(app_listener, router).await;
            }));
        }
        let control = control_api::router(cluster.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(control_listener, control).await;
        }));
        Ok(Emulator { cluster, app_address, control_address, tasks })
    }

    /// The URL agents send their requests to: `http://` or `redis://` and the app's address.
    pub fn target_url(&self) -> String {
        let scheme = if self.cluster.app.speaks_redis() { "redis" } else { "http" };
        format!("{scheme}://{}", self.app_address)
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_address)
    }

    /// Stops accepting requests; burning pods stop and their cgroups go.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.cluster.stop_burning();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
