//! `orch report` as a user runs it: a real run, the real binary, the files it writes.

mod common;
mod report_support;

use std::fs;
use std::io::Read;

use common::Scratch;
use report_support::*;

fn summary_rows(report: &std::path::Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(report.join("summary.csv")).unwrap();
    reader.records().map(|r| r.unwrap()).collect()
}

fn row<'a>(rows: &'a [csv::StringRecord], policy: &str, metric: &str) -> &'a csv::StringRecord {
    rows.iter()
        .find(|r| &r[3] == policy && &r[5] == metric && &r[1] != "*")
        .unwrap_or_else(|| panic!("summary.csv has no row for {policy} {metric}"))
}

#[test]
fn orch_run_ends_with_a_report_whose_figures_and_verdicts_follow_the_cells() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "t1");
    let report = scratch.path("reports/t1");
    let index = fs::read_to_string(report.join("index.html")).unwrap();
    let ids = cell_ids(&run);
    assert_eq!(ids.len(), 6);
    for id in &ids {
        assert!(index.contains(&format!("cells/{id}.html")), "the index links to {id}");
        assert!(cell_page(&report, id).is_file(), "{id} has a page");
        assert!(index.contains(&format!("{id}/run.log")), "the index links to {id}'s log");
    }
    for text in
        ["Run t1", "matrix SHA-256", "hpa-cpu-60 (the first hpa policy of the matrix)", "Cost against SLO violation"]
    {
        assert!(index.contains(text), "index lacks {text:?}");
    }
    // The IQM of three seeds is their mean; the exported per-seed values are the cells' own.
    let rows = summary_rows(&report);
    let pods = row(&rows, "static-max", "pod_minutes");
    let seeds: Vec<f64> = pods[16].split(';').map(|p| p.split_once(':').unwrap().1.parse().unwrap()).collect();
    assert_eq!(seeds.len(), 3);
    for id in ids.iter().filter(|id| id.contains(".static-max.")) {
        let summary: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(run.join(id).join("summary.json")).unwrap()).unwrap();
        let value = summary["pod_minutes"].as_f64().unwrap();
        assert!(seeds.iter().any(|s| (s - value).abs() < 1e-9), "{id}'s {value} is exported");
    }
    let iqm: f64 = pods[8].parse().unwrap();
    assert!((iqm - seeds.iter().sum::<f64>() / 3.0).abs() < 1e-6, "{iqm} vs {seeds:?}");
    let (low, high): (f64, f64) = (pods[9].parse().unwrap(), pods[10].parse().unwrap());
    assert!(low <= iqm && iqm <= high, "[{low}, {high}] holds {iqm}");
    // Static at maximum replicas costs more than HPA in every seed, and violates the SLO less: the intervals
    // of the probability of improvement say so.
    assert_eq!(&pods[11], "hpa-cpu-60");
    assert_eq!(&pods[15], "worse", "{pods:?}");
    assert_eq!(&pods[12], "0");
    let slo = row(&rows, "static-max", "slo_violation_seconds_pct");
    assert_eq!(&slo[15], "better", "{slo:?}");
    // The baseline is not compared with itself; load gets no verdict.
    assert_eq!(&row(&rows, "hpa-cpu-60", "pod_minutes")[15], "");
    assert_eq!(&row(&rows, "static-max", "mean_offered_rps")[15], "");
    // summary.md carries the same table.
    let md = fs::read_to_string(report.join("summary.md")).unwrap();
    assert!(md.contains("| hpa-cpu-60 (baseline) | 3 |"), "{md}");
    assert!(md.contains("**worse**") && md.contains("**better**"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(report.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["cells"].as_array().unwrap().len(), 6);
    assert_eq!(json["analysis"]["baseline"], "hpa-cpu-60");
}

#[test]
fn the_same_run_renders_the_same_bytes() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "det");
    let render = |out: &str| {
        let result = scratch.orch(&["report", run.to_str().unwrap(), "--out", out, "--bootstrap-seed", "7"]);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        ["index.html", "summary.csv", "summary.json", "summary.md"]
            .map(|f| fs::read(scratch.path(&format!("{out}/{f}"))).unwrap())
    };
    // Seeded bootstrap streams, no clock, no hash-map order: the same inputs give the same files.
    assert!(render("reports/a") == render("reports/b"), "two renders of one run differ");
}

