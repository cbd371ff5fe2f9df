//! A load agent on a separate test host: a network namespace this test makes (a veth pair, 10.213.X.1 on this
//! side and 10.213.X.2 in the namespace), the agent listening there with a token and allowed to target only the
//! emulated app. A wrong token is refused (401, and orch names the agent before writing anything); the right one
//! runs an emulated cell across the link. Needs root and `ip` (iproute2); set ORCH_TEST_SKIP_NETNS=1 to skip on a
//! machine without them.

mod common;
mod emulated_support;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use emulated_support::{Agent, cell_dir, http, json, spawn_orch, stderr_of, wait_child};

const TOKEN: &str = "netns-test-token-5678";

/// A network namespace joined to this one by a veth pair; removed when dropped, also after a failed assertion.
struct TestHost {
    namespace: String,
    host_link: String,
    pub host_ip: String,
    pub guest_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

impl TestHost {
    fn create() -> TestHost {
        let id = std::process::id() % 100_000;
        let subnet = 1 + id % 250;
        let host = TestHost {
            namespace: format!("orch-test-{id}"),
            host_link: format!("ot{id}a"),
            host_ip: format!("10.213.{subnet}.1"),
            guest_ip: format!("10.213.{subnet}.2"),
        };
        // Leftovers of an earlier run with the same pid.
        let _ = ip(&["link", "del", &host.host_link]);
        let _ = ip(&["netns", "del", &host.namespace]);
        let guest_link = format!("ot{id}b");
        let ns = host.namespace.as_str();
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", ns],
            vec!["link", "add", &host.host_link, "type", "veth", "peer", "name", &guest_link],
            vec!["link", "set", &guest_link, "netns", ns],
        ];
        let host_cidr = format!("{}/30", host.host_ip);
        let guest_cidr = format!("{}/30", host.guest_ip);
        let more: Vec<Vec<&str>> = vec![
            vec!["addr", "add", &host_cidr, "dev", &host.host_link],
            vec!["link", "set", &host.host_link, "up"],
            vec!["-n", ns, "addr", "add", &guest_cidr, "dev", &guest_link],
            vec!["-n", ns, "link", "set", &guest_link, "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
        ];
        for step in steps.iter().chain(&more) {
            if let Err(e) = ip(step) {
                drop(host);
                panic!("making the test host failed (root and iproute2 are needed; ORCH_TEST_SKIP_NETNS=1 skips): {e}");
            }
        }
        host
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting one end removes the pair.
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}

const SHORT: &str = "\
name: short
users:
  - name: cart-viewer
    wait: {constant_throughput: 2}
    tasks:
      - {name: view-cart, requests: [{method: GET, path: /cart}]}
shape:
  stages:
    - {end: 150, users: 20, spawn_rate: 100}
";

#[test]
fn an_agent_on_another_host_needs_its_token() {
    if std::env::var_os("ORCH_TEST_SKIP_NETNS").is_some() {
        eprintln!("skipped: ORCH_TEST_SKIP_NETNS is set");
        return;
    }
    let test_host = TestHost::create();
    // The app's port on this side of the link, fixed so the agent's allow-list can name it.
    let app_port = TcpListener::bind(format!("{}:0", test_host.host_ip)).unwrap().local_addr().unwrap().port();
    let app = format!("{}:{app_port}", test_host.host_ip);
    let exec = ["ip", "netns", "exec", test_host.namespace.as_str()];
    let agent =
        Agent::start_with(&exec, &format!("{}:0", test_host.guest_ip), &["--token", TOKEN, "--allow-target", &app]);
    assert!(agent.address.starts_with(&test_host.guest_ip), "{}", agent.address);

    // Straight to the agent across the link: health is open, everything else needs the token.
    assert_eq!(http(&agent.address, "GET", "/v1/health", None, "").0, 200);
    assert_eq!(http(&agent.address, "GET", "/v1/info", None, "").0, 401);
    assert_eq!(http(&agent.address, "GET", "/v1/info", Some("wrong-token"), "").0, 401);
    let (status, info) = http(&agent.address, "GET", "/v1/info", Some(TOKEN), "");
    assert_eq!(status, 200, "{info}");
    assert!(info.contains("\"protocol_version\":1"), "{info}");

    let scratch = common::Scratch::new();
    scratch.write("experiments/scenarios/online-boutique/short.yaml", SHORT);
    scratch.write(
        "experiments/remote.yaml",
        &format!(
            "name: remote\nseeds: [1]\napps: [online-boutique]\nscenarios: [short]\n\
             policies: [{{name: static-max, kind: static, replicas: max}}]\nbackend: emulated\n\
             emulated:\n  time_scale: 15\n  listen: {app}\n  agents: {{urls: ['{}'], token_env: NETNS_AGENT_TOKEN}}\n",
            agent.url()
        ),
    );
    let args = ["run", "experiments/remote.yaml", "--tag", "t", "--logs-dir", "logs"];

    // orch with the wrong token: refused before anything is written, naming the agent.
    let mut orch = spawn_orch(scratch.dir.path(), &args, &[("NETNS_AGENT_TOKEN", "wrong-token")]);
    let status = wait_child(&mut orch, Duration::from_secs(60)).expect("orch answers");
    let stderr = stderr_of(scratch.dir.path());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("agent remote-0 ({}) refused the token (401)", agent.url())), "{stderr}");
    assert!(!scratch.path("logs").exists());

    // With the right one the cell runs across the link.
    let mut orch = spawn_orch(scratch.dir.path(), &args, &[("NETNS_AGENT_TOKEN", TOKEN)]);
    let status = wait_child(&mut orch, Duration::from_secs(120)).expect("orch finishes");
    assert!(status.success(), "{}\nagent log:\n{}", stderr_of(scratch.dir.path()), agent.log());
    let cell = cell_dir(&scratch.path("logs/t"), "emulated");
    let agents = json(&cell.join("agents.json"));
    assert_eq!(agents["agents"][0]["url"], agent.url().as_str());
    assert_eq!(agents["agents"][0]["local"], false);
    let counted = agents["requests"].as_u64().unwrap();
    // 20 users at 2 requests/s for 10 s.
    assert!(counted > 200, "{counted}");
    let served = json(&cell.join("emulator.json"))["client_requests"].as_u64().unwrap();
    assert!(served.abs_diff(counted) <= 5, "agents counted {counted}, the app served {served}");
    assert_eq!(json(&cell.join("emulator.json"))["app_url"], format!("http://{app}"));
    assert!(cell.join("agents/remote-0/locust_stats_history.csv").is_file());
    drop(agent);
    drop(test_host);
}
