//! Training checkpoints on disk: `RUN/checkpoints/step-NNNNNNNN/` holds a Hugging Face model
//! directory plus `trainer_state.json` (step, config) and `optimizer.safetensors` (AdamW
//! moments). Each is written atomically by [`checkpoint::save`](crate::model::checkpoint::save);
//! only the newest few are kept.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::config::TrainConfig;
use super::optim::{AdamW, AdamWConfig};
use crate::model::checkpoint::{self, LoadedModel, SaveOptions};

/// Trainer state file inside a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
/// Optimizer moments inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// What a resumed run needs besides weights and moments (`C`: the run's config type).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState<C = TrainConfig> {
    /// Optimizer steps taken.
    pub step: u64,
    /// The config of the run (a resume must use the same).
    pub config: C,
}

impl<C: DeserializeOwned> TrainerState<C> {
    /// Reads `dir/trainer_state.json`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The directory of the checkpoint after `step` optimizer steps.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:08}"))
}

fn checkpoints(run_dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let root = run_dir.join("checkpoints");
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
        let path = entry?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(step) = step.filter(|_| path.join(STATE_FILE).exists()) {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint of a run, if any.
pub fn latest_checkpoint(run_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    Ok(checkpoints(run_dir)?.pop().map(|(_, p)| p))
}

/// Deletes all but the newest `keep` checkpoints.
pub fn prune_checkpoints(run_dir: &Path, keep: usize) -> anyhow::Result<()> {
    let all = checkpoints(run_dir)?;
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the checkpoint after `optimizer.step` steps (weights, tokenizer copied from
/// `tokenizer_from`, trainer state, optimizer moments and `extra` files), atomically, keeping
/// the newest two.
pub fn save_checkpoint<C: Serialize>(
    run_dir: &Path,
    loaded: &LoadedModel,
    optimizer: &AdamW,
    tokenizer_from: &Path,
    config: &C,
    extra: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let trainer_state = TrainerState {
        step: optimizer.step,
        config,
    };
    let mut extra_files = vec![
        (
            STATE_FILE.into(),
            serde_json::to_vec_pretty(&trainer_state)?,
        ),
        (
            OPTIMIZER_FILE.into(),
            checkpoint::safetensors_bytes(&optimizer.state_tensors())?,
        ),
    ];
    extra_files.extend(extra);
    let opts = SaveOptions {
        tokenizer_from: Some(tokenizer_from.to_path_buf()),
        extra_files,
        ..SaveOptions::default()
    };
    let dir = checkpoint_dir(run_dir, optimizer.step);
    checkpoint::save(&dir, &loaded.vars, &loaded.config, &opts)?;
    prune_checkpoints(run_dir, 2)
}

/// The step of the checkpoint in `dir`, after checking it was trained with `config` (a resumed
/// run must use the same one).
pub fn checked_step<C: DeserializeOwned + PartialEq>(
    dir: &Path,
    config: &C,
) -> anyhow::Result<u64> {
    let saved: TrainerState<C> = TrainerState::read(dir)?;
    anyhow::ensure!(
        saved.config == *config,
        "{}: the checkpoint was trained with a different config; resume with the same one",
        dir.display()
    );
    Ok(saved.step)
}

/// AdamW over `vars` with the moments saved in `dir` after `step` steps.
pub fn restore_optimizer(
    dir: &Path,
    vars: &nn::VarStore,
    adamw: AdamWConfig,
    step: u64,
) -> anyhow::Result<AdamW> {
    let mut optimizer = AdamW::new(named_params(vars), adamw);
    let moments = Tensor::read_safetensors(dir.join(OPTIMIZER_FILE))
        .with_context(|| format!("reading the optimizer state in {}", dir.display()))?;
    optimizer
        .load_state(&moments, step)
        .map_err(anyhow::Error::msg)?;
    eprintln!("[t3d] resuming from {} (step {step})", dir.display());
    Ok(optimizer)
}

/// Loads the named tensors of a safetensors file into `vars` (every variable must be present).
pub fn load_weights_into(vars: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let tensors =
        Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    let by_name: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    tch::no_grad(|| {
        for (name, mut var) in vars.variables() {
            let src = by_name
                .get(&name)
                .with_context(|| format!("{}: missing tensor {name}", path.display()))?;
            var.copy_(src);
        }
        Ok(())
    })
}

/// Starts a run directory afresh: drops its checkpoints and the named log files (other files,
/// such as rolled-out trajectories, stay).
pub fn clear_run(run_dir: &Path, logs: &[&str]) -> anyhow::Result<()> {
    let checkpoints = run_dir.join("checkpoints");
    if checkpoints.exists() {
        std::fs::remove_dir_all(&checkpoints)
            .with_context(|| format!("removing {}", checkpoints.display()))?;
    }
    for log in logs {
        let path = run_dir.join(log);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The trainable parameters of `vars`, sorted by name (tied weights appear once).
pub fn named_params(vars: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}
