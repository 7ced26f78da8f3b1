//! Teacher rollouts for T3D (spec §3.8, §4.2): the teacher decodes every training prompt
//! full-step with the batched engine, and each generated token keeps the global denoising step
//! at which it was unmasked. Trajectories are stored as versioned JSONL of token ids (never
//! re-tokenised text, which could drift from the step map: spec bug §8.8).
//!
//! One line per prompt:
//! `{"format":"t3d-trajectory","version":1,"question":…,"prompt_ids":[…],"completion_ids":[…],
//!   "step_map":[…],"block_size":4,"steps_per_block":4,"finish_reason":"stop"}`
//! where `step_map[i]` (1-based) is when `completion_ids[i]` was unmasked; `completion_ids`
//! ends with EOS when the teacher stopped by itself.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::engine::{generate, GenerationParams, Remasking, SpecialIds};
use crate::model::{Sdar, TextTokenizer};
use crate::train::data::{mix_seed, user_prompt_ids};
use crate::train::task::Problem;

/// The `format` tag of every trajectory line.
pub const TRAJECTORY_FORMAT: &str = "t3d-trajectory";
/// The current (and only) trajectory format version.
pub const TRAJECTORY_VERSION: u32 = 1;

/// One teacher trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trajectory {
    /// Always [`TRAJECTORY_FORMAT`].
    pub format: String,
    /// Always [`TRAJECTORY_VERSION`].
    pub version: u32,
    /// The user message the prompt was built from.
    pub question: String,
    /// The chat-templated prompt, as token ids.
    pub prompt_ids: Vec<i64>,
    /// The generated tokens (EOS included when the teacher stopped by itself).
    pub completion_ids: Vec<i64>,
    /// Global denoising step (1-based) at which each completion token was unmasked.
    pub step_map: Vec<u32>,
    /// Block size of the rollout.
    pub block_size: usize,
    /// Denoising steps per block of the rollout.
    pub steps_per_block: usize,
    /// `stop` (EOS) or `length`.
    pub finish_reason: String,
}

impl Trajectory {
    /// Checks the invariants a trainer relies on; `vocab` bounds the token ids.
    pub fn validate(&self, vocab: i64) -> Result<(), String> {
        if self.format != TRAJECTORY_FORMAT || self.version != TRAJECTORY_VERSION {
            return Err(format!(
                "format {:?} version {} (expected {TRAJECTORY_FORMAT:?} version {TRAJECTORY_VERSION})",
                self.format, self.version
            ));
        }
        if self.prompt_ids.is_empty() || self.completion_ids.is_empty() {
            return Err("empty prompt or completion".into());
        }
        if self.step_map.len() != self.completion_ids.len() {
            return Err(format!(
                "step_map has {} entries for {} completion tokens",
                self.step_map.len(),
                self.completion_ids.len()
            ));
        }
        if self.step_map.contains(&0) {
            return Err("step_map values are 1-based".into());
        }
        let ids = self.prompt_ids.iter().chain(&self.completion_ids);
        if let Some(bad) = ids.copied().find(|&t| t < 0 || t >= vocab) {
            return Err(format!("token id {bad} outside the vocabulary 0..{vocab}"));
        }
        if self.block_size == 0 || self.steps_per_block == 0 {
            return Err("block_size and steps_per_block must be positive".into());
        }
        Ok(())
    }
}

/// How the teacher decodes its rollouts (spec §7 "rollout" rows).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Tokens per block.
    pub block_size: usize,
    /// Denoising steps per block (full-step = `block_size`).
    pub steps_per_block: usize,
    /// Remasking policy.
    pub remasking: Remasking,
    /// Sampling temperature (0 = greedy).
    pub temperature: f64,
    /// Top-k (0 = off).
    pub top_k: usize,
    /// Nucleus mass.
    pub top_p: f64,
    /// Completion token cap (0 = the task's longest trace, resolved by the CLI).
    pub max_tokens: usize,
    /// Seed of the per-prompt samplers.
    pub seed: u64,
    /// Sequences decoded together.
    pub batch_size: usize,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            block_size: 4,
            steps_per_block: 4,
            remasking: Remasking::LowConfidenceStatic,
            temperature: 0.1,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 0,
            seed: 0,
            batch_size: 256,
        }
    }
}

