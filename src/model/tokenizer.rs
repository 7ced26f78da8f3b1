//! Text ↔ token ids: a `tokenizers` tokenizer from `tokenizer.json`, the checkpoint's chat
//! template, the special ids (EOS and every other turn-end id, `<|MASK|>`, pad, the ids that
//! must never be generated), and an incremental detokeniser that never splits a UTF-8 character
//! across two deltas.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

pub use super::chat_template::{ChatMessage, RenderOptions, DEFAULT_CHAT_TEMPLATE};
use super::chat_template::{ChatTemplate, TemplateSource};
use super::generation_config::GenerationConfig;
use super::{ModelError, SdarConfig};

/// The tokenizer of a checkpoint with its special ids and chat template.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: ChatTemplate,
    /// The primary end-of-sequence id (`config.json`'s first; padding and training targets).
    pub eos_id: i64,
    /// Every id that ends a generation: `config.json`'s and `generation_config.json`'s EOS
    /// ids and the tokenizer's `eos_token` (SDAR-Chat: `<|im_end|>` and `<|endoftext|>`).
    pub stop_ids: Vec<i64>,
    /// The `<|MASK|>` id every new block starts with.
    pub mask_id: i64,
    /// Padding id (`pad_token`; SDAR uses EOS), for batching training data.
    pub pad_id: Option<i64>,
    /// Ids never sampled nor shown as text (sorted): `<|MASK|>` and the embedding rows past
    /// the tokenizer's vocabulary (they have no token).
    pub never_generate: Vec<i64>,
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// A token string from `tokenizer_config.json` (a bare string or `{"content": …}`).
fn token_string(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_string)
        .or_else(|| v.get("content")?.as_str().map(str::to_string))
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json`, the chat template and the EOS list of
    /// `generation_config.json` from `dir`; `config.json` is the authority for the primary EOS
    /// and the mask id, the tokenizer files the fallback.
    pub fn from_dir(dir: &Path, config: &SdarConfig) -> Result<Self, ModelError> {
        let inner = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            ModelError::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        let cfg_path = dir.join("tokenizer_config.json");
        let tcfg = if cfg_path.exists() {
            read_json(&cfg_path)?
        } else {
            json!({})
        };
        let id_of = |tok: &str| inner.token_to_id(tok).map(i64::from);
        let eos_token = token_string(&tcfg["eos_token"]).unwrap_or_else(|| "<|endoftext|>".into());
        let config_eos = config
            .eos_token_id
            .as_ref()
            .map(|e| e.ids())
            .unwrap_or_default();
        let eos_id = config_eos.first().copied().or_else(|| id_of(&eos_token));
        let mask_token = token_string(&tcfg["mask_token"]).unwrap_or_else(|| "<|MASK|>".into());
        let mask_id = config.mask_token_id.or_else(|| id_of(&mask_token));
        let (Some(eos_id), Some(mask_id)) = (eos_id, mask_id) else {
            return Err(ModelError::Tokenizer(format!(
                "{}: cannot determine the EOS and <|MASK|> ids (set eos_token_id / mask_token_id in config.json)",
                dir.display()
            )));
        };
        let mut stop_ids = config_eos;
        stop_ids.extend(GenerationConfig::from_dir(dir)?.eos_ids());
        stop_ids.extend(id_of(&eos_token));
        stop_ids.insert(0, eos_id);
        dedup_keep_order(&mut stop_ids);
        let rows = config.vocab_size.max(0);
        let known = inner.get_vocab_size(true) as i64;
        let mut never_generate = vec![mask_id];
        never_generate.extend((known..rows).filter(|id| inner.id_to_token(*id as u32).is_none()));
        never_generate.sort_unstable();
        never_generate.dedup();
        Ok(Self {
            chat_template: ChatTemplate::find(dir, &tcfg, &eos_token)?,
            pad_id: token_string(&tcfg["pad_token"]).and_then(|t| id_of(&t)),
            inner,
            eos_id,
            stop_ids,
            mask_id,
            never_generate,
        })
    }

    /// Token ids of `text` (special tokens written in the text are recognised; no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, ModelError> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Text of `ids`; `skip_special` drops special tokens such as EOS, and `<|MASK|>` (which
    /// real tokenizer files do not mark special) always.
    pub fn decode(&self, ids: &[i64], skip_special: bool) -> Result<String, ModelError> {
        let ids: Vec<u32> = ids
            .iter()
            .filter(|id| !skip_special || self.never_generate.binary_search(id).is_err())
            .map(|&i| i as u32)
            .collect();
        self.inner.decode(&ids, skip_special).map_err(tok_err)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `other` maps every token to the same id (and has the same special ids), so
    /// prompts and outputs mean the same under both.
    pub fn same_vocabulary(&self, other: &TextTokenizer) -> bool {
        self.eos_id == other.eos_id
            && self.mask_id == other.mask_id
            && self.inner.get_vocab(true) == other.inner.get_vocab(true)
    }

    /// Added tokens (special or not) by their text: a stop string equal to one of them is a
    /// stop token id.
    pub fn added_tokens(&self) -> BTreeMap<String, i64> {
        self.inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (t.content, i64::from(id)))
            .collect()
    }

    /// Ids of every token that is not a special added token (what random replacements in
    /// training noise draw from).
    pub fn ordinary_ids(&self) -> Vec<i64> {
        let special: std::collections::HashSet<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        (0..self.vocab_size() as u32)
            .filter(|id| !special.contains(id))
            .map(i64::from)
            .collect()
    }

    /// Where the chat template came from (for the start-up log).
    pub fn chat_template_source(&self) -> TemplateSource {
        self.chat_template.source()
    }

    /// The chat template's own conventions: (`<think>` reasoning, `<tool_call>` calls).
    pub fn chat_template_conventions(&self) -> (bool, bool) {
        (
            self.chat_template.thinks(),
            self.chat_template.writes_tool_calls(),
        )
    }

    /// Whether the chat template renders `tools`.
    pub fn chat_template_renders_tools(&self) -> bool {
        self.chat_template.renders_tools()
    }

    /// Renders `messages` with the checkpoint's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let opts = RenderOptions {
            add_generation_prompt,
            ..RenderOptions::default()
        };
        self.chat_template.render(messages, &opts)
    }

    /// Renders `messages` with tools and template variables.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, ModelError> {
        self.chat_template.render(messages, opts)
    }
}

fn dedup_keep_order(ids: &mut Vec<i64>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
}

/// Streams text from token ids as they arrive, holding back an incomplete UTF-8 character.
///
/// Decodes a short window of previous ids together with the new ones (byte-level BPE and
/// word-piece decoders need that context) and emits only the text past the window.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<i64>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    /// Appends `new_ids` and returns the newly completed text (possibly empty).
    pub fn push(&mut self, tok: &TextTokenizer, new_ids: &[i64]) -> Result<String, ModelError> {
        self.ids.extend_from_slice(new_ids);
        let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tok.decode(&self.ids[self.prefix_offset..], true)?;
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') || !full.starts_with(&prefix) {
            return Ok(String::new());
        }
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(full[prefix.len()..].to_string())
    }
}

/// The GPT-2 byte → printable-character map used by byte-level BPE vocabularies.
fn byte_to_char() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b)
            } else {
                extra += 1;
                char::from_u32(255 + extra)
            }
        })
        .map(|c| c.unwrap_or('?'))
        .collect()
}

/// Special tokens of the byte-level tokenizer, in id order after the 256 byte tokens.
pub const BYTE_SPECIAL_TOKENS: [&str; 4] =
    ["<|endoftext|>", "<|MASK|>", "<|im_start|>", "<|im_end|>"];

/// Writes a byte-level tokenizer (256 byte tokens, no merges, then [`BYTE_SPECIAL_TOKENS`])
/// as `tokenizer.json` + `tokenizer_config.json` into `dir`: any UTF-8 text round-trips.
pub fn write_byte_tokenizer(dir: &Path) -> Result<(), ModelError> {
    let vocab: serde_json::Map<String, Value> = byte_to_char()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), json!(i)))
        .collect();
    let added: Vec<Value> = BYTE_SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": 256 + i, "content": t, "single_word": false, "lstrip": false,
                             "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "mask_token": "<|MASK|>", "chat_template": DEFAULT_CHAT_TEMPLATE,
        "add_bos_token": false, "model_max_length": 32768
    });
    for (name, value) in [
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", config),
    ] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).map_err(tok_err)?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_tokenizer() -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path()).unwrap();
        let mut cfg = SdarConfig::tiny(260);
        cfg.eos_token_id = None;
        let tok = TextTokenizer::from_dir(dir.path(), &cfg).unwrap();
        (dir, tok)
    }

    #[test]
    fn byte_tokenizer_round_trips_utf8_and_finds_special_ids() {
        let (_dir, tok) = byte_tokenizer();
        assert_eq!((tok.eos_id, tok.mask_id, tok.pad_id), (256, 257, Some(256)));
        let text = "héllo, 世界 🙂\n";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), text.len(), "one token per byte");
        assert_eq!(tok.decode(&ids, true).unwrap(), text);
        assert_eq!(tok.encode("<|MASK|>a").unwrap(), vec![257, i64::from(b'a')]);
    }

    #[test]
    fn incremental_decoder_never_splits_a_character() {
        let (_dir, tok) = byte_tokenizer();
        let text = "a世🙂b";
        let ids = tok.encode(text).unwrap();
        let mut dec = IncrementalDecoder::default();
        let mut out = String::new();
        for id in &ids {
            let piece = dec.push(&tok, &[*id]).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "partial character leaked: {piece:?}"
            );
            out.push_str(&piece);
        }
        assert_eq!(out, text);
    }

    /// A template in the style of Qwen3's: a namespace, Python string methods, type tests,
    /// `raise_exception` and loop variables.
    const QWEN_STYLE: &str = r#"{%- set ns = namespace(system=false) -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}{%- set ns.system = true -%}{%- endif -%}
{%- if message.content is not string -%}{{ raise_exception('content must be text') }}{%- endif -%}
{{ '<|im_start|>' + message.role + '\n' + message.content.strip() }}
{%- if message.role == 'user' and message.content.startswith('Q:') %} [q]{% endif %}{{ '<|im_end|>\n' }}
{%- if loop.last and add_generation_prompt and ns.system %}{{ '<|im_start|>assistant\n' }}{% endif -%}
{%- endfor -%}"#;

    #[test]
    fn renders_qwen_style_templates_with_python_methods() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path()).unwrap();
        let cfg_path = dir.path().join("tokenizer_config.json");
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["chat_template"] = Value::String(QWEN_STYLE.into());
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let tok = TextTokenizer::from_dir(dir.path(), &SdarConfig::tiny(260)).unwrap();
        let msgs = [
            ChatMessage::new("system", " Be brief. "),
            ChatMessage::new("user", "Q: 2+2?"),
        ];
        let text = tok.apply_chat_template(&msgs, true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ: 2+2? [q]<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn renders_qwen_chat_template() {
        let (_dir, tok) = byte_tokenizer();
        let msgs = [ChatMessage::new("user", "2+2?")];
        let text = tok.apply_chat_template(&msgs, true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
