//! `/metrics` in Prometheus' text format, under the names a Kubernetes cluster's exporters use, so the queries of
//! a cluster backend run unchanged against the emulator:
//!
//! - Istio (destination-reported): `istio_requests_total`, `istio_request_duration_milliseconds` (histogram) per
//!   caller → callee edge and response code, labelled `source_workload`, `destination_workload`, their namespaces,
//!   `destination_service`, `request_protocol`, `response_code`, `response_flags`;
//! - cAdvisor: `container_cpu_usage_seconds_total`, `container_memory_working_set_bytes` per pod, and in the burning
//!   mode the pod cgroups' CFS counters `container_cpu_cfs_periods_total`, `container_cpu_cfs_throttled_periods_total`
//!   and `container_cpu_cfs_throttled_seconds_total`;
//! - kube-state-metrics: `kube_deployment_spec_replicas`, `kube_deployment_status_replicas`,
//!   `kube_deployment_status_replicas_ready`, `..._available`, `..._unavailable`, `kube_pod_status_ready`,
//!   `kube_pod_container_resource_requests` and `..._limits`;
//! - the emulator's own: `emulator_time_seconds`, `emulator_time_scale`, `emulator_queued_calls`.
//!
//! A Redis app's calls are counted the same way with `request_protocol="redis"` (Istio counts TCP bytes only).

use std::fmt::Write;

use super::burn_pods::{BurnPods, Throttling};
use super::cluster::Cluster;
use super::telemetry::{CODES, DURATION_BUCKETS_MS};

fn flags(code: u16) -> &'static str {
    match code {
        503 => "UH",
        504 => "UT",
        _ => "-",
    }
}

/// cAdvisor's CFS counters of every burning pod whose cgroup is still there (a retiring pod's too, while it
/// finishes its calls, as cAdvisor reports a container until it is gone).
fn write_cfs_counters(out: &mut String, cluster: &Cluster, burn: &BurnPods, labels: &dyn Fn(&str, &str) -> String) {
    let pods: Vec<(String, String, Throttling)> = (0..cluster.app.services.len())
        .flat_map(|service| {
            let container = cluster.app.services[service].name.clone();
            burn.pod_throttling(service).into_iter().map(move |(pod, counters)| (container.clone(), pod, counters))
        })
        .collect();
    type Counter = (&'static str, &'static str, fn(&Throttling) -> String);
    let counters: [Counter; 3] = [
        ("container_cpu_cfs_periods_total", "Elapsed CFS enforcement intervals.", |c| c.periods.to_string()),
        ("container_cpu_cfs_throttled_periods_total", "Throttled CFS enforcement intervals.", |c| {
            c.throttled_periods.to_string()
        }),
        ("container_cpu_cfs_throttled_seconds_total", "Total time the container was throttled, in seconds.", |c| {
            format!("{:.6}", c.throttled.as_secs_f64())
        }),
    ];
    for (metric, help, value) in counters {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (container, pod, counters) in &pods {
            let _ = writeln!(out, "{metric}{{{}}} {}", labels(pod, container), value(counters));
        }
    }
}

