//! The block-diffusion (SDAR-style) supervised trainer behind `t3d train`.
//!
//! Loss: cross-entropy of the clean token at every masked noisy-stream position, averaged over
//! all masked tokens of the optimizer step (no 1/t weighting: each block's mask ratio is drawn
//! uniformly, so short and long corruptions are seen equally often). Accumulation averages
//! micro-batch losses, clips the global norm, steps, then zeroes the gradients.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::batch::{collate, TrainBatch};
use super::config::TrainConfig;
use super::data::ArithData;
use super::optim::AdamW;
use super::state;
use crate::model::char_tokenizer::write_char_tokenizer;
use crate::model::checkpoint::{self, LoadedModel, SaveOptions};
use crate::model::qwen3::ForwardInput;
use crate::model::{Sdar, SdarConfig, TextTokenizer};

/// Where a run writes and how it runs.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Final model directory (Hugging Face layout), replaced atomically at the end.
    pub out: PathBuf,
    /// Checkpoints, the JSONL log and the tokenizer staging area.
    pub run_dir: PathBuf,
    /// Continue from the newest checkpoint in `run_dir` when there is one.
    pub resume: bool,
    /// Device to train on.
    pub device: Device,
    /// Draw a progress bar.
    pub progress: bool,
    /// Start from this model's weights (fresh optimizer) instead of a random init: a second
    /// stage with its own schedule. Its shape must match the config's.
    pub init_from: Option<PathBuf>,
    /// Stop (with a checkpoint, without writing `out`) after this many optimizer steps in
    /// total: a budgeted or interrupted run that `resume` continues.
    pub stop_after: Option<u64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Optimizer steps taken in this invocation.
    pub steps_run: u64,
    /// Mean loss of the last logging window.
    pub final_loss: f64,
    /// Wall time of this invocation.
    pub seconds: f64,
    /// Parameters of the model.
    pub parameters: i64,
}

/// Mean cross-entropy over the batch's loss rows (logits in f32).
pub fn masked_cross_entropy(model: &Sdar, batch: &TrainBatch) -> Tensor {
    let input = ForwardInput::new(&batch.ids, &batch.positions, &batch.mask);
    let hidden = model.hidden_states(&input).flatten(0, 1);
    let rows = hidden.index_select(0, &batch.loss_rows);
    model
        .logits(&rows)
        .to_kind(Kind::Float)
        .cross_entropy_for_logits(&batch.targets)
}

/// The model config a run of `cfg` trains (the task is recorded for `t3d eval`).
pub fn model_config(cfg: &TrainConfig) -> anyhow::Result<SdarConfig> {
    let mut model_cfg = cfg.model.sdar_config(cfg.block_size);
    model_cfg
        .extra
        .insert("t3d_task".into(), serde_json::to_value(&cfg.task)?);
    model_cfg.validate()?;
    Ok(model_cfg)
}

/// Runs (or resumes) the training described by `cfg`.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> anyhow::Result<TrainReport> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let tok_dir = opts.run_dir.join("tokenizer");
    std::fs::create_dir_all(&tok_dir).with_context(|| format!("creating {}", tok_dir.display()))?;
    write_char_tokenizer(&tok_dir)?;
    let model_cfg = model_config(cfg)?;
    let tokenizer = TextTokenizer::from_dir(&tok_dir, &model_cfg)?;
    let (loaded, mut optimizer, start) = initial_state(cfg, &model_cfg, opts)?;
    let data = ArithData::new(&cfg.task, &tokenizer, cfg.block_size, cfg.seed);
    let mut run = Run::new(cfg, opts, start, model_cfg.num_parameters())?;
    let end = opts.stop_after.map_or(cfg.steps, |n| n.min(cfg.steps));
    for step in start..end {
        let (loss, tokens) = optimizer_step(cfg, &loaded.model, &data, &mut optimizer, step)?;
        run.record(step + 1, loss, tokens, &optimizer)?;
        let last = step + 1 == end;
        if cfg.save_every > 0 && (step + 1) % cfg.save_every == 0 && !last {
            save_checkpoint(cfg, &loaded, &optimizer, &tok_dir, &opts.run_dir)?;
        }
    }
    if end < cfg.steps {
        save_checkpoint(cfg, &loaded, &optimizer, &tok_dir, &opts.run_dir)?;
        return Ok(run.finish());
    }
    let save = SaveOptions {
        tokenizer_from: Some(tok_dir.clone()),
        ..SaveOptions::default()
    };
    checkpoint::save(&opts.out, &loaded.vars, &loaded.config, &save)?;
    save_checkpoint(cfg, &loaded, &optimizer, &tok_dir, &opts.run_dir)?;
    Ok(run.finish())
}

/// A fresh model, or the newest checkpoint of the run with its optimizer state.
fn initial_state(
    cfg: &TrainConfig,
    model_cfg: &SdarConfig,
    opts: &TrainOptions,
) -> anyhow::Result<(LoadedModel, AdamW, u64)> {
    let latest = if opts.resume {
        state::latest_checkpoint(&opts.run_dir)?
    } else {
        None
    };
    let Some(dir) = latest else {
        let loaded = match &opts.init_from {
            Some(init) => initial_weights(init, model_cfg, opts.device)?,
            None => checkpoint::random(model_cfg, opts.device, Kind::Float, cfg.seed as i64),
        };
        let optimizer = AdamW::new(state::named_params(&loaded.vars), cfg.adamw);
        return Ok((loaded, optimizer, 0));
    };
    let step = state::checked_step(&dir, cfg)?;
    let loaded = checkpoint::load(&dir, opts.device, Kind::Float)?;
    let optimizer = state::restore_optimizer(&dir, &loaded.vars, cfg.adamw, step)?;
    Ok((loaded, optimizer, step))
}

