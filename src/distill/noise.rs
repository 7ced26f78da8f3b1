//! Noisy states x_t built from teacher trajectories (spec §4.5) and the decode-order levels of
//! the path loss (spec §5.4). Pure: plain vectors in, plain vectors out.
//!
//! Blocks follow our aligned layout (the first response block may hold the prompt's tail), so a
//! block here is exactly a block the teacher decoded, and its step map needs no re-derivation
//! (spec bug §8.2). Noise is drawn per call, i.e. fresh every epoch (spec bug §8.7).

use std::ops::Range;

use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::train::batch::{Example, NoisyExample};
use crate::train::masks::response_blocks;

/// How masked positions are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskMode {
    /// Follow the decode order of the step map.
    Trace,
    /// Uniformly random positions per block (pads included, as upstream).
    Random,
}

/// Which end of the decode order `trace` mode masks when ρ < 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceOrder {
    /// Mask the latest-decoded tokens: a real intermediate state of the trajectory.
    Trajectory,
    /// Mask the earliest-decoded tokens, as the upstream code does (spec bug §8.1).
    Code,
}

/// Everything that shapes x_t.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// `trace` or `random`.
    pub mode: MaskMode,
    /// Masking end in `trace` mode.
    pub trace_order: TraceOrder,
    /// Candidate mask ratios ρ.
    pub mask_ratios: Vec<f64>,
    /// ρ is drawn with probability ∝ ρ^exponent.
    pub mask_ratio_exponent: f64,
    /// Fraction of masked positions given a uniformly random token instead of MASK (min 1).
    pub random_ratio: f64,
    /// Pad (EOS) positions kept in the loss per sample.
    pub post_num: usize,
    /// `trace` mode: round the masked count to a boundary between decode steps, so tokens the
    /// teacher committed in one step are masked together and every noisy block is a state the
    /// teacher passed through (matters for dynamic rollouts, which commit several a step).
    pub whole_steps: bool,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            mode: MaskMode::Trace,
            trace_order: TraceOrder::Trajectory,
            mask_ratios: vec![1.0, 0.75, 0.5, 0.25],
            mask_ratio_exponent: 8.0,
            random_ratio: 0.1,
            post_num: 2,
            whole_steps: false,
        }
    }
}

impl NoiseConfig {
    /// Rejects settings that cannot build a noisy state.
    pub fn validate(&self) -> Result<(), String> {
        if self.mask_ratios.is_empty() || self.mask_ratios.iter().any(|r| !(*r > 0.0 && *r <= 1.0))
        {
            return Err("noise.mask_ratios must be non-empty, each in (0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.random_ratio) {
            return Err("noise.random_ratio must be in [0, 1]".into());
        }
        if !self.mask_ratio_exponent.is_finite() {
            return Err("noise.mask_ratio_exponent must be finite".into());
        }
        Ok(())
    }

    /// Probability of each of `mask_ratios`: `ρ_j^e / Σ ρ^e`.
    pub fn ratio_probabilities(&self) -> Vec<f64> {
        let w: Vec<f64> = self
            .mask_ratios
            .iter()
            .map(|r| r.powf(self.mask_ratio_exponent))
            .collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    }

    fn draw_ratio(&self, rng: &mut impl Rng) -> f64 {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        for (r, p) in self.mask_ratios.iter().zip(self.ratio_probabilities()) {
            acc += p;
            if u < acc {
                return *r;
            }
        }
        *self.mask_ratios.last().expect("validated non-empty")
    }
}

/// Positions of `range` with a step, earliest-decoded first (ties by position: a stable order,
/// where upstream's argsort is unstable, spec bug §8.17).
fn decode_order(step_map: &[Option<u32>], range: Range<usize>) -> Vec<usize> {
    let mut valid: Vec<usize> = range.filter(|&i| step_map[i].is_some()).collect();
    valid.sort_by_key(|&i| step_map[i]);
    valid
}

/// `trace` mode for one block: of its `V` decoded positions, `⌊|V|·ρ⌋` are masked — the latest
/// decoded ones (`Trajectory`) or the earliest (`Code`); with `whole_steps`, that count moves to
/// the nearest boundary between decode steps (a tie towards masking more).
pub fn trace_block_mask(
    step_map: &[Option<u32>],
    range: Range<usize>,
    ratio: f64,
    order: TraceOrder,
    whole_steps: bool,
) -> Vec<usize> {
    let decoded = decode_order(step_map, range);
    let mut n = (decoded.len() as f64 * ratio).floor() as usize;
    if whole_steps {
        n = masked_at_step_boundary(step_map, &decoded, n, order);
    }
    let mut chosen = match order {
        TraceOrder::Code => decoded[..n].to_vec(),
        TraceOrder::Trajectory => decoded[decoded.len() - n..].to_vec(),
    };
    chosen.sort_unstable();
    chosen
}

/// The masked count nearest to `n` that leaves no decode step of `decoded` half masked.
fn masked_at_step_boundary(
    step_map: &[Option<u32>],
    decoded: &[usize],
    n: usize,
    order: TraceOrder,
) -> usize {
    let len = decoded.len();
    // A cut after `p` tokens of the decode order splits no step.
    let cuts = (0..=len)
        .filter(|&p| p == 0 || p == len || step_map[decoded[p - 1]] != step_map[decoded[p]]);
    let masked_by = |p: usize| match order {
        TraceOrder::Trajectory => len - p,
        TraceOrder::Code => p,
    };
    cuts.map(masked_by)
        .min_by_key(|&m| (m.abs_diff(n), std::cmp::Reverse(m)))
        .unwrap_or(n)
}

/// How many masked positions get a random token: `max(1, ⌊masked·ratio⌋)` when anything is
/// masked and the ratio is positive.
pub fn random_token_count(masked: usize, ratio: f64) -> usize {
    if masked == 0 || ratio <= 0.0 {
        return 0;
    }
    ((masked as f64 * ratio).floor() as usize).max(1)
}

/// Tokens the trainer needs to corrupt a response.
#[derive(Debug, Clone, Copy)]
pub struct NoiseTokens<'a> {
    /// The mask token.
    pub mask: i64,
    /// The pad token (EOS here).
    pub pad: i64,
    /// Ids random replacements are drawn from (ordinary tokens, no specials).
    pub random_pool: &'a [i64],
}

