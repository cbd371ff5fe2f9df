//! The training step of a matrix run: every RL cell's model is trained once per (app, policy, seed) before the
//! cells run, and cached by its training hash under `<run>/models/<hash>/` (model.safetensors, model.json,
//! training.csv). A folder that is already complete is reused; a training writes into a temporary folder that is
//! renamed into place only when the checkpoint is whole, so a crash never leaves a half model to be reused.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::app::AppModel;
use crate::cell::{Cell, CellConfig, ResolvedPolicy};
use crate::rl::policy::RlPolicy;
use crate::rl::train::train;
use crate::run::supervisor::Prepare;
use crate::settings::rl::training_hash;
use crate::settings::rl::{RlPolicyConfig, TrainingConfig};

/// Short form of a training hash used as the model folder's name.
const HASH_CHARS: usize = 16;

/// The models of a run: training hash → checkpoint base path, or why training failed.
pub type Prepared = BTreeMap<String, Result<PathBuf, NoModel>>;

/// Why a model is missing: its training failed (the whole error chain, kept as text: every cell of the model
/// reports it), or its folder is incomplete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NoModel(String);

/// The RL settings of a cell, if it is an RL cell.
pub fn rl_config(config: &CellConfig) -> Option<&RlPolicyConfig> {
    match config.policy.as_ref() {
        ResolvedPolicy::Rl(rl) => Some(rl),
        _ => None,
    }
}

/// The short training hash of an RL cell.
pub fn model_key(config: &CellConfig) -> Option<String> {
    rl_config(config).map(|rl| training_hash(&rl.training, &config.app, config.seed)[..HASH_CHARS].to_string())
}

/// `<run>/models/<key>/`.
pub fn model_dir(run_dir: &Path, key: &str) -> PathBuf {
    run_dir.join("models").join(key)
}

fn is_complete(dir: &Path) -> bool {
    ["model.safetensors", "model.json", "training.csv"].iter().all(|f| dir.join(f).is_file())
}

/// Trains (or finds) every model the RL cells of `cells` need, `max_parallel` trainings at once.
pub fn prepare(cells: &[Cell], run_dir: &Path, max_parallel: usize) -> Prepared {
    let mut jobs: BTreeMap<String, &Cell> = BTreeMap::new();
    for cell in cells {
        if let Some(key) = model_key(&cell.config) {
            jobs.entry(key).or_insert(cell);
        }
    }
    let jobs: Vec<_> = jobs.into_iter().collect();
    let bars = std::io::stderr().is_terminal().then(MultiProgress::new);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Prepared::new());
    std::thread::scope(|scope| {
        for _ in 0..max_parallel.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, cell)) = jobs.get(index) else { break };
                    let result = ensure_model(key, cell, run_dir, bars.as_ref()).map_err(|e| NoModel(format!("{e:#}")));
                    results.lock().expect("results lock").insert(key.clone(), result);
                }
            });
        }
    });
    results.into_inner().expect("results lock")
}

/// The model of RL cell `cell` under `run_dir`: reused when its folder is complete, else trained now.
fn ensure_model(key: &str, cell: &Cell, run_dir: &Path, bars: Option<&MultiProgress>) -> Result<PathBuf> {
    let rl = rl_config(&cell.config).ok_or_else(|| anyhow!("cell {} has no RL policy", cell.id))?;
    let label = format!("{}.{}.s{}", cell.config.app.name, rl.name, cell.config.seed);
    let dir = model_dir(run_dir, key);
    if is_complete(&dir) {
        eprintln!("model {key} ({label}): reusing {}", dir.display());
        return Ok(dir.join("model"));
    }
    let bar = bars.map(|m| m.add(training_bar(rl.training.budget, &label)));
    let outcome = train_into(&rl.training, &cell.config.app, cell.config.seed, &dir, bar.as_ref());
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match &outcome {
        Ok(_) => eprintln!("model {key} ({label}): trained, {}", dir.display()),
        Err(e) => eprintln!("model {key} ({label}): training FAILED: {e:#}"),
    }
    outcome
}

/// The training step as a matrix run schedules it: one preparation per model, run before the first of its cells
/// starts (while other cells run), its result shared by the group.
pub struct TrainModels;

