//! The `emulated` backend: the app model served over real HTTP (or RESP), in process, driven by real load agents.
//!
//! Each request walks its route's call tree; each service admits calls up to ready pods × per-pod concurrency and
//! holds each for a service time drawn from its CPU demand, slept rather than burned, so two cores can emulate a
//! cluster; calls queue, time out (504) or find no endpoints (503), and pods start after their start-up delay, as in
//! the simulator. A pod-control API and Prometheus `/metrics` (Istio, cAdvisor and kube-state-metrics names) serve
//! on loopback. Control time can run faster than request time (`time_scale`).
//!
//! - The matrix's `emulated:` section is read in [`crate::settings::emulated`].
//! - [`served_app`]: the app compiled for serving; [`calls`]: a request walking its tree; [`admission`]: per-service
//!   queues; [`cluster`]: pods ([`pod`]), start-up, CPU accounting, metrics-server; [`telemetry`]: hot-path
//!   counters.
//! - [`http`], [`storefront`], [`resp`]: the app's fronts; [`control_api`], [`prometheus`]: the control side;
//!   [`server`]: the listeners.
//! - [`compress`]: time compression of scenarios; [`backend`]: the [`crate::cell::ClusterBackend`];
//!   [`lifecycle`]: one emulated cell from start to end; [`standalone`]: `orch emulate`.
//! - [`cgroup`]: a CPU-bandwidth cgroup sandbox (quota = a pod's limit); [`burn_pods`]: the opt-in burning mode
//!   (`emulated: {cpu: burn}`), where each pod is such a group of worker threads burning calls' CPU for real.

pub mod admission;
pub mod backend;
pub mod burn_pods;
pub mod calls;
pub mod cgroup;
pub mod cluster;
pub mod compress;
pub mod control_api;
pub mod http;
pub mod lifecycle;
pub mod pod;
pub mod prometheus;
pub mod resp;
pub mod served_app;
pub mod server;
pub mod standalone;
pub mod storefront;
pub mod telemetry;

pub use crate::settings::emulated::{CpuMode, EmulatedRun, EmulatorSettings, OnLoss};
pub use backend::EmulatedBackend;
pub use server::Emulator;
