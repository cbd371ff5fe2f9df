//! RL in matrices: training is deterministic, a run trains once per (app, policy, seed), reuses a finished model,
//! and an RL cell's folder holds its training.csv and names its checkpoint.

mod common;

use std::path::Path;

use common::Scratch;
use orchestrator::matrix::Matrix;
use orchestrator::rl::train::{TRAINING_COLUMNS, train};
use orchestrator::run::rl_training::{self, model_key};

/// A tiny RL policy: a few hundred decisions, one update pass, a small network, so the debug build trains it in
/// seconds.
const TINY_RL: &str = "  - name: gnn-ppo
    kind: rl
    rl:
      algo: ppo
      model: gnn
      budget: 120
      reward: {kind: slo_cost, pod_cost: 1.0, slo_penalty: 4.0, failure_penalty: 4.0}
      training: {scenarios: [peak, rushsale], scale: [0.5, 1.5], noise: 0.1}
      hyperparameters: {n_steps: 30, batch_size: 30, n_epochs: 1}
      network: {hidden: 8, layers: 1}
";

fn matrix_text(seeds: &str) -> String {
    format!(
        "name: rl-e2e\nseeds: {seeds}\napps: [redis-cluster]\nscenarios: [offpeak, rushsale]\npolicies:\n  - {{name: hpa, kind: hpa, manifest: hpa-cpu-60.yaml}}\n{TINY_RL}strategy: {{max_parallel: 2}}\n"
    )
}

