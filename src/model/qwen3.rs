//! The SDAR / Qwen3 transformer in tch.
//!
//! Embeddings → N × (RMSNorm → attention with per-head q/k RMSNorm before RoPE, GQA → residual →
//! RMSNorm → SwiGLU → residual) → final RMSNorm → LM head (tied or untied). **No logit shift**: the
//! logit at row i predicts the token at row i (masked diffusion). Parameter names are the Hugging
//! Face ones (`model.layers.N.self_attn.q_proj.weight`, …).
//!
//! The hot path is shaped for few ops per layer: q/k/v and gate/up are one matmul each
//! ([`super::fused`]); q and k are normalised and rotated together; the boolean mask becomes one
//! additive bias per forward; GQA is folded into the query axis (each KV head's query group
//! becomes extra query rows), so query and key heads match and `scaled_dot_product_attention`
//! can take a fused kernel (flash on the CPU, memory-efficient on CUDA) instead of the math
//! fallback that repeats K/V per query head. Keys/values come from a [`KvBinding`] that stores
//! the new rows and returns views of what to attend over.

use tch::{nn, Kind, Tensor};

use super::attention::{
    attention_bias, fold_query_groups, keep_cudnn_out_of_attention, unfold_query_groups, Heads,
};
use super::fused::{FusedRows, NormTable};
use super::op_count;
use super::rope::{self, Rope, RopeTables};
use super::SdarConfig;

/// Where one forward pass keeps attention keys/values.
///
/// Given layer `layer`'s new keys and values, `(B, T, Hkv, D)` each (views, not necessarily
/// contiguous), an implementation stores what it must and returns the keys/values every query
/// row attends over, `(B, Hkv, K, D)` each: views of its storage where it can.
pub trait KvBinding {
    /// Stores this layer's new keys/values and returns the full keys/values to attend over.
    fn attend_over(&self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor);
}

/// RMSNorm with statistics in f32, cast back before the weight multiply (as `transformers`).
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: &nn::Path, dim: i64, eps: f64) -> Self {
        Self {
            weight: p.var("weight", &[dim], nn::Init::Const(1.0)),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        // ATen's rms_norm upcasts to f32 for the statistics, casts the normalised values back
        // to the input dtype, then multiplies the weight: the `transformers` order.
        x.rms_norm([self.weight.size()[0]], Some(&self.weight), self.eps)
    }
}

/// A bias-free projection's weight variable `(output, input)`.
fn weight(p: nn::Path, input: i64, output: i64) -> Tensor {
    nn::linear(
        p,
        input,
        output,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    )
    .ws
}

#[derive(Debug)]
struct Attention {
    qkv_proj: FusedRows,
    o_proj: Tensor,
    heads: Heads,
}

