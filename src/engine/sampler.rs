//! Logits → (token, confidence, entropy) for every block position of a batch, on the device.
//!
//! Each row carries its own temperature, top-k, top-p and min-p; randomness comes from a uniform
//! number per row drawn from the owning request's seeded stream, so a request's samples do not
//! depend on what else is in the batch. Pipeline per row: penalties (rows that have them) →
//! temperature → softmax → min-p → top-k → top-p (each cut renormalised) → inverse-CDF draw;
//! confidence = probability of the drawn token. Log-probabilities, when a row asks for them,
//! come from the logits before any of that ([`super::logprobs`]).
//! Temperature 0 is greedy: argmax, confidence = softmax probability of the argmax, computed as
//! `exp(max − logsumexp)` from the logits as they are (no f32 probability table; entropy, when a
//! policy asks for it, is the only reason to build one). Top-k sorts only the k largest.

use tch::{Kind, Tensor};

use super::logprobs::{self, TokenLogprob};
use super::penalties::StagedPenalties;
use super::transfer::{download_f32, Segment, Upload, Uploaded};

/// Sampling settings of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowSampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i64,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
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
    /// Log-probability of the drawn token and the likeliest alternatives per row (empty unless
    /// asked for).
    pub logprobs: Vec<TokenLogprob>,
}

/// One step's sampling settings, staged into the step's [`Upload`] (so they reach the device in
/// the same copy as its index arrays), with the host-side choices of which kernels to run.
#[derive(Debug, Clone, Copy)]
pub struct StagedSampling {
    /// Temperature per row (0 = greedy).
    temperatures: Segment,
    /// Top-k per row (0 = off).
    top_k: Segment,
    /// Top-p per row (1 = off).
    top_p: Segment,
    /// Min-p per row (0 = off).
    min_p: Segment,
    /// One uniform in `(0, 1)` per row.
    uniforms: Segment,
    all_greedy: bool,
    any_min_p: bool,
    any_filter: bool,
    /// The largest top-k when every sampled row has one (a `topk` of that many then replaces
    /// sorting the whole vocabulary); `None` when some sampled row has no top-k.
    top_k_bound: Option<i64>,
    want_entropy: bool,
    /// Alternatives per row's log-probability (`None`: no log-probabilities).
    logprobs_top: Option<usize>,
    penalties: Option<StagedPenalties>,
}

impl StagedSampling {
    /// Stages `rows` and their `uniforms` (one per row) into `upload`.
    pub fn stage(
        upload: &mut Upload,
        rows: &[RowSampling],
        uniforms: &[f32],
        want_entropy: bool,
    ) -> Self {
        let temperatures: Vec<f32> = rows.iter().map(|r| r.temperature).collect();
        let top_k: Vec<i64> = rows.iter().map(|r| r.top_k).collect();
        let top_p: Vec<f32> = rows.iter().map(|r| r.top_p).collect();
        let min_p: Vec<f32> = rows.iter().map(|r| r.min_p).collect();
        Self {
            temperatures: upload.push_f32(&temperatures),
            top_k: upload.push_i64(&top_k),
            top_p: upload.push_f32(&top_p),
            min_p: upload.push_f32(&min_p),
            uniforms: upload.push_f32(uniforms),
            all_greedy: rows.iter().all(|r| r.temperature == 0.0),
            any_min_p: rows.iter().any(|r| r.temperature > 0.0 && r.min_p > 0.0),
            any_filter: rows.iter().any(RowSampling::filters),
            top_k_bound: rows
                .iter()
                .filter(|r| r.temperature > 0.0)
                .map(|r| (r.top_k > 0).then_some(r.top_k))
                .try_fold(0, |bound, k| k.map(|k| bound.max(k))),
            want_entropy,
            logprobs_top: None,
            penalties: None,
        }
    }

    /// Also reports every row's log-probability with `top` alternatives (the most any row of
    /// the step asks for; `None`: no row asks).
    pub fn with_logprobs(mut self, top: Option<usize>) -> Self {
        self.logprobs_top = top;
        self
    }

