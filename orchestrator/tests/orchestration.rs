//! Matrix orchestration through the real binary: kill -9 and resume, failure isolation (panic, hang, crash),
//! retries, fail-fast, Ctrl-C, --filter/--only, status and logs. Faults come from ORCH_FAULT_INJECT, which only
//! `orch cell` honours.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::Scratch;
use serde_json::Value;

const MATRIX: &str = "experiments/o.yaml";

/// 2 policies x 4 seeds of one app and scenario: 8 cells, 2 at once.
fn matrix(strategy: &str) -> String {
    format!(
        "name: o\nseeds: [1, 2, 3, 4]\napps: image-classifier\nscenarios: rushsale\npolicies:\n  - {{name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}}\n  - {{name: static-max, kind: static, replicas: max}}\nstrategy: {{max_parallel: 2{strategy}}}\n"
    )
}

fn orch(scratch: &Scratch, args: &[&str], faults: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
    command.args(args).current_dir(scratch.dir.path()).env_remove("ORCH_FAULT_INJECT");
    if let Some(faults) = faults {
        command.env("ORCH_FAULT_INJECT", faults);
    }
    command
}

fn run(scratch: &Scratch, args: &[&str], faults: Option<&str>) -> Output {
    orch(scratch, args, faults).output().expect("run orch")
}

fn spawn(scratch: &Scratch, args: &[&str], faults: Option<&str>) -> Child {
    orch(scratch, args, faults).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start orch")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run_json(run_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap()
}

fn plan(run_dir: &Path) -> Vec<String> {
    run_json(run_dir)["cells"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// Every cell's status.json, parsed (panics on a missing or half-written one).
fn statuses(run_dir: &Path) -> BTreeMap<String, Value> {
    plan(run_dir)
        .into_iter()
        .map(|id| {
            let path = run_dir.join(&id).join("status.json");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let status: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()));
            (id, status)
        })
        .collect()
}

fn states(run_dir: &Path) -> BTreeMap<String, String> {
    statuses(run_dir).into_iter().map(|(id, s)| (id, s["state"].as_str().unwrap().to_string())).collect()
}

fn count(states: &BTreeMap<String, String>, state: &str) -> usize {
    states.values().filter(|s| *s == state).count()
}

/// Waits (at most a minute) until `done` holds for the run folder's statuses; they may not exist yet.
fn wait_for(run_dir: &Path, what: &str, done: impl Fn(&BTreeMap<String, String>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if run_dir.join("run.json").is_file() {
            let all_there = plan(run_dir).iter().all(|id| run_dir.join(id).join("status.json").is_file());
            if all_there && done(&states(run_dir)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `n` cells have reached their injected fault (so their signal handlers are installed).
fn wait_injected(run_dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reached = if run_dir.join("run.json").is_file() {
            plan(run_dir)
                .iter()
                .filter(|id| {
                    std::fs::read_to_string(run_dir.join(id).join("stderr.log")).is_ok_and(|t| t.contains("injecting"))
                })
                .count()
        } else {
            0
        };
        if reached >= n {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {n} cells to reach their fault");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), err);
        }
        assert!(Instant::now() < deadline, "orch did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling a child process we started and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Every file of a folder (not its subfolders): name -> (bytes, modification time).
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, (std::fs::read(e.path()).unwrap(), e.metadata().unwrap().modified().unwrap()))
        })
        .collect()
}

/// pids of the `orch cell` processes the run started, from the cells' events.
fn cell_pids(run_dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for id in plan(run_dir) {
        let events = std::fs::read_to_string(run_dir.join(&id).join("events.jsonl")).unwrap_or_default();
        for line in events.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            if event["event"] == "started" {
                pids.push(event["pid"].as_i64().unwrap() as i32);
            }
        }
    }
    pids
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); a reaped or never-existing pid does not. Reused pids are not ours to
    // worry about within a test's seconds.
    // SAFETY: signal 0 only checks existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
    exists && !zombie
}

fn wait_dead(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "cell processes outlived orch: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn started_events(cell_dir: &Path) -> usize {
    std::fs::read_to_string(cell_dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"started\""))
        .count()
}

