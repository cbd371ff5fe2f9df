//! The emulated apps over real sockets, in process: Online Boutique's routes (session cookie, 302s, carts),
//! refusals (503 with no pod, 504 past the deadline), the pod-control API, and the Redis app over RESP.

mod emulated_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emulated_support::{Answer, request};
use orchestrator::app::AppModel;
use orchestrator::backends::emulated::{Emulator, EmulatorSettings};

fn app(name: &str) -> AppModel {
    AppModel::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../experiments/apps/{name}.yaml"))).unwrap()
}

/// Starts an emulator on a runtime of its own; the runtime must outlive it.
fn start(name: &str, timeout: Duration) -> (tokio::runtime::Runtime, Emulator) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let model = EmulatorSettings { time_scale: 1.0, pod_concurrency: 1, cpu: Default::default() };
    let any = "127.0.0.1:0".parse().unwrap();
    let emulator = runtime.block_on(Emulator::start(&app(name), &model, any, any, 1, timeout)).unwrap();
    (runtime, emulator)
}

fn cookie_pair(answer: &Answer, name: &str) -> String {
    let set = answer.all("set-cookie").into_iter().find(|c| c.starts_with(&format!("{name}="))).unwrap_or_else(|| {
        panic!("no {name} cookie in {:?}", answer.headers);
    });
    set.split(';').next().unwrap().to_string()
}

#[test]
fn boutique_routes_keep_sessions_carts_and_redirects() {
    let (_runtime, emulator) = start("online-boutique", Duration::from_secs(10));
    let app = emulator.app_address.to_string();
    let home = request(&app, "GET", "/", &[], "");
    assert_eq!(home.status, 200);
    assert!(home.header("content-type").unwrap().starts_with("text/html"));
    let session = cookie_pair(&home, "shop_session-id");
    let form = ("content-type", "application/x-www-form-urlencoded");

    let currency = request(&app, "POST", "/setCurrency", &[("cookie", &session), form], "currency_code=EUR");
    assert_eq!((currency.status, currency.header("location")), (302, Some("/")));
    let currency_cookie = cookie_pair(&currency, "shop_currency");
    assert_eq!(currency_cookie, "shop_currency=EUR");
    assert!(currency.all("set-cookie").iter().all(|c| !c.starts_with("shop_session-id")), "the session is kept");

    let cookies = format!("{session}; {currency_cookie}");
    let added = request(&app, "POST", "/cart", &[("cookie", &cookies), form], "product_id=OLJCESPC7Z&quantity=3");
    assert_eq!((added.status, added.header("location")), (302, Some("/cart")));
    let cart = request(&app, "GET", "/cart", &[("cookie", &cookies)], "");
    assert_eq!(cart.status, 200);
    assert!(cart.body.contains("3 items, prices in EUR"), "{}", cart.body);
    let order = request(&app, "POST", "/cart/checkout", &[("cookie", &cookies), form], "email=a%40b.c");
    assert_eq!(order.status, 200);
    assert!(order.body.contains("order is complete"), "{}", order.body);
    assert!(request(&app, "GET", "/cart", &[("cookie", &cookies)], "").body.contains("0 items"));
    assert_eq!(request(&app, "GET", "/product/OLJCESPC7Z", &[], "").status, 200);
    assert_eq!(request(&app, "GET", "/product/", &[], "").status, 404);
    assert_eq!(request(&app, "DELETE", "/cart", &[], "").status, 405);

    // A new visitor gets a new session.
    let other = cookie_pair(&request(&app, "GET", "/", &[], ""), "shop_session-id");
    assert_ne!(other, session);
    // Every routed request walked its call tree (the 404 and 405 reached none).
    let cluster = &emulator.cluster;
    let frontend = cluster.app.service_index("frontend").unwrap();
    let redis = cluster.app.service_index("redis-cart").unwrap();
    let calls = |s: usize| cluster.services[s].calls.load(Ordering::Relaxed);
    assert_eq!(calls(frontend), 8);
    assert_eq!(calls(redis), 8, "home x2, product, add-to-cart, cart x2, checkout x2 reach redis-cart");
}

#[test]
fn no_ready_pod_answers_503_and_a_full_queue_504() {
    let (runtime, emulator) = start("online-boutique", Duration::from_millis(300));
    let app = emulator.app_address.to_string();
    let cluster = emulator.cluster.clone();
    let shipping = cluster.app.service_index("shippingservice").unwrap();
    cluster.scale(shipping, 0);
    let refused = request(&app, "GET", "/cart", &[], "");
    assert_eq!((refused.status, refused.body.as_str()), (503, "no healthy upstream"));
    cluster.scale(shipping, 1);
    cluster.tick(40);
    assert_eq!(request(&app, "GET", "/cart", &[], "").status, 200);

    // Hold the one frontend pod: the next request waits its 300 ms and gives up.
    let frontend = cluster.app.service_index("frontend").unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = cluster.clone();
    runtime.spawn(async move {
        let permit = holder.services[frontend].admission.acquire(Instant::now() + Duration::from_secs(30)).await;
        held_tx.send(()).unwrap();
        let _ = release_rx.await;
        drop(permit);
    });
    held_rx.recv().unwrap();
    let started = Instant::now();
    let timed_out = request(&app, "GET", "/", &[], "");
    assert_eq!((timed_out.status, timed_out.body.as_str()), (504, "upstream request timeout"));
    assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
    release_tx.send(()).unwrap();
    let metrics = request(&emulator.control_address.to_string(), "GET", "/metrics", &[], "").body;
    assert!(metrics.contains("response_code=\"503\",response_flags=\"UH\""), "{metrics}");
    assert!(metrics.contains("response_code=\"504\",response_flags=\"UT\""));
}

