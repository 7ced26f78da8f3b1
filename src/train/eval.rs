//! Evaluation on the held-out split (`t3d eval`): for each decoding setting (static steps per
//! block, a confidence threshold, an entropy bound), decode every problem with the batched engine
//! and score answer accuracy (with its standard error), trace validity and tokens per forward.

use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::data::prompt_ids;
use super::task::{check, ArithConfig, Problem, Score};
use crate::engine::{generate, DenoiseParams, GenerationParams, Remasking, SpecialIds};
use crate::model::{Sdar, SdarConfig, TextTokenizer};

/// Scores of one decoding setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRow {
    /// Tokens per block.
    pub block_size: usize,
    /// Denoising steps per block (the most a threshold policy may take).
    pub steps_per_block: usize,
    /// The remasking policy (rows written before it was recorded were static).
    #[serde(default)]
    pub remasking: Remasking,
    /// The confidence threshold (`low_confidence_dynamic`) or entropy bound (`entropy_bounded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Problems scored.
    pub n: usize,
    /// Fraction whose final answer is right.
    pub answer_accuracy: f64,
    /// Fraction whose every step is valid.
    pub trace_validity: f64,
    /// Completion tokens over the forwards each sequence took part in (summed over sequences).
    pub tokens_per_forward: f64,
    /// Completion tokens per second of wall time (whole batch).
    pub tokens_per_second: f64,
    /// Wall time of the setting.
    pub seconds: f64,
}

impl EvalRow {
    /// The standard error of the answer accuracy, `sqrt(p (1 - p) / n)`.
    pub fn accuracy_se(&self) -> f64 {
        let p = self.answer_accuracy;
        (p * (1.0 - p) / self.n.max(1) as f64).sqrt()
    }

    /// Static remasking with a fixed number of steps per block.
    pub fn is_static(&self) -> bool {
        self.threshold.is_none()
    }

    /// The decoding setting it was measured with.
    pub fn denoise(&self) -> DenoiseParams {
        let mut d = DenoiseParams {
            block_size: self.block_size,
            steps_per_block: self.steps_per_block,
            remasking: self.remasking,
            ..DenoiseParams::default()
        };
        match (self.remasking, self.threshold) {
            (Remasking::LowConfidenceDynamic, Some(t)) => d.confidence_threshold = t,
            (Remasking::EntropyBounded, Some(b)) => d.entropy_bound = b,
            _ => {}
        }
        d
    }

    /// The decoding setting, e.g. `S=2`, `τ=0.9`, `H≤0.35`.
    pub fn decoding(&self) -> String {
        match (self.remasking, self.threshold) {
            (Remasking::LowConfidenceDynamic, Some(t)) => format!("τ={t}"),
            (Remasking::EntropyBounded, Some(t)) => format!("H≤{t}"),
            (Remasking::Sequential, _) => format!("S={} seq", self.steps_per_block),
            _ => format!("S={}", self.steps_per_block),
        }
    }
}

/// The decoding settings of an evaluation at block size `b`: `static_policy` at each of `steps`,
/// `low_confidence_dynamic` at each confidence threshold and `entropy_bounded` at each bound
/// (the threshold policies may take up to `b` steps).
pub fn settings(
    b: usize,
    steps: &[usize],
    static_policy: Remasking,
    thresholds: &[f64],
    entropy_bounds: &[f64],
) -> Vec<DenoiseParams> {
    let base = DenoiseParams {
        block_size: b,
        steps_per_block: b,
        ..DenoiseParams::default()
    };
    let fixed = steps.iter().map(|&s| DenoiseParams {
        steps_per_block: s,
        remasking: static_policy,
        ..base.clone()
    });
    let dynamic = thresholds.iter().map(|&t| DenoiseParams {
        remasking: Remasking::LowConfidenceDynamic,
        confidence_threshold: t,
        ..base.clone()
    });
    let bounded = entropy_bounds.iter().map(|&e| DenoiseParams {
        remasking: Remasking::EntropyBounded,
        entropy_bound: e,
        ..base.clone()
    });
    fixed.chain(dynamic).chain(bounded).collect()
}