/// x_t for one example: `step_map[i]` is the decode step of response token `i` (`None` for the
/// pad tail the teacher never generated). Returns the noisy response and its loss positions.
pub fn noisy_from_trajectory(
    example: &Example,
    step_map: &[Option<u32>],
    block: usize,
    cfg: &NoiseConfig,
    tokens: NoiseTokens<'_>,
    rng: &mut impl Rng,
) -> NoisyExample {
    let ratio = cfg.draw_ratio(rng);
    let blocks = response_blocks(example.prompt.len(), example.response.len(), block);
    let mut masked = Vec::new();
    for range in blocks {
        match cfg.mode {
            MaskMode::Trace => masked.extend(trace_block_mask(
                step_map,
                range,
                ratio,
                cfg.trace_order,
                cfg.whole_steps,
            )),
            MaskMode::Random => {
                let n = (range.len() as f64 * ratio).floor() as usize;
                let mut picked: Vec<usize> = sample(rng, range.len(), n)
                    .into_iter()
                    .map(|i| range.start + i)
                    .collect();
                picked.sort_unstable();
                masked.extend(picked);
            }
        }
    }
    let mut noisy = example.response.clone();
    for &i in &masked {
        noisy[i] = tokens.mask;
    }
    let replaced = random_token_count(masked.len(), cfg.random_ratio);
    if !tokens.random_pool.is_empty() {
        for k in sample(rng, masked.len(), replaced) {
            noisy[masked[k]] = tokens.random_pool[rng.random_range(0..tokens.random_pool.len())];
        }
    }
    let loss_positions = keep_first_pads(&masked, &example.response, tokens.pad, cfg.post_num);
    NoisyExample {
        example: example.clone(),
        noisy,
        loss_positions,
    }
}

/// `post_num`: of the masked positions holding the pad token, only the first `post_num` stay in
/// the loss (they still stay masked in the input).
pub fn keep_first_pads(
    masked: &[usize],
    response: &[i64],
    pad: i64,
    post_num: usize,
) -> Vec<usize> {
    let mut pads = 0;
    masked
        .iter()
        .copied()
        .filter(|&i| {
            if response[i] != pad {
                return true;
            }
            pads += 1;
            pads <= post_num
        })
        .collect()
}

/// Path-loss levels (spec §5.4): level `s` holds, per block, the first `min((s+1)·k, |V|)`
/// decoded positions in decode order, for `s < ⌈b/k⌉`. Only generated tokens count (the pad
/// tail has no step), so the teacher's EOS is trained too (spec bug §8.6). Empty levels are
/// dropped.
pub fn path_levels(
    prompt_len: usize,
    step_map: &[Option<u32>],
    block: usize,
    k: usize,
) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let blocks = response_blocks(prompt_len, step_map.len(), block);
    let orders: Vec<Vec<usize>> = blocks
        .into_iter()
        .map(|r| decode_order(step_map, r))
        .collect();
    (0..block.div_ceil(k))
        .map(|s| {
            let mut level: Vec<usize> = orders
                .iter()
                .flat_map(|o| o[..((s + 1) * k).min(o.len())].iter().copied())
                .collect();
            level.sort_unstable();
            level
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
#[path = "noise_tests.rs"]
mod tests;
