//! Rotary position embeddings in the NeoX "rotate-half" layout used by Qwen3.
//!
//! Tables are computed from explicit positions (block diffusion needs arbitrary positions per
//! row), in f32, then cast to the activation dtype as `transformers` does.

use tch::{Kind, Tensor};

/// Inverse frequencies `θ^(-2i/d)` for `i = 0..d/2`, kept on the model's device.
#[derive(Debug)]
pub struct Rope {
    inv_freq: Tensor,
}

impl Rope {
    /// Builds the table for per-head width `head_dim` and base `theta`.
    pub fn new(head_dim: i64, theta: f64, device: tch::Device) -> Self {
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64) as f32)
            .collect();
        let inv_freq = Tensor::from_slice(&inv_freq).to_device(device);
        Self { inv_freq }
    }

    /// Tables for positions `(B, T)`: `cos` and the sign-folded `sin` (`[-sin, sin]` over the two
    /// halves), both `(B, 1, T, D)` and cast to `kind`; see [`apply`].
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> RopeTables {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1); // (B, 1, T, D)
        let sin = freqs.sin().unsqueeze(1);
        let signed_sin = Tensor::cat(&[-&sin, sin], -1);
        RopeTables {
            cos: emb.cos().to_kind(kind),
            signed_sin: signed_sin.to_kind(kind),
        }
    }
}

/// Per-forward rotary tables (see [`Rope::tables`]).
#[derive(Debug)]
pub struct RopeTables {
    cos: Tensor,
    signed_sin: Tensor,
}

/// `x · cos + rotate_half(x) · sin` with `rotate_half([a, b]) = [-b, a]`, written as a roll of the
/// two halves times the sign-folded sine; `x` is `(B, H, T, D)`.
pub fn apply(x: &Tensor, tables: &RopeTables) -> Tensor {
    let half = x.size()[3] / 2;
    x * &tables.cos + x.roll([half], [3]) * &tables.signed_sin
}
