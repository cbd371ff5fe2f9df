//! The manifests under experiments/k8s/ against what orch expects of a cluster: every YAML document there (the
//! `.yaml.example` ones too) parses into its k8s-openapi type and serializes back unchanged (a misspelt or
//! misplaced field fails); the Online Boutique Deployments are the app model's (names, the backend's selectors,
//! requests and limits, replicas within bounds) and nothing else in its namespace; the load agent's token comes
//! from the Secret whose only committed form is a placeholder, and it allows exactly the example matrix's target;
//! the RBAC Roles grant what the backend and the Job executor call; the Prometheus configuration passes
//! `promtool check config` (Debian's build has no Kubernetes service discovery, so its `kubernetes_sd_configs` are
//! swapped for a static target first); and the example matrix experiments/kubernetes.yaml dry-runs against the
//! fake API server holding Online Boutique, printing its scale and HPA calls and sending none.

mod emulated_support;
mod kube_fake;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use orchestrator::app::AppModel;
use orchestrator::app::kubernetes::ClusterApp;
use orchestrator::backends::kubernetes::observe::Selector;
use orchestrator::hpa::Quantity;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every object of experiments/k8s/, typed, with the file it came from.
#[derive(Default)]
struct Objects {
    deployments: Vec<(PathBuf, Deployment)>,
    services: Vec<(PathBuf, Service)>,
    namespaces: Vec<Namespace>,
    secrets: Vec<(PathBuf, Secret)>,
    config_maps: Vec<ConfigMap>,
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    claims: Vec<PersistentVolumeClaim>,
}

/// Parses `value` as `T` and checks that it serializes back to the same JSON: nothing was dropped as unknown.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(file: &Path, value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{}: {} {}: {e}", file.display(), value["kind"], value["metadata"]["name"]));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(
        &back,
        value,
        "{}: {} {} does not survive a round trip",
        file.display(),
        value["kind"],
        value["metadata"]["name"]
    );
    object
}

