//! The kubernetes backend's API layer against the fake API server in process (kube::Client over the router):
//! other controllers refused by name and taken over and handed back, CRDs that are absent, dry-run printing and
//! sending nothing, a deployment the app does not list never touched, and 401/403/404/409 explained.

mod kube_fake;

use std::path::Path;

use kube_fake::{FakeCluster, Options, UNRELATED};
use orchestrator::app::AppModel;
use orchestrator::app::kubernetes::ClusterApp;
use orchestrator::backends::kubernetes::api::ClusterApi;
use orchestrator::backends::kubernetes::safety::{self, Conflict, Snapshot, TakeOver};
use serde_json::json;

const APP: &str = "\
name: shop
namespace: shop
slo: {route: cart, percentile: 95, threshold_ms: 100}
services:
  - name: frontend
    cpu: {request_m: 100, limit_m: 200, per_request_ms: 2.0}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 20}
    replicas: {min: 1, max: 5}
    startup_s: 1
  - name: cartservice
    cpu: {request_m: 100, limit_m: 200, per_request_ms: 1.0}
    memory: {request_mib: 64, limit_mib: 128, base_mib: 20}
    replicas: {min: 1, max: 5, initial: 2}
    startup_s: 1
routes:
  - name: cart
    match: {method: GET, path: /cart}
    call: {service: frontend, calls: [{service: cartservice}]}
";

fn app() -> AppModel {
    AppModel::parse(APP, Path::new("shop.yaml")).unwrap()
}

fn hpa(name: &str, target: &str) -> serde_json::Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7", "uid": "u-1"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                    "minReplicas": 1, "maxReplicas": 4,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
}

fn api_of(fake: &FakeCluster) -> (ClusterApi, ClusterApp) {
    let app = ClusterApp::resolve(&app());
    (ClusterApi::new(fake.client(), &app.namespace, &app.deployments), app)
}

#[test]
fn other_controllers_are_refused_by_name_then_taken_over_and_handed_back() {
    let options = Options {
        hpas: vec![hpa("frontend-hpa", "frontend"), hpa("other-hpa", UNRELATED)],
        vpas: Some(vec![
            json!({"apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler", "metadata": {"name": "cart-vpa"},
                   "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cartservice"}}}),
            json!({"apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler", "metadata": {"name": "advice-only"},
                   "spec": {"targetRef": {"kind": "Deployment", "name": "frontend"}, "updatePolicy": {"updateMode": "Off"}}}),
        ]),
        scaled_objects: Some(vec![json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "cart-keda"}, "spec": {"scaleTargetRef": {"name": "cartservice"}}})]),
        ..Options::default()
    };
    let fake = FakeCluster::start(&app(), options);
    let (api, app) = api_of(&fake);
    let conflicts = fake.runtime.block_on(safety::find_conflicts(&api, &app)).unwrap();
    let names: Vec<String> = conflicts.iter().map(|c| c.to_string()).collect();
    assert_eq!(conflicts.len(), 3, "{names:?}");
    assert!(matches!(&conflicts[0], Conflict::Hpa { name, .. } if name == "frontend-hpa"));
    let refusal = safety::refuse(&conflicts, "shop", false).unwrap_err().to_string();
    for needle in [
        "HorizontalPodAutoscaler \"frontend-hpa\"",
        "VerticalPodAutoscaler \"cart-vpa\" (updateMode Auto)",
        "KEDA ScaledObject \"cart-keda\"",
        "take_over",
    ] {
        assert!(refusal.contains(needle), "{needle} in {refusal}");
    }
    assert!(!refusal.contains("other-hpa") && !refusal.contains("advice-only"), "{refusal}");
    safety::refuse(&conflicts, "shop", true).unwrap();

    let mut taken = TakeOver::default();
    fake.runtime.block_on(safety::take_over(&api, &conflicts, &mut taken)).unwrap();
    assert_eq!(fake.hpa_names(), ["other-hpa"]);
    {
        let state = fake.state.lock().unwrap();
        assert_eq!(state.vpas.as_ref().unwrap()[0]["spec"]["updatePolicy"]["updateMode"], "Off");
        assert_eq!(
            state.scaled_objects.as_ref().unwrap()[0]["metadata"]["annotations"]["autoscaling.keda.sh/paused"],
            "true"
        );
    }
    assert!(fake.runtime.block_on(safety::find_conflicts(&api, &app)).unwrap().is_empty());
    fake.runtime.block_on(safety::hand_back(&api, &mut taken)).unwrap();
    assert_eq!(fake.hpa_names(), ["frontend-hpa", "other-hpa"]);
    let state = fake.state.lock().unwrap();
    assert_eq!(state.vpas.as_ref().unwrap()[0]["spec"]["updatePolicy"]["updateMode"], "Auto");
    assert!(
        state.scaled_objects.as_ref().unwrap()[0]["metadata"]["annotations"]
            .get("autoscaling.keda.sh/paused")
            .is_none()
    );
}

