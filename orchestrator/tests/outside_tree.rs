//! Files a matrix names stay inside its folders (apps, scenarios, baselines), and no error repeats what a file
//! holds: a hostile or careless matrix cannot make `orch` read /etc/passwd and print it.

mod common;

use common::Scratch;

const MATRIX: &str = "experiments/m.yaml";
const TRACE_SCENARIO: &str = "experiments/scenarios/online-boutique/replay.yaml";

fn hpa_matrix(manifest: &str) -> String {
    format!(
        "name: m\nseeds: [1]\napps: [online-boutique]\nscenarios: [peak]\npolicies:\n  - {{name: hpa, kind: hpa, manifest: {manifest}}}\n"
    )
}

const REPLAY_MATRIX: &str = "name: m\nseeds: [1]\napps: [online-boutique]\nscenarios: [replay]\npolicies:\n  - {name: fixed, kind: static, replicas: max}\n";

fn trace_scenario(file: &str) -> String {
    format!(
        "name: replay\nusers:\n  - name: u\n    wait: {{constant_throughput: 1}}\n    tasks:\n      - {{name: view-cart, requests: [{{method: GET, path: /cart}}]}}\nshape: {{trace: {{file: \"{file}\", column: User Count, spawn_rate: 50}}}}\n"
    )
}

/// Runs `orch run` and checks the one refusal: exit 2, one error line naming `file` and `field`, nothing under
/// logs/, and no line of the secret. Returns the error line.
fn refused(scratch: &Scratch, file: &str, field: &str) -> String {
    let output = scratch.orch(&["run", MATRIX, "--tag", "t"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(file) && errors[0].contains(&format!(": {field}: ")), "{stderr}");
    for secret in ["root:", "SECRET-MARKER"] {
        assert!(!stderr.contains(secret), "the error repeats the file: {stderr}");
    }
    assert!(!scratch.path("logs").exists(), "logs/ was created");
    errors[0].to_string()
}

#[test]
fn a_manifest_reaching_out_of_the_baselines_folder_is_refused_without_its_content() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, &hpa_matrix("../../../../etc/passwd"));
    let error = refused(&scratch, "m.yaml", "policies[0].manifest");
    assert!(error.contains("\"../../../../etc/passwd\" leaves") && error.contains("baselines"), "{error}");

    scratch.write(MATRIX, &hpa_matrix("/etc/passwd"));
    let error = refused(&scratch, "m.yaml", "policies[0].manifest");
    assert!(error.contains("leaves"), "{error}");
}

#[test]
fn a_symbolic_link_out_of_the_tree_is_refused() {
    let scratch = Scratch::new();
    scratch.write("secret.yaml", "SECRET-MARKER: hunter2\n");
    std::os::unix::fs::symlink(scratch.path("secret.yaml"), scratch.path("baselines/online-boutique/linked.yaml"))
        .unwrap();
    scratch.write(MATRIX, &hpa_matrix("linked.yaml"));
    let error = refused(&scratch, "m.yaml", "policies[0].manifest");
    assert!(error.contains("\"linked.yaml\" leaves"), "{error}");

    // An app file that is a link out of the apps folder.
    std::fs::remove_file(scratch.path("experiments/apps/online-boutique.yaml")).unwrap();
    std::os::unix::fs::symlink(scratch.path("secret.yaml"), scratch.path("experiments/apps/online-boutique.yaml"))
        .unwrap();
    scratch.write(MATRIX, &hpa_matrix("hpa-cpu-60.yaml"));
    let error = refused(&scratch, "m.yaml", "apps[0]");
    assert!(error.contains("leaves"), "{error}");
}

#[test]
fn a_trace_outside_the_scenarios_folder_is_refused_without_its_first_line() {
    let scratch = Scratch::new();
    scratch.write(MATRIX, REPLAY_MATRIX);
    for file in ["/etc/passwd", "../../../../../../../../etc/passwd"] {
        scratch.write(TRACE_SCENARIO, &trace_scenario(file));
        let error = refused(&scratch, "replay.yaml", "shape.trace.file");
        assert!(error.contains(&format!("{file:?} leaves")) && error.contains("scenarios"), "{error}");
    }
}

#[test]
fn a_wrong_file_inside_the_tree_is_reported_by_position_and_shape_not_content() {
    let scratch = Scratch::new();
    let passwd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
    // Read as an HPA manifest: serde would quote the whole file as one string.
    scratch.write("baselines/online-boutique/passwd.yaml", passwd);
    scratch.write(MATRIX, &hpa_matrix("passwd.yaml"));
    let error = refused(&scratch, "passwd.yaml", "document 1");
    assert!(error.contains("a string of ") && error.contains("expected struct"), "{error}");

    // Read as a trace: no column, then a row that is not a number, say where without saying what.
    scratch.write("experiments/scenarios/online-boutique/passwd.csv", passwd);
    scratch.write(MATRIX, REPLAY_MATRIX);
    scratch.write(TRACE_SCENARIO, &trace_scenario("passwd.csv"));
    let error = refused(&scratch, "replay.yaml", "shape.trace.time_column");
    assert!(error.contains("line 1"), "{error}");
    scratch.write(
        "experiments/scenarios/online-boutique/passwd.csv",
        "Timestamp,User Count\n0,5\n1,root:x:0:0:SECRET-MARKER\n",
    );
    let error = refused(&scratch, "replay.yaml", "shape.trace.column");
    assert!(error.contains("line 3, column 2"), "{error}");
}

#[test]
fn a_trace_shared_under_the_scenarios_folder_is_accepted() {
    let scratch = Scratch::new();
    scratch.write("experiments/scenarios/traces/load.csv", "Timestamp,User Count\n0,5\n10,20\n20,10\n");
    scratch.write(MATRIX, REPLAY_MATRIX);
    scratch.write(TRACE_SCENARIO, &trace_scenario("../traces/load.csv"));
    let output = scratch.orch(&["plan", MATRIX]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_wrong_value_in_the_matrix_itself_is_named_by_its_kind_not_repeated() {
    let scratch = Scratch::new();
    let matrix = hpa_matrix("hpa-cpu-60.yaml")
        .replace("seeds: [1]", "seeds: [1]\nstrategy: {max_parallel: \"SECRET-MARKER root:x:0:0\"}");
    scratch.write(MATRIX, &matrix);
    let error = refused(&scratch, "m.yaml", "strategy.max_parallel");
    assert!(error.contains("a string of 24 characters"), "{error}");
}
