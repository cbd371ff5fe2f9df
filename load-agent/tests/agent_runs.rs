//! Runs of the real agent process against a real HTTP target on loopback: the agent's counts against the target's,
//! the files a run leaves (Locust's exact CSV headers), runs that outlive their controller, and an agent killed and
//! restarted on the same data directory.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Agent, TOKEN, counting_server, start_body, status_on_disk, wait_until};
use load_agent::stats::{FAILURES_HEADER, HISTORY_HEADER, STATS_HEADER};
use serde_json::Value;

/// Locust 2.x's CSV headers, written out here independently of the library's constants.
const LOCUST_STATS_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";
const LOCUST_HISTORY_HEADER: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size";
const LOCUST_FAILURES_HEADER: &str = "Method,Name,Error,Occurrences,First Seen,Last Seen";

/// The files every finished run leaves in its folder.
const RUN_FILES: [&str; 7] = [
    "locust_failures.csv",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "request.json",
    "stats.json",
    "status.json",
    "windows.jsonl",
];

fn run_dir(data: &Path, run: &str) -> std::path::PathBuf {
    data.join("runs").join(run)
}

/// The `Request Count` of the `Aggregated` row of a locust_stats.csv.
fn aggregated_count(csv: &str) -> u64 {
    let row =
        csv.lines().find(|l| l.starts_with(",Aggregated,")).unwrap_or_else(|| panic!("no Aggregated row:\n{csv}"));
    row.split(',').nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_short_run_counts_exactly_what_the_target_served() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 2.0, 4)));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    assert_eq!(run.len(), 16);
    assert!(run.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{run}");
    let status = agent.wait_over(&run);
    assert_eq!(status["state"], "finished", "{status}");
    let requests = status["requests"].as_u64().unwrap();
    let served = served.load(Ordering::Relaxed);
    // 4 users, a request every ~50 ms for 2 s: ~160; far fewer means the run did not really run.
    assert!(requests > 40, "{requests} requests");
    assert_eq!(requests, served, "agent and target disagree");
    assert_eq!(status["failures"], 0);

    // The cumulative stats, the API's and the file's, agree with the target.
    let (_, stats) = agent.json("GET", &format!("/v1/runs/{run}/stats"), None);
    assert_eq!(stats["total"]["requests"].as_u64(), Some(served));
    let dir = run_dir(data.path(), &run);
    assert!(wait_until(Duration::from_secs(5), || status_on_disk(data.path(), &run)
        .is_some_and(|s| s["state"] == "finished")));
    let on_disk: Value = serde_json::from_slice(&std::fs::read(dir.join("stats.json")).unwrap()).unwrap();
    assert_eq!(on_disk["total"]["requests"].as_u64(), Some(served));
    assert_eq!(on_disk, stats, "stats.json is the final snapshot");

    // Per-second windows add up to the total, in memory and in windows.jsonl.
    let (_, windows) = agent.json("GET", &format!("/v1/runs/{run}/windows?since=0"), None);
    let windows = windows["windows"].as_array().unwrap().clone();
    assert_eq!(windows.len() as u64, status["windows_closed"].as_u64().unwrap());
    assert!(windows.len() >= 2, "{} windows for a 2 s run", windows.len());
    let indexes: Vec<u64> = windows.iter().map(|w| w["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..windows.len() as u64).collect::<Vec<_>>());
    let summed: u64 = windows.iter().map(|w| w["total"]["requests"].as_u64().unwrap()).sum();
    assert_eq!(summed, served, "per-second windows do not add up to the total");
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("windows.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, windows, "windows.jsonl holds the same windows");
    let (_, later) = agent.json("GET", &format!("/v1/runs/{run}/windows?since=1"), None);
    assert_eq!(later["windows"].as_array().unwrap()[..], windows[1..]);

    // The folder holds every file, listed with its size.
    let (_, files) = agent.json("GET", &format!("/v1/runs/{run}/files"), None);
    let listed: Vec<(String, u64)> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["bytes"].as_u64().unwrap()))
        .collect();
    assert_eq!(listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), RUN_FILES);
    for (name, bytes) in &listed {
        assert_eq!(*bytes, std::fs::metadata(dir.join(name)).unwrap().len(), "{name}");
    }

    // Locust's CSVs, downloaded: the exact headers, and the counts of the target.
    let download = |name: &str| {
        let (status, text) = agent.call("GET", &format!("/v1/runs/{run}/files/{name}"), Some(TOKEN), None);
        assert_eq!(status, 200, "{name}");
        assert_eq!(text.as_bytes(), std::fs::read(dir.join(name)).unwrap(), "{name} downloaded differs");
        text
    };
    let stats_csv = download("locust_stats.csv");
    let history_csv = download("locust_stats_history.csv");
    let failures_csv = download("locust_failures.csv");
    for (csv, constant, literal) in [
        (&stats_csv, STATS_HEADER, LOCUST_STATS_HEADER),
        (&history_csv, HISTORY_HEADER, LOCUST_HISTORY_HEADER),
        (&failures_csv, FAILURES_HEADER, LOCUST_FAILURES_HEADER),
    ] {
        let header = csv.lines().next().unwrap();
        assert_eq!(header, constant);
        assert_eq!(header, literal);
    }
    assert_eq!(aggregated_count(&stats_csv), served);
    assert_eq!(stats_csv.lines().count(), 3, "one row for GET /x and the Aggregated row:\n{stats_csv}");
    assert!(stats_csv.lines().nth(1).unwrap().starts_with("GET,/x,"), "{stats_csv}");
    assert_eq!(failures_csv.lines().count(), 1, "no failures:\n{failures_csv}");
    let history_rows = history_csv.lines().filter(|l| l.contains(",Aggregated,")).count();
    assert_eq!(history_rows, windows.len(), "one Aggregated history row per window:\n{history_csv}");
    let request: Value = serde_json::from_str(&download("request.json")).unwrap();
    assert_eq!((request["target"].as_str(), request["seed"].as_u64()), (Some(target.as_str()), Some(3)));
}