fn load_objects() -> Objects {
    let mut objects = Objects::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("experiments/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".yaml") || p.to_string_lossy().ends_with(".yaml.example"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            let f = file.clone();
            match (value["apiVersion"].as_str(), value["kind"].as_str()) {
                (Some("apps/v1"), Some("Deployment")) => objects.deployments.push((f, typed(&file, &value))),
                (Some("v1"), Some("Service")) => objects.services.push((f, typed(&file, &value))),
                (Some("v1"), Some("Namespace")) => objects.namespaces.push(typed(&file, &value)),
                (Some("v1"), Some("Secret")) => objects.secrets.push((f, typed(&file, &value))),
                (Some("v1"), Some("ConfigMap")) => objects.config_maps.push(typed(&file, &value)),
                (Some("v1"), Some("ServiceAccount")) => objects.service_accounts.push(typed(&file, &value)),
                (Some("v1"), Some("PersistentVolumeClaim")) => objects.claims.push(typed(&file, &value)),
                (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => objects.roles.push(typed(&file, &value)),
                (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
                    objects.role_bindings.push(typed(&file, &value))
                }
                (version, kind) => {
                    panic!("{}: an object this test does not know: {version:?} {kind:?}", file.display())
                }
            }
        }
    }
    objects
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap()
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn quantity(map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, key: &str) -> f64 {
    let text = &map.as_ref().unwrap()[key].0;
    Quantity::parse(text).unwrap().as_f64()
}

/// The example matrix, as orch reads it.
fn example_matrix() -> orchestrator::matrix::Matrix {
    orchestrator::matrix::Matrix::load(&repo().join("experiments/kubernetes.yaml")).unwrap()
}

#[test]
fn online_boutique_is_the_app_models_with_the_labels_the_backend_selects() {
    let objects = load_objects();
    let app = AppModel::load(&repo().join("experiments/apps/online-boutique.yaml")).unwrap();
    let cluster = ClusterApp::resolve(&app);
    let in_app_namespace: Vec<&Deployment> =
        objects.deployments.iter().map(|(_, d)| d).filter(|d| namespace_of(&d.metadata) == cluster.namespace).collect();
    assert_eq!(in_app_namespace.len(), app.services.len(), "one Deployment per service, no other");
    let namespace =
        objects.namespaces.iter().find(|n| name_of(&n.metadata) == cluster.namespace).expect("its namespace");
    if cluster.mesh == orchestrator::app::kubernetes::Mesh::Istio {
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("istio-injection").map(String::as_str),
            Some("enabled"),
            "Istio's sidecars report the latency"
        );
    }
    for ((service, deployment_name), selector) in app.services.iter().zip(&cluster.deployments).zip(&cluster.selectors)
    {
        let deployment = in_app_namespace
            .iter()
            .find(|d| name_of(&d.metadata) == deployment_name)
            .unwrap_or_else(|| panic!("no Deployment {deployment_name} for service {}", service.name));
        let spec = &deployment.spec;
        let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        // The backend finds the pods with its selector; the Deployment owns them with its own.
        assert!(
            Selector::parse(selector).unwrap().matches(&pod_labels),
            "{deployment_name}: {selector} vs {pod_labels:?}"
        );
        let own = spec.selector.match_labels.clone().unwrap();
        assert!(own.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "{deployment_name}");
        let replicas = spec.replicas.unwrap() as u32;
        assert!((service.replicas.min..=service.replicas.max).contains(&replicas), "{deployment_name}: {replicas}");
        let containers = &spec.template.spec.as_ref().unwrap().containers;
        assert_eq!(containers.len(), 1, "{deployment_name}: utilization is per pod, one container");
        let resources = containers[0].resources.as_ref().unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(quantity(&resources.requests, "cpu") * 1000.0, service.cpu.request_m),
            "{deployment_name} cpu request"
        );
        assert!(close(quantity(&resources.limits, "cpu") * 1000.0, service.cpu.limit_m), "{deployment_name} cpu limit");
        let mib = 1024.0 * 1024.0;
        assert!(close(quantity(&resources.requests, "memory") / mib, service.memory.request_mib), "{deployment_name}");
        assert!(close(quantity(&resources.limits, "memory") / mib, service.memory.limit_mib), "{deployment_name}");
        assert!(containers[0].readiness_probe.is_some(), "{deployment_name}: readiness is what orch waits for");
        let svc = objects
            .services
            .iter()
            .map(|(_, s)| s)
            .find(|s| name_of(&s.metadata) == deployment_name && namespace_of(&s.metadata) == cluster.namespace)
            .unwrap_or_else(|| panic!("no Service {deployment_name}"));
        let svc_selector = svc.spec.as_ref().unwrap().selector.clone().unwrap();
        assert!(svc_selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "Service {deployment_name}");
    }
    // The baselines' HPAs target these Deployments.
    let hpas = std::fs::read_to_string(repo().join("baselines/online-boutique/hpa-cpu-60.yaml")).unwrap();
    for document in serde_yaml::Deserializer::from_str(&hpas) {
        let hpa: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler =
            serde::Deserialize::deserialize(document).unwrap();
        assert_eq!(namespace_of(&hpa.metadata), cluster.namespace);
        let target = &hpa.spec.scale_target_ref.name;
        assert!(cluster.deployments.contains(target), "{target}");
    }
}