    /// Applies staged penalties to their rows before sampling.
    pub fn with_penalties(mut self, penalties: Option<StagedPenalties>) -> Self {
        self.penalties = penalties;
        self
    }
}

/// Samples one token per row of `logits` `(R, V)` with the settings `staged` put in `uploaded`;
/// the results come back in one device-to-host copy.
pub fn sample_rows(logits: &Tensor, staged: &StagedSampling, uploaded: &Uploaded) -> SampledRows {
    let rows = logits.size()[0] as usize;
    let penalised = staged.penalties.map(|p| p.apply(logits, uploaded));
    let (tokens, confidence, probs) =
        draw_rows(penalised.as_ref().unwrap_or(logits), staged, uploaded);
    // One device-to-host transfer for everything: token ids are exact in f32 below 2^24, far
    // above any vocabulary size.
    let mut parts = vec![tokens.to_kind(Kind::Float), confidence];
    if let (true, Some(probs)) = (staged.want_entropy, &probs) {
        parts.push(entropy_of(probs));
    }
    if let Some(top) = staged.logprobs_top {
        parts.extend(logprobs::device_parts(logits, &tokens, top));
    }
    let host = download_f32(&Tensor::cat(&parts, 0));
    let tokens: Vec<i64> = host[..rows].iter().map(|&t| t as i64).collect();
    let entropy_len = if staged.want_entropy { rows } else { 0 };
    let (entropy, rest) = host[2 * rows..].split_at(entropy_len);
    SampledRows {
        logprobs: staged
            .logprobs_top
            .map(|top| logprobs::read_parts(rest, &tokens, top))
            .unwrap_or_default(),
        confidence: host[rows..2 * rows].to_vec(),
        entropy: entropy.to_vec(),
        tokens,
    }
}

/// `(token, confidence)` per row, and the probabilities when they were built.
fn draw_rows(
    logits: &Tensor,
    staged: &StagedSampling,
    uploaded: &Uploaded,
) -> (Tensor, Tensor, Option<Tensor>) {
    if staged.all_greedy {
        let (tokens, confidence) = greedy(logits);
        let probs = staged.want_entropy.then(|| logits.softmax(-1, Kind::Float));
        return (tokens, confidence, probs);
    }
    let logits = logits.to_kind(Kind::Float);
    let temperatures = uploaded.get(staged.temperatures);
    let greedy = temperatures.eq(0.0);
    let scaled = logits / temperatures.masked_fill(&greedy, 1.0).unsqueeze(1);
    let probs = scaled.softmax(-1, Kind::Float);
    let (max_prob, argmax) = probs.max_dim(-1, true);
    let candidates = if staged.any_min_p {
        let floor = &max_prob * uploaded.get(staged.min_p).unsqueeze(1);
        renormalise(&(&probs * probs.ge_tensor(&floor)))
    } else {
        probs.shallow_clone()
    };
    let u = uploaded.get(staged.uniforms).unsqueeze(1);
    let (drawn, conf) = if staged.any_filter {
        let top_k = uploaded.get(staged.top_k);
        let top_p = uploaded.get(staged.top_p);
        draw_filtered(&candidates, staged.top_k_bound, &top_k, &top_p, &u)
    } else {
        draw(&candidates, &u)
    };
    (
        argmax.squeeze_dim(1).where_self(&greedy, &drawn),
        max_prob.squeeze_dim(1).where_self(&greedy, &conf),
        Some(probs),
    )
}

