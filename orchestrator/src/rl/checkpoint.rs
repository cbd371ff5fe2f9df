//! Checkpoints: the weights in safetensors (`NAME.safetensors`) and what is needed to use them in JSON
//! (`NAME.json`: model type and shape, the learner's hyperparameters, environment config with the feature layout, the
//! service order and call-graph edges of the training app).
//!
//! Each file is written to a temporary file in the same folder and renamed over the old one, so a crash or an
//! error never leaves a half-written checkpoint behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::rl::actor_critic::ActorCritic;
use crate::rl::env::EnvConfig;
use crate::rl::gnn::{GnnActorCritic, GnnConfig, GraphTensors};
use crate::rl::graph::NormalizedAdjacency;
use crate::rl::layers::Device;
use crate::rl::mlp::{MlpActorCritic, MlpConfig};
use crate::settings::rl::AlgoConfig;

/// The model's type and shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    Gnn(GnnConfig),
    Mlp(MlpConfig),
}

impl ModelSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            ModelSpec::Gnn(_) => "gnn",
            ModelSpec::Mlp(_) => "mlp",
        }
    }

    /// Moves per service the model's action head scores.
    pub fn actions(&self) -> usize {
        match self {
            ModelSpec::Gnn(c) => c.actions,
            ModelSpec::Mlp(c) => c.actions,
        }
    }

    /// Inputs the model reads: per node for the GNN, per sample for the MLP.
    pub fn input_size(&self) -> usize {
        match self {
            ModelSpec::Gnn(c) => c.inputs,
            ModelSpec::Mlp(c) => c.inputs,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    pub model: ModelSpec,
    /// The learner and its hyperparameters.
    pub algorithm: AlgoConfig,
    pub env: EnvConfig,
    pub app: String,
    /// Services of the training app, in the order of the model's nodes.
    pub services: Vec<String>,
    pub edges: Vec<(usize, usize)>,
    pub seed: u64,
    pub iterations: usize,
    /// Environment steps of training.
    pub env_steps: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: checkpoint holds a {found} model, expected a {expected} model")]
    ModelType { path: PathBuf, expected: String, found: String },
    #[error("{path}: checkpoint's model reads {found} inputs, this environment gives {expected}")]
    FeatureSize { path: PathBuf, expected: usize, found: usize },
}

/// `NAME.safetensors` and `NAME.json` beside each other.
pub fn paths(base: &Path) -> (PathBuf, PathBuf) {
    (base.with_extension("safetensors"), base.with_extension("json"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&temp, bytes).map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

/// Saves `model` and `meta` at `base` (`base.safetensors`, `base.json`).
pub fn save(base: &Path, model: &ActorCritic, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
    let (weights_path, meta_path) = paths(base);
    let format = |message: String| CheckpointError::Format { path: weights_path.clone(), message };
    let params: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .parameters()
        .into_iter()
        .map(|(name, p)| (name, p.shape(), p.values().iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::new();
    for (name, shape, bytes) in &params {
        views.push((
            name.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| format(e.to_string()))?,
        ));
    }
    let info = HashMap::from([("format".to_string(), "orch-rl".to_string())]);
    let bytes = safetensors::serialize(views, &Some(info)).map_err(|e| format(e.to_string()))?;
    let json = serde_json::to_vec_pretty(meta).map_err(|e| format(e.to_string()))?;
    write_atomically(&weights_path, &bytes)?;
    write_atomically(&meta_path, &json)
}

/// Reads a checkpoint's JSON.
pub fn load_meta(base: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let (_, meta_path) = paths(base);
    let text = std::fs::read(&meta_path).map_err(|source| CheckpointError::Io { path: meta_path.clone(), source })?;
    serde_json::from_slice(&text).map_err(|e| CheckpointError::Format { path: meta_path, message: e.to_string() })
}

/// Loads a checkpoint for a model of type `expected_type` ("gnn" or "mlp") reading `expected_inputs` inputs,
/// for an app with these `edges` among `num_nodes` services (a GNN runs on any topology; an MLP only on its own).
pub fn load(
    base: &Path,
    expected_type: &str,
    expected_inputs: usize,
    num_nodes: usize,
    edges: &[(usize, usize)],
) -> Result<(ActorCritic, CheckpointMeta), CheckpointError> {
    let meta = load_meta(base)?;
    let (weights_path, _) = paths(base);
    if meta.model.type_name() != expected_type {
        return Err(CheckpointError::ModelType {
            path: weights_path,
            expected: expected_type.to_string(),
            found: meta.model.type_name().to_string(),
        });
    }
    if meta.model.input_size() != expected_inputs {
        return Err(CheckpointError::FeatureSize {
            path: weights_path,
            expected: expected_inputs,
            found: meta.model.input_size(),
        });
    }
    let format = |message: String| CheckpointError::Format { path: weights_path.clone(), message };
    if meta.model.actions() != meta.env.actions.len() {
        return Err(format(format!(
            "the model scores {} moves per service, its action space {:?} has {}",
            meta.model.actions(),
            meta.env.actions,
            meta.env.actions.len()
        )));
    }
    let dev = Device::default();
    let mut model = match &meta.model {
        ModelSpec::Gnn(config) => ActorCritic::Gnn(
            Box::new(GnnActorCritic::new(&dev, config.clone(), 0)),
            GraphTensors::new(&dev, &NormalizedAdjacency::new(num_nodes, edges)),
        ),
        ModelSpec::Mlp(config) => {
            if config.nodes != num_nodes {
                return Err(format(format!("MLP built for {} services, this app has {num_nodes}", config.nodes)));
            }
            ActorCritic::Mlp(MlpActorCritic::new(&dev, config.clone(), 0))
        }
    };
    let bytes =
        std::fs::read(&weights_path).map_err(|source| CheckpointError::Io { path: weights_path.clone(), source })?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let mut values = Vec::new();
    for (name, param) in model.parameters() {
        let view = tensors.tensor(&name).map_err(|e| format(format!("tensor {name}: {e}")))?;
        if view.dtype() != Dtype::F32 || view.shape() != param.shape().as_slice() {
            return Err(format(format!(
                "tensor {name}: {:?} {:?}, expected F32 {:?}",
                view.dtype(),
                view.shape(),
                param.shape()
            )));
        }
        values.push(
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<f32>>(),
        );
    }
    for (mut param, v) in model.parameters_mut().into_iter().zip(&values) {
        param.set(v);
    }
    Ok((model, meta))
}