#[test]
fn broken_cells_render_as_incomplete_with_their_reasons() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "broken");
    let template = cell_of(&run, "static-max", 1);
    let [bad_json, no_summary, failed] = add_broken_cells(&run, &template);
    // A cell the plan lists but that never got a folder.
    fs::write(
        run.join("run.json"),
        serde_json::json!({"format": 1, "matrix_name": "report-test", "matrix_file": "experiments/report-test.yaml",
            "matrix_sha256": "ab".repeat(32), "git_commit": "0123abc", "host": "lab-1", "orch_version": "0.1.0",
            "started_unix_s": 1_700_000_000.0, "finished_unix_s": 1_700_000_125.0, "baseline": null,
            "cells": ["online-boutique.static-max.rushsale.s94-bad00004"]})
        .to_string(),
    )
    .unwrap();
    let result = scratch.orch(&["report", "logs/broken"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("4 incomplete"),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report = scratch.path("reports/broken");
    let index = fs::read_to_string(report.join("index.html")).unwrap();
    for (id, reason) in [
        (bad_json.as_str(), "summary.json is not valid JSON"),
        (no_summary.as_str(), "summary.json is missing"),
        (failed.as_str(), "simulator panicked: &lt;boom&gt;"),
        ("online-boutique.static-max.rushsale.s94-bad00004", "never started"),
    ] {
        assert!(index.contains(id), "the index lists {id}");
        assert!(index.contains(reason), "the index gives the reason {reason:?}");
        assert!(cell_page(&report, id).is_file(), "{id} still gets a page");
    }
    // run.json's metadata is shown; the statistics keep the three good seeds only.
    for text in ["0123abc", "lab-1", "2 min 05 s", "3 seeds: 1, 2, 3, 4 incomplete"] {
        assert!(index.contains(text), "index lacks {text:?}");
    }
    let page = fs::read_to_string(cell_page(&report, &no_summary)).unwrap();
    assert!(page.contains("cut-off last line ignored"), "the cut metrics.csv is noted");
    assert!(page.contains("Users"), "what metrics.csv holds is still drawn");
    let failed_page = fs::read_to_string(cell_page(&report, &failed)).unwrap();
    assert!(failed_page.contains("cell started"), "the log tail of a failed cell is shown");
}

#[test]
fn optional_files_add_training_curves_request_tables_and_the_twin_comparison() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "extras");
    let id = cell_of(&run, "hpa-cpu-60", 1);
    add_training(&run.join(&id));
    add_agent(&run.join(&id), "agent-1");
    let twin = add_emulated_twin(&run, &id);
    add_throttling(&run.join(&twin));
    let result = scratch.orch(&["report", "logs/extras"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let report = scratch.path("reports/extras");
    let page = fs::read_to_string(cell_page(&report, &id)).unwrap();
    for text in [
        "<h2>Training</h2>",
        "Mean episode return",
        "30 iterations",
        "Agent agent-1",
        "/cart, full",
        "&lt;i&gt;/setCurrency&lt;/i&gt;",
        "99.9%",
        "Simulator vs emulated",
        &format!("{twin}.html"),
        "+10.0 %",
    ] {
        assert!(page.contains(text), "the cell page lacks {text:?}");
    }
    let twin_page = fs::read_to_string(cell_page(&report, &twin)).unwrap();
    assert!(twin_page.contains("Emulated vs simulator"), "the twin links back");
    // Throttling: charted right after the CPU chart where metrics.csv has it, a note where it has none.
    let captions = |page: &str| -> Vec<String> {
        page.split("<figcaption>").skip(1).map(|c| c[..c.find("</figcaption>").unwrap()].to_string()).collect()
    };
    let twin_captions = captions(&twin_page);
    let cpu = twin_captions.iter().position(|c| c.starts_with("CPU utilization per service")).unwrap();
    assert_eq!(twin_captions[cpu + 1], "CPU throttled (% of CFS periods)", "{twin_captions:?}");
    let totals = &twin_page[twin_page.find("Throttled periods over the run").unwrap()..][..200];
    assert!(totals.contains("frontend 4,500 of 18,000 (25.0 %)"), "the run's totals and share: {totals}");
    assert!(!twin_page.contains("No throttling data"));
    // The simulator's CFS model counts periods too: a chart where a service was throttled, else a line saying
    // that none was; never "no data".
    let sim_captions = captions(&page);
    let cpu = sim_captions.iter().position(|c| c.starts_with("CPU utilization per service")).unwrap();
    let charted = sim_captions.get(cpu + 1).is_some_and(|c| c == "CPU throttled (% of CFS periods)");
    assert!(charted != page.contains("No CFS period was throttled ("), "a chart or the line, not both");
    assert!(!page.contains("No throttling data"), "the sim cell has CFS counters");
    // Two backends: the index keeps them apart.
    let index = fs::read_to_string(report.join("index.html")).unwrap();
    assert!(index.contains("online-boutique · rushsale · emulated"), "{}", &index[..2000.min(index.len())]);
}

#[test]
fn names_from_files_are_escaped_everywhere() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "hostile");
    let id = add_hostile_cell(&run, &cell_of(&run, "hpa-cpu-60", 2));
    let result = scratch.orch(&["report", "logs/hostile"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let report = scratch.path("reports/hostile");
    let page = fs::read_to_string(cell_page(&report, &id)).unwrap();
    assert!(page.contains("&lt;script&gt;console.error("), "the service name shows as text");
    for (path, text) in html_files(&report) {
        let lower = text.to_lowercase();
        assert!(!lower.contains("<script"), "{} holds a script element", path.display());
        assert!(!lower.contains("<img"), "{} holds an img element", path.display());
        assert!(!text.contains("<b>bold"), "{} holds markup from a policy name", path.display());
    }
}

#[test]
fn zip_holds_the_report_the_exports_and_the_logs() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "z");
    let id = cell_of(&run, "static-max", 2);
    let result = scratch.orch(&["report", "logs/z", "--zip"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let zip_path = scratch.path("reports/z.zip");
    let mut archive = zip::ZipArchive::new(fs::File::open(&zip_path).unwrap()).unwrap();
    let names: Vec<String> = archive.file_names().map(|n| n.unwrap().to_string()).collect();
    for name in [
        "z/index.html".to_string(),
        "z/summary.csv".into(),
        "z/summary.json".into(),
        "z/summary.md".into(),
        format!("z/cells/{id}.html"),
        format!("z/logs/{id}/run.log"),
        format!("z/logs/{id}/metrics.csv"),
        "z/logs/summary.csv".into(),
        "z/logs/matrix.yaml".into(),
    ] {
        assert!(names.contains(&name), "the zip lacks {name}: {names:?}");
    }
    // Inside the zip the pages link to the logs beside them, and the files are whole.
    let mut index = String::new();
    archive.by_name("z/index.html").unwrap().read_to_string(&mut index).unwrap();
    assert!(index.contains(&format!("href=\"logs/{id}/run.log\"")), "links inside the zip point at z/logs/");
    let mut log = Vec::new();
    archive.by_name(&format!("z/logs/{id}/run.log")).unwrap().read_to_end(&mut log).unwrap();
    assert_eq!(log, fs::read(run.join(&id).join("run.log")).unwrap());
    let mut page = String::new();
    archive.by_name(&format!("z/cells/{id}.html")).unwrap().read_to_string(&mut page).unwrap();
    assert!(page.contains(&format!("href=\"../logs/{id}/\"")), "the cell page links its folder");
    // The report on disk links to the run folder where it is.
    let disk = fs::read_to_string(scratch.path("reports/z/index.html")).unwrap();
    assert!(disk.contains(&format!("href=\"../../logs/z/{id}/run.log\"")));
}

#[test]
fn zip_never_follows_a_link_out_of_the_run_folder() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "z");
    let id = cell_of(&run, "static-max", 1);
    let secret = "SECRET-MARKER: what the zip must not carry";
    scratch.write("secret.txt", secret);
    scratch.write("secret-dir/key.txt", secret);
    let cell = run.join(&id);
    std::os::unix::fs::symlink(scratch.path("secret.txt"), cell.join("stolen.txt")).unwrap();
    std::os::unix::fs::symlink(scratch.path("secret-dir"), cell.join("stolen-dir")).unwrap();
    std::os::unix::fs::symlink("../../../secret.txt", cell.join("climbing.txt")).unwrap();
    std::os::unix::fs::symlink("run.log", cell.join("alias.log")).unwrap();

    let result = scratch.orch(&["report", "logs/z", "--zip"]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    for link in ["stolen.txt", "stolen-dir", "climbing.txt"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning: ") && l.contains(&format!("{id}/{link} is a symbolic link"))),
            "no warning names {link}: {stderr}"
        );
    }
    let mut archive = zip::ZipArchive::new(fs::File::open(scratch.path("reports/z.zip")).unwrap()).unwrap();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("SECRET-MARKER"), "{name} carries the secret");
        assert!(!name.contains("stolen") && !name.contains("climbing"), "{name} is archived");
    }
    // A link inside the run folder is kept as a link, not as a copy of its target.
    let mut alias = archive.by_name(&format!("z/logs/{id}/alias.log")).unwrap();
    assert!(alias.is_symlink());
    let mut target = String::new();
    alias.read_to_string(&mut target).unwrap();
    assert_eq!(target, "run.log");
}

