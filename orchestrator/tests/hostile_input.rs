//! Hostile and careless input through the real binary: non-finite numbers named with their field, absurd sizes
//! refused at load (docs/LIMITS.md), `orch plan` streaming a large matrix in little memory, and one cell without
//! valid figures failing alone while the run is still summarized, reported and resumable.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::Scratch;
use serde_json::Value;

const MATRIX: &str = "experiments/m.yaml";
const BASE_MATRIX: &str = "name: bad\nseeds: [1]\napps: [online-boutique]\nscenarios: [peak]\npolicies:\n  - {name: hpa, kind: hpa, manifest: hpa-cpu-60.yaml}\n  - {name: fixed, kind: static, replicas: {frontend: 2}}\n";
const OB: &str = "experiments/apps/online-boutique.yaml";
const PEAK: &str = "experiments/scenarios/online-boutique/peak.yaml";
const HPA: &str = "baselines/online-boutique/hpa-cpu-60.yaml";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `orch run` on the edited base matrix and checks: exit 2, one error line naming the file and
/// `: field: `, nothing under logs/. Returns the error line.
fn refused(scratch: &Scratch, file: &str, field: &str) -> String {
    let output = scratch.orch(&["run", MATRIX, "--tag", "t"]);
    let stderr = stderr(&output);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(file), "no file {file:?}: {stderr}");
    assert!(errors[0].contains(&format!(": {field}: ")), "no field {field:?}: {stderr}");
    assert!(!scratch.path("logs").exists(), "logs/ was created");
    errors[0].to_string()
}

#[test]
fn nan_and_infinities_are_named_with_their_value_and_field_in_every_kind_of_file() {
    let cases = [
        (
            OB,
            "per_request_ms: 1.0",
            "per_request_ms: .nan",
            "online-boutique.yaml",
            "services[0].cpu.per_request_ms",
            ".nan",
        ),
        (OB, "startup_s: 15", "startup_s: -.inf", "online-boutique.yaml", "services[0].startup_s", "-.inf"),
        (PEAK, "spawn_rate: 100}", "spawn_rate: .inf}", "peak.yaml", "shape.stages[0].spawn_rate", ".inf"),
        (
            MATRIX,
            "seeds: [1]",
            "seeds: [1]\ndefaults: {slo: {threshold_ms: .NaN}}",
            "m.yaml",
            "defaults.slo.threshold_ms",
            ".nan",
        ),
        (
            HPA,
            "averageUtilization: 60",
            "averageUtilization: .inf",
            "hpa-cpu-60.yaml",
            "document 1: spec.metrics[0].resource.target.averageUtilization",
            ".inf",
        ),
    ];
    for (file, from, to, name, field, value) in cases {
        let scratch = Scratch::new();
        scratch.write(MATRIX, BASE_MATRIX);
        scratch.edit(file, from, to);
        let error = refused(&scratch, name, field);
        assert!(error.contains(&format!("{value} is not a finite number")), "{error}");
        assert!(!error.contains("null"), "{error}");
    }
}

#[test]
fn absurd_sizes_are_refused_at_load_naming_file_and_field() {
    let seeds = |n: usize| format!("seeds: [{}]", (1..=n).map(|s| s.to_string()).collect::<Vec<_>>().join(", "));
    let cases: Vec<(&str, &str, String, &str, &str)> = vec![
        (
            OB,
            "{service: currencyservice, count: 9}",
            "{service: currencyservice, count: 1000000000}".into(),
            "online-boutique.yaml",
            "routes[0].call.calls[2].count",
        ),
        (
            OB,
            "replicas: {min: 1, max: 10}",
            "replicas: {min: 1, max: 1000000000}".into(),
            "online-boutique.yaml",
            "services[0].replicas.max",
        ),
        (PEAK, "{end: 900,", "{end: 1e9,".into(), "peak.yaml", "shape.stages[0].end"),
        (PEAK, "users: 400,", "users: 1000000000,".into(), "peak.yaml", "shape.stages[0].users"),
        // 6.5 million seeds: refused by size before the file is parsed, still naming the field.
        (MATRIX, "seeds: [1]", seeds(6_500_000), "m.yaml", "seeds"),
        (MATRIX, "seeds: [1]", seeds(10_001), "m.yaml", "seeds"),
        // 10,000 seeds x 2 policies x 6 scenarios = 120,000 cells.
        (
            MATRIX,
            "seeds: [1]\napps: [online-boutique]\nscenarios: [peak]",
            format!(
                "{}\napps: [online-boutique]\nscenarios: [peak, rushsale, offpeak, fluctuating, browse, peak2]",
                seeds(10_000)
            ),
            "m.yaml",
            "seeds",
        ),
    ];
    for (file, from, to, name, field) in cases {
        let scratch = Scratch::new();
        scratch.write(MATRIX, BASE_MATRIX);
        scratch.edit(file, from, &to);
        let peak = std::fs::read_to_string(scratch.path(PEAK)).unwrap();
        scratch.write("experiments/scenarios/online-boutique/peak2.yaml", &peak.replace("name: peak", "name: peak2"));
        let error = refused(&scratch, name, field);
        // The scenario's length is also the load agent's own range (7 days), which names the limit itself.
        assert!(
            error.contains("docs/LIMITS.md") || error.contains("at most 604800"),
            "the error names the limit: {error}"
        );
        assert!(!error.contains("1, 2, 3, 4"), "the error echoes the file: {error}");
    }
}

