//! Run folders for the report tests: a real small run, plus the optional files other parts of orch add
//! (training.csv, the agents' Locust CSVs, an emulated twin) and broken cells, written here so that those code
//! paths are exercised.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use super::common::Scratch;

pub const MATRIX: &str = "experiments/report-test.yaml";
/// Online Boutique (11 services, a real call graph) under rushsale: HPA against static-max over three seeds.
pub const THREE_SEEDS: &str = "name: report-test\nseeds: [1, 2, 3]\napps: [online-boutique]\nscenarios: [rushsale]\npolicies:\n  - {name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}\n  - {name: static-max, kind: static, replicas: max}\n";

/// Runs the three-seed matrix as `tag`; `orch run` renders reports/<tag>/ at the end.
pub fn real_run(scratch: &Scratch, tag: &str) -> PathBuf {
    scratch.write(MATRIX, THREE_SEEDS);
    let run = scratch.orch(&["run", MATRIX, "--tag", tag]);
    assert!(run.status.success(), "orch run failed: {}", String::from_utf8_lossy(&run.stderr));
    scratch.path(&format!("logs/{tag}"))
}

pub fn cell_ids(run: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(run)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("config.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

pub fn cell_of(run: &Path, policy: &str, seed: u64) -> String {
    cell_ids(run)
        .into_iter()
        .find(|id| id.contains(&format!(".{policy}.")) && id.contains(&format!(".s{seed}-")))
        .unwrap_or_else(|| panic!("no {policy} cell of seed {seed}"))
}

/// A PPO-style training.csv of 30 iterations.
pub fn add_training(cell: &Path) {
    let mut text =
        String::from("iteration,env_steps,episode_return_mean,policy_loss,value_loss,entropy,env_steps_per_s\n");
    for i in 0..30 {
        let return_mean = -200.0 + 6.0 * i as f64;
        text.push_str(&format!(
            "{i},{},{return_mean},{},{},{},{}\n",
            (i + 1) * 2048,
            0.05 / (1.0 + i as f64),
            40.0 / (1.0 + 0.3 * i as f64),
            2.3 - 0.04 * i as f64,
            15000 + i * 10
        ));
    }
    fs::write(cell.join("training.csv"), text).unwrap();
}

/// An agent's Locust stats with one request name holding a comma and one holding markup.
pub fn add_agent(cell: &Path, agent: &str) {
    let dir = cell.join("agents").join(agent);
    fs::create_dir_all(&dir).unwrap();
    let percentiles = "21,24,27,29,35,41,52,63,88,120,140";
    let text = format!(
        "{}\nGET,\"/cart, full\",5000,12,22,25.5,3,140,1200,55.5,0.13,{percentiles}\nPOST,<i>/setCurrency</i>,800,0,9,10.25,2,40,300,8.9,0,{percentiles}\n,Aggregated,5800,12,20,23.4,2,140,1100,64.4,0.13,{percentiles}\n",
        load_agent::stats::STATS_HEADER
    );
    fs::write(dir.join("locust_stats.csv"), text).unwrap();
    fs::write(dir.join("locust_stats_history.csv"), format!("{}\n", load_agent::stats::HISTORY_HEADER)).unwrap();
    fs::write(dir.join("locust_failures.csv"), format!("{}\n", load_agent::stats::FAILURES_HEADER)).unwrap();
}

/// Copies a sim cell as its emulated twin (same app, policy, scenario and seed); returns the twin's id.
pub fn add_emulated_twin(run: &Path, id: &str) -> String {
    let twin = format!("{}-e0000000", id.rsplit_once('-').unwrap().0);
    let (from, to) = (run.join(id), run.join(&twin));
    fs::create_dir_all(&to).unwrap();
    for file in ["config.yaml", "run.log", "metrics.csv", "summary.json"] {
        fs::copy(from.join(file), to.join(file)).unwrap();
    }
    let config = fs::read_to_string(to.join("config.yaml")).unwrap();
    assert!(config.contains("backend: sim"));
    fs::write(to.join("config.yaml"), config.replacen("backend: sim", "backend: emulated", 1)).unwrap();
    let mut summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(to.join("summary.json")).unwrap()).unwrap();
    summary["cell"] = twin.clone().into();
    summary["backend"] = "emulated".into();
    summary["pod_minutes"] = (summary["pod_minutes"].as_f64().unwrap() * 1.1).into();
    fs::write(to.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    add_agent(&to, "agent-1");
    twin
}

/// Fills the CFS columns of `cell`'s metrics.csv as a burning emulator would: every service 20 periods a second,
/// 5 of them throttled.
pub fn add_throttling(cell: &Path) {
    let path = cell.join("metrics.csv");
    let text = fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let value = |column: &str| match column {
        c if c.ends_with("_cfs_periods") => Some("20"),
        c if c.ends_with("_cfs_throttled_periods") => Some("5"),
        _ => None,
    };
    assert!(header.iter().any(|c| value(c).is_some()), "metrics.csv has no CFS columns: {header:?}");
    let mut out = header.join(",") + "\n";
    for line in lines {
        let fields: Vec<&str> =
            line.split(',').zip(&header).map(|(field, column)| value(column).unwrap_or(field)).collect();
        out.push_str(&(fields.join(",") + "\n"));
    }
    fs::write(path, out).unwrap();
}

/// Three broken cells of the same app and scenario: invalid summary JSON, no summary at all (and a cut-off
/// metrics.csv), and a failed status.
pub fn add_broken_cells(run: &Path, template: &str) -> [String; 3] {
    let stem = template.rsplit_once('-').unwrap().0.replace(".s1", "");
    let ids = [format!("{stem}.s91-bad00001"), format!("{stem}.s92-bad00002"), format!("{stem}.s93-bad00003")];
    for (id, seed) in ids.iter().zip([91, 92, 93]) {
        let dir = run.join(id);
        fs::create_dir_all(&dir).unwrap();
        let config = fs::read_to_string(run.join(template).join("config.yaml")).unwrap();
        assert!(config.contains("\nseed: 1\n"));
        fs::write(dir.join("config.yaml"), config.replacen("\nseed: 1\n", &format!("\nseed: {seed}\n"), 1)).unwrap();
    }
    fs::write(run.join(&ids[0]).join("summary.json"), "{\"pod_minutes\": 12.5, \"cpu_core").unwrap();
    let metrics = fs::read_to_string(run.join(template).join("metrics.csv")).unwrap();
    let cut = &metrics[..metrics.len() / 3];
    fs::write(run.join(&ids[1]).join("metrics.csv"), cut).unwrap();
    fs::write(
        run.join(&ids[2]).join("status.json"),
        r#"{"format":1,"cell":"x","state":"failed","attempt":2,"started_unix_s":1700000000.0,"finished_unix_s":1700000010.0,"heartbeat_unix_s":null,"error":"simulator panicked: <boom>","log_tail":["{\"fields\":{\"message\":\"cell started\"}}"],"app":"online-boutique","policy":"static-max","scenario":"rushsale","seed":93,"backend":"sim"}"#,
    )
    .unwrap();
    ids
}

/// A cell whose app, policy and one service carry markup, to prove every page escapes names from files.
pub fn add_hostile_cell(run: &Path, template: &str) -> String {
    let id = "evil.cell.s7-00000000".to_string();
    let dir = run.join(&id);
    fs::create_dir_all(&dir).unwrap();
    let service = "<script>console.error('not escaped')</script>";
    let config = fs::read_to_string(run.join(template).join("config.yaml"))
        .unwrap()
        .replace("name: online-boutique", "name: '<img src=x onerror=console.error(1)>'")
        .replace("name: frontend", &format!("name: \"{service}\""))
        .replace("service: frontend", &format!("service: \"{service}\""));
    fs::write(dir.join("config.yaml"), config).unwrap();
    let metrics = fs::read_to_string(run.join(template).join("metrics.csv"))
        .unwrap()
        .replace("frontend_", &format!("{service}_"));
    fs::write(dir.join("metrics.csv"), metrics).unwrap();
    let mut summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join(template).join("summary.json")).unwrap()).unwrap();
    summary["cell"] = id.clone().into();
    summary["app"] = "<img src=x onerror=console.error(1)>".into();
    summary["policy"] = "<b>bold</b>".into();
    fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    id
}

/// Every HTML file under `dir`, with its text.
pub fn html_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(html_files(&path));
        } else if path.extension().is_some_and(|e| e == "html") {
            let text = fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// The page file of a cell in a report folder.
pub fn cell_page(report: &Path, id: &str) -> PathBuf {
    report.join("cells").join(format!("{id}.html"))
}
