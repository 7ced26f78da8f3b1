//! The distillation configuration (`t3d distill --config FILE.json --set key=value`): rollout,
//! noise, losses, self-play and optimisation. Every field has a default, so a file names only
//! what it changes; `--set` edits any field by its dotted path.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::noise::NoiseConfig;
use super::rollout::RolloutConfig;
use crate::train::optim::{AdamWConfig, LrSchedule};

/// What the student is trained to minimise (the same trainer runs all four, for a fair
/// comparison at equal budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// DDO plus `lambda_path` × path loss (T3D).
    T3d,
    /// DDO only.
    Ddo,
    /// Path cross-entropy only: naive trajectory distillation.
    Td,
    /// Random-mask cross-entropy on the teacher's outputs (the block-diffusion SFT loss).
    Sft,
}

impl Objective {
    /// Whether the loss needs the reference model's forward.
    pub fn uses_reference(self) -> bool {
        matches!(self, Self::T3d | Self::Ddo)
    }

    /// Its name in configs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::T3d => "t3d",
            Self::Ddo => "ddo",
            Self::Td => "td",
            Self::Sft => "sft",
        }
    }
}

/// Everything `t3d distill` needs besides paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillConfig {
    /// The loss.
    pub objective: Objective,
    /// How the teacher decodes the training prompts.
    pub rollout: RolloutConfig,
    /// Train only on the trajectories whose final answer the bundled task's checker accepts
    /// (rejection sampling; the prompts must be task problems).
    pub keep_correct: bool,
    /// Training block size (0 = the rollout's, spec bug §8.2).
    pub block_size: usize,
    /// How x_t is built from a trajectory (`t3d`, `ddo`, `td`).
    pub noise: NoiseConfig,
    /// Weight of the fake term of DDO.
    pub alpha: f64,
    /// Scale inside the DDO sigmoid.
    pub beta: f64,
    /// Temperature of the reference's one-step fake sample (0 = argmax).
    pub reference_temp: f64,
    /// Tokens added per path-loss level.
    pub path_k_steps: usize,
    /// Weight of the path loss in `t3d`.
    pub lambda_path: f64,
    /// The reference becomes a copy of the student every this many optimizer steps (0 = never).
    pub round_interval: u64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning-rate floor of the cosine.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup: u64,
    /// AdamW hyper-parameters.
    pub adamw: AdamWConfig,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Seed of data order and noise.
    pub seed: u64,
    /// Checkpoint every this many optimizer steps (0 = only at the end).
    pub save_every: u64,
    /// JSONL log line every this many optimizer steps.
    pub log_every: u64,
    /// Steps per block the student is served with when it is not evaluated (`eval_n` 0).
    pub serve_steps_per_block: usize,
    /// The student is served with the most accurate evaluated setting at least this many tokens
    /// per forward fast (else its fastest), written to its config as `t3d_decoding`.
    pub serve_min_tokens_per_forward: f64,
    /// Held-out problems scored at the end (0 = no evaluation).
    pub eval_n: usize,
    /// Static steps per block evaluated at the end.
    pub eval_steps: Vec<usize>,
    /// Confidence thresholds (`low_confidence_dynamic`, up to `b` steps) evaluated at the end.
    pub eval_thresholds: Vec<f64>,
    /// Entropy bounds (`entropy_bounded`, up to `b` steps) evaluated at the end.
    pub eval_entropy_bounds: Vec<f64>,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            objective: Objective::T3d,
            rollout: RolloutConfig::default(),
            keep_correct: false,
            block_size: 0,
            noise: NoiseConfig::default(),
            alpha: 0.5,
            beta: 0.1,
            reference_temp: 0.0,
            path_k_steps: 2,
            lambda_path: 0.2,
            round_interval: 10,
            batch_size: 32,
            grad_accum: 1,
            steps: 500,
            lr: 2e-4,
            min_lr: 2e-5,
            warmup: 20,
            adamw: AdamWConfig::default(),
            max_grad_norm: 1.0,
            seed: 10086,
            save_every: 100,
            log_every: 10,
            serve_steps_per_block: 1,
            serve_min_tokens_per_forward: crate::train::frontier::DEFAULT_MIN_TOKENS_PER_FORWARD,
            eval_n: 1000,
            eval_steps: vec![1, 2, 4],
            eval_thresholds: vec![0.5, 0.7, 0.8, 0.9, 0.95],
            eval_entropy_bounds: vec![0.1, 0.35, 0.5, 0.7, 0.8, 0.9, 1.0],
        }
    }
}

