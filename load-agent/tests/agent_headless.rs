//! `load-agent run`, Locust's headless mode, as a user runs it: the real binary against a real HTTP target on
//! loopback. Tables on stdout, Locust's three CSVs, Ctrl-C, --users/--run-time, --help.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{BIN, counting_server, run_bin, wait_child, wait_until};
use load_agent::stats::{FAILURES_HEADER, HISTORY_HEADER, STATS_HEADER};

const LOCUST_STATS_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";
const LOCUST_HISTORY_HEADER: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size";
const LOCUST_FAILURES_HEADER: &str = "Method,Name,Error,Occurrences,First Seen,Last Seen";

const SCENARIO: &str = "\
users:
  - name: shopper
    wait: {constant: 0.02}
    tasks:
      - {name: browse, weight: 3, requests: [{method: GET, path: /browse}]}
      - {name: broken, weight: 1, requests: [{method: GET, path: /fail}]}
shape: {stages: [{end: 2, users: 3, spawn_rate: 100}]}
";

/// The words of `line`, split on blanks and `|`.
fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || c == '|').filter(|w| !w.is_empty()).collect()
}

/// The CSV row whose second column is `name`, as columns.
fn row<'a>(csv: &'a str, name: &str) -> Vec<&'a str> {
    csv.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|c| c[1] == name)
        .unwrap_or_else(|| panic!("{name}:\n{csv}"))
}

#[test]
fn a_headless_run_prints_locust_tables_and_writes_locust_csvs() {
    let (url, served) = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("shop.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let prefix = dir.path().join("out");
    let output = run_bin(
        &["run", scenario.to_str().unwrap(), "--host", &url, "--csv", prefix.to_str().unwrap(), "--seed", "4"],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Locust exits 1 when requests failed (--exit-code-on-error).
    assert_eq!(output.status.code(), Some(1), "{stderr}\n{stdout}");
    let served = served.load(Ordering::Relaxed);
    assert!(served > 60, "{served} requests");

    // The request statistics table.
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("Type")).unwrap_or_else(|| panic!("no table:\n{stdout}"));
    assert_eq!(
        words(lines[header]),
        ["Type", "Name", "#", "reqs", "#", "fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"],
        "{stdout}"
    );
    let aggregated = lines.iter().find(|l| l.trim_start().starts_with("Aggregated")).unwrap();
    let aggregated = words(aggregated);
    assert_eq!(aggregated[1].parse::<u64>().unwrap(), served, "{stdout}");
    let fail = lines.iter().find(|l| l.starts_with("GET") && l.contains("/fail")).unwrap();
    let (fails, pct) = words(fail)[3].split_once('(').unwrap();
    assert_eq!(pct, "100.00%)", "every /fail request failed: {fail}");
    let failures: u64 = fails.parse().unwrap();
    assert!(failures > 0 && failures < served);
    // The percentiles table, 50 % to 100 %.
    let percentiles = lines.iter().position(|l| l.starts_with("Response time percentiles")).unwrap();
    assert_eq!(
        words(lines[percentiles + 1]),
        [
            "Type", "Name", "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "#",
            "reqs"
        ]
    );
    // The error report.
    let report =
        lines.iter().position(|l| *l == "Error report").unwrap_or_else(|| panic!("no error report:\n{stdout}"));
    assert!(lines[report + 2].contains("GET /fail: HTTPError 500 Internal Server Error"), "{stdout}");
    assert_eq!(words(lines[report + 2])[0].parse::<u64>().unwrap(), failures);

    // The CSVs: Locust's exact headers (the library's constants and the literal strings), the target's counts.
    let read = |suffix: &str| std::fs::read_to_string(format!("{}_{suffix}.csv", prefix.display())).unwrap();
    let (stats, history, failures_csv) = (read("stats"), read("stats_history"), read("failures"));
    for (csv, constant, literal) in [
        (&stats, STATS_HEADER, LOCUST_STATS_HEADER),
        (&history, HISTORY_HEADER, LOCUST_HISTORY_HEADER),
        (&failures_csv, FAILURES_HEADER, LOCUST_FAILURES_HEADER),
    ] {
        assert_eq!(csv.lines().next().unwrap(), constant);
        assert_eq!(csv.lines().next().unwrap(), literal);
    }
    let total = row(&stats, "Aggregated");
    assert_eq!((total[2].parse::<u64>().unwrap(), total[3].parse::<u64>().unwrap()), (served, failures));
    let browse = row(&stats, "/browse");
    let broken = row(&stats, "/fail");
    assert_eq!(browse[2].parse::<u64>().unwrap() + broken[2].parse::<u64>().unwrap(), served);
    // Weights 3 : 1, with a wide tolerance.
    let share = broken[2].parse::<f64>().unwrap() / served as f64;
    assert!((0.1..0.4).contains(&share), "share of /fail {share}");
    assert_eq!(failures_csv.lines().count(), 2, "{failures_csv}");
    let failure = failures_csv.lines().nth(1).unwrap();
    assert!(failure.starts_with(&format!("GET,/fail,HTTPError 500 Internal Server Error,{failures},")), "{failure}");
    // History: one Aggregated row per second, adding up to the total.
    let per_second: Vec<Vec<&str>> =
        history.lines().map(|l| l.split(',').collect::<Vec<_>>()).filter(|c| c[3] == "Aggregated").collect();
    assert!((2..=4).contains(&per_second.len()), "{history}");
    let summed: f64 = per_second.iter().map(|c| c[4].parse::<f64>().unwrap()).sum();
    assert_eq!(summed as u64, served);
    assert_eq!(per_second.last().unwrap()[17].parse::<u64>().unwrap(), served, "Total Request Count");
}

#[test]
fn ctrl_c_stops_the_run_and_still_writes_the_files() {
    let (url, served) = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("endless.yaml");
    std::fs::write(&scenario, SCENARIO.replace("/fail", "/ok").replace("end: 2", "end: 3600")).unwrap();
    let prefix = dir.path().join("interrupted");
    let mut child = Command::new(BIN)
        .args(["run", scenario.to_str().unwrap(), "--host", &url, "--csv", prefix.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || served.load(Ordering::Relaxed) > 50), "the run did not start");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_child(&mut child, Duration::from_secs(20)).expect("Ctrl-C did not stop the run");
    assert_eq!(status.code(), Some(0));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("Response time percentiles"), "{stdout}");
    let served = served.load(Ordering::Relaxed);
    for suffix in ["stats", "stats_history", "failures"] {
        assert!(std::path::Path::new(&format!("{}_{suffix}.csv", prefix.display())).is_file(), "{suffix}");
    }
    let stats = std::fs::read_to_string(format!("{}_stats.csv", prefix.display())).unwrap();
    assert_eq!(row(&stats, "Aggregated")[2].parse::<u64>().unwrap(), served, "{stats}");
}

