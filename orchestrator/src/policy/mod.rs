//! Autoscaling policies.

pub mod hpa;