pub fn render(cluster: &Cluster) -> String {
    let app = &cluster.app;
    let ns = &app.namespace;
    let protocol = if app.speaks_redis() { "redis" } else { "http" };
    let mut out = String::with_capacity(64 * 1024);

    let edge_labels = |edge: usize, code: u16| {
        let e = &app.edges[edge];
        let destination = &app.services[e.destination].name;
        let source_ns = if e.source.is_some() { ns.as_str() } else { "unknown" };
        format!(
            "reporter=\"destination\",source_workload=\"{}\",source_workload_namespace=\"{source_ns}\",\
             destination_workload=\"{destination}\",destination_workload_namespace=\"{ns}\",\
             destination_service=\"{destination}.{ns}.svc.cluster.local\",destination_service_name=\"{destination}\",\
             request_protocol=\"{protocol}\",response_code=\"{code}\",response_flags=\"{}\"",
            app.source_name(e),
            flags(code)
        )
    };
    out.push_str("# HELP istio_requests_total Requests received by a workload, by caller and response code.\n");
    out.push_str("# TYPE istio_requests_total counter\n");
    for (e, stats) in cluster.telemetry.edges.iter().enumerate() {
        for (c, code) in CODES.iter().enumerate() {
            let requests = stats.codes[c].requests();
            if requests > 0 {
                let _ = writeln!(out, "istio_requests_total{{{}}} {requests}", edge_labels(e, *code));
            }
        }
    }
    out.push_str(
        "# HELP istio_request_duration_milliseconds Time a workload took to answer, its own calls included.\n",
    );
    out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
    for (e, stats) in cluster.telemetry.edges.iter().enumerate() {
        for (c, code) in CODES.iter().enumerate() {
            let code_stats = &stats.codes[c];
            let cumulative = code_stats.cumulative();
            let count = cumulative[cumulative.len() - 1];
            if count == 0 {
                continue;
            }
            let labels = edge_labels(e, *code);
            for (le, total) in DURATION_BUCKETS_MS.iter().zip(&cumulative) {
                let _ = writeln!(out, "istio_request_duration_milliseconds_bucket{{{labels},le=\"{le}\"}} {total}");
            }
            let _ = writeln!(out, "istio_request_duration_milliseconds_bucket{{{labels},le=\"+Inf\"}} {count}");
            let sum_ms = code_stats.sum_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
            let _ = writeln!(out, "istio_request_duration_milliseconds_sum{{{labels}}} {sum_ms}");
            let _ = writeln!(out, "istio_request_duration_milliseconds_count{{{labels}}} {count}");
        }
    }

    let control = cluster.control();
    let now_s = control.time_s as f64;
    let pods =
        || control.deployments.iter().zip(&app.services).flat_map(|(d, spec)| d.pods.iter().map(move |p| (d, spec, p)));
    let pod_labels = |pod: &str, container: &str| format!("namespace=\"{ns}\",pod=\"{pod}\",container=\"{container}\"");
    out.push_str("# HELP container_cpu_usage_seconds_total Cumulative CPU time consumed, in seconds.\n");
    out.push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for (_, spec, pod) in pods() {
        let labels = pod_labels(&pod.name, &spec.name);
        let _ = writeln!(out, "container_cpu_usage_seconds_total{{{labels},cpu=\"total\"}} {:.6}", pod.cpu_seconds);
    }
    if let Some(burn) = &cluster.burn {
        write_cfs_counters(&mut out, cluster, burn, &pod_labels);
    }
    out.push_str("# HELP container_memory_working_set_bytes Current working set, in bytes.\n");
    out.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for (d, spec, pod) in pods() {
        let mib = if pod.is_ready(now_s) { d.memory_mib } else { spec.memory_base_mib };
        let bytes = (mib * 1024.0 * 1024.0).round();
        let _ = writeln!(out, "container_memory_working_set_bytes{{{}}} {bytes}", pod_labels(&pod.name, &spec.name));
    }
    for (metric, help) in [
        ("kube_pod_container_resource_requests", "The resources a container requests."),
        ("kube_pod_container_resource_limits", "The resource limits of a container."),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for (_, spec, pod) in pods() {
            let (cpu, memory) = if metric.ends_with("requests") {
                (spec.request_m, spec.memory_request_mib)
            } else {
                (spec.limit_m, spec.memory_limit_mib)
            };
            let labels = format!("{},node=\"emulated\"", pod_labels(&pod.name, &spec.name));
            let _ = writeln!(out, "{metric}{{{labels},resource=\"cpu\",unit=\"core\"}} {}", cpu / 1000.0);
            let bytes = memory * 1024.0 * 1024.0;
            let _ = writeln!(out, "{metric}{{{labels},resource=\"memory\",unit=\"byte\"}} {bytes}");
        }
    }
    out.push_str("# HELP kube_pod_status_ready Whether the pod is ready to serve requests.\n");
    out.push_str("# TYPE kube_pod_status_ready gauge\n");
    for (_, _, pod) in pods() {
        let ready = pod.is_ready(now_s) as u8;
        for (condition, value) in [("true", ready), ("false", 1 - ready), ("unknown", 0)] {
            let labels = format!("namespace=\"{ns}\",pod=\"{}\",condition=\"{condition}\"", pod.name);
            let _ = writeln!(out, "kube_pod_status_ready{{{labels}}} {value}");
        }
    }
    let ready_of = |d: &super::cluster::Deployment| d.pods.iter().filter(|p| p.is_ready(now_s)).count();
    for (metric, help) in [
        ("kube_deployment_spec_replicas", "Desired pods of a deployment."),
        ("kube_deployment_status_replicas", "Pods of a deployment, ready or not."),
        ("kube_deployment_status_replicas_ready", "Ready pods of a deployment."),
        ("kube_deployment_status_replicas_available", "Available pods of a deployment."),
        ("kube_deployment_status_replicas_unavailable", "Unavailable pods of a deployment."),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for (d, spec) in control.deployments.iter().zip(&app.services) {
            let value = match metric {
                "kube_deployment_spec_replicas" => d.desired as usize,
                "kube_deployment_status_replicas" => d.pods.len(),
                "kube_deployment_status_replicas_unavailable" => d.pods.len() - ready_of(d),
                _ => ready_of(d),
            };
            let _ = writeln!(out, "{metric}{{namespace=\"{ns}\",deployment=\"{}\"}} {value}", spec.name);
        }
    }
    out.push_str("# HELP emulator_time_seconds Emulated time since the cell started.\n");
    out.push_str("# TYPE emulator_time_seconds gauge\n");
    let _ = writeln!(out, "emulator_time_seconds {}", control.time_s);
    out.push_str("# HELP emulator_time_scale Emulated seconds per wall second of control time.\n");
    out.push_str("# TYPE emulator_time_scale gauge\n");
    let _ = writeln!(out, "emulator_time_scale {}", cluster.time_scale);
    drop(control);
    out.push_str("# HELP emulator_queued_calls Calls waiting for a pod of a deployment.\n");
    out.push_str("# TYPE emulator_queued_calls gauge\n");
    for (spec, runtime) in app.services.iter().zip(&cluster.services) {
        let waiting = runtime.admission.load().1;
        let _ = writeln!(out, "emulator_queued_calls{{namespace=\"{ns}\",deployment=\"{}\"}} {waiting}", spec.name);
    }
    out
}