impl DistillConfig {
    /// Reads a JSON config file (unknown fields are errors) and applies `key=value` overrides.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, String> {
        let mut value = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => serde_json::to_value(Self::default()).map_err(|e| e.to_string())?,
        };
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: Self = serde_json::from_value(value).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The training block size (the rollout's unless set).
    pub fn train_block_size(&self) -> usize {
        if self.block_size == 0 {
            self.rollout.block_size
        } else {
            self.block_size
        }
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<(), String> {
        self.noise.validate()?;
        let mut rollout = self.rollout;
        rollout.max_tokens = rollout.max_tokens.max(1);
        rollout.params(0).validate()?;
        if self.batch_size == 0 || self.grad_accum == 0 || self.steps == 0 {
            return Err("batch_size, grad_accum and steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err("need 0 ≤ min_lr ≤ lr and lr > 0".into());
        }
        if !(self.beta > 0.0 && self.alpha >= 0.0 && self.lambda_path >= 0.0) {
            return Err("need beta > 0, alpha ≥ 0 and lambda_path ≥ 0".into());
        }
        if self.path_k_steps == 0 || self.serve_steps_per_block == 0 {
            return Err("path_k_steps and serve_steps_per_block must be at least 1".into());
        }
        if !self.train_block_size().is_power_of_two() {
            return Err("block_size must be a power of two".into());
        }
        if !self.eval_thresholds.iter().all(|t| (0.0..=1.0).contains(t))
            || self.serve_min_tokens_per_forward.is_nan()
            || self.serve_min_tokens_per_forward < 0.0
        {
            return Err(
                "eval_thresholds must be in [0, 1] and serve_min_tokens_per_forward ≥ 0".into(),
            );
        }
        Ok(())
    }

    /// The learning-rate schedule of this run.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            min: self.min_lr,
            warmup: self.warmup,
            total: self.steps,
        }
    }
}

/// Applies `a.b.c=JSON` (a bare word that is not JSON is taken as a string) to `value`.
pub fn apply_override(value: &mut serde_json::Value, item: &str) -> Result<(), String> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| format!("--set {item}: expected key=value"))?;
    let parsed = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::from(raw));
    let mut node = value;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let map = node
            .as_object_mut()
            .ok_or_else(|| format!("--set {key}: `{part}` is not inside an object"))?;
        if parts.peek().is_none() {
            map.insert(part.to_string(), parsed);
            return Ok(());
        }
        node = map
            .entry(part.to_string())
            .or_insert_with(|| serde_json::json!({}));
    }
    Err(format!("--set {item}: empty key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_edit_nested_fields_and_unknown_keys_fail() {
        let sets = [
            "objective=td".to_string(),
            "noise.trace_order=code".to_string(),
            "beta=0.2".to_string(),
            "noise.mask_ratios=[1.0,0.5]".to_string(),
        ];
        let cfg = DistillConfig::load(None, &sets).unwrap();
        assert_eq!(cfg.objective, Objective::Td);
        assert_eq!(cfg.noise.trace_order, super::super::noise::TraceOrder::Code);
        assert_eq!(cfg.beta, 0.2);
        assert_eq!(cfg.noise.mask_ratios, vec![1.0, 0.5]);
        assert!(DistillConfig::load(None, &["betta=1".into()])
            .unwrap_err()
            .contains("betta"));
        assert!(DistillConfig::load(None, &["beta=0".into()])
            .unwrap_err()
            .contains("beta"));
    }

    #[test]
    fn training_block_size_defaults_to_the_rollout_one() {
        let cfg = DistillConfig::default();
        assert_eq!(cfg.train_block_size(), 4);
        let cfg = DistillConfig::load(None, &["rollout.block_size=8".into()]).unwrap();
        assert_eq!(cfg.train_block_size(), 8);
    }

    #[test]
    fn lr_warms_up_then_decays_to_zero_as_in_the_spec() {
        // Spec §9 test 11: warmup 20, floor 0 → step 0: 0, 10: lr/2, 20: lr, T: 0.
        let cfg = DistillConfig::load(
            None,
            &["lr=1e-5".into(), "min_lr=0".into(), "steps=100".into()],
        )
        .unwrap();
        let s = cfg.schedule();
        assert_eq!(s.at(0), 0.0);
        assert!((s.at(10) - 0.5e-5).abs() < 1e-18);
        assert!((s.at(20) - 1e-5).abs() < 1e-18);
        assert!(s.at(100).abs() < 1e-18);
        assert!((s.at(60) - 0.5e-5).abs() < 1e-12); // half-way down the cosine
    }
}