#[test]
fn kill_9_mid_matrix_then_resume_keeps_finished_cells_and_matches_an_uninterrupted_run() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    let run_dir = scratch.path("logs/k");
    // Slow cells (300 ms each, 2 at once) so the kill lands mid-matrix.
    let mut child = spawn(&scratch, &["run", MATRIX, "--tag", "k"], Some("*=sleep:300"));
    wait_for(&run_dir, "two finished cells", |s| count(s, "succeeded") >= 2);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    wait_dead(&cell_pids(&run_dir));

    let before = states(&run_dir);
    let finished: Vec<&String> = before.iter().filter(|(_, s)| *s == "succeeded").map(|(id, _)| id).collect();
    assert!(finished.len() >= 2 && finished.len() < 8, "the kill landed mid-matrix: {before:?}");
    let kept: BTreeMap<&String, _> = finished.iter().map(|id| (*id, snapshot(&run_dir.join(id)))).collect();

    let resumed = run(&scratch, &["run", "--resume", "k"], None);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let after = states(&run_dir);
    assert_eq!(count(&after, "succeeded"), 8, "{after:?}");
    for (id, files) in &kept {
        assert_eq!(&snapshot(&run_dir.join(id)), files, "{id}: a finished cell's files changed on resume");
        assert_eq!(started_events(&run_dir.join(id)), 1, "{id} ran again");
    }

    let fresh = run(&scratch, &["run", MATRIX, "--tag", "fresh"], None);
    assert_eq!(fresh.status.code(), Some(0), "{}", stderr(&fresh));
    let summary = |tag: &str| std::fs::read(scratch.path(&format!("logs/{tag}/summary.csv"))).unwrap();
    assert_eq!(summary("k"), summary("fresh"), "summary.csv after resume differs from an uninterrupted run's");
    assert_eq!(String::from_utf8(summary("k")).unwrap().lines().count(), 9);
    for id in plan(&run_dir) {
        let metrics = |tag: &str| std::fs::read(scratch.path(&format!("logs/{tag}/{id}/metrics.csv"))).unwrap();
        assert!(metrics("k") == metrics("fresh"), "{id}: metrics differ");
    }
    assert!(run_json(&run_dir)["finished_unix_s"].is_number());
}

#[test]
fn a_panicking_a_hanging_and_a_crashing_cell_are_isolated() {
    let scratch = Scratch::new();
    // Only the hanging cell gets a short timeout (through an include entry), so a slow machine cannot time out
    // the others.
    scratch.write(MATRIX, &format!("{}include: [{{policy: hpa-cpu-60, seed: 2, timeout: 3s}}]\n", matrix("")));
    let faults = "*.hpa-cpu-60.*.s1-*=panic;*.hpa-cpu-60.*.s2-*=hang;*.static-max.*.s1-*=abort";
    let output = run(&scratch, &["run", MATRIX, "--tag", "f"], Some(faults));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let run_dir = scratch.path("logs/f");
    let all = statuses(&run_dir);
    let find = |needle: &str| all.iter().find(|(id, _)| id.contains(needle)).map(|(_, s)| s).unwrap();

    let panicked = find("hpa-cpu-60.rushsale.s1-");
    assert_eq!(panicked["state"], "failed");
    assert!(panicked["error"].as_str().unwrap().contains("injected fault: panic"), "{panicked}");
    let tail = panicked["log_tail"].as_array().unwrap();
    assert!(tail.iter().any(|l| l.as_str().unwrap().contains("cell panicked")), "{panicked}");

    let hung = find("hpa-cpu-60.rushsale.s2-");
    assert_eq!(hung["state"], "failed");
    assert!(hung["error"].as_str().unwrap().contains("timed out after 3s"), "{hung}");

    let crashed = find("static-max.rushsale.s1-");
    assert_eq!(crashed["state"], "failed");
    assert!(crashed["error"].as_str().unwrap().contains("SIGABRT"), "{crashed}");

    let succeeded: Vec<&String> = all.iter().filter(|(_, s)| s["state"] == "succeeded").map(|(id, _)| id).collect();
    assert_eq!(succeeded.len(), 5, "{all:?}");
    let summary = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 6, "header and the five cells that succeeded");
    for id in succeeded {
        assert!(summary.contains(id.as_str()));
        assert!(run_dir.join(id).join("summary.json").is_file());
    }
    wait_dead(&cell_pids(&run_dir));
    let err = stderr(&output);
    assert!(err.contains("failed: ") && err.contains("timed out"), "{err}");
}

