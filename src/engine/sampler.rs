//! Logits → (token, confidence, entropy) for every block position of a batch, on the device.
//!
//! Each row carries its own temperature, top-k and top-p; randomness comes from a uniform number
//! per row drawn from the owning request's seeded stream, so a request's samples do not depend
//! on what else is in the batch. Pipeline per row (spec §3.3): temperature → top-k → softmax →
//! top-p (renormalised) → inverse-CDF draw; confidence = probability of the drawn token.
//! Temperature 0 is greedy: argmax, confidence = softmax probability of the argmax.

use tch::{Device, Kind, Tensor};

/// Sampling settings of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowSampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i64,
    /// 1.0 = off.
    pub top_p: f32,
}

impl RowSampling {
    fn filters(&self) -> bool {
        self.temperature > 0.0 && (self.top_k > 0 || self.top_p < 1.0)
    }
}

/// Per-row results, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledRows {
    /// Drawn token per row.
    pub tokens: Vec<i64>,
    /// Probability of the drawn token per row.
    pub confidence: Vec<f32>,
    /// Entropy of the row's distribution (empty unless asked for).
    pub entropy: Vec<f32>,
}

/// Samples one token per row of `logits` `(R, V)`; `uniforms` are in `(0, 1)`, one per row.
pub fn sample_rows(
    logits: &Tensor,
    rows: &[RowSampling],
    uniforms: &[f32],
    want_entropy: bool,
) -> SampledRows {
    let device = logits.device();
    let temps: Vec<f32> = rows
        .iter()
        .map(|r| {
            if r.temperature > 0.0 {
                r.temperature
            } else {
                1.0
            }
        })
        .collect();
    let scaled =
        logits.to_kind(Kind::Float) / Tensor::from_slice(&temps).to_device(device).unsqueeze(1);
    let probs = scaled.softmax(-1, Kind::Float);
    let (max_prob, argmax) = probs.max_dim(-1, false);
    let (tokens, confidence) = if rows.iter().all(|r| r.temperature == 0.0) {
        (argmax, max_prob)
    } else {
        let u = Tensor::from_slice(uniforms).to_device(device).unsqueeze(1);
        let (drawn, conf) = if rows.iter().any(RowSampling::filters) {
            draw_filtered(&probs, rows, &u)
        } else {
            draw(&probs, &u)
        };
        let greedy: Vec<bool> = rows.iter().map(|r| r.temperature == 0.0).collect();
        let greedy = Tensor::from_slice(&greedy).to_device(device);
        (
            argmax.where_self(&greedy, &drawn),
            max_prob.where_self(&greedy, &conf),
        )
    };
    // One device-to-host transfer for everything: token ids are exact in f32 below 2^24, far
    // above any vocabulary size.
    let mut parts = vec![tokens.to_kind(Kind::Float), confidence];
    if want_entropy {
        parts.push(entropy_of(&probs));
    }
    let host = to_host_f32(&Tensor::stack(&parts, 0).flatten(0, -1));
    let r = rows.len();
    SampledRows {
        tokens: host[..r].iter().map(|&t| t as i64).collect(),
        confidence: host[r..2 * r].to_vec(),
        entropy: host.get(2 * r..).map(<[f32]>::to_vec).unwrap_or_default(),
    }
}

/// Inverse-CDF draw from `(R, V)` probabilities with `u` `(R, 1)`: `(index (R), prob (R))`.
fn draw(probs: &Tensor, u: &Tensor) -> (Tensor, Tensor) {
    let vocab = probs.size()[1];
    let cdf = probs.cumsum(-1, Kind::Float);
    let target = u * cdf.narrow(1, vocab - 1, 1);
    let index = target
        .searchsorted(&cdf, false, false, "left", None::<Tensor>)
        .clamp(0, vocab - 1);
    let prob = probs.gather(1, &index, false).squeeze_dim(1);
    (index.squeeze_dim(1), prob)
}

