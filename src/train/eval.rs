//! Evaluation on the held-out split (`t3d eval`): for each steps-per-block setting, decode every
//! problem with the batched engine and score answer accuracy and trace validity.

use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::data::prompt_ids;
use super::task::{check, ArithConfig, Problem, Score};
use crate::engine::{generate, GenerationParams, SpecialIds};
use crate::model::{Sdar, SdarConfig, TextTokenizer};

/// Scores of one decoding setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRow {
    /// Tokens per block.
    pub block_size: usize,
    /// Denoising steps per block.
    pub steps_per_block: usize,
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
        "| b | S | n | answer acc | trace valid | tokens/forward | tokens/s |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1}% | {:.1}% | {:.2} | {:.0} |\n",
            r.block_size,
            r.steps_per_block,
            r.n,
            100.0 * r.answer_accuracy,
            100.0 * r.trace_validity,
            r.tokens_per_forward,
            r.tokens_per_second
        ));
    }
    out
}
