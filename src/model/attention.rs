//! The attention's shapes: GQA folded into the query axis (each KV head's query group becomes
//! extra query rows, so query and key heads match and no K/V is repeated), its inverse on the
//! output, and the boolean mask turned into the additive bias the folded queries take.

use tch::{Kind, Tensor};

/// Head counts and widths of one attention layer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heads {
    pub(super) query: i64,
    pub(super) kv: i64,
    pub(super) dim: i64,
    pub(super) eps: f64,
}

impl Heads {
    /// Query heads per KV head.
    pub(super) fn group(&self) -> i64 {
        self.query / self.kv
    }
}

/// `(B, T, Hq, D)` queries → `(B, Hkv, T·G, D)`: KV head j's query heads `jG .. jG+G` become
/// query rows `t·G + g`, so every query head meets its own KV head with no K/V repeat. One
/// strided view and one copy.
pub(super) fn fold_query_groups(q: &Tensor, heads: Heads) -> Tensor {
    let (b, t) = (q.size()[0], q.size()[1]);
    let (g, d) = (heads.group(), heads.dim);
    let s = q.stride();
    // Element (b, j, t, g, d) is q[b, t, jG + g, d].
    q.as_strided(
        [b, heads.kv, t, g, d],
        [s[0], g * s[2], s[1], s[2], s[3]],
        None, // the tensor's own storage offset
    )
    .reshape([b, heads.kv, t * g, d])
}

/// The inverse of [`fold_query_groups`] on the attention output `(B, Hkv, T·G, D)`, whatever
/// its strides, flattened to `(B, T, Hq·D)`: one strided view and one copy.
pub(super) fn unfold_query_groups(o: &Tensor, heads: Heads, t: i64) -> Tensor {
    let b = o.size()[0];
    let (g, d) = (heads.group(), heads.dim);
    let s = o.stride();
    // Element (b, t, j, g, d) is o[b, j, t·G + g, d].
    o.as_strided(
        [b, t, heads.kv, g, d],
        [s[0], g * s[2], s[1], s[2], s[3]],
        None,
    )
    .reshape([b, t, heads.query * d])
}

/// `(B, 1, T, K)` boolean mask (`true` = may attend) → the additive bias the attention takes,
/// in `kind`, with each row repeated for the `group` query heads folded into it.
pub(super) fn attention_bias(mask: &Tensor, kind: Kind, group: i64) -> Tensor {
    let bias = Tensor::where_scalar(mask, 0.0, f64::NEG_INFINITY);
    let bias = if bias.kind() == kind {
        bias
    } else {
        bias.to_kind(kind)
    };
    if group == 1 {
        return bias;
    }
    // Row t becomes rows t·G .. t·G + G: a broadcast view and one copy (no host sync, so a
    // CUDA graph can capture it).
    let (b, h, t, k) = (
        bias.size()[0],
        bias.size()[1],
        bias.size()[2],
        bias.size()[3],
    );
    bias.unsqueeze(3)
        .expand([b, h, t, group, k], false)
        .reshape([b, h, t * group, k])
}

/// On CUDA, takes cuDNN's attention kernel out of `scaled_dot_product_attention`'s choice
/// (`T3D_SDPA_CUDNN=1` leaves it in): cuDNN plans each new shape before running it, tens of
/// milliseconds, and a server's steps keep meeting new batch and key lengths. The
/// memory-efficient kernel that runs instead takes the same bias and needs no plan.
pub(super) fn keep_cudnn_out_of_attention() {
    #[allow(unsafe_code)]
    mod ffi {
        extern "C" {
            pub fn t3d_sdp_use_cudnn(enabled: std::ffi::c_int);
        }
    }
    let keep = std::env::var("T3D_SDPA_CUDNN").is_ok_and(|v| v == "1");
    // SAFETY: sets one flag of libtorch's global context.
    #[allow(unsafe_code)]
    unsafe {
        ffi::t3d_sdp_use_cudnn(i32::from(keep));
    }
}