/// Weights of an earlier stage, checked against the shape this run trains.
fn initial_weights(
    dir: &Path,
    model_cfg: &SdarConfig,
    device: Device,
) -> anyhow::Result<LoadedModel> {
    let mut loaded = checkpoint::load(dir, device, Kind::Float)?;
    let mut theirs = loaded.config.clone();
    theirs.extra = model_cfg.extra.clone();
    anyhow::ensure!(
        theirs == *model_cfg,
        "{}: its config.json does not match the model this config trains",
        dir.display()
    );
    loaded.config = model_cfg.clone();
    Ok(loaded)
}

/// Accumulates `grad_accum` micro-batches, clips and steps; returns (mean loss, tokens).
fn optimizer_step(
    cfg: &TrainConfig,
    model: &Sdar,
    data: &ArithData,
    optimizer: &mut AdamW,
    step: u64,
) -> anyhow::Result<(f64, usize)> {
    let mut loss_sum = 0.0;
    let mut tokens = 0;
    for micro in 0..cfg.grad_accum as u64 {
        let items = data.batch(step, micro, cfg.batch_size)?;
        let batch = collate(&items, cfg.block_size, data.pad_id(), model.device());
        let loss = masked_cross_entropy(model, &batch);
        (&loss / cfg.grad_accum as f64).backward();
        loss_sum += loss.double_value(&[]);
        tokens += batch.tokens;
    }
    optimizer.clip_grad_norm(cfg.max_grad_norm);
    optimizer.step(cfg.schedule().at(step + 1));
    let loss = loss_sum / cfg.grad_accum as f64;
    anyhow::ensure!(loss.is_finite(), "loss became {loss} at step {}", step + 1);
    Ok((loss, tokens))
}

fn save_checkpoint(
    cfg: &TrainConfig,
    loaded: &LoadedModel,
    optimizer: &AdamW,
    tok_dir: &Path,
    run_dir: &Path,
) -> anyhow::Result<()> {
    state::save_checkpoint(run_dir, loaded, optimizer, tok_dir, cfg, Vec::new())
}

/// Logging, timing and the progress bar of one invocation.
struct Run {
    log: std::fs::File,
    bar: indicatif::ProgressBar,
    started: Instant,
    window_start: Instant,
    window: (f64, u64, usize),
    last_loss: f64,
    first_step: u64,
    log_every: u64,
    schedule: super::optim::LrSchedule,
    parameters: i64,
}

impl Run {
    fn new(
        cfg: &TrainConfig,
        opts: &TrainOptions,
        start: u64,
        parameters: i64,
    ) -> anyhow::Result<Self> {
        let path = opts.run_dir.join("train_log.jsonl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let bar = progress_bar(cfg.steps, start, opts.progress);
        Ok(Self {
            log,
            bar,
            started: Instant::now(),
            window_start: Instant::now(),
            window: (0.0, 0, 0),
            last_loss: f64::NAN,
            first_step: start,
            log_every: cfg.log_every.max(1),
            schedule: cfg.schedule(),
            parameters,
        })
    }

    fn record(
        &mut self,
        step: u64,
        loss: f64,
        tokens: usize,
        optimizer: &AdamW,
    ) -> anyhow::Result<()> {
        self.window.0 += loss;
        self.window.1 += 1;
        self.window.2 += tokens;
        self.bar.set_position(step);
        if !step.is_multiple_of(self.log_every) {
            return Ok(());
        }
        let (sum, count, tokens) = std::mem::take(&mut self.window);
        self.last_loss = sum / count as f64;
        let secs = self.window_start.elapsed().as_secs_f64();
        self.window_start = Instant::now();
        let line = serde_json::json!({
            "step": step, "loss": self.last_loss, "lr": self.schedule.at(step),
            "tokens_per_s": tokens as f64 / secs, "optimizer_step": optimizer.step,
            "elapsed_s": self.started.elapsed().as_secs_f64(),
        });
        writeln!(self.log, "{line}")?;
        self.bar.set_message(format!(
            "loss {:.4} lr {:.2e}",
            self.last_loss,
            self.schedule.at(step)
        ));
        Ok(())
    }

    fn finish(mut self) -> TrainReport {
        if self.window.1 > 0 {
            self.last_loss = self.window.0 / self.window.1 as f64;
        }
        self.bar.finish();
        TrainReport {
            steps_run: self.bar.position() - self.first_step,
            final_loss: self.last_loss,
            seconds: self.started.elapsed().as_secs_f64(),
            parameters: self.parameters,
        }
    }
}

/// A training progress bar over `total` steps at `start` (hidden unless `show`).
pub fn progress_bar(total: u64, start: u64, show: bool) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed}<{eta} {msg}")
            .expect("static progress template"),
    );
    bar.set_position(start);
    bar
}