#[test]
fn a_run_goes_on_without_its_controller() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    // The controller: one connection, one call, gone. Nothing talks to the agent after this.
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 2.5, 3)));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();

    // Watch the data directory only: the run must finish by itself and leave its files.
    let dir = run_dir(data.path(), &run);
    let mut states = Vec::new();
    let finished = wait_until(Duration::from_secs(30), || {
        let state = status_on_disk(data.path(), &run).map(|s| s["state"].as_str().unwrap().to_string());
        if let Some(state) = state
            && states.last() != Some(&state)
        {
            states.push(state);
        }
        states.last().is_some_and(|s| s == "finished")
    });
    assert!(finished, "the run did not finish alone: states seen {states:?}");
    assert!(states.contains(&"running".to_string()), "status.json was not kept current: {states:?}");
    for name in RUN_FILES {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let status = status_on_disk(data.path(), &run).unwrap();
    let served = served.load(Ordering::Relaxed);
    assert!(served > 30, "{served}");
    assert_eq!(status["requests"].as_u64(), Some(served));
    assert_eq!(aggregated_count(&std::fs::read_to_string(dir.join("locust_stats.csv")).unwrap()), served);
    let windows = std::fs::read_to_string(dir.join("windows.jsonl")).unwrap();
    assert_eq!(windows.lines().count() as u64, status["windows_closed"].as_u64().unwrap());
}

#[test]
fn status_and_cumulative_files_are_refreshed_while_a_run_goes_on() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &[]);
    let (_, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 60.0, 2)));
    let run = created["run_id"].as_str().unwrap().to_string();
    let dir = run_dir(data.path(), &run);
    // stats.json and the CSVs appear after ~5 s, before the end; status.json counts grow second by second.
    assert!(wait_until(Duration::from_secs(15), || dir.join("locust_stats.csv").is_file()), "no CSV during the run");
    let status = status_on_disk(data.path(), &run).unwrap();
    assert_eq!(status["state"], "running");
    let first = status["requests"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        status_on_disk(data.path(), &run).is_some_and(|s| s["requests"].as_u64().unwrap() > first)
    }));
    let snapshot: Value = serde_json::from_slice(&std::fs::read(dir.join("stats.json")).unwrap()).unwrap();
    let partial = snapshot["total"]["requests"].as_u64().unwrap();
    assert!(partial > 0 && partial <= served.load(Ordering::Relaxed));
    let (_, stopped) = agent.json("POST", &format!("/v1/runs/{run}/stop"), None);
    assert_eq!(stopped["run_id"], run.as_str());
    assert_eq!(agent.wait_over(&run)["state"], "stopped");
}