#[test]
fn compare_judges_later_runs_against_the_first() {
    let scratch = Scratch::new();
    real_run(&scratch, "before");
    // The same matrix with a tighter HPA target: a different policy behaviour under the same name.
    let manifests = scratch.path("baselines/online-boutique/hpa-cpu-60.yaml");
    let text = fs::read_to_string(&manifests).unwrap();
    assert!(text.contains("averageUtilization: 60"));
    // Every deployment's target: one tighter HPA alone moves pod-minutes less than the seeds differ.
    fs::write(&manifests, text.replace("averageUtilization: 60", "averageUtilization: 30")).unwrap();
    let after = scratch.orch(&["run", MATRIX, "--tag", "after"]);
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    let result = scratch.orch(&["report", "--compare", "before", "after"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let out = scratch.path("reports/compare-before-vs-after");
    let page = fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("Runs compared: before vs after"));
    let mut reader = csv::Reader::from_path(out.join("compare.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let hpa_cost = rows
        .iter()
        .find(|r| &r[3] == "hpa-cpu-60" && &r[4] == "after" && &r[5] == "pod_minutes")
        .expect("a row for the later run's HPA cost");
    assert_eq!(&hpa_cost[14], "worse", "a 30 % target keeps more pods than 60 %: {hpa_cost:?}");
    let static_cost =
        rows.iter().find(|r| &r[3] == "static-max" && &r[4] == "after" && &r[5] == "pod_minutes").unwrap();
    assert_eq!(&static_cost[14], "no_significant_difference", "static-max did not change: {static_cost:?}");
    assert!(rows.iter().filter(|r| &r[4] == "before").all(|r| r[14].is_empty()), "the reference is not judged");
}

#[test]
fn a_path_that_is_not_a_run_folder_is_bad_input_and_writes_nothing() {
    let scratch = Scratch::new();
    let missing = scratch.orch(&["report", "logs/nothing-here"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("logs/nothing-here: no such run folder"));
    fs::create_dir_all(scratch.path("logs/empty")).unwrap();
    let empty = scratch.orch(&["report", "logs/empty"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("is not a run folder"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    assert!(!scratch.path("reports").exists(), "nothing was written");
    let one = scratch.orch(&["report", "--compare", "only-one"]);
    assert_eq!(one.status.code(), Some(2), "clap refuses a single tag");
}

#[test]
fn the_baseline_comes_from_run_json_then_the_matrix_then_the_first_hpa_policy() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "base");
    let baseline_of = |scratch: &Scratch| -> String {
        let result = scratch.orch(&["report", "logs/base"]);
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(scratch.path("reports/base/summary.json")).unwrap()).unwrap();
        json["analysis"]["baseline"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(baseline_of(&scratch), "hpa-cpu-60");
    let matrix = fs::read_to_string(run.join("matrix.yaml")).unwrap();
    fs::write(run.join("matrix.yaml"), format!("{matrix}report: {{baseline: static-max}}\n")).unwrap();
    assert_eq!(baseline_of(&scratch), "static-max");
    fs::write(run.join("run.json"), r#"{"format": 1, "baseline": "hpa-cpu-60", "cells": []}"#).unwrap();
    assert_eq!(baseline_of(&scratch), "hpa-cpu-60");
}