#[test]
fn users_and_run_time_replace_the_shape() {
    let (url, served) = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("long.yaml");
    // The scenario says 1 user for an hour; the command line says 5 users for 1.5 s.
    std::fs::write(&scenario, SCENARIO.replace("/fail", "/ok").replace("end: 2, users: 3", "end: 3600, users: 1"))
        .unwrap();
    let prefix = dir.path().join("short");
    let output = run_bin(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--host",
            &url,
            "-u",
            "5",
            "-r",
            "100",
            "--run-time",
            "1.5s",
            "--csv",
            prefix.to_str().unwrap(),
            "--threads",
            "1",
            "--only-summary",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let history = std::fs::read_to_string(format!("{}_stats_history.csv", prefix.display())).unwrap();
    let rows: Vec<Vec<&str>> =
        history.lines().map(|l| l.split(',').collect::<Vec<_>>()).filter(|c| c[3] == "Aggregated").collect();
    assert!((1..=3).contains(&rows.len()), "a 1.5 s run has about 2 windows:\n{history}");
    assert_eq!(rows.iter().map(|c| c[1].parse::<u64>().unwrap()).max(), Some(5), "User Count:\n{history}");
    let stats = std::fs::read_to_string(format!("{}_stats.csv", prefix.display())).unwrap();
    assert_eq!(row(&stats, "Aggregated")[2].parse::<u64>().unwrap(), served.load(Ordering::Relaxed));
}

#[test]
fn help_explains_both_modes() {
    let output = run_bin(&["--help"], Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "run",
        "--listen",
        "--token",
        "LOAD_AGENT_TOKEN",
        "--allow-target",
        "--data-dir",
        "[default: load-agent-data]",
        "--max-users",
        "[default: 50000]",
        "--max-runs",
        "[default: 2]",
        "--max-body-bytes",
        "[default: 1048576]",
        "listening on IP:PORT",
        "Examples:",
    ] {
        assert!(help.contains(expected), "--help lacks {expected:?}:\n{help}");
    }
    let output = run_bin(&["run", "--help"], Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in ["--host", "--users", "--spawn-rate", "--run-time", "1h30m", "--csv", "--seed", "--threads"] {
        assert!(help.contains(expected), "run --help lacks {expected:?}:\n{help}");
    }
}
