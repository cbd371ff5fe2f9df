//! Bad input: each broken file gives one clear error naming the file and field, exit code 2, and nothing under logs/.

mod common;

use common::Scratch;

/// A one-policy, one-scenario matrix over the scratch copy, so each case breaks exactly one thing.
const MATRIX: &str = "experiments/m.yaml";
const BASE_MATRIX: &str = "name: bad\nseeds: [1]\napps: [online-boutique]\nscenarios: [peak]\npolicies:\n  - {name: hpa, kind: hpa, manifest: hpa-cpu-60.yaml}\n  - {name: fixed, kind: static, replicas: {frontend: 2}}\n";

const OB: &str = "experiments/apps/online-boutique.yaml";
const PEAK: &str = "experiments/scenarios/online-boutique/peak.yaml";
const HPA: &str = "baselines/online-boutique/hpa-cpu-60.yaml";

struct Case {
    name: &'static str,
    /// (file, text to replace, replacement)
    edit: (&'static str, &'static str, &'static str),
    /// Where the error must point: the file name and the field path.
    file: &'static str,
    field: &'static str,
}

const CASES: &[Case] = &[
    Case { name: "malformed yaml", edit: (MATRIX, "seeds: [1]", "seeds: [1"), file: "m.yaml", field: "" },
    Case {
        name: "unknown matrix field",
        edit: (MATRIX, "seeds:", "seedz: [1]\nseeds:"),
        file: "m.yaml",
        field: "seedz",
    },
    Case { name: "unknown app", edit: (MATRIX, "[online-boutique]", "[web-shop]"), file: "m.yaml", field: "apps[0]" },
    Case { name: "unknown scenario", edit: (MATRIX, "[peak]", "[blackfriday]"), file: "m.yaml", field: "scenarios[0]" },
    Case {
        name: "unknown baseline",
        edit: (MATRIX, "hpa-cpu-60.yaml", "hpa-cpu-55.yaml"),
        file: "m.yaml",
        field: "policies[0].manifest",
    },
    Case { name: "duplicate seed", edit: (MATRIX, "seeds: [1]", "seeds: [1, 1]"), file: "m.yaml", field: "seeds[1]" },
    Case {
        name: "zero parallelism",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nstrategy: {max_parallel: 0}"),
        file: "m.yaml",
        field: "strategy.max_parallel",
    },
    Case {
        name: "static replicas above max",
        edit: (MATRIX, "{frontend: 2}", "{frontend: 11}"),
        file: "m.yaml",
        field: "policies[1].replicas.frontend",
    },
    Case {
        name: "unknown policy kind",
        edit: (MATRIX, "kind: static", "kind: vpa"),
        file: "m.yaml",
        field: "policies[1].kind",
    },
    Case { name: "unknown axis", edit: (MATRIX, "seeds:", "regions: [eu]\nseeds:"), file: "m.yaml", field: "regions" },
    Case {
        name: "cfs period outside the kernel's range",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nsimulator: {cfs_period_ms: 0}"),
        file: "m.yaml",
        field: "simulator.cfs_period_ms",
    },
    Case {
        name: "include that matches nothing and lacks an axis",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\ninclude:\n  - {app: online-boutique, scenario: rushsale}"),
        file: "m.yaml",
        field: "include[0]",
    },
    Case {
        name: "include adding the same cell twice",
        edit: (
            MATRIX,
            "seeds: [1]",
            "seeds: [1]\ninclude:\n  - {policy: hpa, scenario: rushsale}\n  - {policy: hpa, scenario: rushsale}",
        ),
        file: "m.yaml",
        field: "include[1]",
    },
    Case {
        name: "include naming an unknown policy",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\ninclude:\n  - {policy: vpa, scenario: rushsale}"),
        file: "m.yaml",
        field: "include[0].policy",
    },
    Case {
        name: "include with an unknown setting",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\ninclude:\n  - {policy: hpa, colour: red}"),
        file: "m.yaml",
        field: "include[0].colour",
    },
    Case {
        name: "include naming an app outside the id alphabet",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\ninclude:\n  - {app: ../etc, policy: hpa, scenario: peak}"),
        file: "m.yaml",
        field: "include[0].app",
    },
    Case {
        name: "negative parallelism",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nstrategy: {max_parallel: -2}"),
        file: "m.yaml",
        field: "strategy.max_parallel",
    },
    Case {
        name: "bad glob in exclude",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nexclude: [{policy: \"fix[ed\"}]"),
        file: "m.yaml",
        field: "exclude[0].policy",
    },
    Case {
        name: "exclude naming an unknown value",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nexclude: [{policy: hpa-cpu-99}]"),
        file: "m.yaml",
        field: "exclude[0].policy",
    },
    Case {
        name: "exclude naming an unknown axis",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nexclude: [{region: eu}]"),
        file: "m.yaml",
        field: "exclude[0].region",
    },
    Case {
        name: "exclude removing every cell",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nexclude: [{app: online-boutique}]"),
        file: "m.yaml",
        field: "exclude",
    },
    Case {
        name: "unknown backend in the list",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nbackend: [sim, vm]"),
        file: "m.yaml",
        field: "backend[1]",
    },
    Case {
        name: "duplicate backend",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nbackend: [sim, sim]"),
        file: "m.yaml",
        field: "backend[1]",
    },
    Case { name: "empty seeds", edit: (MATRIX, "seeds: [1]", "seeds: []"), file: "m.yaml", field: "seeds" },
    Case {
        name: "report baseline that is not a policy",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nreport: {baseline: hpa-cpu-99}"),
        file: "m.yaml",
        field: "report.baseline",
    },
    Case {
        name: "malformed timeout",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nstrategy: {timeout: 10 parsecs}"),
        file: "m.yaml",
        field: "strategy.timeout",
    },
    Case {
        name: "zero max_failures",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nstrategy: {max_failures: 0}"),
        file: "m.yaml",
        field: "strategy.max_failures",
    },
    Case {
        name: "fail_fast and max_failures together",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nstrategy: {fail_fast: true, max_failures: 3}"),
        file: "m.yaml",
        field: "strategy.max_failures",
    },
    Case {
        name: "negative retries",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\nstrategy: {retries: -1}"),
        file: "m.yaml",
        field: "strategy.retries",
    },
    Case {
        name: "override for an app not in the matrix",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\noverrides: {app: {web-shop: {timeout: 1m}}}"),
        file: "m.yaml",
        field: "overrides.app.web-shop",
    },
    Case {
        name: "override with an SLO percentile out of range",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\noverrides: {app: {online-boutique: {slo: {percentile: 120}}}}"),
        file: "m.yaml",
        field: "overrides.app.online-boutique.slo.percentile",
    },
    Case {
        name: "two overrides for one value",
        edit: (
            MATRIX,
            "seeds: [1]",
            "seeds: [1]\noverrides: {policy: {\"h*\": {timeout: 1m}, \"*p*\": {timeout: 2m}}}",
        ),
        file: "m.yaml",
        field: "overrides.policy.h*",
    },
    Case {
        name: "default SLO naming an unknown route",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\ndefaults: {slo: {route: basket}}"),
        file: "m.yaml",
        field: "defaults.slo.route",
    },
    Case {
        name: "zero default timeout",
        edit: (MATRIX, "seeds: [1]", "seeds: [1]\ndefaults: {timeout: 0s}"),
        file: "m.yaml",
        field: "defaults.timeout",
    },
    Case {
        name: "alias of an undefined anchor",
        edit: (MATRIX, "seeds: [1]", "seeds: *nope"),
        file: "m.yaml",
        field: "",
    },
    Case {
        name: "unknown service in a call tree",
        edit: (OB, "- {service: adservice}\n  - name: product", "- {service: adsrvice}\n  - name: product"),
        file: "online-boutique.yaml",
        field: "routes[0].call.calls[4].service",
    },
    Case {
        name: "cycle in the call graph",
        edit: (OB, "- {service: paymentservice}", "- {service: paymentservice, calls: [{service: checkoutservice}]}"),
        file: "online-boutique.yaml",
        field: "routes[5].call.calls[0].calls[4].calls[0].service",
    },
    Case {
        name: "cycle across routes",
        edit: (
            OB,
            "call: {service: frontend, cpu_ms: 0.3}",
            "call: {service: adservice, calls: [{service: frontend}]}",
        ),
        file: "online-boutique.yaml",
        field: "routes",
    },
    Case {
        name: "min above max",
        edit: (OB, "replicas: {min: 1, max: 10}", "replicas: {min: 12, max: 10}"),
        file: "online-boutique.yaml",
        field: "services[0].replicas.min",
    },
    Case {
        name: "zero cpu demand",
        edit: (OB, "per_request_ms: 1.0", "per_request_ms: 0"),
        file: "online-boutique.yaml",
        field: "services[0].cpu.per_request_ms",
    },
    Case {
        name: "negative start-up delay",
        edit: (OB, "startup_s: 15", "startup_s: -5"),
        file: "online-boutique.yaml",
        field: "services[0].startup_s",
    },
    Case {
        name: "unknown SLO route",
        edit: (OB, "slo: {route: cart,", "slo: {route: basket,"),
        file: "online-boutique.yaml",
        field: "slo.route",
    },
    Case {
        name: "zero-length stage",
        edit: (PEAK, "{end: 900,", "{end: 0,"),
        file: "peak.yaml",
        field: "shape.stages[0].end",
    },
    Case {
        name: "task weight zero",
        edit: (PEAK, "{name: view-cart,", "{name: view-cart, weight: 0,"),
        file: "peak.yaml",
        field: "users[0].tasks[0].weight",
    },
    Case {
        name: "unknown wait kind",
        edit: (PEAK, "{constant_throughput: 1}", "{poisson: 1}"),
        file: "peak.yaml",
        field: "users[0].wait",
    },
    Case {
        name: "request matching no route",
        edit: (PEAK, "path: /cart}", "path: /basket}"),
        file: "peak.yaml",
        field: "users[0].tasks[0].requests[0]",
    },
    Case {
        name: "unknown template variable",
        edit: (PEAK, "path: /cart}", "path: \"/cart?id={{session}}\"}"),
        file: "peak.yaml",
        field: "users[0].tasks[0].requests[0].path",
    },
    Case {
        name: "hpa targets an unknown deployment",
        edit: (HPA, "name: frontend\n  minReplicas", "name: web\n  minReplicas"),
        file: "hpa-cpu-60.yaml",
        field: "document 1: spec.scaleTargetRef.name",
    },
    Case {
        name: "hpa max below min",
        edit: (HPA, "minReplicas: 1\n  maxReplicas: 10", "minReplicas: 3\n  maxReplicas: 2"),
        file: "hpa-cpu-60.yaml",
        field: "document 1: spec.maxReplicas",
    },
    Case {
        name: "hpa wrong api version",
        edit: (HPA, "apiVersion: autoscaling/v2", "apiVersion: autoscaling/v1"),
        file: "hpa-cpu-60.yaml",
        field: "document 1: apiVersion",
    },
];

#[test]
fn every_bad_input_is_refused_with_file_and_field_and_nothing_written() {
    let mut failures = Vec::new();
    for case in CASES {
        let scratch = Scratch::new();
        scratch.write(MATRIX, BASE_MATRIX);
        let (file, from, to) = case.edit;
        scratch.edit(file, from, to);
        let output = scratch.orch(&["run", MATRIX, "--tag", "t"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        let problems = [
            (output.status.code() != Some(2), format!("exit code {:?}", output.status.code())),
            (error_lines.len() != 1, format!("{} error lines", error_lines.len())),
            (!stderr.contains(case.file), format!("no file name {:?}", case.file)),
            (
                !case.field.is_empty() && !stderr.contains(&format!(": {}: ", case.field)),
                format!("no field {:?}", case.field),
            ),
            (scratch.path("logs").exists(), "logs/ was created".to_string()),
        ];
        for (failed, what) in problems {
            if failed {
                failures.push(format!("{}: {what}; stderr: {stderr}", case.name));
            }
        }
    }
    assert!(CASES.iter().filter(|c| c.edit.0 == MATRIX).count() >= 15, "at least 15 malformed matrices");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn the_unedited_base_matrix_is_accepted() {
    // Guards the table above: its cases fail because of their edit, not because the base is broken.
    let scratch = Scratch::new();
    scratch.write(MATRIX, BASE_MATRIX);
    let output = scratch.orch(&["plan", MATRIX]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 cells"));
}

/// A matrix with an `rl` policy, for the RL cases below.
const BASE_RL_MATRIX: &str = "name: bad-rl\nseeds: [1]\napps: [online-boutique]\nscenarios: [peak]\npolicies:\n  - name: gnn-ppo\n    kind: rl\n    rl:\n      algo: ppo\n      model: gnn\n      budget: 1000\n      training: {scenarios: [peak, rushsale], scale: [0.5, 1.5], noise: 0.1}\n      hyperparameters: {n_steps: 60}\n      warm_start: {manifest: hpa-cpu-60.yaml}\n";

const RL_CASES: &[Case] = &[
    Case {
        name: "rl without its block",
        edit: (
            MATRIX,
            "    rl:\n      algo: ppo\n      model: gnn\n      budget: 1000\n      training: {scenarios: [peak, rushsale], scale: [0.5, 1.5], noise: 0.1}\n      hyperparameters: {n_steps: 60}\n      warm_start: {manifest: hpa-cpu-60.yaml}\n",
            "",
        ),
        file: "m.yaml",
        field: "policies[0].rl",
    },
    Case {
        name: "unknown algorithm",
        edit: (MATRIX, "algo: ppo", "algo: sac"),
        file: "m.yaml",
        field: "policies[0].rl.algo",
    },
    Case {
        name: "unknown model",
        edit: (MATRIX, "model: gnn", "model: transformer"),
        file: "m.yaml",
        field: "policies[0].rl.model",
    },
    Case {
        name: "zero budget",
        edit: (MATRIX, "budget: 1000", "budget: 0"),
        file: "m.yaml",
        field: "policies[0].rl.budget",
    },
    Case {
        name: "unknown rl field",
        edit: (MATRIX, "budget: 1000", "budget: 1000\n      epochs: 3"),
        file: "m.yaml",
        field: "policies[0].rl",
    },
    Case {
        name: "unknown hyperparameter",
        edit: (MATRIX, "{n_steps: 60}", "{n_stepz: 60}"),
        file: "m.yaml",
        field: "policies[0].rl.hyperparameters.n_stepz",
    },
    Case {
        name: "hyperparameter of the wrong type",
        edit: (MATRIX, "{n_steps: 60}", "{n_steps: many}"),
        file: "m.yaml",
        field: "policies[0].rl.hyperparameters.n_steps",
    },
    Case {
        name: "hyperparameter out of range",
        edit: (MATRIX, "{n_steps: 60}", "{n_steps: 60, gamma: 1.5}"),
        file: "m.yaml",
        field: "policies[0].rl.hyperparameters.gamma",
    },
    Case {
        name: "unknown training scenario",
        edit: (MATRIX, "[peak, rushsale]", "[peak, blackfriday]"),
        file: "m.yaml",
        field: "policies[0].rl.training.scenarios[1]",
    },
    Case {
        name: "inverted load scale",
        edit: (MATRIX, "scale: [0.5, 1.5]", "scale: [1.5, 0.5]"),
        file: "m.yaml",
        field: "policies[0].rl.training.scale",
    },
    Case {
        name: "negative reward weight",
        edit: (
            MATRIX,
            "budget: 1000",
            "budget: 1000\n      reward: {kind: slo_cost, pod_cost: -1, slo_penalty: 2, failure_penalty: 2}",
        ),
        file: "m.yaml",
        field: "policies[0].rl.reward.pod_cost",
    },
    Case {
        name: "unknown warm-start baseline",
        edit: (MATRIX, "{manifest: hpa-cpu-60.yaml}", "{manifest: hpa-cpu-65.yaml}"),
        file: "m.yaml",
        field: "policies[0].rl.warm_start.manifest",
    },
    Case {
        name: "warm start with dqn",
        edit: (MATRIX, "algo: ppo", "algo: dqn"),
        file: "m.yaml",
        field: "policies[0].rl.warm_start",
    },
    Case {
        name: "rl block on an hpa policy",
        edit: (MATRIX, "kind: rl", "kind: hpa\n    manifest: hpa-cpu-60.yaml"),
        file: "m.yaml",
        field: "policies[0].rl",
    },
    Case {
        name: "manifest on an rl policy",
        edit: (MATRIX, "kind: rl", "kind: rl\n    manifest: hpa-cpu-60.yaml"),
        file: "m.yaml",
        field: "policies[0].manifest",
    },
    Case {
        name: "rl apps naming an app outside the matrix",
        edit: (MATRIX, "budget: 1000", "budget: 1000\n      apps: [online-boutique, redis-cluster]"),
        file: "m.yaml",
        field: "policies[0].rl.apps[1]",
    },
    Case {
        name: "zero environments",
        edit: (MATRIX, "budget: 1000", "budget: 1000\n      envs: 0"),
        file: "m.yaml",
        field: "policies[0].rl.envs",
    },
    Case {
        name: "a step range of zero",
        edit: (MATRIX, "budget: 1000", "budget: 1000\n      actions: {kind: steps, max_step: 0}"),
        file: "m.yaml",
        field: "policies[0].rl.actions",
    },
    Case {
        name: "unknown action space",
        edit: (MATRIX, "budget: 1000", "budget: 1000\n      actions: {kind: exponential}"),
        file: "m.yaml",
        field: "policies[0].rl.actions",
    },
    Case {
        name: "negative change penalty",
        edit: (
            MATRIX,
            "budget: 1000",
            "budget: 1000\n      reward: {kind: slo_cost, pod_cost: 1, slo_penalty: 2, failure_penalty: 2, change_penalty: -1}",
        ),
        file: "m.yaml",
        field: "policies[0].rl.reward.change_penalty",
    },
    Case {
        name: "learning-rate annealing that is not a flag",
        edit: (MATRIX, "{n_steps: 60}", "{n_steps: 60, anneal_lr: 3}"),
        file: "m.yaml",
        field: "policies[0].rl.hyperparameters.anneal_lr",
    },
];

#[test]
fn every_bad_rl_policy_is_refused_with_file_and_field_and_nothing_written() {
    let mut failures = Vec::new();
    for case in RL_CASES {
        let scratch = Scratch::new();
        scratch.write(MATRIX, BASE_RL_MATRIX);
        let (file, from, to) = case.edit;
        scratch.edit(file, from, to);
        let output = scratch.orch(&["run", MATRIX, "--tag", "t"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        let problems = [
            (output.status.code() != Some(2), format!("exit code {:?}", output.status.code())),
            (error_lines.len() != 1, format!("{} error lines", error_lines.len())),
            (!stderr.contains(case.file), format!("no file name {:?}", case.file)),
            (!stderr.contains(&format!(": {}", case.field)), format!("no field {:?}", case.field)),
            (scratch.path("logs").exists(), "logs/ was created".to_string()),
        ];
        for (failed, what) in problems {
            if failed {
                failures.push(format!("{}: {what}; stderr: {stderr}", case.name));
            }
        }
    }
    let scratch = Scratch::new();
    scratch.write(MATRIX, BASE_RL_MATRIX);
    let output = scratch.orch(&["plan", MATRIX]);
    assert!(output.status.success(), "the base rl matrix is valid: {}", String::from_utf8_lossy(&output.stderr));
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), RL_CASES.len(), failures.join("\n"));
}
