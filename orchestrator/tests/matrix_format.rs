//! The matrix format: include/exclude with GitHub Actions' semantics, defaults and overrides, anchors, and
//! resolved configs that `orch cell` reads back to the same cell.

mod common;

use std::time::Duration;

use common::{Scratch, repo_root};
use orchestrator::cell::ResolvedPolicy;
use orchestrator::matrix::{DEFAULT_TIMEOUT, Matrix};

const FORMAT: &str = r#"name: fmt
x-hpa: &hpa {kind: hpa, manifest: hpa-cpu-60.yaml}
apps: [online-boutique, image-classifier]
scenarios: [peak, rushsale]
policies:
  - {<<: *hpa, name: hpa-cpu-60}
  - {name: static-max, kind: static, replicas: max}
seeds: 1
exclude:
  - {app: "image-*", policy: static-max}
include:
  - {app: online-boutique, slo: {threshold_ms: 80}}
  - {app: online-boutique, policy: hpa-cpu-60, scenario: browse, seed: 7}
overrides:
  app: {image-classifier: {timeout: 5m}}
  scenario: {rushsale: {slo: {percentile: 99}}}
strategy: {timeout: 10m, retries: 1}
report: {baseline: hpa-cpu-60}
"#;

fn load(text: &str) -> Matrix {
    let scratch = Scratch::new();
    scratch.write("experiments/fmt.yaml", text);
    Matrix::load(&scratch.path("experiments/fmt.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn names(m: &Matrix) -> Vec<String> {
    m.cells
        .iter()
        .map(|c| {
            format!("{}.{}.{}.s{}", c.config.app.name, c.config.policy.name(), c.config.scenario.name, c.config.seed)
        })
        .collect()
}

#[test]
fn exclude_include_defaults_and_overrides_expand_as_documented() {
    let m = load(FORMAT);
    assert_eq!(
        names(&m),
        [
            "online-boutique.hpa-cpu-60.peak.s1",
            "online-boutique.hpa-cpu-60.rushsale.s1",
            "online-boutique.static-max.peak.s1",
            "online-boutique.static-max.rushsale.s1",
            "image-classifier.hpa-cpu-60.peak.s1",
            "image-classifier.hpa-cpu-60.rushsale.s1",
            // Added by include[1], after the product: it matched no combination.
            "online-boutique.hpa-cpu-60.browse.s7",
        ]
    );
    for cell in &m.cells {
        let c = &cell.config;
        let added = c.scenario.name == "browse";
        let boutique = c.app.name == "online-boutique";
        // include[0] merges into the online-boutique combinations of the product, not into the one include[1] adds.
        let threshold = if boutique && !added {
            80.0
        } else if boutique {
            60.0
        } else {
            500.0
        };
        assert_eq!(c.app.slo.threshold_ms, threshold, "{}", cell.id);
        let percentile = if c.scenario.name == "rushsale" { 99.0 } else { 95.0 };
        assert_eq!(c.app.slo.percentile, percentile, "{}", cell.id);
        let timeout = if boutique { Duration::from_secs(600) } else { Duration::from_secs(300) };
        assert_eq!(cell.timeout, timeout, "{}", cell.id);
    }
    assert_eq!(m.baseline.as_deref(), Some("hpa-cpu-60"));
    assert_eq!(m.strategy.retries, 1);

    // A setting that changes results changes the id; the timeout does not.
    let plain = load(&FORMAT.replace("  - {app: online-boutique, slo: {threshold_ms: 80}}\n", ""));
    assert_ne!(plain.cells[0].id, m.cells[0].id);
    let other_timeout = load(&FORMAT.replace("timeout: 10m", "timeout: 20m"));
    assert_eq!(other_timeout.cells[0].id, m.cells[0].id);
    assert_eq!(other_timeout.cells[0].timeout, Duration::from_secs(1200));
}

#[test]
fn ids_do_not_depend_on_where_the_matrix_is_run_from() {
    // Two copies of the experiments in different folders: same cells, same ids.
    assert_eq!(
        load(FORMAT).cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        load(FORMAT).cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn an_axis_takes_one_value_or_a_list() {
    let listed = load(
        "name: a\nseeds: [3]\napps: [image-classifier]\nscenarios: [peak]\nbackend: [sim]\npolicies:\n  - {name: s, kind: static, replicas: min}\n",
    );
    let single = load(
        "name: a\nseeds: 3\napps: image-classifier\nscenarios: peak\nbackend: sim\npolicies: {name: s, kind: static, replicas: min}\n",
    );
    assert_eq!(listed.cells.len(), 1);
    assert_eq!(listed.cells[0].id, single.cells[0].id);
    assert_eq!(single.cells[0].timeout, DEFAULT_TIMEOUT);
    assert_eq!(single.baseline, None);
}

#[test]
fn the_main_and_quick_matrices_keep_their_cells_and_configs_read_back_to_the_same_ids() {
    let main = Matrix::load(&repo_root().join("experiments/matrix.yaml")).unwrap();
    assert_eq!(main.cells.len(), 248, "240 simulator cells and 8 emulated ones");
    assert_eq!(Matrix::load(&repo_root().join("experiments/quick.yaml")).unwrap().cells.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    for cell in &main.cells {
        let path = dir.path().join(format!("{}.yaml", cell.id));
        std::fs::write(&path, orchestrator::cell::config_yaml(&cell.config).unwrap()).unwrap();
        let back = orchestrator::cell::read_config_yaml(&path).unwrap_or_else(|e| panic!("{}: {e}", cell.id));
        assert_eq!(orchestrator::cell::cell_id(&back), cell.id, "config.yaml does not read back to the same cell");
    }
}

#[test]
fn the_readme_example_matrix_is_valid_and_expands_as_it_says() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("### Matrix (`experiments/*.yaml`)").expect("matrix section")..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let m = load(example);
    let names = names(&m);
    // 2 apps x 3 policies x 2 scenarios x 3 seeds = 36, minus redis-cluster static-max (6), minus hpa-cpu-80 at
    // peak with seed 3 (2 apps), plus the browse cell.
    assert_eq!(names.len(), 36 - 6 - 2 + 1, "{names:?}");
    assert_eq!(names.last().unwrap(), "online-boutique.hpa-cpu-60.browse.s7");
    assert!(!names.iter().any(|n| n.starts_with("redis-cluster.static-max.")));
    assert_eq!(m.max_parallel, 2);
    assert_eq!(m.strategy.max_failures, Some(10));
    let redis = m.cells.iter().find(|c| c.config.app.name == "redis-cluster").unwrap();
    assert_eq!(redis.config.app.slo.threshold_ms, 5.0);
    let rushsale = m.cells.iter().find(|c| c.config.scenario.name == "rushsale").unwrap();
    assert_eq!(rushsale.timeout, Duration::from_secs(1800));
}

#[test]
fn an_rl_entry_without_a_training_block_trains_on_the_matrix_scenarios_unscaled() {
    let matrix = load(
        "name: rl\napps: online-boutique\nscenarios: peak\nseeds: 1\n\
         policies: [{name: ppo, kind: rl, rl: {algo: ppo, model: gnn, budget: 100}}]\n",
    );
    let ResolvedPolicy::Rl(rl) = matrix.cells[0].config.policy.as_ref() else { panic!("an rl cell") };
    assert_eq!(rl.training.randomization.scale, [1.0, 1.0]);
    assert_eq!(rl.training.randomization.noise, 0.0);
    let scenarios: Vec<&str> = rl.training.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(scenarios, ["peak"]);
}