impl RolloutConfig {
    /// Generation parameters of prompt `index`.
    pub fn params(&self, index: u64) -> GenerationParams {
        let mut params = GenerationParams::default();
        params.denoise.block_size = self.block_size;
        params.denoise.steps_per_block = self.steps_per_block;
        params.denoise.remasking = self.remasking;
        params.sampling.temperature = self.temperature;
        params.sampling.top_k = self.top_k;
        params.sampling.top_p = self.top_p;
        params.sampling.seed = Some(mix_seed(self.seed, index, 0x7261));
        params.stop.max_tokens = self.max_tokens;
        params
    }
}

/// Decodes `questions` with the teacher and records the trajectories (input order), calling
/// `progress` with the number done after each chunk.
pub fn rollout(
    model: &Sdar,
    tokenizer: &TextTokenizer,
    questions: &[String],
    cfg: &RolloutConfig,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Vec<Trajectory>> {
    anyhow::ensure!(cfg.max_tokens > 0, "rollout.max_tokens must be set");
    cfg.params(0).validate().map_err(anyhow::Error::msg)?;
    let special = SpecialIds {
        eos: tokenizer.eos_id,
        mask: tokenizer.mask_id,
    };
    let mut out = Vec::with_capacity(questions.len());
    let chunk = (cfg.batch_size * 4).max(1);
    for (c, part) in questions.chunks(chunk).enumerate() {
        let requests = part
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let prompt = user_prompt_ids(tokenizer, q)?;
                Ok((prompt, cfg.params((c * chunk + i) as u64)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (generations, _) = generate(model, special, None, &requests, cfg.batch_size)?;
        for ((question, (prompt, _)), g) in part.iter().zip(requests).zip(generations) {
            out.push(Trajectory {
                format: TRAJECTORY_FORMAT.into(),
                version: TRAJECTORY_VERSION,
                question: question.clone(),
                prompt_ids: prompt,
                completion_ids: g.tokens,
                step_map: g.trajectory,
                block_size: cfg.block_size,
                steps_per_block: cfg.steps_per_block,
                finish_reason: g.finish_reason.as_str().into(),
            });
        }
        progress(out.len());
    }
    Ok(out)
}

/// The questions of problems (what [`user_prompt_ids`] templates).
pub fn questions_of(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(Problem::question).collect()
}

/// Reads the `question` field of every line of a JSONL prompt file (e.g. `t3d dataset` output).
pub fn read_questions(path: &Path) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Line {
        question: String,
    }
    read_jsonl(path, |line, where_| {
        let parsed: Line = serde_json::from_str(line)
            .with_context(|| format!("{where_}: expected {{\"question\": …}}"))?;
        Ok(parsed.question)
    })
}

/// Parses every non-empty line of a JSONL file with `parse(line, "file:line")`; at least one.
fn read_jsonl<T>(
    path: &Path,
    mut parse: impl FnMut(&str, &str) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if !line.trim().is_empty() {
            out.push(parse(&line, &format!("{}:{}", path.display(), n + 1))?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "{}: no records", path.display());
    Ok(out)
}

/// Writes trajectories as JSONL, atomically (a temporary file renamed into place).
pub fn write_trajectories(path: &Path, trajectories: &[Trajectory]) -> anyhow::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        for t in trajectories {
            serde_json::to_writer(&mut w, t)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Reads and validates a trajectory file (`vocab` bounds the token ids).
pub fn read_trajectories(path: &Path, vocab: i64) -> anyhow::Result<Vec<Trajectory>> {
    read_jsonl(path, |line, where_| {
        let t: Trajectory = serde_json::from_str(line).with_context(|| where_.to_string())?;
        t.validate(vocab)
            .map_err(|e| anyhow::anyhow!("{where_}: {e}"))?;
        Ok(t)
    })
}
