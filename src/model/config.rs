//! `SdarConfig`: the Hugging Face `config.json` of an SDAR (or plain Qwen3) checkpoint.
//!
//! Field names are those of the file. Everything that changes the numerics (`rope_theta`,
//! `head_dim`, `tie_word_embeddings`, `rms_norm_eps`) is read from the file and never assumed;
//! unknown fields are kept so that a saved checkpoint writes them back unchanged.

use serde::{Deserialize, Serialize};
use std::path::Path;

use super::ModelError;

/// The architecture hyper-parameters of an SDAR / Qwen3 checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdarConfig {
    /// `sdar` or `qwen3`.
    pub model_type: String,
    /// Rows of the embedding and LM-head matrices (added tokens included).
    pub vocab_size: i64,
    /// Model width.
    pub hidden_size: i64,
    /// SwiGLU inner width.
    pub intermediate_size: i64,
    /// Number of decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (GQA).
    pub num_key_value_heads: i64,
    /// Per-head width; Qwen3 sets it explicitly (it need not be `hidden / heads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// Epsilon of every RMSNorm (including q/k norms).
    pub rms_norm_eps: f64,
    /// RoPE base. Older files put it at the top level, newer `transformers` under `rope_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// `transformers` 5.x layout of the RoPE settings (`{"rope_theta": .., "rope_type": "default"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Longest position the checkpoint was trained for.
    pub max_position_embeddings: i64,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Activation of the MLP; only `silu` exists in Qwen3.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Qwen3 has no attention bias; `true` is rejected.
    #[serde(default)]
    pub attention_bias: bool,
    /// SDAR's native diffusion block size (absent in plain Qwen3 files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// Id of `<|MASK|>` (absent in plain Qwen3 files; then the tokenizer must name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_token_id: Option<i64>,
    /// End-of-sequence id, or several (Hugging Face allows a list); the authority over the
    /// tokenizer files. The first is the primary one (padding, training targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// Beginning-of-sequence id (unused by SDAR prompts, kept for round-trips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<i64>,
    /// Every other field of the file, written back unchanged on save.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One token id or a list of them: Hugging Face files accept either for `eos_token_id`, and a
/// file read and written back keeps the form it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(i64),
    /// A list of ids.
    Many(Vec<i64>),
}

impl TokenIds {
    /// Every id, in file order.
    pub fn ids(&self) -> Vec<i64> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }

    /// The first id (the primary one), if any.
    pub fn first(&self) -> Option<i64> {
        self.ids().first().copied()
    }
}

impl From<i64> for TokenIds {
    fn from(id: i64) -> Self {
        Self::One(id)
    }
}

fn default_act() -> String {
    "silu".into()
}