#[test]
fn the_load_agent_takes_its_token_from_a_secret_that_is_only_a_placeholder_here() {
    let objects = load_objects();
    let (_, agent) = objects.deployments.iter().find(|(_, d)| name_of(&d.metadata) == "load-agent").unwrap();
    let pod = agent.spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    let token = container.env.iter().flatten().find(|e| e.name == "LOAD_AGENT_TOKEN").expect("LOAD_AGENT_TOKEN");
    assert!(token.value.is_none(), "no token in the Deployment");
    let key_ref = token.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    let (file, secret) = objects
        .secrets
        .iter()
        .find(|(_, s)| {
            name_of(&s.metadata) == key_ref.name && namespace_of(&s.metadata) == namespace_of(&agent.metadata)
        })
        .expect("the Secret's shape is documented");
    assert!(
        file.to_string_lossy().ends_with(".yaml.example"),
        "{}: kubectl apply -f must not pick it up",
        file.display()
    );
    let placeholder = &secret.string_data.as_ref().unwrap()[&key_ref.key];
    assert!(placeholder.starts_with("REPLACE"), "{placeholder}");
    for (file, secret) in &objects.secrets {
        if !file.to_string_lossy().ends_with(".example") {
            assert!(secret.data.is_none() && secret.string_data.is_none(), "{}: a committed secret", file.display());
        }
    }

    // It listens where its Service sends, and sends load only to the example matrix's target.
    let command = container.command.clone().unwrap();
    let arg = |flag: &str| command.iter().position(|a| a == flag).map(|i| command[i + 1].clone()).unwrap();
    let listen: std::net::SocketAddr = arg("--listen").parse().unwrap();
    let matrix = example_matrix();
    let target = matrix.kubernetes.as_ref().unwrap().target.clone();
    let url = reqwest::Url::parse(&target).unwrap();
    let host_port = format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap());
    assert_eq!(arg("--allow-target"), host_port);
    let (_, svc) = objects.services.iter().find(|(_, s)| name_of(&s.metadata) == "load-agent").unwrap();
    let svc_spec = svc.spec.as_ref().unwrap();
    let pod_labels = agent.spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(svc_spec.selector.as_ref().unwrap().iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let port = &svc_spec.ports.as_ref().unwrap()[0];
    let named = container.ports.iter().flatten().find(|p| p.container_port == i32::from(listen.port())).unwrap();
    match port.target_port.as_ref().unwrap() {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            assert_eq!(named.name.as_deref(), Some(name.as_str()))
        }
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => assert_eq!(*n, i32::from(listen.port())),
    }
}