#[test]
fn the_pod_control_api_lists_pods_and_scales_deployments() {
    let (_runtime, emulator) = start("online-boutique", Duration::from_secs(10));
    let control = emulator.control_address.to_string();
    let json = |answer: Answer| -> serde_json::Value {
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
    };
    let deployments = json(request(&control, "GET", "/api/v1/deployments", &[], ""));
    assert_eq!(deployments["deployments"].as_array().unwrap().len(), 11);

    let set = request(&control, "PUT", "/api/v1/deployments/frontend/replicas", &[], r#"{"replicas": 3}"#);
    assert_eq!(set.status, 200, "{}", set.body);
    let frontend = json(set);
    assert_eq!((frontend["replicas"].as_u64(), frontend["status_replicas"].as_u64()), (Some(3), Some(3)));
    assert_eq!(frontend["ready_replicas"], 1, "new pods start after their start-up delay");
    let pods = json(request(&control, "GET", "/api/v1/pods?deployment=frontend", &[], ""));
    let statuses: Vec<&str> = pods["pods"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["Running", "Pending", "Pending"]);
    emulator.cluster.tick(20);
    assert_eq!(json(request(&control, "GET", "/api/v1/deployments/frontend", &[], ""))["ready_replicas"], 3);

    let out = json(request(&control, "POST", "/api/v1/deployments/frontend/scale-out", &[], ""));
    assert_eq!(out["replicas"], 4);
    let in_ = json(request(&control, "POST", "/api/v1/deployments/frontend/scale-in", &[], ""));
    assert_eq!(in_["replicas"], 3);
    let pods = json(request(&control, "GET", "/api/v1/pods", &[], ""));
    let pod = &pods["pods"][0];
    for field in ["name", "deployment", "status", "ready", "cpu_usage_seconds", "memory_mib", "cpu_request_millicores"]
    {
        assert!(pod.get(field).is_some(), "pods lack {field}: {pod}");
    }

    // Bad requests: the field, the bounds, the name.
    let too_many = request(&control, "PUT", "/api/v1/deployments/frontend/replicas", &[], r#"{"replicas": 11}"#);
    assert_eq!(too_many.status, 400);
    assert_eq!(json(too_many)["field"], "replicas");
    let typo = request(&control, "PUT", "/api/v1/deployments/frontend/replicas", &[], r#"{"replica": 2}"#);
    assert_eq!(typo.status, 400, "{}", typo.body);
    let not_a_number = request(&control, "PUT", "/api/v1/deployments/frontend/replicas", &[], r#"{"replicas": "x"}"#);
    assert_eq!(json(not_a_number)["field"], "replicas");
    assert_eq!(request(&control, "POST", "/api/v1/deployments/redis-cart/scale-in", &[], "").status, 409);
    let unknown = request(&control, "GET", "/api/v1/deployments/nope", &[], "");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("no deployment \\\"nope\\\""), "{}", unknown.body);
    let metrics = request(&control, "GET", "/metrics", &[], "");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics.body.contains("kube_deployment_spec_replicas{namespace=\"online-boutique\",deployment=\"frontend\"} 3")
    );
    assert!(
        metrics
            .body
            .contains("kube_pod_status_ready{namespace=\"online-boutique\",pod=\"frontend-0\",condition=\"true\"} 1")
    );
}

/// Sends raw RESP and reads until `replies` replies (lines starting a reply) have arrived.
fn resp(stream: &mut TcpStream, bytes: &[u8], expect: &str) {
    stream.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(expect) {
        assert!(Instant::now() < deadline, "waiting for {expect:?}, got {:?}", String::from_utf8_lossy(&got));
        let mut buffer = [0u8; 512];
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), expect);
}

#[test]
fn the_redis_app_speaks_resp() {
    let (_runtime, emulator) = start("redis-cluster", Duration::from_secs(10));
    assert!(emulator.target_url().starts_with("redis://"));
    let mut stream = TcpStream::connect(emulator.app_address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    resp(&mut stream, b"PING\r\n", "+PONG\r\n");
    resp(&mut stream, b"*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n$8\r\nredis-rs\r\n", "+OK\r\n");
    resp(&mut stream, b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$3\r\nabc\r\n", "+OK\r\n");
    // Pipelined: both answers, in order.
    resp(&mut stream, b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n*2\r\n$3\r\nget\r\n$5\r\nkey:2\r\n", "$3\r\nabc\r\n$-1\r\n");
    resp(&mut stream, b"*1\r\n$3\r\nGET\r\n", "-ERR wrong number of arguments for 'GET' command\r\n");
    resp(&mut stream, b"*1\r\n$4\r\nFLY!\r\n", "-ERR unknown command 'FLY!'\r\n");
    let cluster = &emulator.cluster;
    let follower = cluster.app.service_index("redis-follower").unwrap();
    let leader = cluster.app.service_index("redis-leader").unwrap();
    // A SET reaches the leader and its replication call the follower; each GET the follower.
    assert_eq!(cluster.services[leader].calls.load(Ordering::Relaxed), 1);
    assert_eq!(cluster.services[follower].calls.load(Ordering::Relaxed), 3);
    let metrics = request(&emulator.control_address.to_string(), "GET", "/metrics", &[], "").body;
    assert!(metrics.contains("destination_workload=\"redis-follower\""));
    assert!(metrics.contains("request_protocol=\"redis\""));
}
