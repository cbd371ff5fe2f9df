//! `orch run` and `orch plan` as a user runs them: the real binary, real files.

mod common;

use std::path::Path;

use common::Scratch;

const MATRIX: &str = "experiments/two-seeds.yaml";
const TWO_SEEDS: &str = "name: two-seeds\nseeds: [1, 2]\napps: [image-classifier]\nscenarios: [rushsale]\npolicies:\n  - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}\n  - {name: static-max, kind: static, replicas: max}\n";

fn cell_dirs(run: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(run).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[test]
fn run_writes_every_file_of_every_cell_and_plan_lists_the_same_cells() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, TWO_SEEDS);
    let plan = scratch.orch(&["plan", MATRIX]);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan_out = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_out.contains("4 cells"), "{plan_out}");

    let run = scratch.orch(&["run", MATRIX, "--tag", "first"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run_dir = scratch.path("logs/first");
    let cells = cell_dirs(&run_dir);
    assert_eq!(cells.len(), 4);
    for cell in &cells {
        let id = cell.file_name().unwrap().to_string_lossy().to_string();
        assert!(plan_out.contains(&id), "plan does not list {id}");
        for file in ["config.yaml", "run.log", "metrics.csv", "summary.json"] {
            assert!(cell.join(file).is_file(), "{id} lacks {file}");
        }
        let metrics = std::fs::read_to_string(cell.join("metrics.csv")).unwrap();
        let mut lines = metrics.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("t,users,offered_rps,achieved_rps,failures,slo_p50_ms,slo_p95_ms,slo_p99_ms"));
        assert!(header.contains("classifier_ready,classifier_desired,classifier_cpu_util_pct"));
        assert_eq!(lines.count(), 900, "one row per simulated second");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cell.join("summary.json")).unwrap()).unwrap();
        for key in [
            "pod_minutes",
            "cpu_core_hours",
            "slo_violation_seconds_pct",
            "slo_violation_requests_pct",
            "slo_p95_ms",
            "failure_pct",
            "scaling_actions",
        ] {
            assert!(summary[key].is_number(), "{id}: summary.json lacks {key}");
        }
        // Every log line is a JSON object.
        for line in std::fs::read_to_string(cell.join("run.log")).unwrap().lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{id}: run.log line {line:?}: {e}"));
        }
    }
    let summary_csv = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    assert_eq!(summary_csv.lines().count(), 5, "header and one row per cell");
    let hpa_log = std::fs::read_to_string(
        cells.iter().find(|c| c.to_string_lossy().contains("hpa-cpu-60")).unwrap().join("run.log"),
    )
    .unwrap();
    assert!(hpa_log.contains("\"scaled\""), "an HPA cell under rushsale scales and logs it");

    // The same tag again is refused rather than mixing two runs.
    let again = scratch.orch(&["run", MATRIX, "--tag", "first"]);
    assert!(!again.status.success());
}

#[test]
fn same_seed_gives_identical_metrics_and_another_seed_differs() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, TWO_SEEDS);
    for tag in ["a", "b"] {
        let run = scratch.orch(&["run", MATRIX, "--tag", tag]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let a = cell_dirs(&scratch.path("logs/a"));
    let b = cell_dirs(&scratch.path("logs/b"));
    assert_eq!(
        a.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        b.iter().map(|p| p.file_name()).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(&b) {
        let bytes_x = std::fs::read(x.join("metrics.csv")).unwrap();
        let bytes_y = std::fs::read(y.join("metrics.csv")).unwrap();
        assert!(bytes_x == bytes_y, "{} differs between two runs", x.display());
    }
    let seed = |dirs: &[std::path::PathBuf], s: &str| {
        std::fs::read(
            dirs.iter()
                .find(|p| p.to_string_lossy().contains(&format!("static-max.rushsale.{s}-")))
                .unwrap()
                .join("metrics.csv"),
        )
        .unwrap()
    };
    assert_ne!(seed(&a, "s1"), seed(&a, "s2"), "seeds 1 and 2 give the same noise");
}