#[test]
fn the_same_seed_trains_the_same_checkpoint_bytes() {
    let scratch = Scratch::new();
    scratch.write("experiments/m.yaml", &matrix_text("[7]"));
    let matrix = Matrix::load(&scratch.path("experiments/m.yaml")).expect("valid matrix");
    let cell = matrix.cells.iter().find(|c| c.config.policy.name() == "gnn-ppo").expect("an rl cell");
    let rl = rl_training::rl_config(&cell.config).expect("rl settings");
    let out = tempfile::tempdir().unwrap();
    let a = train(&rl.training, &cell.config.app, 7, &out.path().join("a"), None).expect("trains");
    let b = train(&rl.training, &cell.config.app, 7, &out.path().join("b"), None).expect("trains");
    assert_eq!(a.final_return_mean, b.final_return_mean);
    let c = train(&rl.training, &cell.config.app, 8, &out.path().join("c"), None).expect("trains");
    assert_eq!((a.iterations, a.env_steps), (2, 120), "two iterations of 2 envs × 30 steps");
    let read = |dir: &str, file: &str| std::fs::read(out.path().join(dir).join(file)).unwrap();
    assert_eq!(read("a", "model.safetensors"), read("b", "model.safetensors"));
    assert_eq!(read("a", "model.json"), read("b", "model.json"));
    assert_ne!(read("a", "model.safetensors"), read("c", "model.safetensors"), "another seed, another model");
    let csv = String::from_utf8(read("a", "training.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], TRAINING_COLUMNS);
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("2,120,"), "{}", lines[2]);
    // Episode returns appear once an episode (60 decisions) has ended.
    assert!(!lines[2].split(',').nth(2).unwrap().is_empty(), "{}", lines[2]);
    assert_eq!(c.iterations, 2);
}

#[test]
fn a_matrix_run_trains_each_model_once_and_rl_cells_record_their_training() {
    let scratch = Scratch::new();
    scratch.write("experiments/m.yaml", &matrix_text("[1, 2]"));
    let out = scratch.orch(&["run", "experiments/m.yaml", "--tag", "t", "--logs-dir", "logs"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = scratch.path("logs/t");
    // Two seeds: two models, each shared by the cells of both scenarios.
    let models: Vec<_> =
        std::fs::read_dir(run.join("models")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(models.len(), 2, "{models:?}");
    assert!(models.iter().all(|m| !m.starts_with('.')), "no temporary folder left: {models:?}");
    assert_eq!(stderr.matches(": trained,").count(), 2, "{stderr}");

    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().filter(|l| l.contains(",gnn-ppo,")).count(), 4, "{summary}");
    let matrix = Matrix::load(&scratch.path("experiments/m.yaml")).unwrap();
    for cell in matrix.cells.iter().filter(|c| c.config.policy.name() == "gnn-ppo") {
        let dir = run.join(&cell.id);
        let key = model_key(&cell.config).unwrap();
        let training = std::fs::read_to_string(dir.join("training.csv")).expect("training.csv in the cell folder");
        assert_eq!(training, std::fs::read_to_string(run.join("models").join(&key).join("training.csv")).unwrap());
        let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
        assert!(config.contains("kind: rl") && config.contains("spawn_rate"), "the training scenarios' content");
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
        assert!(log.contains(&format!("models/{key}/model")), "run.log names the checkpoint: {log}");
        assert!(log.contains("cell finished"));
    }
}

#[test]
fn prepare_reuses_a_finished_model_and_cell_ids_follow_the_rl_config() {
    let scratch = Scratch::new();
    scratch.write("experiments/m.yaml", &matrix_text("[3]"));
    let path = scratch.path("experiments/m.yaml");
    let matrix = Matrix::load(&path).unwrap();
    let run = scratch.path("logs/r");
    let first = rl_training::prepare(&matrix.cells, &run, 1);
    assert_eq!(first.len(), 1);
    let checkpoint = first.values().next().unwrap().clone().expect("trained");
    let weights = checkpoint.with_extension("safetensors");
    let modified = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let again = rl_training::prepare(&matrix.cells, &run, 1);
    assert_eq!(first, again);
    assert_eq!(std::fs::metadata(&weights).unwrap().modified().unwrap(), modified, "not retrained");
    let cell = matrix.cells.iter().find(|c| c.config.policy.name() == "gnn-ppo").unwrap();
    let attached = rl_training::attach(cell, &again).expect("the checkpoint loads");
    assert_eq!(attached.id, cell.id);

    // Editing a training scenario changes the RL cells' ids and model, not the HPA cells'.
    let ids = |m: &Matrix, policy: &str| -> Vec<String> {
        m.cells.iter().filter(|c| c.config.policy.name() == policy).map(|c| c.id.clone()).collect()
    };
    scratch.edit("experiments/scenarios/redis-cluster/peak.yaml", "users: 2000", "users: 2100");
    let edited = Matrix::load(&path).unwrap();
    assert_eq!(ids(&matrix, "hpa"), ids(&edited, "hpa"), "peak is not an evaluation scenario here");
    assert_ne!(ids(&matrix, "gnn-ppo"), ids(&edited, "gnn-ppo"));
    let key = |m: &Matrix| model_key(&m.cells.iter().find(|c| c.config.policy.name() == "gnn-ppo").unwrap().config);
    assert_ne!(key(&matrix), key(&edited));
    assert!(Path::new(&checkpoint.with_extension("json")).is_file());
}

#[test]
fn the_main_matrix_runs_each_rl_policy_on_its_apps_only() {
    let matrix = Matrix::load(&common::repo_root().join("experiments/matrix.yaml")).expect("the main matrix is valid");
    let apps_of = |policy: &str| {
        let mut apps: Vec<String> = matrix
            .cells
            .iter()
            .filter(|c| c.config.policy.name() == policy)
            .map(|c| c.config.app.name.clone())
            .collect();
        apps.sort();
        apps.dedup();
        apps
    };
    assert_eq!(apps_of("gnn-ppo"), ["online-boutique", "redis-cluster"]);
    assert_eq!(apps_of("mlp-ppo"), ["online-boutique", "redis-cluster"]);
    assert_eq!(apps_of("dqn"), ["image-classifier"]);
    let rl_cells = matrix.cells.iter().filter(|c| rl_training::rl_config(&c.config).is_some()).count();
    assert_eq!(rl_cells, 5 * 4 * 3 + 2, "five (app, policy) pairs, four scenarios, three seeds; two emulated cells");
    let models: std::collections::BTreeSet<String> = matrix.cells.iter().filter_map(|c| model_key(&c.config)).collect();
    assert_eq!(models.len(), 5 * 3, "one model per (app, policy, seed)");
}
