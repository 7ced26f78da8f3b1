//! T3D's losses on log-probabilities (spec §5.2–5.5), as tensor functions of plain inputs.
//!
//! - [`sequence_log_likelihood`]: per-sample mean log-likelihood of a token sequence over its
//!   masked positions, `LL_f(z) = (1/|M|) Σ_{i∈M} ℓ_f[i, z_i]`.
//! - [`ddo_loss`]: `L_real = −log σ(β·Δ_real)`, `L_fake = −α·log(1 − σ(β·Δ_fake))` with
//!   `Δ = LL_θ − LL_ref`, each averaged over the batch.
//! - [`weighted_nll`]: the path loss once each row carries its level weight.
//! - [`fake_tokens`]: the reference's one-step prediction (argmax, or a sample at a temperature).

use tch::{Kind, Tensor};

/// Per-sample mean of `log_probs[r, tokens[r]]` over the rows of each sample.
///
/// `log_probs`: `(R, V)` f32; `tokens`, `sample_of_row`: `(R,)` i64; returns `(samples,)`.
/// Every sample must own at least one row.
pub fn sequence_log_likelihood(
    log_probs: &Tensor,
    tokens: &Tensor,
    sample_of_row: &Tensor,
    samples: i64,
) -> Tensor {
    let picked = log_probs
        .gather(1, &tokens.unsqueeze(1), false)
        .squeeze_dim(1);
    let zeros = Tensor::zeros([samples], (Kind::Float, log_probs.device()));
    let sums = zeros.index_add(0, sample_of_row, &picked);
    let counts = Tensor::zeros([samples], (Kind::Float, log_probs.device())).index_add(
        0,
        sample_of_row,
        &Tensor::ones_like(&picked),
    );
    sums / counts
}

/// The two DDO terms, each a batch mean: `(L_real, L_fake)`.
pub fn ddo_loss(
    theta_real: &Tensor,
    theta_fake: &Tensor,
    ref_real: &Tensor,
    ref_fake: &Tensor,
    alpha: f64,
    beta: f64,
) -> (Tensor, Tensor) {
    let delta_real = (theta_real - ref_real) * beta;
    let delta_fake = (theta_fake - ref_fake) * beta;
    // log(1 − σ(x)) = log σ(−x), the stable form of the spec's literal expression.
    let real = -delta_real.log_sigmoid().mean(Kind::Float);
    let fake = -(delta_fake.neg().log_sigmoid().mean(Kind::Float)) * alpha;
    (real, fake)
}

/// `−Σ_r w_r · log_probs[r, targets[r]]`.
pub fn weighted_nll(log_probs: &Tensor, targets: &Tensor, weights: &Tensor) -> Tensor {
    let picked = log_probs
        .gather(1, &targets.unsqueeze(1), false)
        .squeeze_dim(1);
    -(picked * weights).sum(Kind::Float)
}

/// The reference's one-step sample at every row: argmax at `temperature == 0`, otherwise a
/// draw from `softmax(log_probs / temperature)` (the Gumbel-max trick upstream uses samples the
/// same distribution). One draw serves both models (spec bug §8.10).
pub fn fake_tokens(log_probs: &Tensor, temperature: f64) -> Tensor {
    if temperature <= 0.0 {
        return log_probs.argmax(-1, false);
    }
    (log_probs / temperature)
        .softmax(-1, Kind::Float)
        .multinomial(1, true)
        .squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    fn ll(values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
    }

    #[test]
    fn ddo_at_theta_equal_to_ref_is_ln2_and_alpha_ln2() {
        let same = ll(&[-1.3, -0.2, -2.5]);
        let fake = ll(&[-0.4, -0.9, -0.1]);
        let (real, fake_loss) = ddo_loss(&same, &fake, &same, &fake, 0.5, 0.1);
        // Spec §9 test 9: ln 2 = 0.693147 and α ln 2 = 0.346574.
        assert!((scalar(&real) - std::f64::consts::LN_2).abs() < 1e-6);
        assert!((scalar(&fake_loss) - 0.346574).abs() < 1e-6);
    }

    #[test]
    fn ddo_with_unit_deltas_matches_the_hand_values() {
        let reference = ll(&[-1.0, -2.0]);
        let theta = &reference + 1.0;
        let (real, fake) = ddo_loss(&theta, &theta, &reference, &reference, 0.5, 0.1);
        // −log σ(0.1) and −0.5·log(1 − σ(0.1)).
        assert!((scalar(&real) - 0.644397).abs() < 1e-6);
        assert!((scalar(&fake) - 0.372198).abs() < 1e-6);
    }

    #[test]
    fn sequence_log_likelihood_is_a_per_sample_mean() {
        // Rows 0, 1 belong to sample 0; row 2 to sample 1.
        let log_probs = Tensor::from_slice(&[-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0]).view([3, 2]);
        let tokens = Tensor::from_slice(&[1i64, 0, 1]);
        let owner = Tensor::from_slice(&[0i64, 0, 1]);
        let got =
            Vec::<f32>::try_from(sequence_log_likelihood(&log_probs, &tokens, &owner, 2)).unwrap();
        assert_eq!(got, vec![(-2.0 - 3.0) / 2.0, -6.0]);
    }

    #[test]
    fn weighted_nll_weights_each_row() {
        let log_probs = Tensor::from_slice(&[-1.0f32, -2.0, -3.0, -4.0]).view([2, 2]);
        let targets = Tensor::from_slice(&[0i64, 1]);
        let w = Tensor::from_slice(&[0.25f32, 0.5]);
        assert!((scalar(&weighted_nll(&log_probs, &targets, &w)) - (0.25 + 2.0)).abs() < 1e-6);
    }

    #[test]
    fn fake_tokens_are_the_argmax_at_temperature_zero() {
        let log_probs = Tensor::from_slice(&[-3.0f32, -0.1, -2.0, -0.5, -1.0, -4.0]).view([2, 3]);
        let got = Vec::<i64>::try_from(fake_tokens(&log_probs, 0.0)).unwrap();
        assert_eq!(got, vec![1, 0]);
        let sharp = Tensor::from_slice(&[-9.0f32, 0.0, -9.0]).view([1, 3]);
        assert_eq!(i64::try_from(fake_tokens(&sharp, 0.1)).unwrap(), 1);
    }
}