#[test]
fn the_roles_grant_what_the_backend_and_the_job_executor_call() {
    let objects = load_objects();
    let app = AppModel::load(&repo().join("experiments/apps/online-boutique.yaml")).unwrap();
    let allows = |namespace: &str, group: &str, resource: &str, verb: &str| {
        objects.roles.iter().filter(|r| namespace_of(&r.metadata) == namespace).any(|r| {
            r.rules.iter().flatten().any(|rule| {
                rule.api_groups.iter().flatten().any(|g| g == group)
                    && rule.resources.iter().flatten().any(|r| r == resource)
                    && rule.verbs.iter().any(|v| v == verb)
            })
        })
    };
    let ns = app.namespace.as_str();
    for (group, resource, verb) in [
        ("apps", "deployments", "list"),
        ("apps", "deployments/scale", "get"),
        ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"),
        ("metrics.k8s.io", "pods", "list"),
        ("autoscaling", "horizontalpodautoscalers", "create"),
        ("autoscaling", "horizontalpodautoscalers", "delete"),
        ("autoscaling.k8s.io", "verticalpodautoscalers", "list"),
        ("keda.sh", "scaledobjects", "list"),
    ] {
        assert!(allows(ns, group, resource, verb), "{verb} {group}/{resource} in {ns}");
    }
    // The example matrix's Job executor, commented out there: its namespace, claim and account exist.
    let matrix_text = std::fs::read_to_string(repo().join("experiments/kubernetes.yaml")).unwrap();
    let executor_block: String = matrix_text
        .lines()
        .skip_while(|l| !l.starts_with("# executor:"))
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').strip_prefix(' ').unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let executor: Value = serde_yaml::from_str::<Value>(&executor_block).unwrap()["executor"].clone();
    let jobs_ns = executor["namespace"].as_str().unwrap();
    for (group, resource, verb) in [
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("batch", "jobs", "list"),
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
        ("", "configmaps", "delete"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
        ("", "pods/log", "get"),
    ] {
        assert!(allows(jobs_ns, group, resource, verb), "{verb} {group}/{resource} in {jobs_ns}");
    }
    let claim = executor["results"]["pvc"].as_str().unwrap();
    let pvc = objects.claims.iter().find(|c| name_of(&c.metadata) == claim && namespace_of(&c.metadata) == jobs_ns);
    let modes = pvc.expect("the results claim").spec.as_ref().unwrap().access_modes.clone().unwrap();
    assert_eq!(modes, ["ReadWriteMany"], "orch and the cells share it");
    let account = executor["service_account"].as_str().unwrap();
    assert!(
        objects
            .service_accounts
            .iter()
            .any(|a| name_of(&a.metadata) == account && namespace_of(&a.metadata) == jobs_ns)
    );
    assert!(
        objects.role_bindings.iter().any(|b| namespace_of(&b.metadata) == ns
            && b.subjects.iter().flatten().any(|s| s.kind == "ServiceAccount" && s.name == account)),
        "cells of the kubernetes backend scale the app as {account}"
    );
}

#[test]
fn the_prometheus_configuration_passes_promtool_and_scrapes_what_the_queries_need() {
    let objects = load_objects();
    let map = objects.config_maps.iter().find(|m| name_of(&m.metadata) == "prometheus-orch").unwrap();
    let text = &map.data.as_ref().unwrap()["prometheus.yml"];
    let mut config: Value = serde_yaml::from_str(text).unwrap();
    let jobs: Vec<&str> =
        config["scrape_configs"].as_array().unwrap().iter().map(|j| j["job_name"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["kubernetes-pods", "kubernetes-cadvisor", "load-agent"]);
    let app = AppModel::load(&repo().join("experiments/apps/online-boutique.yaml")).unwrap();
    let pods = &config["scrape_configs"][0]["kubernetes_sd_configs"][0];
    assert_eq!(pods["role"], "pod");
    assert_eq!(pods["namespaces"]["names"][0], app.namespace.as_str());
    let kept = config["scrape_configs"][1]["metric_relabel_configs"][0]["regex"].as_str().unwrap().to_string();
    let queries = ClusterApp::resolve(&app).queries;
    for metric in ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes"] {
        assert!(kept.split('|').any(|m| m == metric), "{kept}");
        assert!(queries.cpu.contains(metric) || queries.memory.contains(metric));
    }
    // Debian's Prometheus is built without Kubernetes discovery: check the rest with a static target in its place.
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        if job.as_object_mut().unwrap().remove("kubernetes_sd_configs").is_some() {
            job["static_configs"] = serde_json::json!([{"targets": ["127.0.0.1:1"]}]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(&file)
        .output()
        .expect("promtool (Debian's prometheus package, installed by scripts/test.sh)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_example_matrix_dry_runs_against_a_cluster_holding_online_boutique() {
    let app = AppModel::load(&repo().join("experiments/apps/online-boutique.yaml")).unwrap();
    let mut fake = kube_fake::FakeCluster::start(&app, kube_fake::Options::default());
    fake.serve();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    fake.write_kubeconfig(&kubeconfig, "t0ken");
    let matrix = repo().join("experiments/kubernetes.yaml");
    let mut child = emulated_support::spawn_orch(
        dir.path(),
        &["run", matrix.to_str().unwrap(), "--dry-run"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap()), ("ORCH_AGENT_TOKEN", "t0ken")],
    );
    let status = emulated_support::wait_child(&mut child, Duration::from_secs(60));
    let stderr = emulated_support::stderr_of(dir.path());
    let stdout = std::fs::read_to_string(dir.path().join("orch.stdout")).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{stdout}\n{stderr}");
    for service in &app.services {
        let scale =
            format!("dry-run: PATCH /apis/apps/v1/namespaces/online-boutique/deployments/{}/scale", service.name);
        assert!(stdout.contains(&scale), "{scale}\nin\n{stdout}");
    }
    assert!(
        stdout.contains("dry-run: POST /apis/autoscaling/v2/namespaces/online-boutique/horizontalpodautoscalers {")
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}