#[test]
fn transient_failures_are_retried_with_backoff_and_others_are_not() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(", retries: 2, retry_backoff: 50ms"));
    let faults = "*.hpa-cpu-60.*.s1-*=transient:1;*.hpa-cpu-60.*.s2-*=transient:5;*.hpa-cpu-60.*.s3-*=error";
    let output = run(&scratch, &["run", MATRIX, "--tag", "r"], Some(faults));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let run_dir = scratch.path("logs/r");
    let all = statuses(&run_dir);
    let find = |needle: &str| all.iter().find(|(id, _)| id.contains(needle)).unwrap();
    let events = |id: &str| std::fs::read_to_string(run_dir.join(id).join("events.jsonl")).unwrap();

    let (id, once) = find("hpa-cpu-60.rushsale.s1-");
    assert_eq!((once["state"].as_str(), once["attempt"].as_u64()), (Some("succeeded"), Some(2)), "{once}");
    assert_eq!(events(id).matches("\"retry\"").count(), 1);

    let (id, always) = find("hpa-cpu-60.rushsale.s2-");
    assert_eq!((always["state"].as_str(), always["attempt"].as_u64()), (Some("failed"), Some(3)), "{always}");
    let retries: Vec<Value> = events(id)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "retry")
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(retries[1]["backoff_s"].as_f64() > retries[0]["backoff_s"].as_f64(), "backoff grows: {retries:?}");

    let (id, permanent) = find("hpa-cpu-60.rushsale.s3-");
    assert_eq!((permanent["state"].as_str(), permanent["attempt"].as_u64()), (Some("failed"), Some(1)));
    assert_eq!(events(id).matches("\"retry\"").count(), 0, "a permanent error is not retried");
}

#[test]
fn fail_fast_skips_the_cells_not_yet_started() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(", fail_fast: true").replace("max_parallel: 2", "max_parallel: 1"));
    let output = run(&scratch, &["run", MATRIX, "--tag", "ff"], Some("*.hpa-cpu-60.*.s2-*=error"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let first = states(&scratch.path("logs/ff"));
    let ordered: Vec<&str> = plan(&scratch.path("logs/ff")).iter().map(|id| first[id].as_str()).collect::<Vec<_>>();
    assert_eq!(ordered, ["succeeded", "failed", "skipped", "skipped", "skipped", "skipped", "skipped", "skipped"]);
    // Skipped cells run on resume.
    let resumed = run(&scratch, &["run", "--resume", "ff"], None);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let after = states(&scratch.path("logs/ff"));
    assert_eq!((count(&after, "succeeded"), count(&after, "failed")), (7, 1), "the failed cell is kept: {after:?}");
    let retried = run(&scratch, &["run", "--resume", "ff", "--retry-failed"], None);
    assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
    assert_eq!(count(&states(&scratch.path("logs/ff")), "succeeded"), 8);
}

#[test]
fn sigint_cancels_running_cells_and_leaves_consistent_status_files() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    let run_dir = scratch.path("logs/c");
    // One cell ignores cancellation (hang): it is killed after the grace period.
    let mut child = spawn(&scratch, &["run", MATRIX, "--tag", "c"], Some("*.s1-*=hang;*=sleep:20000"));
    wait_for(&run_dir, "two running cells", |s| count(s, "running") == 2);
    wait_injected(&run_dir, 2);

    let status = run(&scratch, &["status", "c"], None);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("in progress") && table.contains("s ago"), "{table}");
    assert!(table.contains("8 cells: 6 planned, 2 running"), "{table}");

    signal(&child, libc::SIGINT);
    let (code, err) = wait_exit(&mut child);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("--resume c"), "{err}");
    let after = states(&run_dir);
    assert_eq!(count(&after, "running"), 0, "{after:?}");
    assert_eq!(count(&after, "cancelled"), 2, "{after:?}");
    assert_eq!(count(&after, "planned"), 6, "{after:?}");
    wait_dead(&cell_pids(&run_dir));
    assert!(run_json(&run_dir)["finished_unix_s"].is_null());
    assert_eq!(std::fs::read_to_string(run_dir.join("summary.csv")).unwrap().lines().count(), 1);
    for id in plan(&run_dir) {
        let leftovers: Vec<PathBuf> = std::fs::read_dir(run_dir.join(&id))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    let resumed = run(&scratch, &["run", "--resume", "c"], None);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(count(&states(&run_dir), "succeeded"), 8);
}

#[test]
fn a_second_sigint_exits_at_once_with_consistent_files() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    let run_dir = scratch.path("logs/cc");
    let mut child = spawn(&scratch, &["run", MATRIX, "--tag", "cc"], Some("*=hang"));
    wait_for(&run_dir, "two running cells", |s| count(s, "running") == 2);
    wait_injected(&run_dir, 2);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, libc::SIGINT);
    let (code, err) = wait_exit(&mut child);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("exiting at once"), "{err}");
    let after = states(&run_dir);
    assert_eq!((count(&after, "cancelled"), count(&after, "planned")), (2, 6), "{after:?}");
    wait_dead(&cell_pids(&run_dir));
}