impl Attention {
    /// The layer's projections and its `(q_norm, k_norm)` weight variables.
    fn new(p: &nn::Path, cfg: &SdarConfig) -> (Self, (Tensor, Tensor)) {
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let (nq, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let norm = |name: &str| RmsNorm::new(&(p / name), d, cfg.rms_norm_eps).weight;
        let parts = vec![
            weight(p / "q_proj", h, nq * d),
            weight(p / "k_proj", h, nkv * d),
            weight(p / "v_proj", h, nkv * d),
        ];
        let attention = Self {
            qkv_proj: FusedRows::new(parts),
            o_proj: weight(p / "o_proj", nq * d, h),
            heads: Heads {
                query: nq,
                kv: nkv,
                dim: d,
                eps: cfg.rms_norm_eps,
            },
        };
        (attention, (norm("q_norm"), norm("k_norm")))
    }

    /// Attention over normalised inputs `h` `(B, T, H)`; queries come from every row, or only
    /// from `rows` (then the output is `(B, R, H)`). Keys/values always come from every row.
    fn forward(&self, h: &Tensor, ctx: &LayerContext, rows: Option<&QueryRows>) -> Tensor {
        let Heads { query, kv, dim, .. } = self.heads;
        let (b, t) = (h.size()[0], h.size()[1]);
        let qkv =
            h.linear::<Tensor>(&self.qkv_proj.weight(), None)
                .view([b, t, query + 2 * kv, dim]);
        let qk_v = qkv.split_with_sizes([query + kv, kv], 2);
        // Per-head RMSNorm of q and k in one op, then one rotation for both.
        let qk = qk_v[0].rms_norm([dim], None::<Tensor>, self.heads.eps) * ctx.norms;
        let qk = rope::apply(&qk, ctx.rope);
        let q_k = qk.split_with_sizes([query, kv], 2);
        let v = &qk_v[1];
        let (keys, values) = match ctx.kv {
            Some(binding) => binding.attend_over(ctx.layer, &q_k[1], v),
            None => (q_k[1].transpose(1, 2), v.transpose(1, 2)),
        };
        let (q, bias) = match rows {
            Some(r) => (take_rows(&q_k[0], &r.index), &r.bias),
            None => (q_k[0].shallow_clone(), ctx.bias),
        };
        let tq = q.size()[1];
        let scale = 1.0 / (dim as f64).sqrt();
        let o = Tensor::scaled_dot_product_attention(
            &fold_query_groups(&q, self.heads),
            &keys,
            &values,
            Some(bias),
            0.0,
            false,
            scale,
            false,
        );
        unfold_query_groups(&o, self.heads, tq).linear::<Tensor>(&self.o_proj, None)
    }
}

/// The rows whose outputs are wanted (the last layer computes attention output and MLP for
/// these only): row indices `(B, R)` and their attention bias.
struct QueryRows {
    index: Tensor,
    bias: Tensor,
}

/// Rows `index` `(B, R)` of the flattened `(B·T, …)` rows of `x` `(B, T, …)` → `(B, R, …)`.
fn take_rows(x: &Tensor, index: &Tensor) -> Tensor {
    x.flatten(0, 1).index(&[Some(index)])
}

#[derive(Debug)]
struct Mlp {
    gate_up_proj: FusedRows,
    down_proj: Tensor,
    intermediate: i64,
}

impl Mlp {
    fn new(p: &nn::Path, cfg: &SdarConfig) -> Self {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            gate_up_proj: FusedRows::new(vec![
                weight(p / "gate_proj", h, i),
                weight(p / "up_proj", h, i),
            ]),
            down_proj: weight(p / "down_proj", i, h),
            intermediate: i,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let gate_up = x.linear::<Tensor>(&self.gate_up_proj.weight(), None);
        let parts = gate_up.split(self.intermediate, -1);
        (parts[0].silu() * &parts[1]).linear::<Tensor>(&self.down_proj, None)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// Per-layer inputs of one forward pass.
struct LayerContext<'a> {
    layer: usize,
    rope: &'a RopeTables,
    bias: &'a Tensor,
    /// This layer's `(Hq + Hkv, D)` q/k norm weights.
    norms: &'a Tensor,
    kv: Option<&'a dyn KvBinding>,
}

impl DecoderLayer {
    fn new(p: &nn::Path, cfg: &SdarConfig) -> (Self, (Tensor, Tensor)) {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let (self_attn, norms) = Attention::new(&(p / "self_attn"), cfg);
        let layer = Self {
            input_layernorm: RmsNorm::new(&(p / "input_layernorm"), h, eps),
            self_attn,
            post_attention_layernorm: RmsNorm::new(&(p / "post_attention_layernorm"), h, eps),
            mlp: Mlp::new(&(p / "mlp"), cfg),
        };
        (layer, norms)
    }

    /// One layer; with `rows`, only those rows come out (their keys/values still go in).
    fn forward(&self, x: &Tensor, ctx: &LayerContext, rows: Option<&QueryRows>) -> Tensor {
        let attention = self
            .self_attn
            .forward(&self.input_layernorm.forward(x), ctx, rows);
        let residual = rows.map_or_else(|| x.shallow_clone(), |r| take_rows(x, &r.index));
        let x = residual + attention;
        &x + self.mlp.forward(&self.post_attention_layernorm.forward(&x))
    }
}

/// One forward pass's inputs: token ids and positions `(B, T)`, and the boolean attention mask
/// `(B, 1, T, K)` (`true` = may attend), where K is the length of what `kv` returns (T without it).
pub struct ForwardInput<'a> {
    /// Token ids, `(B, T)` int64.
    pub ids: &'a Tensor,
    /// Absolute positions, `(B, T)` int64.
    pub positions: &'a Tensor,
    /// Boolean mask `(B, 1, T, K)`.
    pub mask: &'a Tensor,
    /// Key/value storage; `None` attends over this pass's own rows only.
    pub kv: Option<&'a dyn KvBinding>,
    /// Rows whose hidden states are wanted (`None`: all), as `(B, R)` indices into the flattened
    /// `(B·T)` rows, batch row n's rows in row n. Other rows still write their keys/values, but
    /// the last layer skips their attention output and MLP.
    pub output_rows: Option<&'a Tensor>,
}

impl<'a> ForwardInput<'a> {
    /// A full forward over `ids` at `positions` under `mask`: no cache, every row out.
    pub fn new(ids: &'a Tensor, positions: &'a Tensor, mask: &'a Tensor) -> Self {
        Self {
            ids,
            positions,
            mask,
            kv: None,
            output_rows: None,
        }
    }
}

/// The SDAR / Qwen3 model: parameters live in the [`nn::VarStore`] it was built from.
#[derive(Debug)]
pub struct Sdar {
    config: SdarConfig,
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    /// Every layer's q/k norm weights (the variables are views into it).
    qk_norms: NormTable,
    norm: RmsNorm,
    lm_head: Tensor,
    rope: Rope,
}

impl Sdar {
    /// Creates the parameters under `root` (randomly initialised; load a checkpoint over them).
    pub fn new(root: &nn::Path, config: &SdarConfig) -> Self {
        let model = root / "model";
        let (v, h) = (config.vocab_size, config.hidden_size);
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let embed_tokens = (&model / "embed_tokens").var("weight", &[v, h], init);
        let (layers, norms): (Vec<_>, Vec<_>) = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(&(&model / "layers" / i), config))
            .unzip();
        if root.device().is_cuda() {
            keep_cudnn_out_of_attention();
        }
        let lm_head = if config.tie_word_embeddings {
            embed_tokens.shallow_clone()
        } else {
            (root / "lm_head").var("weight", &[v, h], init)
        };
        let qk_norms = NormTable::new(
            norms,
            config.num_attention_heads,
            config.num_key_value_heads,
        );
        Self {
            config: config.clone(),
            layers,
            qk_norms,
            norm: RmsNorm::new(&(&model / "norm"), h, config.rms_norm_eps),
            lm_head,
            // Rope base presence is checked by `SdarConfig::validate`.
            rope: Rope::new(
                config.head_dim(),
                config.rope_base().unwrap_or(1e6),
                config.max_position_embeddings,
                embed_tokens.kind(),
                root.device(),
            ),
            embed_tokens,
        }
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &SdarConfig {
        &self.config
    }

