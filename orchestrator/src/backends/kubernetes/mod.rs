//! The `kubernetes` backend: a real cluster through the kube crate, driven by the same policies as the simulator,
//! under real load from the load agents.
//!
//! - [`settings`]: the matrix's `kubernetes:` section (cluster, target, Prometheus, take-over, agents);
//!   the app model's `kubernetes:` block (deployment names, selectors, query templates) is [`crate::app::kubernetes`].
//! - [`client`]: the kubeconfig found as kubectl finds it; [`api`]: typed calls, dry-run, errors that explain.
//! - [`observe`]: pods, readiness, PodMetrics or cAdvisor; [`prometheus`]: mesh figures and the service graph.
//! - [`act`]: readiness, HPA objects and their status; [`safety`]: other controllers, take-over, snapshots.
//! - [`backend`]: the [`crate::cell::ClusterBackend`]; [`lifecycle`]: one cell with its clean-up; [`dry_run`].

pub mod act;
pub mod api;
pub mod backend;
pub mod client;
pub mod dry_run;
pub mod lifecycle;
pub mod observe;
pub mod prometheus;
pub mod safety;
pub mod settings;
