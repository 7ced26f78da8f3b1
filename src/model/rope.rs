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

    /// `(cos, sin)` of shape `(B, 1, T, D)` for positions `(B, T)`, cast to `kind`.
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1); // (B, 1, T, D)
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }
}

/// `x · cos + rotate_half(x) · sin` with `rotate_half([a, b]) = [-b, a]`; `x` is `(B, H, T, D)`.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let (a, b) = (x.narrow(3, 0, half), x.narrow(3, half, half));
    let rotated = Tensor::cat(&[&(-b), &a], 3);
    x * cos + rotated * sin
}