#[test]
fn a_killed_agent_restarts_with_its_runs() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (_, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 1.5, 2)));
    let done = created["run_id"].as_str().unwrap().to_string();
    let finished = agent.wait_over(&done);
    assert!(wait_until(Duration::from_secs(5), || status_on_disk(data.path(), &done)
        .is_some_and(|s| s["state"] == "finished")));
    let requests = finished["requests"].as_u64().unwrap();
    assert_eq!(requests, served.load(Ordering::Relaxed));
    let csv_before = std::fs::read(run_dir(data.path(), &done).join("locust_stats.csv")).unwrap();

    // A run going on when the agent dies (SIGKILL: no chance to write anything more).
    let (_, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 60.0, 2)));
    let killed = created["run_id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(10), || {
        status_on_disk(data.path(), &killed).is_some_and(|s| s["windows_closed"].as_u64().unwrap() >= 2)
    }));
    agent.kill();

    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (_, list) = agent.json("GET", "/v1/runs", None);
    let runs = list["runs"].as_array().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [done.as_str(), killed.as_str()], "oldest first");

    let (status, old) = agent.json("GET", &format!("/v1/runs/{done}"), None);
    assert_eq!(status, 200);
    assert_eq!((old["state"].as_str(), old["requests"].as_u64()), (Some("finished"), Some(requests)));
    let (status, interrupted) = agent.json("GET", &format!("/v1/runs/{killed}"), None);
    assert_eq!(status, 200);
    assert_eq!(interrupted["state"], "failed");
    assert_eq!(interrupted["error"], "agent restarted during the run");
    assert_eq!(interrupted["users"], 0);

    // The finished run's files are served as they were.
    let (status, csv) = agent.call("GET", &format!("/v1/runs/{done}/files/locust_stats.csv"), Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(csv.as_bytes(), csv_before);
    let (_, files) = agent.json("GET", &format!("/v1/runs/{done}/files"), None);
    assert_eq!(files["files"].as_array().unwrap().len(), RUN_FILES.len());
    let (status, stats) = agent.json("GET", &format!("/v1/runs/{done}/stats"), None);
    assert_eq!((status, stats["total"]["requests"].as_u64()), (200, Some(requests)));
    let (_, windows) = agent.json("GET", &format!("/v1/runs/{done}/windows?since=0"), None);
    let summed: u64 =
        windows["windows"].as_array().unwrap().iter().map(|w| w["total"]["requests"].as_u64().unwrap()).sum();
    assert_eq!(summed, requests);

    // The interrupted run keeps what it wrote: its windows, and stats merged from them.
    let (_, windows) = agent.json("GET", &format!("/v1/runs/{killed}/windows?since=0"), None);
    let windows = windows["windows"].as_array().unwrap();
    assert!(windows.len() >= 2, "{windows:?}");
    let summed: u64 = windows.iter().map(|w| w["total"]["requests"].as_u64().unwrap()).sum();
    let (status, stats) = agent.json("GET", &format!("/v1/runs/{killed}/stats"), None);
    assert_eq!(status, 200, "{stats}");
    assert!(stats["total"]["requests"].as_u64().unwrap() >= summed);
    // A stopped or failed run cannot change; stop stays harmless.
    assert_eq!(agent.json("PATCH", &format!("/v1/runs/{killed}"), Some(&serde_json::json!({"users": 1}))).0, 409);
    assert_eq!(agent.json("POST", &format!("/v1/runs/{killed}/stop"), None).1["state"], "failed");
    // The failure is on disk too, and the /metrics of the latest run come from its files.
    assert_eq!(status_on_disk(data.path(), &killed).unwrap()["state"], "failed");
    let (_, metrics) = agent.call("GET", "/metrics", Some(TOKEN), None);
    assert!(metrics.contains("locust_running 0\n"), "{metrics}");

    // New runs start next to the old ones.
    let (status, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 0.3, 1)));
    assert_eq!(status, 201, "{created}");
    let (_, list) = agent.json("GET", "/v1/runs", None);
    assert_eq!(list["runs"].as_array().unwrap().len(), 3);
}

#[test]
fn a_terminated_agent_stops_its_runs_and_writes_their_files() {
    let (target, served) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &[]);
    let (_, created) = agent.json("POST", "/v1/runs", Some(&start_body(&target, 60.0, 2)));
    let run = created["run_id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(10), || served.load(Ordering::Relaxed) > 10));
    assert_eq!(agent.terminate(), Some(0), "SIGTERM ends the agent cleanly");
    let status = status_on_disk(data.path(), &run).unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
    assert_eq!(status["requests"].as_u64(), Some(served.load(Ordering::Relaxed)));
    let csv = std::fs::read_to_string(run_dir(data.path(), &run).join("locust_stats.csv")).unwrap();
    assert_eq!(aggregated_count(&csv), served.load(Ordering::Relaxed));
    // Restarted, it reports the run stopped (not interrupted).
    let agent = Agent::start(data.path(), &[]);
    assert_eq!(agent.json("GET", &format!("/v1/runs/{run}"), None).1["state"], "stopped");
}
