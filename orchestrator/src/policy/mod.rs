//! The autoscaling policies that are not learned: the Kubernetes HPA (through the port in [`crate::hpa`]) and fixed
//! replicas. Each implements [`crate::cell::Policy`].

mod hpa_policy;
mod static_replicas;

pub use hpa_policy::HpaPolicy;
pub use static_replicas::StaticPolicy;
