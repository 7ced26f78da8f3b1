//! The training configuration (`t3d train --config FILE.json`): task, model shape, optimisation.
//! Every field has a default, so a config file names only what it changes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::optim::{AdamWConfig, LrSchedule};
use super::task::ArithConfig;
use crate::model::char_tokenizer::{char_special_ids, char_vocab_size};
use crate::model::SdarConfig;

/// Shape of a model trained from scratch (character vocabulary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelShape {
    /// Width.
    pub hidden_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads.
    pub num_key_value_heads: i64,
    /// SwiGLU width.
    pub intermediate_size: i64,
    /// Share the embedding and LM-head matrices.
    pub tie_word_embeddings: bool,
}

impl Default for ModelShape {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: 384,
            tie_word_embeddings: true,
        }
    }
}

impl ModelShape {
    /// The SDAR config of this shape over the character tokenizer, block size `block`.
    pub fn sdar_config(&self, block: usize) -> SdarConfig {
        let heads = self.num_attention_heads.max(1);
        let mut cfg = SdarConfig::shaped(
            char_vocab_size(),
            self.hidden_size,
            self.num_hidden_layers,
            heads,
            self.num_key_value_heads,
            self.hidden_size / heads,
            self.intermediate_size,
        );
        let ids = char_special_ids();
        cfg.eos_token_id = Some(ids.eos.into());
        cfg.mask_token_id = Some(ids.mask);
        cfg.tie_word_embeddings = self.tie_word_embeddings;
        cfg.rope_theta = Some(10_000.0);
        cfg.max_position_embeddings = 1024;
        cfg.block_size = Some(block);
        cfg
    }
}

/// Everything `t3d train` needs besides paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The task's difficulty knobs.
    pub task: ArithConfig,
    /// The model's shape.
    pub model: ModelShape,
    /// Diffusion block size (training = inference alignment).
    pub block_size: usize,
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
    /// Seed of initialisation, data order and noise.
    pub seed: u64,
    /// Checkpoint every this many optimizer steps (0 = only at the end).
    pub save_every: u64,
    /// JSONL log line every this many optimizer steps.
    pub log_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            task: ArithConfig::default(),
            model: ModelShape::default(),
            block_size: 4,
            batch_size: 32,
            grad_accum: 1,
            steps: 2000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            adamw: AdamWConfig::default(),
            max_grad_norm: 1.0,
            seed: 0,
            save_every: 250,
            log_every: 10,
        }
    }
}

impl TrainConfig {
    /// Reads a JSON config file (unknown fields are errors).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<(), String> {
        self.task.validate()?;
        let m = &self.model;
        if m.hidden_size <= 0
            || m.num_attention_heads <= 0
            || m.hidden_size % m.num_attention_heads != 0
        {
            return Err(
                "model.hidden_size must be a positive multiple of num_attention_heads".into(),
            );
        }
        if m.num_key_value_heads <= 0 || m.num_attention_heads % m.num_key_value_heads != 0 {
            return Err("num_attention_heads must be a multiple of num_key_value_heads".into());
        }
        if !self.block_size.is_power_of_two() || self.block_size > 64 {
            return Err(format!(
                "block_size {} must be a power of two ≤ 64",
                self.block_size
            ));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.steps == 0 {
            return Err("batch_size, grad_accum and steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err("need 0 ≤ min_lr ≤ lr and lr > 0".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_fill_defaults_and_unknown_fields_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"steps": 7, "model": {"hidden_size": 64}}"#).unwrap();
        let cfg = TrainConfig::from_file(&path).unwrap();
        assert_eq!(cfg.steps, 7);
        assert_eq!(cfg.model.hidden_size, 64);
        assert_eq!(cfg.batch_size, TrainConfig::default().batch_size);
        std::fs::write(&path, r#"{"stepz": 7}"#).unwrap();
        assert!(TrainConfig::from_file(&path).unwrap_err().contains("stepz"));
        std::fs::write(&path, r#"{"block_size": 3}"#).unwrap();
        assert!(TrainConfig::from_file(&path)
            .unwrap_err()
            .contains("power of two"));
    }

    #[test]
    fn shape_maps_to_an_sdar_config_over_the_char_vocabulary() {
        let cfg = ModelShape::default().sdar_config(4);
        cfg.validate().unwrap();
        assert_eq!(cfg.vocab_size, char_vocab_size());
        assert_eq!(cfg.head_dim(), 32);
        assert_eq!(cfg.mask_token_id, Some(char_special_ids().mask));
    }
}
