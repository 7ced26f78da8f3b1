//! Log-probabilities of the tokens a diffusion decoder commits. A position is decided in one
//! forward (the step that unmasks it); its log-probability is the one that forward's logits give
//! the committed token, log-softmax of the model's logits as they are (after never-generated ids
//! are excluded, before penalties, temperature and truncation), with the `k` likeliest
//! alternatives of the same forward. The step it was decided at travels with it.

use serde::Serialize;
use tch::{Kind, Tensor};

/// Most alternatives a request may ask for per token (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One committed token's log-probability in the forward that decided it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// The token.
    pub token: i64,
    /// Its log-probability.
    pub logprob: f32,
    /// The denoising step (1-based, counted over the whole request) that unmasked it.
    pub step: u32,
    /// The likeliest tokens of that forward and their log-probabilities, best first.
    pub top: Vec<(i64, f32)>,
}

/// What a step downloads for log-probabilities, flattened: the chosen token's log-probability
/// per row `(R)`, then the `top` best log-probabilities `(R·top)` and their ids `(R·top)`.
pub fn device_parts(logits: &Tensor, tokens: &Tensor, top: usize) -> Vec<Tensor> {
    let logits = logits.to_kind(Kind::Float);
    let log_normaliser = logits.logsumexp([-1], true);
    let chosen = logits.gather(1, &tokens.unsqueeze(1), false) - &log_normaliser;
    let mut parts = vec![chosen.flatten(0, 1)];
    if top > 0 {
        let (values, ids) = logits.topk(top as i64, -1, true, true);
        parts.push((values - &log_normaliser).flatten(0, 1));
        parts.push(ids.to_kind(Kind::Float).flatten(0, 1));
    }
    parts
}

/// Reads [`device_parts`] back from `host` for the rows' drawn `tokens` (step 0: the sequence
/// that commits a token sets its step).
pub fn read_parts(host: &[f32], tokens: &[i64], top: usize) -> Vec<TokenLogprob> {
    let rows = tokens.len();
    let chosen = &host[..rows];
    let values = host.get(rows..rows + rows * top).unwrap_or(&[]);
    let ids = host.get(rows + rows * top..).unwrap_or(&[]);
    (0..rows)
        .map(|r| TokenLogprob {
            token: tokens[r],
            logprob: chosen[r],
            step: 0,
            top: (0..top)
                .map(|j| (ids[r * top + j] as i64, values[r * top + j]))
                .collect(),
        })
        .collect()
}

/// Floats [`device_parts`] downloads for `rows` rows.
pub fn part_len(rows: usize, top: usize) -> usize {
    rows + 2 * rows * top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_and_top_logprobs_are_the_log_softmax_of_the_logits() {
        let probs = [0.1f32, 0.6, 0.3];
        let logits = Tensor::from_slice(&probs).log().unsqueeze(0) + 5.0;
        let tokens = Tensor::from_slice(&[2i64]);
        let parts = Tensor::cat(&device_parts(&logits, &tokens, 2), 0);
        let host: Vec<f32> = Vec::try_from(parts).unwrap();
        assert_eq!(host.len(), part_len(1, 2));
        let read = read_parts(&host, &[2], 2);
        assert_eq!(read.len(), 1);
        assert!((read[0].logprob - 0.3f32.ln()).abs() < 1e-5);
        let top: Vec<i64> = read[0].top.iter().map(|t| t.0).collect();
        assert_eq!(top, vec![1, 2]);
        assert!((read[0].top[0].1 - 0.6f32.ln()).abs() < 1e-5);
        let plain = read_parts(&host[..1], &[2], 0);
        assert!(plain[0].top.is_empty());
    }
}