/// The parameters of an evaluation decode: `denoise`, seeded sampling at `temperature` (0 is
/// greedy), at most `max_tokens`.
pub fn eval_params(
    denoise: DenoiseParams,
    temperature: f64,
    max_tokens: usize,
) -> GenerationParams {
    let mut params = GenerationParams {
        denoise,
        ..GenerationParams::default()
    };
    params.sampling.temperature = temperature;
    params.sampling.seed = Some(0);
    params.stop.max_tokens = max_tokens;
    params
}

/// The task a checkpoint was trained on (`t3d_task` in its config), else the default one.
pub fn task_of(config: &SdarConfig) -> anyhow::Result<ArithConfig> {
    match config.extra.get("t3d_task") {
        Some(v) => serde_json::from_value(v.clone()).context("t3d_task in config.json"),
        None => Ok(ArithConfig::default()),
    }
}

/// The longest trace a problem of `task` can have, in characters, plus EOS and slack.
pub fn max_completion_tokens(task: &ArithConfig) -> usize {
    let digits = |v: u64| v.to_string().len();
    let max_sum = u64::from(task.max_operand) * task.max_operands as u64;
    // Each step: `sum+operand=sum;`.
    let step = 2 * digits(max_sum) + digits(u64::from(task.max_operand)) + 3;
    (task.max_operands - 1) * step + digits(max_sum) + 2 + 8
}

/// Decodes `problems` with `params` (batched by `batch_size`) and scores them; also returns
/// every completion with its score.
pub fn evaluate(
    model: &Sdar,
    tokenizer: &TextTokenizer,
    problems: &[Problem],
    params: &GenerationParams,
    batch_size: usize,
) -> anyhow::Result<(EvalRow, Vec<(String, Score)>)> {
    let requests = problems
        .iter()
        .map(|p| Ok((prompt_ids(tokenizer, p)?, params.clone())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let special = SpecialIds {
        eos: tokenizer.eos_id,
        mask: tokenizer.mask_id,
    };
    let start = Instant::now();
    let (outputs, _) = generate(model, special, Some(tokenizer), &requests, batch_size)?;
    let seconds = start.elapsed().as_secs_f64();
    let (mut correct, mut valid, mut tokens, mut forwards) = (0usize, 0usize, 0usize, 0u64);
    let mut scored = Vec::with_capacity(outputs.len());
    for (problem, out) in problems.iter().zip(outputs) {
        let score = check(problem, &out.text);
        correct += usize::from(score.answer_correct);
        valid += usize::from(score.trace_valid);
        tokens += out.tokens.len();
        forwards += u64::from(out.forwards);
        scored.push((out.text, score));
    }
    let n = problems.len().max(1) as f64;
    let row = EvalRow {
        block_size: params.denoise.block_size,
        steps_per_block: params.denoise.steps_per_block,
        remasking: params.denoise.remasking,
        threshold: params.denoise.threshold(),
        n: problems.len(),
        answer_accuracy: correct as f64 / n,
        trace_validity: valid as f64 / n,
        tokens_per_forward: tokens as f64 / forwards.max(1) as f64,
        tokens_per_second: tokens as f64 / seconds,
        seconds,
    };
    Ok((row, scored))
}

/// The results as a Markdown table.
pub fn format_table(rows: &[EvalRow]) -> String {
    let mut out = String::from(
        "| b | decoding | n | answer acc ± se | trace valid | tokens/forward | tokens/s |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1}% ± {:.1} | {:.1}% | {:.2} | {:.0} |\n",
            r.block_size,
            r.decoding(),
            r.n,
            100.0 * r.answer_accuracy,
            100.0 * r.accuracy_se(),
            100.0 * r.trace_validity,
            r.tokens_per_forward,
            r.tokens_per_second
        ));
    }
    out
}