impl Prepare for TrainModels {
    fn key(&self, cell: &Cell) -> Option<String> {
        model_key(&cell.config)
    }

    fn prepare(&self, key: &str, cells: &[&Cell], run_dir: &Path) -> Result<()> {
        let cell = cells.first().ok_or_else(|| anyhow!("model {key} has no cells"))?;
        let bars = std::io::stderr().is_terminal().then(MultiProgress::new);
        ensure_model(key, cell, run_dir, bars.as_ref()).map(|_| ())
    }
}

/// The cell with the checkpoint its run trained (`<run>/models/<key>/`) filled in; what `orch cell` does with an
/// RL cell read from its config.yaml. A non-RL cell is returned unchanged.
pub fn attach_trained(cell: &Cell, run_dir: &Path) -> Result<Cell> {
    let Some(key) = model_key(&cell.config) else { return Ok(cell.clone()) };
    let dir = model_dir(run_dir, &key);
    let prepared: Prepared = if is_complete(&dir) {
        [(key.clone(), Ok(dir.join("model")))].into()
    } else {
        let missing = format!("{} holds no complete model: it was not trained", dir.display());
        [(key.clone(), Err(NoModel(missing)))].into()
    };
    attach(cell, &prepared)
}

fn training_bar(budget: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(budget);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} env steps {per_sec} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// Trains into a temporary folder beside `dir`, then renames it into place.
fn train_into(
    training: &TrainingConfig,
    app: &AppModel,
    seed: u64,
    dir: &Path,
    bar: Option<&ProgressBar>,
) -> Result<PathBuf> {
    let parent = dir.parent().expect("models/<key>");
    let name = dir.file_name().expect("a key").to_string_lossy();
    let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).with_context(|| format!("removing {}", temp.display()))?;
    }
    let outcome = train(training, app, seed, &temp, bar);
    if let Err(e) = outcome {
        // Keep what the failed run wrote (its training.csv says how far it got), under a name never reused.
        let _ = std::fs::rename(&temp, parent.join(format!(".{name}.failed-{}", std::process::id())));
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing the incomplete {}", dir.display()))?;
    }
    std::fs::rename(&temp, dir).with_context(|| format!("moving the model into {}", dir.display()))?;
    Ok(dir.join("model"))
}

/// The cell with its checkpoint filled in (a non-RL cell unchanged), after checking the checkpoint loads for the
/// cell's app. Fails with the training's error if its model could not be trained.
pub fn attach(cell: &Cell, prepared: &Prepared) -> Result<Cell> {
    let Some(key) = model_key(&cell.config) else { return Ok(cell.clone()) };
    let checkpoint = match prepared.get(&key) {
        Some(Ok(path)) => path.clone(),
        Some(Err(message)) => return Err(anyhow!("training model {key} failed: {message}")),
        None => return Err(anyhow!("model {key} was not prepared")),
    };
    RlPolicy::from_checkpoint(&checkpoint, &cell.config.app)
        .with_context(|| format!("loading the checkpoint of model {key}"))?;
    let mut cell = cell.clone();
    if let ResolvedPolicy::Rl(rl) = Arc::make_mut(&mut cell.config.policy) {
        rl.checkpoint = Some(checkpoint);
    }
    Ok(cell)
}

/// Copies the model's training.csv into an RL cell's folder.
pub fn copy_training_csv(config: &CellConfig, cell_dir: &Path) -> Result<()> {
    let Some(checkpoint) = rl_config(config).and_then(|rl| rl.checkpoint.as_ref()) else { return Ok(()) };
    let source = checkpoint.with_file_name("training.csv");
    std::fs::copy(&source, cell_dir.join(crate::run_folder::TRAINING_CSV))
        .with_context(|| format!("copying {} into {}", source.display(), cell_dir.display()))?;
    Ok(())
}

/// The policy of an RL cell whose checkpoint [`attach`] filled in and checked.
pub fn build_policy(rl: &RlPolicyConfig, app: &AppModel) -> RlPolicy {
    let checkpoint = rl.checkpoint.as_ref().expect("an RL cell runs after its model was prepared and attached");
    RlPolicy::from_checkpoint(checkpoint, app).expect("the checkpoint was checked when it was attached")
}