#[test]
fn filter_and_only_run_exactly_the_chosen_cells() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    let run_dir = scratch.path("logs/sel");
    let output =
        run(&scratch, &["run", MATRIX, "--tag", "sel", "--filter", "policy=static-*", "--filter", "seed=[23]"], None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let chosen: Vec<String> =
        states(&run_dir).into_iter().filter(|(_, s)| s == "succeeded").map(|(id, _)| id).collect();
    assert_eq!(chosen.len(), 2, "{chosen:?}");
    assert!(chosen.iter().all(|id| id.contains(".static-max.") && (id.contains(".s2-") || id.contains(".s3-"))));
    assert_eq!(count(&states(&run_dir), "planned"), 6);

    // --only, with the id written without its hash, on resume.
    let target = plan(&run_dir).into_iter().find(|id| id.contains(".hpa-cpu-60.") && id.contains(".s4-")).unwrap();
    let short = target.rsplit_once('-').unwrap().0.to_string();
    let only = run(&scratch, &["run", "--resume", "sel", "--only", &short], None);
    assert_eq!(only.status.code(), Some(0), "{}", stderr(&only));
    let after = states(&run_dir);
    assert_eq!(after[&target], "succeeded");
    assert_eq!(count(&after, "succeeded"), 3);
    assert_eq!(started_events(&run_dir.join(&chosen[0])), 1, "cells outside --only did not run again");

    for bad in [&["--only", "nope.hpa.x.s1"][..], &["--filter", "colour=red"], &["--filter", "app=[oops"]] {
        let mut args = vec!["run", "--resume", "sel"];
        args.extend_from_slice(bad);
        let refused = run(&scratch, &args, None);
        assert_eq!(refused.status.code(), Some(2), "{bad:?}: {}", stderr(&refused));
    }
    assert_eq!(count(&states(&run_dir), "succeeded"), 3);
}

#[test]
fn resume_refuses_a_changed_matrix_and_says_what_changed_unless_forced() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    let first = run(&scratch, &["run", MATRIX, "--tag", "ch", "--filter", "seed=1"], None);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let run_dir = scratch.path("logs/ch");
    let root_before = snapshot(&run_dir);
    let before: BTreeMap<String, _> =
        plan(&run_dir).into_iter().map(|id| (id.clone(), snapshot(&run_dir.join(&id)))).collect();

    scratch.edit(MATRIX, "seeds: [1, 2, 3, 4]", "seeds: [1, 2, 3, 5]");
    scratch.edit("experiments/apps/image-classifier.yaml", "threshold_ms: ", "threshold_ms: 1");
    let refused = run(&scratch, &["run", "--resume", "ch"], None);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(message.contains("removed:") && message.contains(".s4-"), "{message}");
    assert!(message.contains("added:") && message.contains(".s5-"), "{message}");
    assert!(message.contains("app model: app.slo.threshold_ms"), "{message}");
    assert!(message.contains("--force"), "{message}");
    let unchanged: BTreeMap<String, _> =
        plan(&run_dir).into_iter().map(|id| (id.clone(), snapshot(&run_dir.join(&id)))).collect();
    assert_eq!(before, unchanged, "a refused resume wrote nothing");
    assert_eq!(root_before, snapshot(&run_dir), "nor in the run folder itself");

    let forced = run(&scratch, &["run", "--resume", "ch", "--force"], None);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_eq!(count(&states(&run_dir), "succeeded"), 8);
    assert!(run_dir.join("superseded").is_dir());
    assert!(plan(&run_dir).iter().all(|id| !before.contains_key(id)), "every cell's inputs changed");
}

#[test]
fn logs_finds_a_cell_and_status_reports_failures() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    for tag in ["l1", "l2"] {
        let output = run(&scratch, &["run", MATRIX, "--tag", tag, "--filter", "seed=1"], Some("*.static-max.*=error"));
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    }
    let id = plan(&scratch.path("logs/l1"))
        .into_iter()
        .find(|id| id.contains(".hpa-cpu-60.") && id.contains(".s1-"))
        .unwrap();
    let ambiguous = run(&scratch, &["logs", &id], None);
    assert!(!ambiguous.status.success());
    assert!(stderr(&ambiguous).contains("--run"), "{}", stderr(&ambiguous));
    let logs = run(&scratch, &["logs", id.rsplit_once('-').unwrap().0, "--run", "l2"], None);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("cell started") && text.contains("cell finished"), "{text}");

    let status = run(&scratch, &["status", "l2"], None);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("injected fault: error"), "{table}");
    assert!(table.contains("8 cells: 6 planned, 1 succeeded, 1 failed"), "{table}");
    assert!(table.contains("finished"), "{table}");
}