/// VmHWM (peak resident memory) of a running process, in kB.
fn peak_memory_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn plan_of_a_large_allowed_matrix_streams_its_cells_in_bounded_memory() {
    let scratch = Scratch::new();
    // 10,000 seeds x 2 policies x 5 scenarios: 100,000 cells, the most a matrix may have.
    let seeds: Vec<String> = (1..=10_000).map(|s| s.to_string()).collect();
    scratch.write(
        MATRIX,
        &format!(
            "name: big\nseeds: [{}]\napps: [online-boutique]\nscenarios: [peak, rushsale, offpeak, fluctuating, browse]\npolicies:\n  - {{name: hpa, kind: hpa, manifest: hpa-cpu-60.yaml}}\n  - {{name: max, kind: static, replicas: max}}\n",
            seeds.join(", ")
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["plan", MATRIX])
        .current_dir(scratch.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orch plan");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let header = lines.next().expect("a header line").expect("utf-8");
    assert!(header.starts_with("CELL"), "{header}");
    let first = lines.next().expect("a first cell").expect("utf-8");
    assert!(first.starts_with("online-boutique.hpa.peak.s1-"), "{first}");
    // The first cells arrive while the plan is still being written: it streams.
    assert!(child.try_wait().expect("try_wait").is_none(), "orch plan finished before its first cell was read");
    let mut peak_kb = peak_memory_kb(pid).unwrap_or(0);
    for (n, line) in lines.by_ref().take(2_000).enumerate() {
        line.expect("utf-8");
        if n % 500 == 0 {
            peak_kb = peak_kb.max(peak_memory_kb(pid).unwrap_or(0));
        }
    }
    peak_kb = peak_kb.max(peak_memory_kb(pid).unwrap_or(0));
    let _ = child.kill();
    let _ = child.wait();
    assert!(peak_kb > 0, "VmHWM was read");
    assert!(peak_kb < 300 * 1024, "orch plan of 100,000 cells peaked at {} MB", peak_kb / 1024);
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A short scenario of the image classifier, and one where nobody sends a request (so no latency exists).
fn write_scenarios(scratch: &Scratch) {
    let scenario = |name: &str, users: u32| {
        format!(
            "name: {name}\nusers:\n  - name: uploader\n    wait: {{constant_throughput: 1}}\n    tasks:\n      - {{name: classify, requests: [{{method: POST, path: /predict, json: {{image: cat.jpg}}}}]}}\nshape:\n  stages:\n    - {{end: 30, users: {users}, spawn_rate: 10}}\n"
        )
    };
    scratch.write("experiments/scenarios/image-classifier/short.yaml", &scenario("short", 8));
    scratch.write("experiments/scenarios/image-classifier/idle.yaml", &scenario("idle", 0));
}

const RUN_MATRIX: &str = "name: r\nseeds: [1]\napps: image-classifier\nscenarios: [short, idle]\npolicies:\n  - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}\n  - {name: static-max, kind: static, replicas: max}\nexclude: [{scenario: idle, policy: static-max}]\nstrategy: {max_parallel: 2}\n";

fn summary_rows(run_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("summary.csv")).expect("summary.csv");
    text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect()
}

fn cell_dir(run_dir: &Path, scenario: &str) -> std::path::PathBuf {
    std::fs::read_dir(run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().contains(&format!(".{scenario}.")))
        .unwrap_or_else(|| panic!("no {scenario} cell in {}", run_dir.display()))
}

#[test]
fn a_cell_without_finite_figures_fails_alone_and_the_run_is_summarized_reported_and_resumable() {
    let scratch = Scratch::new();
    write_scenarios(&scratch);
    scratch.write("experiments/r.yaml", RUN_MATRIX);
    let output = scratch.orch(&["run", "experiments/r.yaml", "--tag", "t"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "one cell failed: {err}");
    let run_dir = scratch.path("logs/t");

    let bad = cell_dir(&run_dir, "idle");
    let status = read_json(&bad.join("status.json"));
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["error"].as_str().unwrap();
    assert!(reason.contains("slo_p50_ms") && reason.contains("not a finite number"), "{reason}");
    assert!(reason.contains("no request to the SLO route completed"), "{reason}");
    assert!(!bad.join("summary.json").exists(), "no summary.json with nulls");

    let rows = summary_rows(&run_dir);
    assert_eq!(rows.len(), 2, "the two good cells are summarized: {rows:?}");
    assert!(rows.iter().all(|id| id.contains(".short.")), "{rows:?}");
    for row in &rows {
        let summary = std::fs::read_to_string(run_dir.join(row).join("summary.json")).unwrap();
        assert!(!summary.contains("null"), "{summary}");
    }
    let index = std::fs::read_to_string(scratch.path("reports/t/index.html")).expect("the report is written");
    assert!(index.contains("not a finite number"), "the report says why the cell failed");

    let resumed = scratch.orch(&["run", "--resume", "t"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(summary_rows(&run_dir), rows);
    assert!(scratch.path("reports/t/index.html").is_file());
}

#[test]
fn an_unreadable_summary_leaves_its_cell_out_of_summary_csv_and_incomplete_in_the_report() {
    let scratch = Scratch::new();
    write_scenarios(&scratch);
    let matrix =
        RUN_MATRIX.replace("[short, idle]", "[short]").replace("exclude: [{scenario: idle, policy: static-max}]\n", "");
    scratch.write("experiments/r.yaml", &matrix);
    let output = scratch.orch(&["run", "experiments/r.yaml", "--tag", "t"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_dir = scratch.path("logs/t");
    let rows = summary_rows(&run_dir);
    assert_eq!(rows.len(), 2);

    // What an older orch wrote for a cell without latencies: nulls where numbers are read.
    let broken = run_dir.join(&rows[0]).join("summary.json");
    let text = std::fs::read_to_string(&broken).unwrap();
    let mut summary: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    summary.insert("slo_p50_ms".into(), Value::Null);
    std::fs::write(&broken, serde_json::to_vec_pretty(&summary).unwrap()).unwrap();

    let resumed = scratch.orch(&["run", "--resume", "t"]);
    let err = stderr(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("warning: {}: left out of summary.csv", rows[0])), "{err}");
    assert_eq!(summary_rows(&run_dir), vec![rows[1].clone()]);
    assert!(err.contains("1 incomplete"), "{err}");
    let index = std::fs::read_to_string(scratch.path("reports/t/index.html")).expect("the report is written");
    assert!(index.contains("field `slo_p50_ms` is null, not a number"), "the report names the reason");

    // A summary lacking a figure is left out too: summary.csv never shows a default 0 for it.
    let other = run_dir.join(&rows[1]).join("summary.json");
    let text = std::fs::read_to_string(&other).unwrap();
    let mut summary: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    summary.remove("overall_p95_ms").expect("orch writes every figure");
    std::fs::write(&other, serde_json::to_vec_pretty(&summary).unwrap()).unwrap();
    let resumed = scratch.orch(&["run", "--resume", "t"]);
    let err = stderr(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("warning: {}: left out of summary.csv", rows[1])), "{err}");
    assert!(err.contains("field `overall_p95_ms` is missing"), "{err}");
    assert!(summary_rows(&run_dir).is_empty());
}
