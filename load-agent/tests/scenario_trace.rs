//! Trace shapes: a recorded load read from CSV, including Locust's own stats history.

use load_agent::scenario::{LoadShape, Scenario};

const HISTORY: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size
1700000000,10,GET,\"/a,b\",5.0,0,1,1,1,1,1,1,1,1,1,1,1,5,0,1,1,1,1,10
1700000000,10,,Aggregated,5.0,0,1,1,1,1,1,1,1,1,1,1,1,5,0,1,1,1,1,10
1700000002,40,,Aggregated,20.5,0,1,1,1,1,1,1,1,1,1,1,1,30,0,1,1,1,1,10
1700000004,25,,Aggregated,12.0,0,1,1,1,1,1,1,1,1,1,1,1,60,0,1,1,1,1,10
";

const USERS: &str = "users: [{name: u, tasks: [{name: t, requests: [{method: GET, path: /}]}]}]\n";

fn load(shape: &str) -> Result<Scenario, load_agent::yaml::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run_stats_history.csv"), HISTORY).unwrap();
    let file = dir.path().join("replay.yaml");
    std::fs::write(&file, format!("{USERS}shape: {shape}\n")).unwrap();
    Scenario::load(&file)
}

#[test]
fn a_locust_history_replays_its_user_count() {
    let scenario = load("{trace: {file: run_stats_history.csv, column: User Count, spawn_rate: 50}}").unwrap();
    let LoadShape::Stages(stages) = &scenario.shape else { panic!("{:?}", scenario.shape) };
    let got: Vec<(f64, u32)> = stages.iter().map(|s| (s.end, s.users)).collect();
    assert_eq!(got, vec![(2.0, 10), (4.0, 40), (6.0, 25)]);
    assert!(stages.iter().all(|s| s.spawn_rate == 50.0));
    assert_eq!(scenario.duration_s(), 6.0);
}

#[test]
fn a_rate_column_becomes_an_open_model() {
    let scenario = load(
        "{trace: {file: run_stats_history.csv, column: Requests/s, rate: true, preallocated_users: 5, max_users: 100}}",
    )
    .unwrap();
    let LoadShape::ArrivalRate(open) = &scenario.shape else { panic!("{:?}", scenario.shape) };
    assert_eq!(open.start_rate, 5.0);
    let got: Vec<(f64, f64)> = open.stages.iter().map(|s| (s.duration, s.target)).collect();
    assert_eq!(got, vec![(2.0, 5.0), (2.0, 20.5), (2.0, 12.0)]);
}

#[test]
fn bad_traces_name_the_field() {
    let cases = [
        ("{trace: {file: missing.csv, column: User Count}}", "shape.trace.file"),
        ("{trace: {file: run_stats_history.csv, column: Users}}", "shape.trace.column"),
        ("{trace: {file: run_stats_history.csv, column: User Count, time_column: T}}", "shape.trace.time_column"),
        ("{trace: {file: run_stats_history.csv, column: Requests/s, rate: true}}", "shape.trace.rate"),
        ("{trace: {file: run_stats_history.csv, column: User Count, spawn_rate: 0}}", "shape.trace.spawn_rate"),
        ("{trace: {file: run_stats_history.csv, colum: User Count}}", "shape.trace"),
    ];
    for (shape, field) in cases {
        let err = load(shape).unwrap_err();
        assert!(err.field.starts_with(field), "{shape}: {err}");
    }
}

#[test]
fn an_unresolved_trace_is_refused_where_no_file_can_be_read() {
    let scenario: Scenario = serde_json::from_value(serde_json::json!({
        "users": [{"name": "u", "tasks": [{"name": "t", "requests": [{"method": "GET", "path": "/"}]}]}],
        "shape": {"trace": {"file": "x.csv", "column": "User Count"}}
    }))
    .unwrap();
    assert_eq!(scenario.validate().unwrap_err().0, "shape.trace");
}

#[test]
fn a_trace_outside_the_scenarios_folder_is_refused_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
    std::fs::write(dir.path().join("secret.csv"), "Timestamp,SECRET-MARKER\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.csv"), dir.path().join("scenarios/link.csv")).unwrap();
    let file = dir.path().join("scenarios/replay.yaml");
    for trace in ["../secret.csv", "link.csv", "/etc/passwd"] {
        std::fs::write(&file, format!("{USERS}shape: {{trace: {{file: \"{trace}\", column: User Count}}}}\n")).unwrap();
        let err = Scenario::load(&file).unwrap_err();
        assert_eq!(err.field, "shape.trace.file", "{err}");
        assert!(err.message.contains(&format!("{trace:?} leaves")), "{err}");
        assert!(!err.to_string().contains("SECRET-MARKER") && !err.to_string().contains("root:"), "{err}");
    }
    // Under a larger tree (an experiment's scenarios folder) a shared trace beside the scenario's folder is fine.
    std::fs::create_dir_all(dir.path().join("scenarios/app")).unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios/traces")).unwrap();
    std::fs::write(dir.path().join("scenarios/traces/h.csv"), HISTORY).unwrap();
    let nested = dir.path().join("scenarios/app/replay.yaml");
    std::fs::write(&nested, format!("{USERS}shape: {{trace: {{file: ../traces/h.csv, column: User Count}}}}\n"))
        .unwrap();
    assert!(Scenario::load(&nested).is_err(), "by default only the scenario's own folder");
    Scenario::load_within(&nested, &dir.path().join("scenarios")).unwrap();
}
