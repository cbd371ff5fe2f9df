//! The real agent's run storage against hostile and careless data directories: planted symbolic links, a full
//! disk, corrupt files, request.json's size and the retention of old runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use common::{Agent, TOKEN, counting_server, start_body, status_on_disk, wait_until};
use serde_json::{Value, json};

fn run_dir(data: &Path, run: &str) -> PathBuf {
    data.join("runs").join(run)
}

/// Starts a run; its id.
fn start(agent: &Agent, body: &Value) -> String {
    let (status, created) = agent.json("POST", "/v1/runs", Some(body));
    assert_eq!(status, 201, "{created}");
    created["run_id"].as_str().unwrap().to_string()
}

/// Waits until the run is over in the API and its final status.json is on disk.
fn wait_final(agent: &Agent, run: &str) -> Value {
    let status = agent.wait_over(run);
    assert!(
        wait_until(Duration::from_secs(10), || status_on_disk(&agent.data_dir, run)
            .is_some_and(|s| s["state"] == status["state"])),
        "run {run}'s final status.json did not land"
    );
    status
}

fn list_ids(agent: &Agent) -> Vec<String> {
    let (status, list) = agent.json("GET", "/v1/runs", None);
    assert_eq!(status, 200, "{list}");
    list["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap().to_string()).collect()
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Every line of a windows.jsonl parses, and the indexes run 0, 1, 2, …: its window count.
fn valid_windows(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        let window: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), i + 1));
        assert_eq!(window["index"], i as u64, "{}", path.display());
    }
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends in a torn line", path.display());
    text.lines().count() as u64
}

#[test]
fn planted_symbolic_links_are_never_followed() {
    let (target, _) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);
    let done = start(&agent, &start_body(&target, 0.5, 2));
    let finished = wait_final(&agent, &done);
    // A run going on when the agent dies: the restart rewrites its status.json.
    let killed = start(&agent, &start_body(&target, 60.0, 2));
    assert!(wait_until(Duration::from_secs(10), || status_on_disk(data.path(), &killed)
        .is_some_and(|s| s["windows_closed"].as_u64().unwrap() >= 1)));
    agent.kill();

    // Victims outside the data directory, and links to them where the agent writes and reads.
    let victims: Vec<PathBuf> = (0..3).map(|i| outside.path().join(format!("victim-{i}"))).collect();
    for victim in &victims {
        std::fs::write(victim, "precious bytes").unwrap();
    }
    let link = |target: &Path, at: PathBuf| std::os::unix::fs::symlink(target, at).unwrap();
    link(&victims[0], run_dir(data.path(), &done).join("status.json.tmp"));
    link(&victims[1], run_dir(data.path(), &killed).join("status.json.tmp"));
    link(&victims[2], run_dir(data.path(), &done).join("leak.csv"));
    link(&run_dir(data.path(), &done).join("stats.json"), run_dir(data.path(), &done).join("alias.json"));
    // A whole run folder that is a link to a folder outside, holding a run that seems interrupted.
    let fake = outside.path().join("fake-run");
    std::fs::create_dir(&fake).unwrap();
    std::fs::copy(run_dir(data.path(), &killed).join("request.json"), fake.join("request.json")).unwrap();
    let fake_status = std::fs::read(run_dir(data.path(), &killed).join("status.json")).unwrap();
    std::fs::write(fake.join("status.json"), &fake_status).unwrap();
    let linked_run = "00000000000000ee";
    link(&fake, data.path().join("runs").join(linked_run));

    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let listed = list_ids(&agent);
    for victim in &victims {
        assert_eq!(std::fs::read(victim).unwrap(), b"precious bytes", "{} was written", victim.display());
    }
    assert_eq!(std::fs::read(fake.join("status.json")).unwrap(), fake_status, "the linked run folder was written");
    assert_eq!(listed, [done.as_str(), killed.as_str()], "the linked run folder is skipped");
    let (_, old) = agent.json("GET", &format!("/v1/runs/{done}"), None);
    assert_eq!((&old["state"], &old["requests"]), (&finished["state"], &finished["requests"]));
    let (_, interrupted) = agent.json("GET", &format!("/v1/runs/{killed}"), None);
    assert_eq!(interrupted["state"], "failed");
    assert_eq!(status_on_disk(data.path(), &killed).unwrap()["state"], "failed");
    assert!(!is_link(&run_dir(data.path(), &killed).join("status.json")));
    let log = agent.log();
    assert!(log.contains(linked_run) && log.contains("symbolic link"), "{log}");

    // Downloads do not follow links either, in or out of the run's folder.
    for name in ["leak.csv", "alias.json", "status.json.tmp"] {
        let (status, body) = agent.call("GET", &format!("/v1/runs/{done}/files/{name}"), Some(TOKEN), None);
        assert_eq!(status, 404, "{name}: {body}");
        assert!(!body.contains("precious"), "{name}");
    }
    let (_, files) = agent.json("GET", &format!("/v1/runs/{done}/files"), None);
    let names: Vec<&str> = files["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(!names.iter().any(|n| ["leak.csv", "alias.json"].contains(n) || n.ends_with(".tmp")), "{names:?}");
    assert!(names.contains(&"stats.json"), "{names:?}");
}