impl SdarConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the invariants the forward pass relies on.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |msg: String| Err(ModelError::Config(msg));
        if !matches!(self.model_type.as_str(), "sdar" | "qwen3") {
            return fail(format!(
                "model_type `{}` is not `sdar` or `qwen3`",
                self.model_type
            ));
        }
        if self.hidden_act != "silu" {
            return fail(format!(
                "hidden_act `{}` is not supported (only silu)",
                self.hidden_act
            ));
        }
        if self.attention_bias {
            return fail("attention_bias = true is not supported (Qwen3 has none)".into());
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return fail("num_attention_heads must be a multiple of num_key_value_heads".into());
        }
        if self.rope_base().is_none() {
            return fail("config has no rope_theta (top level or rope_parameters)".into());
        }
        if let Some(b) = self.block_size {
            if b == 0 || !b.is_power_of_two() || b > 64 {
                return fail(format!("block_size {b} must be a power of two in 1..=64"));
            }
        }
        Ok(())
    }

    /// Per-head width: `head_dim` if present, else `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The RoPE base θ, wherever the file keeps it.
    pub fn rope_base(&self) -> Option<f64> {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
    }

    /// Steps per block the checkpoint is meant to decode with (`t3d_steps_per_block`, written by
    /// the distiller), else full-step (`block_size`).
    pub fn default_steps_per_block(&self) -> usize {
        let steps = self
            .extra
            .get("t3d_steps_per_block")
            .and_then(serde_json::Value::as_u64);
        steps
            .map(|s| s as usize)
            .unwrap_or(self.block_size.unwrap_or(4))
    }

    /// A named random-init shape: `tiny`, `small` or `sdar-1.7b`.
    pub fn named_shape(name: &str, byte_vocab: i64) -> Result<Self, String> {
        match name {
            "tiny" => Ok(Self::tiny(byte_vocab)),
            "small" => Ok(Self::shaped(byte_vocab, 256, 4, 8, 4, 32, 768)),
            "sdar-1.7b" => Ok(Self::sdar_1_7b()),
            "sdar-4b" => Ok(Self::sdar_4b()),
            other => Err(format!(
                "unknown shape `{other}` (tiny, small, sdar-1.7b, sdar-4b)"
            )),
        }
    }

    /// Number of parameters of the model this config describes.
    pub fn num_parameters(&self) -> i64 {
        let (h, d) = (self.hidden_size, self.head_dim());
        let attn = h * d * (self.num_attention_heads * 2 + self.num_key_value_heads * 2) + 2 * d;
        let mlp = 3 * h * self.intermediate_size;
        let layer = attn + mlp + 2 * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_hidden_layers * layer + h + head
    }

    /// A small random-init shape for tests and demos (2 layers, GQA, untied head).
    pub fn tiny(vocab_size: i64) -> Self {
        Self::shaped(vocab_size, 64, 2, 4, 2, 16, 128)
    }

    /// The shape of SDAR-1.7B-Chat (Qwen3-1.7B: hidden 2048, 28 layers, 16/8 heads, tied).
    pub fn sdar_1_7b() -> Self {
        let mut cfg = Self::shaped(151_936, 2048, 28, 16, 8, 128, 6144);
        cfg.tie_word_embeddings = true;
        cfg.mask_token_id = Some(151_669);
        cfg.eos_token_id = Some(151_643.into());
        cfg
    }

    /// The shape of SDAR-4B-Chat (spec §1.1: hidden 2560, 36 layers, 32/8 heads, untied head).
    pub fn sdar_4b() -> Self {
        let mut cfg = Self::shaped(151_936, 2560, 36, 32, 8, 128, 9728);
        cfg.mask_token_id = Some(151_669);
        cfg.eos_token_id = Some(151_643.into());
        cfg
    }

    /// Bytes of weights one forward reads: every parameter, except an untied embedding table,
    /// of which a forward reads only the rows of its tokens.
    pub fn weight_bytes_per_forward(&self, element_bytes: usize) -> u64 {
        let embedding = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * self.hidden_size
        };
        (self.num_parameters() - embedding) as u64 * element_bytes as u64
    }

    /// Bytes of KV cache one position holds (keys and values of every layer).
    pub fn kv_bytes_per_position(&self, element_bytes: usize) -> u64 {
        (2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim()) as u64
            * element_bytes as u64
    }

    /// A config of the given shape (SDAR defaults elsewhere): vocabulary, width, layers, query
    /// heads, key/value heads, head width, SwiGLU width.
    pub fn shaped(
        vocab: i64,
        hidden: i64,
        layers: i64,
        heads: i64,
        kv: i64,
        hd: i64,
        ffn: i64,
    ) -> Self {
        Self {
            model_type: "sdar".into(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: ffn,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim: Some(hd),
            rms_norm_eps: 1e-6,
            rope_theta: Some(1_000_000.0),
            rope_parameters: None,
            max_position_embeddings: 32_768,
            tie_word_embeddings: false,
            hidden_act: default_act(),
            attention_bias: false,
            block_size: Some(4),
            mask_token_id: None,
            eos_token_id: None,
            bos_token_id: None,
            extra: serde_json::Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDAR_4B: &str = r#"{
      "architectures": ["SDARForCausalLM"], "model_type": "sdar", "vocab_size": 151936,
      "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
      "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000,
      "rope_scaling": null, "max_position_embeddings": 32768, "attention_bias": false,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16", "block_size": 4,
      "mask_token_id": 151669, "bos_token_id": 151643, "eos_token_id": 151643
    }"#;

    #[test]
    fn parses_sdar_4b_config_and_counts_its_parameters() {
        let cfg: SdarConfig = serde_json::from_str(SDAR_4B).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.rope_base(), Some(1e6));
        assert_eq!(cfg.mask_token_id, Some(151_669));
        // Spec §1.1: 8 822 848 512 bytes in bf16 = 4 411 424 256 parameters.
        assert_eq!(cfg.num_parameters(), 4_411_424_256);
        let back = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            back["torch_dtype"], "bfloat16",
            "unknown fields survive a round trip"
        );
    }

    #[test]
    fn the_named_sdar_4b_shape_is_the_checkpoint_config_and_reads_what_it_should() {
        let file: SdarConfig = serde_json::from_str(SDAR_4B).unwrap();
        let named = SdarConfig::named_shape("sdar-4b", 0).unwrap();
        assert_eq!(named.num_parameters(), file.num_parameters());
        assert_eq!(named.tie_word_embeddings, file.tie_word_embeddings);
        // bf16: all 8 822 848 512 bytes but the 151936 x 2560 embedding table.
        let embedding = 151_936 * 2560 * 2;
        assert_eq!(named.weight_bytes_per_forward(2), 8_822_848_512 - embedding);
        // 36 layers x (K + V) x 8 heads x 128 x 2 bytes.
        assert_eq!(named.kv_bytes_per_position(2), 147_456);
        let tied = SdarConfig::sdar_1_7b();
        assert_eq!(
            tied.weight_bytes_per_forward(2),
            tied.num_parameters() as u64 * 2,
            "a tied table is read whole by the LM head"
        );
    }

    #[test]
    fn eos_token_id_may_be_a_list_and_keeps_its_form() {
        let text = SDAR_4B.replace(
            r#""eos_token_id": 151643"#,
            r#""eos_token_id": [151645, 151643]"#,
        );
        let cfg: SdarConfig = serde_json::from_str(&text).unwrap();
        let eos = cfg.eos_token_id.clone().unwrap();
        assert_eq!(
            (eos.ids(), eos.first()),
            (vec![151_645, 151_643], Some(151_645))
        );
        let back = serde_json::to_value(&cfg).unwrap();
        assert_eq!(back["eos_token_id"], serde_json::json!([151645, 151643]));
        let one: SdarConfig = serde_json::from_str(SDAR_4B).unwrap();
        assert_eq!(serde_json::to_value(&one).unwrap()["eos_token_id"], 151643);
    }

    #[test]
    fn reads_rope_theta_from_rope_parameters() {
        let text = SDAR_4B.replace(
            r#""rope_theta": 1000000"#,
            r#""rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}"#,
        );
        let cfg: SdarConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(cfg.rope_base(), Some(5000.0));
    }

    #[test]
    fn rejects_unknown_model_type_and_missing_rope() {
        let bad = SDAR_4B.replace(r#""sdar""#, r#""llama""#);
        let cfg: SdarConfig = serde_json::from_str(&bad).unwrap();
        assert!(cfg.validate().is_err());
        let no_rope = SDAR_4B.replace(r#""rope_theta": 1000000,"#, "");
        let cfg: SdarConfig = serde_json::from_str(&no_rope).unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rope_theta"));
    }
}
