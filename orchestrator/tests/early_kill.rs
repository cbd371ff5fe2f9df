//! kill -9 in the first milliseconds of `orch run` leaves a run folder without run.json (only `.lock`, perhaps
//! matrix.yaml); later points leave run.json without every cell's folder. Each state leads somewhere: `orch run
//! --tag` or `--resume` completes the run, and nothing a user placed there is removed.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;

const MATRIX: &str = "experiments/early.yaml";
/// Two quick cells.
const TWO_CELLS: &str = "name: early\nseeds: [1, 2]\napps: [image-classifier]\nscenarios: [rushsale]\npolicies:\n  - {name: static-max, kind: static, replicas: max}\n";

fn orch(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(scratch.dir.path())
        .env_remove("ORCH_FAULT_INJECT")
        .output()
        .expect("run orch")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A pid that is certainly not running: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("start true");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Every cell of the run's plan succeeded, and the run is recorded as finished.
fn assert_complete(run_dir: &Path, cells: usize) {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert!(info["finished_unix_s"].is_number(), "{info}");
    let ids = info["cells"].as_array().unwrap();
    assert_eq!(ids.len(), cells);
    for id in ids {
        let status: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join(id.as_str().unwrap()).join("status.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(status["state"], "succeeded", "{id}");
    }
    let summary = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), cells + 1, "{summary}");
}

/// What a kill before run.json leaves: the lock of a dead orch, perhaps the matrix copy and a temporary file.
fn leave_unstarted(scratch: &Scratch, tag: &str, with_matrix_copy: bool) {
    scratch.write(&format!("logs/{tag}/.lock"), &dead_pid().to_string());
    if with_matrix_copy {
        scratch.write(&format!("logs/{tag}/matrix.yaml"), TWO_CELLS);
        scratch.write(&format!("logs/{tag}/.run.json.{}.0.tmp", dead_pid()), "{\"format\":");
    }
}

#[test]
fn a_folder_left_before_run_json_is_taken_over_by_run_and_started_afresh_by_resume() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, TWO_CELLS);

    // Only `.lock`: the same tag runs.
    leave_unstarted(&scratch, "t", false);
    let output = orch(&scratch, &["run", MATRIX, "--tag", "t"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("stopped before the run started"), "{}", stderr(&output));
    assert_complete(&scratch.path("logs/t"), 2);

    // `.lock`, matrix.yaml and a temporary run.json: --resume starts it afresh, and the temporary file goes.
    leave_unstarted(&scratch, "r", true);
    let output = orch(&scratch, &["run", MATRIX, "--resume", "r"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("starting the run afresh"), "{}", stderr(&output));
    assert_complete(&scratch.path("logs/r"), 2);
    let leftovers: Vec<String> = std::fs::read_dir(scratch.path("logs/r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Without the matrix, --resume cannot know what to run: it says how to go on, and that works.
    leave_unstarted(&scratch, "m", false);
    let output = orch(&scratch, &["run", "--resume", "m"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("orch run MATRIX --tag m"), "{}", stderr(&output));
    let output = orch(&scratch, &["run", MATRIX, "--tag", "m"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_complete(&scratch.path("logs/m"), 2);
}

#[test]
fn a_folder_without_run_json_holding_anything_else_is_left_untouched() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, TWO_CELLS);
    leave_unstarted(&scratch, "u", false);
    scratch.write("logs/u/notes.txt", "mine");
    for args in [["run", MATRIX, "--tag", "u"], ["run", MATRIX, "--resume", "u"]] {
        let output = orch(&scratch, &args);
        assert_ne!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(stderr(&output).contains("notes.txt"), "{}", stderr(&output));
        assert_eq!(std::fs::read_to_string(scratch.path("logs/u/notes.txt")).unwrap(), "mine");
        assert!(!scratch.path("logs/u/run.json").exists());
    }
}

#[test]
fn a_kill_after_run_json_before_every_cell_folder_resumes_to_the_end() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, TWO_CELLS);
    let output = orch(&scratch, &["run", MATRIX, "--tag", "whole"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let whole = scratch.path("logs/whole");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("run.json")).unwrap()).unwrap();
    let first = info["cells"][0].as_str().unwrap().to_string();

    // run.json (not finished) and the matrix copy; the first cell's folder holds only its config.
    let mut started = info.clone();
    started["finished_unix_s"] = serde_json::Value::Null;
    scratch.write("logs/e/.lock", &dead_pid().to_string());
    scratch.write("logs/e/matrix.yaml", TWO_CELLS);
    scratch.write("logs/e/run.json", &serde_json::to_string_pretty(&started).unwrap());
    std::fs::create_dir_all(scratch.path(&format!("logs/e/{first}"))).unwrap();
    std::fs::copy(whole.join(&first).join("config.yaml"), scratch.path(&format!("logs/e/{first}/config.yaml")))
        .unwrap();

    let output = orch(&scratch, &["run", "--resume", "e"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_complete(&scratch.path("logs/e"), 2);
    assert_eq!(
        std::fs::read(scratch.path("logs/e/summary.csv")).unwrap(),
        std::fs::read(whole.join("summary.csv")).unwrap(),
        "the resumed run gives the same summary as the whole one"
    );
}

#[test]
fn sigkill_as_soon_as_the_lock_appears_then_resume_completes_the_run() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, TWO_CELLS);
    let run_dir = scratch.path("logs/k");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["run", MATRIX, "--tag", "k"])
        .current_dir(scratch.dir.path())
        .env_remove("ORCH_FAULT_INJECT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orch");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_dir.join(".lock").exists() {
        assert!(Instant::now() < deadline, "orch never created its lock");
        assert!(child.try_wait().unwrap().is_none(), "orch ended before its lock was seen");
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let had_run_json = run_dir.join("run.json").exists();
    eprintln!("killed with run.json written: {had_run_json}");

    // Whichever point the kill hit, --resume with the matrix finishes the run.
    let output = orch(&scratch, &["run", MATRIX, "--resume", "k"]);
    assert_eq!(output.status.code(), Some(0), "run.json before the resume: {had_run_json}; {}", stderr(&output));
    assert_complete(&run_dir, 2);
}