/// Greedy rows in the logits' own dtype, reading them twice (max, and the log-normaliser):
/// `(argmax, its probability exp(max − logsumexp))` in f32, with no probability table.
fn greedy(logits: &Tensor) -> (Tensor, Tensor) {
    let (max, argmax) = logits.max_dim(-1, true);
    let confidence = if logits.kind() == Kind::Float {
        (&max - logits.logsumexp([-1], true)).exp()
    } else {
        // A half-precision logsumexp would round the normaliser itself; sum in f32 instead.
        (logits - &max)
            .exp()
            .sum_dim_intlist(-1, true, Kind::Float)
            .reciprocal()
    };
    (argmax.squeeze_dim(1), confidence.squeeze_dim(1))
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

/// Top-k (`top_k` `(R)`, 0 = off) then top-p (`top_p` `(R)`) over the sorted distribution,
/// renormalised, then [`draw`]. With a `bound` on every row's k, only the `bound` largest
/// probabilities are sorted (`topk`), not the whole vocabulary.
fn draw_filtered(
    probs: &Tensor,
    bound: Option<i64>,
    top_k: &Tensor,
    top_p: &Tensor,
    u: &Tensor,
) -> (Tensor, Tensor) {
    let device = probs.device();
    let (sorted, order) = match bound {
        Some(k) => probs.topk(k.min(probs.size()[1]), -1, true, true),
        None => probs.sort(-1, true),
    };
    let vocab = sorted.size()[1];
    let k = top_k.masked_fill(&top_k.le(0), vocab).clamp_max(vocab);
    let ranks = Tensor::arange(vocab, (Kind::Int64, device)).unsqueeze(0);
    let keep_k = ranks.lt_tensor(&k.unsqueeze(1));
    let top_k = renormalise(&(&sorted * keep_k));
    let mass_before = top_k.cumsum(-1, Kind::Float) - &top_k;
    let keep_p = mass_before.lt_tensor(&top_p.unsqueeze(1));
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

#[cfg(test)]
mod tests {
    use super::*;

    const GREEDY: RowSampling = RowSampling {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
    };
    const WARM: RowSampling = RowSampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
    };

    /// Stages, uploads and samples, as a decoding step does.
    fn sample_rows(
        logits: &Tensor,
        rows: &[RowSampling],
        uniforms: &[f32],
        want_entropy: bool,
    ) -> SampledRows {
        let mut upload = Upload::default();
        let staged = StagedSampling::stage(&mut upload, rows, uniforms, want_entropy);
        super::sample_rows(logits, &staged, &upload.send(logits.device()))
    }

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
    fn min_p_drops_tokens_below_its_share_of_the_best() {
        // min_p 0.4 keeps tokens with p >= 0.4 * 0.6 = 0.24: {0.6, 0.3}, renormalised.
        let logits = logits_of(&[0.1, 0.6, 0.3]);
        let row = RowSampling { min_p: 0.4, ..WARM };
        let out = sample_rows(&logits, &[row], &[0.01], false);
        assert_eq!(out.tokens[0], 1);
        assert!((out.confidence[0] - 2.0 / 3.0).abs() < 1e-5);
        let two = Tensor::cat(&[&logits, &logits], 0);
        let out = sample_rows(&two, &[row, WARM], &[0.999, 0.01], false);
        assert_eq!(out.tokens, vec![2, 0], "min-p cuts only its own row");
    }

    #[test]
    fn a_top_k_row_does_not_cut_an_unfiltered_row_of_the_same_batch() {
        let logits = Tensor::cat(
            &[logits_of(&[0.1, 0.6, 0.3]), logits_of(&[0.1, 0.6, 0.3])],
            0,
        );
        let top1 = RowSampling { top_k: 1, ..WARM };
        let out = sample_rows(&logits, &[top1, WARM], &[0.95, 0.95], false);
        // A filtered batch draws over the sorted distribution (0.6, 0.3, 0.1): u = 0.95 falls
        // on the least likely token, which a top-1 cut would have removed.
        assert_eq!(out.tokens, vec![1, 0]);
        assert!((out.confidence[1] - 0.1).abs() < 1e-5);
    }

    #[test]
    fn greedy_confidence_is_the_softmax_probability_in_any_dtype() {
        let logits = Tensor::from_slice(&[1.5f32, -0.25, 3.0, 0.5]).unsqueeze(0);
        let want = logits.softmax(-1, Kind::Float).max().double_value(&[]) as f32;
        for kind in [Kind::Float, Kind::BFloat16] {
            let out = sample_rows(&logits.to_kind(kind), &[GREEDY], &[0.5], false);
            assert_eq!(out.tokens, vec![2]);
            assert!((out.confidence[0] - want).abs() < 1e-2, "{kind:?}");
        }
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
