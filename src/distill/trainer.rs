//! The T3D trajectory self-distillation trainer behind `t3d distill` (spec §5).
//!
//! The student starts as a copy of the teacher; a frozen reference (also the teacher at first)
//! scores the same noisy batch. Per micro-batch: one reference forward (no grad) and one student
//! forward, log-softmax in f32 at the loss rows only (spec bug §8.11). The reference becomes a
//! copy of the student every `round_interval` optimizer steps (self-play rounds). Optimisation,
//! accumulation, clipping and atomic resumable checkpoints are those of the base trainer; the
//! reference weights travel in each checkpoint so a resumed run continues its round exactly.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::batch::{collate_distill, DistillBatch, DistillData};
use super::config::{DistillConfig, Objective};
use super::ddo::{ddo_loss, fake_tokens, sequence_log_likelihood, weighted_nll};
use super::log::{Metrics, RunLog};
use super::rollout::Trajectory;
use crate::model::checkpoint::{self, LoadedModel, SaveOptions};
use crate::model::qwen3::ForwardInput;
use crate::model::{Sdar, SdarConfig, TextTokenizer};
use crate::train::optim::AdamW;
use crate::train::state;

/// Reference weights inside a distillation checkpoint.
pub const REFERENCE_FILE: &str = "reference.safetensors";

/// Where a distillation run reads and writes.
#[derive(Debug, Clone)]
pub struct DistillOptions {
    /// The teacher checkpoint (student and first reference start from it).
    pub teacher: PathBuf,
    /// Checkpoints and the JSONL log.
    pub run_dir: PathBuf,
    /// Continue from the newest checkpoint in `run_dir`.
    pub resume: bool,
    /// Device to train on.
    pub device: Device,
    /// Draw a progress bar.
    pub progress: bool,
    /// Stop (with a checkpoint, without writing `out`) after this many optimizer steps.
    pub stop_after: Option<u64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct DistillReport {
    /// Optimizer steps taken in this invocation.
    pub steps_run: u64,
    /// Mean total loss of the last logging window.
    pub final_loss: f64,
    /// Wall time of the training loop.
    pub seconds: f64,
    /// Whether the run reached its last step (false when stopped early).
    pub finished: bool,
}

/// The models of a run: the student with its optimizer, and the reference (when used).
struct Models {
    student: LoadedModel,
    reference: Option<LoadedModel>,
    optimizer: AdamW,
    start: u64,
}

/// Trains the student on `trajectories`; returns the report and, when the run reached its last
/// step, the trained student (for evaluation and [`save_student`]).
pub fn distill(
    cfg: &DistillConfig,
    trajectories: &[Trajectory],
    opts: &DistillOptions,
) -> anyhow::Result<(DistillReport, Option<LoadedModel>)> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    check_trajectories(cfg, trajectories)?;
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("creating {}", opts.run_dir.display()))?;
    if !opts.resume {
        state::clear_run(&opts.run_dir, &[super::log::LOG_FILE])?;
    }
    let mut models = initial_models(cfg, opts)?;
    let tokenizer = TextTokenizer::from_dir(&opts.teacher, &models.student.config)?;
    let data = DistillData::new(
        trajectories,
        cfg,
        tokenizer.mask_id,
        tokenizer.eos_id,
        tokenizer.ordinary_ids(),
    );
    let mut log = RunLog::open(&opts.run_dir, cfg.steps, models.start, opts.progress)?;
    let end = opts.stop_after.map_or(cfg.steps, |n| n.min(cfg.steps));
    for step in models.start..end {
        let metrics = optimizer_step(cfg, &data, &mut models, step)?;
        let lr = cfg.schedule().at(step + 1);
        log.record(step + 1, lr, &metrics, cfg.log_every)?;
        refresh_reference(cfg, &mut models, step + 1)?;
        if cfg.save_every > 0 && (step + 1) % cfg.save_every == 0 && step + 1 < end {
            save_checkpoint(cfg, &models, opts)?;
        }
    }
    save_checkpoint(cfg, &models, opts)?;
    let (final_loss, seconds) = log.finish();
    let finished = end == cfg.steps;
    let report = DistillReport {
        steps_run: end.saturating_sub(models.start),
        final_loss,
        seconds,
        finished,
    };
    Ok((report, finished.then_some(models.student)))
}

