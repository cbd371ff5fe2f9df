//! The matrix's `simulator:` section: parsed into every sim cell's config (and the training of rl policies), the
//! faithful model by default, the legacy model keeping the ids cells had before the section existed, and the
//! simulator a sim cell runs on built with its settings.

mod common;

use common::{Scratch, repo_root};
use orchestrator::backends::sim::simulator_for;
use orchestrator::cell::{Backend, ResolvedPolicy};
use orchestrator::matrix::Matrix;
use orchestrator::rl::train::env_config;
use orchestrator::settings::simulator::{CpuModel, MetricsTiming, Percentiles, SimulatorSettings, Startup};

const LEGACY: &str =
    "\nsimulator: {cpu: smooth, percentiles: model, metrics: aligned, pod_spread: false, startup: fixed}\n";

/// `experiments/<name>` with `extra` appended, loaded from a scratch copy of the experiments.
fn load_with(name: &str, extra: &str) -> Matrix {
    let text = std::fs::read_to_string(repo_root().join("experiments").join(name)).unwrap();
    let scratch = Scratch::new();
    let file = format!("experiments/with-{name}");
    scratch.write(&file, &format!("{text}{extra}"));
    Matrix::load(&scratch.path(&file)).unwrap_or_else(|e| panic!("{e}"))
}

fn id_of(matrix: &Matrix, stem: &str, backend: Backend) -> String {
    let cell = matrix.cells.iter().find(|c| c.id.starts_with(stem) && c.config.backend == backend);
    cell.unwrap_or_else(|| panic!("no {stem} cell on {backend:?}")).id.clone()
}

#[test]
fn the_legacy_model_keeps_the_ids_cells_had_before_the_section() {
    // Ids `orch plan` printed before cells carried simulator settings.
    let quick = load_with("quick.yaml", LEGACY);
    let ids: Vec<&str> = quick.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["online-boutique.hpa-cpu-60.rushsale.s1-975e04fb", "online-boutique.static-max.rushsale.s1-3ca7410f"]
    );
    assert!(quick.cells.iter().all(|c| c.config.simulator.is_none()));

    let main = load_with("matrix.yaml", LEGACY);
    for (stem, backend, id) in [
        ("online-boutique.gnn-ppo.offpeak.s1-", Backend::Sim, "online-boutique.gnn-ppo.offpeak.s1-a0785c62"),
        ("online-boutique.gnn-ppo.rushsale.s1-", Backend::Emulated, "online-boutique.gnn-ppo.rushsale.s1-52b6a7cb"),
        (
            "online-boutique.hpa-cpu-60.rushsale.s1-",
            Backend::Emulated,
            "online-boutique.hpa-cpu-60.rushsale.s1-23e48b52",
        ),
    ] {
        assert_eq!(id_of(&main, stem, backend), id);
    }
}

#[test]
fn without_the_section_sim_cells_run_the_faithful_model_and_only_they_carry_it() {
    let plain = Matrix::load(&repo_root().join("experiments/matrix.yaml")).unwrap();
    let legacy = load_with("matrix.yaml", LEGACY);
    for (cell, before) in plain.cells.iter().zip(&legacy.cells) {
        let rl = matches!(cell.config.policy.as_ref(), ResolvedPolicy::Rl(_));
        match cell.config.backend {
            Backend::Sim => {
                assert_eq!(cell.config.simulator, Some(SimulatorSettings::default()), "{}", cell.id);
                assert_ne!(cell.id, before.id, "a sim cell's results change with the model, and so does its id");
            }
            // An emulated cell keeps its id unless its rl policy was trained on the simulator.
            _ => {
                assert_eq!(cell.config.simulator, None, "{}", cell.id);
                assert_eq!(cell.id == before.id, !rl, "{}", cell.id);
            }
        }
    }
}

#[test]
fn the_section_reaches_the_cells_the_simulator_and_the_training_environment() {
    let matrix = load_with("matrix.yaml", "\nsimulator: {cpu: smooth, cfs_period_ms: 50}\n");
    let expected = SimulatorSettings { cpu: CpuModel::Smooth, cfs_period_ms: 50.0, ..SimulatorSettings::default() };
    for cell in &matrix.cells {
        if cell.config.backend == Backend::Sim {
            assert_eq!(cell.config.simulator_settings(), expected, "{}", cell.id);
            assert_eq!(*simulator_for(&cell.config).settings(), expected, "{}", cell.id);
        }
        if let ResolvedPolicy::Rl(rl) = cell.config.policy.as_ref() {
            assert_eq!(rl.training.simulator, Some(expected), "{}", cell.id);
            assert_eq!(env_config(&rl.training).simulator, expected, "{}", cell.id);
        }
    }

    let legacy = load_with("matrix.yaml", LEGACY);
    let sim = legacy.cells.iter().find(|c| c.config.backend == Backend::Sim).unwrap();
    assert!(simulator_for(&sim.config).settings().is_legacy());
    let Some(ResolvedPolicy::Rl(rl)) =
        legacy.cells.iter().map(|c| c.config.policy.as_ref()).find(|p| p.name() == "gnn-ppo")
    else {
        panic!("an rl cell")
    };
    assert_eq!(rl.training.simulator, None);
    assert!(env_config(&rl.training).simulator.is_legacy());
}

#[test]
fn a_cells_config_yaml_reads_back_with_its_settings() {
    let matrix = load_with("quick.yaml", "\nsimulator: {percentiles: model, metrics: aligned, startup: fixed}\n");
    let cell = &matrix.cells[0];
    let settings = cell.config.simulator.unwrap();
    assert_eq!(
        (settings.percentiles, settings.metrics, settings.startup),
        (Percentiles::Model, MetricsTiming::Aligned, Startup::Fixed)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, orchestrator::cell::config_yaml(&cell.config).unwrap()).unwrap();
    let back = orchestrator::cell::read_config_yaml(&path).unwrap();
    assert_eq!(back.simulator, cell.config.simulator);
    assert_eq!(orchestrator::cell::cell_id(&back), cell.id);
}

#[test]
fn bad_sections_name_the_file_and_field() {
    for (section, field) in [
        ("{cfs_period_ms: 0.5}", "simulator.cfs_period_ms"),
        ("{cfs_period_ms: 5000}", "simulator.cfs_period_ms"),
        ("{cpu: fast}", "simulator.cpu"),
        ("{startup: slow}", "simulator.startup"),
        ("{pod_spread: sometimes}", "simulator.pod_spread"),
        ("{period: 100}", "simulator.period"),
    ] {
        let text = std::fs::read_to_string(repo_root().join("experiments/quick.yaml")).unwrap();
        let scratch = Scratch::new();
        scratch.write("experiments/m.yaml", &format!("{text}\nsimulator: {section}\n"));
        let e = Matrix::load(&scratch.path("experiments/m.yaml")).unwrap_err();
        assert_eq!(e.field, field, "{section}: {e}");
        assert!(e.to_string().contains("m.yaml"), "{section}: {e}");
    }
    // A section no cell reads is a mistake, as for `emulated:`.
    let scratch = Scratch::new();
    let kubernetes = std::fs::read_to_string(repo_root().join("experiments/kubernetes.yaml")).unwrap();
    scratch.write("experiments/m.yaml", &format!("{kubernetes}\nsimulator: {{cpu: smooth}}\n"));
    let e = Matrix::load(&scratch.path("experiments/m.yaml")).unwrap_err();
    assert_eq!(e.field, "simulator", "{e}");
}
