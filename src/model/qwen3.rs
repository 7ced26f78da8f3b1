//! The SDAR / Qwen3 transformer in tch.
//!
//! Embeddings → N × (RMSNorm → attention with per-head q/k RMSNorm before RoPE, GQA → residual →
//! RMSNorm → SwiGLU → residual) → final RMSNorm → LM head (tied or untied). **No logit shift**: the
//! logit at row i predicts the token at row i (masked diffusion). Attention goes through
//! `scaled_dot_product_attention` with an explicit boolean mask and explicit positions, so the
//! same code serves block-causal prefill, cached denoising steps and dual-stream training.
//! Parameter names are the Hugging Face ones (`model.layers.N.self_attn.q_proj.weight`, …).

use tch::{nn, Kind, Tensor};

use super::rope::{self, Rope, RopeTables};
use super::SdarConfig;

/// Where one forward pass keeps attention keys/values.
///
/// Given the new `(B, Hkv, Q, D)` keys and values of layer `layer`, an implementation stores
/// what it must and returns the keys/values every query row attends over (`(B, Hkv, K, D)`).
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

fn linear(p: nn::Path, input: i64, output: i64) -> nn::Linear {
    nn::linear(
        p,
        input,
        output,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    )
}

#[derive(Debug)]
struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    o_proj: nn::Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(p: &nn::Path, cfg: &SdarConfig) -> Self {
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let (nq, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Self {
            q_proj: linear(p / "q_proj", h, nq * d),
            k_proj: linear(p / "k_proj", h, nkv * d),
            v_proj: linear(p / "v_proj", h, nkv * d),
            o_proj: linear(p / "o_proj", nq * d, h),
            q_norm: RmsNorm::new(&(p / "q_norm"), d, cfg.rms_norm_eps),
            k_norm: RmsNorm::new(&(p / "k_norm"), d, cfg.rms_norm_eps),
            heads: nq,
            kv_heads: nkv,
            head_dim: d,
        }
    }

    /// Attention over normalised inputs `h` `(B, T, H)`; queries come from every row, or only
    /// from `rows` (then the output is `(B, R, H)`). Keys/values always come from every row.
    fn forward(&self, h: &Tensor, ctx: &LayerContext, rows: Option<&QueryRows>) -> Tensor {
        let (b, t) = (h.size()[0], h.size()[1]);
        let q_in = rows.map_or_else(|| h.shallow_clone(), |r| take_rows(h, &r.index));
        let tq = q_in.size()[1];
        // (B, H, T, D) after the per-head norm and the transpose.
        let heads =
            |y: Tensor, len: i64, n: i64| y.view([b, len, n, self.head_dim]).transpose(1, 2);
        let q =
            self.q_norm.forward(
                &q_in
                    .apply(&self.q_proj)
                    .view([b, tq, self.heads, self.head_dim]),
            );
        let k =
            self.k_norm.forward(
                &h.apply(&self.k_proj)
                    .view([b, t, self.kv_heads, self.head_dim]),
            );
        let v = heads(h.apply(&self.v_proj), t, self.kv_heads);
        let q = rope::apply(&q.transpose(1, 2), rows.map_or(ctx.rope, |r| &r.rope));
        let k = rope::apply(&k.transpose(1, 2), ctx.rope);
        let (k, v) = match ctx.kv {
            Some(binding) => binding.attend_over(ctx.layer, &k, &v),
            None => (k, v),
        };
        let mask = rows.map_or(ctx.mask, |r| &r.mask);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let gqa = self.heads != self.kv_heads;
        let o =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, scale, gqa);
        o.transpose(1, 2)
            .reshape([b, tq, self.heads * self.head_dim])
            .apply(&self.o_proj)
    }
}

/// The rows whose outputs are wanted (the last layer computes queries, attention output and
/// MLP for these only): row indices `(B, R)` with their RoPE tables and mask rows.
struct QueryRows {
    index: Tensor,
    rope: RopeTables,
    mask: Tensor,
}

/// Rows `index` `(B, R)` of `x` `(B, T, …)` → `(B, R, …)`.
fn take_rows(x: &Tensor, index: &Tensor) -> Tensor {
    let batch = Tensor::arange(index.size()[0], (Kind::Int64, index.device())).unsqueeze(1);
    x.index(&[Some(batch), Some(index.shallow_clone())])
}

#[derive(Debug)]
struct Mlp {
    gate_proj: nn::Linear,
    up_proj: nn::Linear,
    down_proj: nn::Linear,
}

impl Mlp {
    fn new(p: &nn::Path, cfg: &SdarConfig) -> Self {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            gate_proj: linear(p / "gate_proj", h, i),
            up_proj: linear(p / "up_proj", h, i),
            down_proj: linear(p / "down_proj", i, h),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        (x.apply(&self.gate_proj).silu() * x.apply(&self.up_proj)).apply(&self.down_proj)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// Per-layer inputs shared by every layer of one forward pass.
struct LayerContext<'a> {
    layer: usize,
    rope: &'a RopeTables,
    mask: &'a Tensor,
    kv: Option<&'a dyn KvBinding>,
}

impl DecoderLayer {
    fn new(p: &nn::Path, cfg: &SdarConfig) -> Self {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Self {
            input_layernorm: RmsNorm::new(&(p / "input_layernorm"), h, eps),
            self_attn: Attention::new(&(p / "self_attn"), cfg),
            post_attention_layernorm: RmsNorm::new(&(p / "post_attention_layernorm"), h, eps),
            mlp: Mlp::new(&(p / "mlp"), cfg),
        }
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
    /// Rows `(B, R)` whose hidden states are wanted (`None`: all). Other rows still write their
    /// keys/values, but the last layer skips their queries, attention output and MLP.
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
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(&(&model / "layers" / i), config))
            .collect();
        let lm_head = if config.tie_word_embeddings {
            embed_tokens.shallow_clone()
        } else {
            (root / "lm_head").var("weight", &[v, h], init)
        };
        Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm: RmsNorm::new(&(&model / "norm"), h, config.rms_norm_eps),
            lm_head,
            // Rope base presence is checked by `SdarConfig::validate`.
            rope: Rope::new(
                config.head_dim(),
                config.rope_base().unwrap_or(1e6),
                root.device(),
            ),
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
        let mut x = Tensor::embedding(&self.embed_tokens, input.ids, -1, false, false);
        let kind = x.kind();
        let rope = self.rope.tables(input.positions, kind);
        let rows = input.output_rows.map(|index| QueryRows {
            index: index.shallow_clone(),
            rope: self.rope.tables(&take_rows(input.positions, index), kind),
            mask: take_rows(&input.mask.squeeze_dim(1), index).unsqueeze(1),
        });
        let last = self.layers.len().saturating_sub(1);
        for (layer, block) in self.layers.iter().enumerate() {
            let ctx = LayerContext {
                layer,
                rope: &rope,
                mask: input.mask,
                kv: input.kv,
            };
            x = block.forward(&x, &ctx, if layer == last { rows.as_ref() } else { None });
        }
        self.norm.forward(&x)
    }

    /// LM-head logits for hidden states of any leading shape `(…, H)` → `(…, V)`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.matmul(&self.lm_head.tr())
    }

    /// Full forward: logits `(B, T, V)` for every row.
    pub fn forward(&self, input: &ForwardInput) -> Tensor {
        self.logits(&self.hidden_states(input))
    }
}