/// Writes the trained student to `out` with `extra_files` (evaluation, config), atomically.
pub fn save_student(
    student: &LoadedModel,
    teacher: &Path,
    out: &Path,
    extra_files: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let opts = SaveOptions {
        tokenizer_from: Some(teacher.to_path_buf()),
        extra_files,
        ..SaveOptions::default()
    };
    checkpoint::save(out, &student.vars, &student.config, &opts)?;
    Ok(())
}

fn check_trajectories(cfg: &DistillConfig, trajectories: &[Trajectory]) -> anyhow::Result<()> {
    anyhow::ensure!(!trajectories.is_empty(), "no trajectories to train on");
    if let Some(t) = trajectories
        .iter()
        .find(|t| t.block_size != cfg.rollout.block_size)
    {
        anyhow::bail!(
            "trajectories were rolled out with block size {}, the config says rollout.block_size = {}",
            t.block_size,
            cfg.rollout.block_size
        );
    }
    Ok(())
}

/// The student's config: the teacher's, served by default with few steps per block.
fn student_config(cfg: &DistillConfig, teacher: &SdarConfig) -> SdarConfig {
    let mut config = teacher.clone();
    config.extra.insert(
        "t3d_steps_per_block".into(),
        cfg.serve_steps_per_block.into(),
    );
    config
        .extra
        .insert("t3d_objective".into(), cfg.objective.as_str().into());
    config
}

fn initial_models(cfg: &DistillConfig, opts: &DistillOptions) -> anyhow::Result<Models> {
    let latest = if opts.resume {
        state::latest_checkpoint(&opts.run_dir)?
    } else {
        None
    };
    let mut student = checkpoint::load(&opts.teacher, opts.device, Kind::Float)?;
    student.config = student_config(cfg, &student.config);
    let reference = if cfg.objective.uses_reference() {
        Some(checkpoint::load(&opts.teacher, opts.device, Kind::Float)?)
    } else {
        None
    };
    let Some(dir) = latest else {
        let optimizer = AdamW::new(state::named_params(&student.vars), cfg.adamw);
        return Ok(Models {
            student,
            reference,
            optimizer,
            start: 0,
        });
    };
    let step = state::checked_step(&dir, cfg)?;
    state::load_weights_into(&student.vars, &dir.join("model.safetensors"))?;
    if let Some(reference) = reference.as_ref() {
        state::load_weights_into(&reference.vars, &dir.join(REFERENCE_FILE))?;
    }
    let optimizer = state::restore_optimizer(&dir, &student.vars, cfg.adamw, step)?;
    Ok(Models {
        student,
        reference,
        optimizer,
        start: step,
    })
}

fn refresh_reference(cfg: &DistillConfig, models: &mut Models, step: u64) -> anyhow::Result<()> {
    if cfg.round_interval == 0 || !step.is_multiple_of(cfg.round_interval) {
        return Ok(());
    }
    if let Some(reference) = models.reference.as_mut() {
        reference
            .vars
            .copy(&models.student.vars)
            .context("copying the student into the reference")?;
    }
    Ok(())
}

fn save_checkpoint(
    cfg: &DistillConfig,
    models: &Models,
    opts: &DistillOptions,
) -> anyhow::Result<()> {
    let extra = match &models.reference {
        Some(reference) => vec![(
            REFERENCE_FILE.to_string(),
            checkpoint::safetensors_bytes(&state::named_params(&reference.vars))?,
        )],
        None => Vec::new(),
    };
    state::save_checkpoint(
        &opts.run_dir,
        &models.student,
        &models.optimizer,
        &opts.teacher,
        cfg,
        extra,
    )
}

/// Accumulates `grad_accum` micro-batches, clips and steps; returns the step's mean metrics.
fn optimizer_step(
    cfg: &DistillConfig,
    data: &DistillData,
    models: &mut Models,
    step: u64,
) -> anyhow::Result<Metrics> {
    let mut metrics = Metrics::default();
    let block = cfg.train_block_size();
    for micro in 0..cfg.grad_accum as u64 {
        let items = data.batch(step, micro);
        let batch = collate_distill(&items, block, data.pad_id(), models.student.model.device());
        let reference = models.reference.as_ref().map(|r| &r.model);
        let (loss, m) = micro_batch_loss(cfg, &models.student.model, reference, &batch);
        (&loss / cfg.grad_accum as f64).backward();
        metrics.add(&m, 1.0 / cfg.grad_accum as f64);
    }
    models.optimizer.clip_grad_norm(cfg.max_grad_norm);
    models.optimizer.step(cfg.schedule().at(step + 1));
    let loss = metrics.get("loss");
    anyhow::ensure!(loss.is_finite(), "loss became {loss} at step {}", step + 1);
    Ok(metrics)
}