/// A tmpfs of `size` mounted on `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `Err(why)` where mounting is not permitted (not root, no CAP_SYS_ADMIN, no mount binary).
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with `dir/filler` (not a run id, so the agent ignores it).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = [0u8; 4096];
    for _ in 0..100_000 {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    // Whatever is left of a page too.
    while file.write_all(&[0]).is_ok() {}
    path
}

#[test]
fn a_full_disk_is_reported_and_what_was_measured_is_kept() {
    let data = tempfile::tempdir().unwrap();
    let _tmpfs = match Tmpfs::mount(&data.path().join("runs"), "256k") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!("skipped: a full disk needs a small tmpfs: {why}");
            return;
        }
    };
    let (target, served) = counting_server();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);
    let run = start(&agent, &start_body(&target, 6.0, 4));
    let dir = run_dir(data.path(), &run);
    assert!(wait_until(Duration::from_secs(10), || status_on_disk(data.path(), &run)
        .is_some_and(|s| s["windows_closed"].as_u64().unwrap() >= 1)));
    // The disk fills up in the middle of the run.
    let filler = fill(&data.path().join("runs"));

    let over = agent.wait_over(&run);
    assert_eq!(over["state"], "finished", "{over}");
    let error = over["error"].as_str().unwrap_or_else(|| panic!("no error reported: {over}"));
    assert!(error.contains("No space left on device") && error.contains("status.json"), "{error}");
    // Everything measured is still served, from memory.
    let requests = over["requests"].as_u64().unwrap();
    assert!(requests > 20, "{over}");
    assert_eq!(requests, served.load(Ordering::Relaxed));
    let (_, windows) = agent.json("GET", &format!("/v1/runs/{run}/windows?since=0"), None);
    assert_eq!(windows["windows"].as_array().unwrap().len() as u64, over["windows_closed"].as_u64().unwrap());
    let (_, stats) = agent.json("GET", &format!("/v1/runs/{run}/stats"), None);
    assert_eq!(stats["total"]["requests"].as_u64(), Some(requests));
    // What is on the disk is whole: no torn line, no half file, no temporary left.
    let on_disk = status_on_disk(data.path(), &run).expect("status.json parses");
    assert_ne!(on_disk["state"], "finished", "{on_disk}");
    valid_windows(&dir.join("windows.jsonl"));
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    assert!(agent.log().contains("No space left on device"), "{}", agent.log());

    // Space again: the retries write every file, and the error goes away.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || status_on_disk(data.path(), &run)
            .is_some_and(|s| s["state"] == "finished" && s.get("error").is_none())),
        "the run's files were not written again: {:?}",
        status_on_disk(data.path(), &run)
    );
    let (_, now) = agent.json("GET", &format!("/v1/runs/{run}"), None);
    assert_eq!((&now["state"], &now["requests"], now.get("error")), (&json!("finished"), &json!(requests), None));
    assert_eq!(valid_windows(&dir.join("windows.jsonl")), over["windows_closed"].as_u64().unwrap());

    // After a restart, the run is served whole from its files.
    agent.kill();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (_, restored) = agent.json("GET", &format!("/v1/runs/{run}"), None);
    assert_eq!((&restored["state"], &restored["requests"]), (&json!("finished"), &json!(requests)), "{restored}");
    let (_, stats) = agent.json("GET", &format!("/v1/runs/{run}/stats"), None);
    assert_eq!(stats["total"]["requests"].as_u64(), Some(requests));
    let csv = std::fs::read_to_string(dir.join("locust_stats.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with(&format!(",Aggregated,{requests},"))), "{csv}");
}

/// A finished run left by an agent that was stopped: (data directory, run id, its windows).
fn stored_run() -> (tempfile::TempDir, String, u64) {
    let (target, _) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);
    let run = start(&agent, &start_body(&target, 2.5, 2));
    let status = wait_final(&agent, &run);
    assert_eq!(agent.terminate(), Some(0));
    (data, run, status["windows_closed"].as_u64().unwrap())
}