    /// Device of the parameters.
    pub fn device(&self) -> tch::Device {
        self.embed_tokens.device()
    }

    /// Floating-point kind of the parameters.
    pub fn dtype(&self) -> Kind {
        self.embed_tokens.kind()
    }

    /// Final hidden states after the last RMSNorm: `(B, T, H)`, or `(B, R, H)` for
    /// `input.output_rows`.
    pub fn hidden_states(&self, input: &ForwardInput) -> Tensor {
        if !super::fused::grad_enabled() {
            self.qk_norms.sync();
        }
        let mut x = Tensor::embedding(&self.embed_tokens, input.ids, -1, false, false);
        let (kind, group) = (
            x.kind(),
            self.config.num_attention_heads / self.config.num_key_value_heads,
        );
        let rope = self.rope.tables(input.positions, kind);
        let bias = attention_bias(input.mask, kind, group);
        let rows = input.output_rows.map(|index| QueryRows {
            index: index.shallow_clone(),
            bias: attention_bias(
                &take_rows(&input.mask.squeeze_dim(1), index).unsqueeze(1),
                kind,
                group,
            ),
        });
        let last = self.layers.len().saturating_sub(1);
        let x = op_count::section(|| {
            for (layer, block) in self.layers.iter().enumerate() {
                let norms = self.qk_norms.layer(layer);
                let ctx = LayerContext {
                    layer,
                    rope: &rope,
                    bias: &bias,
                    norms: &norms,
                    kv: input.kv,
                };
                x = block.forward(&x, &ctx, if layer == last { rows.as_ref() } else { None });
            }
            x
        });
        self.norm.forward(&x)
    }

    /// The kernel `scaled_dot_product_attention` picks for this model's attention call with
    /// `batch` rows of `rows` queries over `keys` keys (`math`, `flash`, `efficient`, `cudnn`):
    /// libtorch's own choice (`_fused_sdp_choice`) for the shapes, dtype and device in use.
    pub fn attention_backend(&self, batch: i64, rows: i64, keys: i64) -> &'static str {
        let cfg = &self.config;
        let (kv, d) = (cfg.num_key_value_heads, cfg.head_dim());
        let group = cfg.num_attention_heads / kv;
        let options = (self.dtype(), self.device());
        let q = Tensor::zeros([batch, kv, rows * group, d], options);
        let k = Tensor::zeros([batch, kv, keys, d], options);
        let bias = Tensor::zeros([batch, 1, rows * group, keys], options);
        let scale = 1.0 / (d as f64).sqrt();
        match Tensor::internal_fused_sdp_choice(&q, &k, &k, Some(&bias), 0.0, false, scale, false) {
            0 => "math",
            1 => "flash",
            2 => "efficient",
            3 => "cudnn",
            4 => "overrideable",
            _ => "none",
        }
    }

    /// LM-head logits for hidden states of any leading shape `(…, H)` → `(…, V)`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(&self.lm_head, None)
    }

    /// Full forward: logits `(B, T, V)` for every row.
    pub fn forward(&self, input: &ForwardInput) -> Tensor {
        self.logits(&self.hidden_states(input))
    }
}