#[test]
fn absent_crds_are_no_conflict_and_snapshots_restore_replicas() {
    let fake = FakeCluster::start(&app(), Options::default());
    let (api, app) = api_of(&fake);
    assert!(fake.runtime.block_on(safety::find_conflicts(&api, &app)).unwrap().is_empty());
    let snapshot = fake.runtime.block_on(Snapshot::take(&api, &app)).unwrap();
    assert_eq!(snapshot.replicas, [("frontend".to_string(), 1), ("cartservice".to_string(), 2)]);
    fake.runtime.block_on(api.scale("frontend", 3)).unwrap();
    assert_eq!(fake.replicas()["frontend"], 3);
    fake.runtime.block_on(snapshot.restore(&api)).unwrap();
    assert_eq!(fake.replicas()["frontend"], 1);
    // Only the changed deployment was patched back.
    let patches: Vec<String> = fake.writes().iter().map(|w| format!("{} {}", w.method, w.path)).collect();
    assert_eq!(
        patches,
        [
            "PATCH /apis/apps/v1/namespaces/shop/deployments/frontend/scale",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/frontend/scale"
        ]
    );
}

#[test]
fn dry_run_records_writes_and_sends_none() {
    let fake = FakeCluster::start(&app(), Options::default());
    let (api, app) = api_of(&fake);
    let api = api.dry_run();
    let object = orchestrator::backends::kubernetes::act::hpa_object(
        &serde_json::from_value(hpa("frontend", "frontend")).unwrap(),
        &app.namespace,
        "shop.hpa.peak.s1-0123abcd",
    )
    .unwrap();
    fake.runtime.block_on(async {
        api.scale("frontend", 4).await.unwrap();
        api.create_hpa(&object).await.unwrap();
        api.delete_hpa("frontend").await.unwrap();
    });
    let calls: Vec<String> = api.recorded().iter().map(|c| c.to_string()).collect();
    assert_eq!(calls[0], r#"PATCH /apis/apps/v1/namespaces/shop/deployments/frontend/scale {"spec":{"replicas":4}}"#);
    assert!(
        calls[1].starts_with("POST /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers {"),
        "{}",
        calls[1]
    );
    assert!(calls[1].contains(r#""app.kubernetes.io/managed-by":"orch""#), "{}", calls[1]);
    assert_eq!(calls[2], "DELETE /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/frontend");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert_eq!(fake.replicas()["frontend"], 1);
    assert!(fake.hpa_names().is_empty());
}

#[test]
fn a_deployment_the_app_does_not_list_is_never_touched() {
    let fake = FakeCluster::start(&app(), Options::default());
    let (api, _) = api_of(&fake);
    let e = fake.runtime.block_on(api.scale(UNRELATED, 0)).unwrap_err().to_string();
    assert!(e.contains("refusing to touch deployment shop/unrelated"), "{e}");
    let object = orchestrator::backends::kubernetes::act::hpa_object(
        &serde_json::from_value(hpa("sneaky", UNRELATED)).unwrap(),
        "shop",
        "cell",
    )
    .unwrap();
    assert!(fake.runtime.block_on(api.create_hpa(&object)).is_err());
    assert!(fake.writes().is_empty());
    assert_eq!(fake.replicas()[UNRELATED], 3);
}

#[test]
fn api_errors_name_the_object_and_say_what_the_status_means() {
    let fake = FakeCluster::start(&app(), Options { token: Some("right".into()), ..Options::default() });
    // 401: a client without the token.
    let (api, _) = api_of(&fake);
    let e = format!("{:#}", fake.runtime.block_on(api.replicas("frontend")).unwrap_err());
    assert!(e.contains("the scale of deployment shop/frontend") && e.contains("401 Unauthorized"), "{e}");

    let fake = FakeCluster::start(&app(), Options::default());
    let (api, _) = api_of(&fake);
    fake.state
        .lock()
        .unwrap()
        .forbidden
        .push(("PATCH".into(), "/apis/apps/v1/namespaces/shop/deployments/cartservice".into()));
    let e = format!("{:#}", fake.runtime.block_on(api.scale("cartservice", 3)).unwrap_err());
    assert!(e.contains("deployment shop/cartservice to 3 replicas") && e.contains("403 Forbidden"), "{e}");
    assert!(e.contains("RBAC"), "{e}");

    let other = ClusterApi::new(fake.client(), "shop", &["missing".to_string()]);
    let e = format!("{:#}", fake.runtime.block_on(other.replicas("missing")).unwrap_err());
    assert!(e.contains("deployment shop/missing") && e.contains("404 Not Found"), "{e}");

    let object = orchestrator::backends::kubernetes::act::hpa_object(
        &serde_json::from_value(hpa("frontend", "frontend")).unwrap(),
        "shop",
        "cell",
    )
    .unwrap();
    fake.runtime.block_on(api.create_hpa(&object)).unwrap();
    let e = format!("{:#}", fake.runtime.block_on(api.create_hpa(&object)).unwrap_err());
    assert!(e.contains("creating HorizontalPodAutoscaler shop/frontend") && e.contains("409 Conflict"), "{e}");
    assert!(e.contains("already exists"), "{e}");
}