/// A stand-in for RL training: one preparation per (app, policy, seed), before any of its scenario cells runs.
struct Training {
    calls: std::sync::Mutex<Vec<(String, usize, Vec<String>)>>,
    broken: &'static str,
}

impl orchestrator::run::supervisor::Prepare for Training {
    fn key(&self, cell: &orchestrator::cell::Cell) -> Option<String> {
        let c = &cell.config;
        Some(format!("{}.{}.s{}", c.app.name, c.policy.name(), c.seed))
    }

    fn prepare(&self, key: &str, cells: &[&orchestrator::cell::Cell], run_dir: &Path) -> anyhow::Result<()> {
        let states: Vec<String> = cells
            .iter()
            .map(|c| {
                let status: Value =
                    serde_json::from_str(&std::fs::read_to_string(run_dir.join(&c.id).join("status.json")).unwrap())
                        .unwrap();
                status["state"].as_str().unwrap().to_string()
            })
            .collect();
        self.calls.lock().unwrap().push((key.to_string(), cells.len(), states));
        anyhow::ensure!(key != self.broken, "no GPU today");
        Ok(())
    }
}

#[test]
fn a_preparation_runs_once_per_group_before_its_cells_and_its_failure_fails_them() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix("").replace("scenarios: rushsale", "scenarios: [rushsale, peak]"));
    let m = orchestrator::matrix::Matrix::load(&scratch.path(MATRIX)).unwrap();
    assert_eq!(m.cells.len(), 16);
    let mut options = orchestrator::run::runner::RunOptions::new(scratch.path("logs"), "prep").unwrap();
    options.program = PathBuf::from(env!("CARGO_BIN_EXE_orch"));
    let training = Training { calls: Default::default(), broken: "image-classifier.static-max.s3" };
    let outcome = orchestrator::run::runner::run_matrix_with(&m, &options, &training).unwrap();

    let calls = training.calls.lock().unwrap();
    assert_eq!(calls.len(), 8, "one per app x policy x seed: {calls:?}");
    let keys: std::collections::BTreeSet<&String> = calls.iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), 8);
    for (key, group, states) in calls.iter() {
        assert_eq!(*group, 2, "{key}: both scenarios share the preparation");
        assert!(states.iter().all(|s| s == "planned"), "{key}: a cell started before its preparation: {states:?}");
    }
    assert_eq!(outcome.failed.len(), 2);
    assert!(
        outcome.failed.iter().all(|(id, e)| id.contains(".static-max.") && id.contains(".s3-") && e.contains("no GPU"))
    );
    assert_eq!(count(&states(&scratch.path("logs/prep")), "succeeded"), 14);
}

#[test]
fn orch_cell_runs_a_planned_cell_alone_and_refuses_an_edited_config() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &matrix(""));
    let output =
        run(&scratch, &["run", MATRIX, "--tag", "alone", "--only", "image-classifier.static-max.rushsale.s1"], None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_dir = scratch.path("logs/alone");
    let planned: Vec<String> = states(&run_dir).into_iter().filter(|(_, s)| s == "planned").map(|(id, _)| id).collect();
    assert_eq!(planned.len(), 7);

    // As a Kubernetes Job would: the command alone, on the run folder.
    let cell = run(&scratch, &["cell", "--run-dir", "logs/alone", "--cell", &planned[0]], None);
    assert_eq!(cell.status.code(), Some(0), "{}", stderr(&cell));
    let status = &statuses(&run_dir)[&planned[0]];
    assert_eq!((status["state"].as_str(), status["attempt"].as_u64()), (Some("succeeded"), Some(1)));
    assert!(run_dir.join(&planned[0]).join("summary.json").is_file());

    scratch.edit(&format!("logs/alone/{}/config.yaml", planned[1]), "seed: ", "seed: 9");
    let edited = run(&scratch, &["cell", "--run-dir", "logs/alone", "--cell", &planned[1]], None);
    assert_eq!(edited.status.code(), Some(1));
    let status = &statuses(&run_dir)[&planned[1]];
    assert_eq!(status["state"], "failed");
    assert!(status["error"].as_str().unwrap().contains("edited after planning"), "{status}");
}
