//! Rotary position embeddings in the NeoX "rotate-half" layout used by Qwen3.
//!
//! `cos` and the sign-folded `sin` are tabulated once for every position the model supports
//! (computed in f32 as `transformers` does, then cast to the activation dtype); a forward looks
//! its positions up (block diffusion needs arbitrary positions per row) and applies the rotation
//! to queries and keys together.

use tch::{Kind, Tensor};

/// Tables `(positions, D)` of `cos` and `[-sin, sin]` over the two halves, on the model's device.
#[derive(Debug)]
pub struct Rope {
    cos: Tensor,
    signed_sin: Tensor,
}

impl Rope {
    /// Tables for per-head width `head_dim`, base `theta`, positions `0..max_positions`, stored
    /// in `kind`.
    pub fn new(
        head_dim: i64,
        theta: f64,
        max_positions: i64,
        kind: Kind,
        device: tch::Device,
    ) -> Self {
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64) as f32)
            .collect();
        let inv_freq = Tensor::from_slice(&inv_freq).to_device(device);
        let positions = Tensor::arange(max_positions.max(1), (Kind::Float, device));
        let freqs = positions.unsqueeze(-1) * inv_freq.unsqueeze(0); // (P, D/2)
        let sin = freqs.sin();
        Self {
            cos: Tensor::cat(&[&freqs, &freqs], -1).cos().to_kind(kind),
            signed_sin: Tensor::cat(&[-&sin, sin], -1).to_kind(kind),
        }
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> i64 {
        self.cos.size()[0]
    }

    /// Tables for positions `(B, T)`, each `(B, T, 1, D)` in `kind`: they broadcast over the
    /// heads of a `(B, T, H, D)` tensor. (Stored in the model's kind, so a cast happens only
    /// for a model converted after it was built.)
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> RopeTables {
        let (b, t) = (positions.size()[0], positions.size()[1]);
        let flat = positions.reshape([-1]);
        let look_up = |table: &Tensor| {
            let rows = table.index_select(0, &flat).view([b, t, 1, -1]);
            if rows.kind() == kind {
                rows
            } else {
                rows.to_kind(kind)
            }
        };
        RopeTables {
            cos: look_up(&self.cos),
            signed_sin: look_up(&self.signed_sin),
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
/// two halves times the sign-folded sine; `x` is `(B, T, H, D)`.
pub fn apply(x: &Tensor, tables: &RopeTables) -> Tensor {
    let half = x.size()[3] / 2;
    x * &tables.cos + x.roll([half], [3]) * &tables.signed_sin
}
