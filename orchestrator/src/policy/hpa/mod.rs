//! The Kubernetes HorizontalPodAutoscaler, ported from the upstream controller.