/// Log-probabilities (f32) of `model` at the flat `rows` of the batch.
fn row_log_probs(model: &Sdar, batch: &DistillBatch, rows: &Tensor) -> Tensor {
    let input = ForwardInput::new(&batch.ids, &batch.positions, &batch.mask);
    let hidden = model
        .hidden_states(&input)
        .flatten(0, 1)
        .index_select(0, rows);
    model
        .logits(&hidden)
        .to_kind(Kind::Float)
        .log_softmax(-1, Kind::Float)
}

/// The objective's loss on one batch, with its components for the log (read from the device
/// in one transfer).
pub fn micro_batch_loss(
    cfg: &DistillConfig,
    student: &Sdar,
    reference: Option<&Sdar>,
    batch: &DistillBatch,
) -> (Tensor, Metrics) {
    let mut terms: Vec<(&'static str, Tensor)> = Vec::new();
    let log_probs = row_log_probs(student, batch, &batch.rows);
    let masked_targets = batch.targets.index_select(0, &batch.masked);
    let loss = if cfg.objective == Objective::Sft {
        -log_probs
            .index_select(0, &batch.masked)
            .gather(1, &masked_targets.unsqueeze(1), false)
            .mean(Kind::Float)
    } else {
        let path = weighted_nll(&log_probs, &batch.targets, &batch.path_weights);
        terms.push(("path_loss", path.detach()));
        let ddo = match (cfg.objective, reference) {
            (Objective::T3d | Objective::Ddo, Some(reference)) if batch.samples > 0 => {
                let real = &masked_targets;
                Some(ddo_terms(
                    cfg, &log_probs, reference, batch, real, &mut terms,
                ))
            }
            _ => None,
        };
        match (cfg.objective, ddo) {
            (Objective::T3d, Some(ddo)) => ddo + &path * cfg.lambda_path,
            (Objective::Ddo, Some(ddo)) => ddo,
            _ => path,
        }
    };
    terms.push(("loss", loss.detach()));
    (loss, Metrics::from_scalars(&terms))
}

/// `L_real + L_fake` (spec §5.3), recording the four mean log-likelihoods.
fn ddo_terms(
    cfg: &DistillConfig,
    log_probs: &Tensor,
    reference: &Sdar,
    batch: &DistillBatch,
    real: &Tensor,
    terms: &mut Vec<(&'static str, Tensor)>,
) -> Tensor {
    let (ref_real, ref_fake, fake) = tch::no_grad(|| {
        let rows = batch.rows.index_select(0, &batch.masked);
        let ref_lp = row_log_probs(reference, batch, &rows);
        let fake = fake_tokens(&ref_lp, cfg.reference_temp);
        let ll = |z: &Tensor| sequence_log_likelihood(&ref_lp, z, &batch.owner, batch.samples);
        (ll(real), ll(&fake), fake)
    });
    let student_lp = log_probs.index_select(0, &batch.masked);
    let ll = |z: &Tensor| sequence_log_likelihood(&student_lp, z, &batch.owner, batch.samples);
    let (theta_real, theta_fake) = (ll(real), ll(&fake));
    let (loss_real, loss_fake) = ddo_loss(
        &theta_real,
        &theta_fake,
        &ref_real,
        &ref_fake,
        cfg.alpha,
        cfg.beta,
    );
    let mean = |t: &Tensor| t.detach().mean(Kind::Float);
    terms.extend([
        ("loss_real", loss_real.detach()),
        ("loss_fake", loss_fake.detach()),
        ("ll_theta_real", mean(&theta_real)),
        ("ll_theta_fake", mean(&theta_fake)),
        ("ll_ref_real", mean(&ref_real)),
        ("ll_ref_fake", mean(&ref_fake)),
        (
            "fake_is_teacher",
            mean(&fake.eq_tensor(real).to_kind(Kind::Float)),
        ),
    ]);
    loss_real + loss_fake
}