/// Top-k then top-p over the sorted distribution, renormalised, then [`draw`].
fn draw_filtered(probs: &Tensor, rows: &[RowSampling], u: &Tensor) -> (Tensor, Tensor) {
    let (device, vocab) = (probs.device(), probs.size()[1]);
    let (sorted, order) = probs.sort(-1, true);
    let ks: Vec<i64> = rows
        .iter()
        .map(|r| {
            if r.top_k > 0 {
                r.top_k.min(vocab)
            } else {
                vocab
            }
        })
        .collect();
    let ps: Vec<f32> = rows.iter().map(|r| r.top_p).collect();
    let ranks = Tensor::arange(vocab, (Kind::Int64, device)).unsqueeze(0);
    let keep_k = ranks.lt_tensor(&Tensor::from_slice(&ks).to_device(device).unsqueeze(1));
    let top_k = renormalise(&(&sorted * keep_k));
    let mass_before = top_k.cumsum(-1, Kind::Float) - &top_k;
    let keep_p = mass_before.lt_tensor(&Tensor::from_slice(&ps).to_device(device).unsqueeze(1));
    let nucleus = renormalise(&(&top_k * keep_p));
    let (rank, prob) = draw(&nucleus, u);
    (
        order.gather(1, &rank.unsqueeze(1), false).squeeze_dim(1),
        prob,
    )
}

fn renormalise(p: &Tensor) -> Tensor {
    p / p.sum_dim_intlist(-1, true, Kind::Float)
}

fn entropy_of(probs: &Tensor) -> Tensor {
    -(probs * probs.clamp_min(1e-30).log()).sum_dim_intlist(-1, false, Kind::Float)
}

fn to_host_f32(t: &Tensor) -> Vec<f32> {
    // Unwrap is safe: a 1-D float tensor always converts.
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREEDY: RowSampling = RowSampling {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    };
    const WARM: RowSampling = RowSampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
    };

    fn logits_of(probs: &[f32]) -> Tensor {
        Tensor::from_slice(probs).log().unsqueeze(0)
    }

    #[test]
    fn greedy_takes_argmax_with_its_probability() {
        let out = sample_rows(&logits_of(&[0.1, 0.6, 0.3]), &[GREEDY], &[0.99], true);
        assert_eq!(out.tokens, vec![1]);
        assert!((out.confidence[0] - 0.6).abs() < 1e-6);
        let h = -(0.1f32 * 0.1f32.ln() + 0.6 * 0.6f32.ln() + 0.3 * 0.3f32.ln());
        assert!((out.entropy[0] - h).abs() < 1e-5);
    }

    #[test]
    fn inverse_cdf_maps_uniforms_to_tokens() {
        let logits = logits_of(&[0.1, 0.6, 0.3]);
        let pick = |u: f32| sample_rows(&logits, &[WARM], &[u], false).tokens[0];
        assert_eq!(
            (pick(0.05), pick(0.5), pick(0.69), pick(0.71), pick(0.999)),
            (0, 1, 1, 2, 2)
        );
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail_and_renormalise() {
        let logits = logits_of(&[0.1, 0.6, 0.3]);
        let top1 = RowSampling { top_k: 1, ..WARM };
        let out = sample_rows(&logits, &[top1], &[0.01], false);
        assert_eq!((out.tokens[0], out.confidence[0]), (1, 1.0));
        // top_p 0.8 keeps {0.6, 0.3}; renormalised 2/3 and 1/3.
        let nucleus = RowSampling { top_p: 0.8, ..WARM };
        let out = sample_rows(&logits, &[nucleus], &[0.9], false);
        assert_eq!(out.tokens[0], 2);
        assert!((out.confidence[0] - 1.0 / 3.0).abs() < 1e-5);
    }

    #[test]
    fn rows_mix_greedy_and_sampled_settings() {
        let logits = Tensor::cat(
            &[logits_of(&[0.1, 0.6, 0.3]), logits_of(&[0.7, 0.2, 0.1])],
            0,
        );
        let out = sample_rows(&logits, &[WARM, GREEDY], &[0.95, 0.95], false);
        assert_eq!(out.tokens, vec![2, 0]);
    }
}