#[test]
fn a_corrupt_status_is_moved_aside_and_logged_not_overwritten() {
    let (data, run, _) = stored_run();
    let dir = run_dir(data.path(), &run);
    let corrupt = b"{\"run_id\": \"sekrit-token-42\", \"state\": \"finis";
    std::fs::write(dir.join("status.json"), corrupt).unwrap();

    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    // Answered once the data directory is loaded.
    let (status, shown) = agent.json("GET", &format!("/v1/runs/{run}"), None);
    assert_eq!(status, 200, "{shown}");
    let aside: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("status.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), corrupt, "the corrupt file keeps its bytes");
    let log = agent.log();
    assert!(log.contains(&dir.join("status.json").display().to_string()), "{log}");
    assert!(log.contains(&aside[0].display().to_string()), "{log}");
    assert!(!log.contains("sekrit"), "the log quotes the file: {log}");
    // The run is still listed, failed, and says why.
    assert_eq!(shown["state"], "failed");
    let error = shown["error"].as_str().unwrap();
    assert!(error.contains("status.json") && error.contains("moved aside"), "{error}");
    assert!(!error.contains("sekrit"), "{error}");
}

#[test]
fn garbage_lines_of_windows_jsonl_are_logged_and_the_good_ones_served() {
    let (data, run, count) = stored_run();
    assert!(count >= 2, "{count} windows");
    let path = run_dir(data.path(), &run).join("windows.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "garbage sekrit-token-43");
    lines.push("{\"index\": 99, \"torn");
    std::fs::write(&path, lines.join("\n")).unwrap();

    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let (status, windows) = agent.json("GET", &format!("/v1/runs/{run}/windows?since=0"), None);
    assert_eq!(status, 200, "{windows}");
    let indexes: Vec<u64> =
        windows["windows"].as_array().unwrap().iter().map(|w| w["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..count).collect::<Vec<_>>());
    let log = agent.log();
    assert!(log.contains(&path.display().to_string()) && log.contains("2 line(s) are not windows"), "{log}");
    assert!(log.contains("line 2"), "{log}");
    assert!(!log.contains("sekrit"), "{log}");
    // The file itself is left as it is.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines.join("\n"));
}

#[test]
fn request_json_is_about_the_size_of_the_body() {
    let (target, _) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let agent = Agent::start(data.path(), &["--token", TOKEN]);
    let minimal = start_body(&target, 0.3, 1);
    let mut fuller = start_body(&target, 0.3, 1);
    fuller["scenario"]["description"] = json!("a scenario with a few more fields, as orch sends them");
    fuller["scenario"]["users"][0]["tasks"][0]["requests"][0]["headers"] = json!({"accept": "text/html"});
    for body in [minimal, fuller] {
        for text in [body.to_string(), serde_json::to_string_pretty(&body).unwrap()] {
            let (status, created) = agent.call_raw("POST", "/v1/runs", Some(TOKEN), &text);
            assert_eq!(status, 201, "{created}");
            let run = serde_json::from_str::<Value>(&created).unwrap()["run_id"].as_str().unwrap().to_string();
            let stored = std::fs::read(run_dir(data.path(), &run).join("request.json")).unwrap();
            let compact = body.to_string().len();
            assert!(
                stored.len() as f64 <= compact as f64 * 1.1,
                "request.json has {} bytes for a body of {compact} (compact)",
                stored.len()
            );
            assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap(), body, "request.json holds the request");
            agent.wait_over(&run);
        }
    }
}

#[test]
fn retention_deletes_the_oldest_runs_over_at_start_and_after_each_run() {
    let (target, _) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(data.path(), &["--token", TOKEN]);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let run = start(&agent, &start_body(&target, 0.2, 1));
        wait_final(&agent, &run);
        runs.push(run);
    }
    assert_eq!(list_ids(&agent), runs, "the defaults keep them all");
    assert_eq!(agent.terminate(), Some(0));
    // The oldest run is 40 days old: the age limit deletes it, the count limit the next oldest.
    let request = run_dir(data.path(), &runs[0]).join("request.json");
    let long_ago = SystemTime::now() - Duration::from_secs(40 * 86_400);
    std::fs::File::options().write(true).open(&request).unwrap().set_modified(long_ago).unwrap();

    let agent = Agent::start(data.path(), &["--token", TOKEN, "--keep-runs", "2", "--keep-days", "30"]);
    assert_eq!(list_ids(&agent), [runs[2].as_str(), runs[3].as_str()]);
    let log = agent.log();
    for (run, why) in [(&runs[0], "--keep-days 30"), (&runs[1], "--keep-runs 2")] {
        assert!(!run_dir(data.path(), run).exists(), "{run} is still on disk");
        assert!(
            log.lines().any(|l| l.contains("deleted the run's folder") && l.contains(run.as_str()) && l.contains(why)),
            "{run} ({why}):\n{log}"
        );
    }

    // Two more runs: once each is over, the oldest go, down to two.
    let fifth = start(&agent, &start_body(&target, 0.2, 1));
    wait_final(&agent, &fifth);
    assert!(wait_until(Duration::from_secs(10), || list_ids(&agent) == [runs[3].as_str(), fifth.as_str()]));
    let sixth = start(&agent, &start_body(&target, 0.2, 1));
    wait_final(&agent, &sixth);
    assert!(
        wait_until(Duration::from_secs(10), || list_ids(&agent) == [fifth.as_str(), sixth.as_str()]),
        "{:?}",
        list_ids(&agent)
    );
    for run in [&runs[2], &runs[3]] {
        assert!(wait_until(Duration::from_secs(10), || !run_dir(data.path(), run).exists()), "{run}");
    }
}
