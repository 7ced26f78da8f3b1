//! A character-level tokenizer for small models trained from scratch: one token per printable
//! ASCII character and newline, the chat words `system`/`user`/`assistant` as whole tokens, and
//! the SDAR special tokens. Written as a normal `tokenizer.json` (BPE without merges, `Fuse`
//! decoder) so `transformers` and our [`TextTokenizer`](super::TextTokenizer) both read it.

use std::path::Path;

use serde_json::{json, Value};

use super::tokenizer::DEFAULT_CHAT_TEMPLATE;
use super::ModelError;

/// Special tokens, in id order after the characters.
pub const CHAR_SPECIAL_TOKENS: [&str; 5] = [
    "<|endoftext|>",
    "<|MASK|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|unk|>",
];

/// Whole-word tokens of the chat template (not special: they decode as text).
pub const CHAR_WORD_TOKENS: [&str; 3] = ["system", "user", "assistant"];

/// The characters, in id order: newline then printable ASCII.
pub fn char_alphabet() -> Vec<char> {
    std::iter::once('\n').chain(' '..='~').collect()
}

/// Ids of the special tokens of the character tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharSpecialIds {
    /// `<|endoftext|>`: EOS and pad.
    pub eos: i64,
    /// `<|MASK|>`.
    pub mask: i64,
}

/// The vocabulary size of the character tokenizer, rounded up to a multiple of 8.
pub fn char_vocab_size() -> i64 {
    let used = char_alphabet().len() + CHAR_SPECIAL_TOKENS.len() + CHAR_WORD_TOKENS.len();
    (used as i64 + 7) / 8 * 8
}

/// Special ids of the character tokenizer.
pub fn char_special_ids() -> CharSpecialIds {
    let base = char_alphabet().len() as i64;
    CharSpecialIds {
        eos: base,
        mask: base + 1,
    }
}

/// Writes the character tokenizer (`tokenizer.json` + `tokenizer_config.json`) into `dir`.
pub fn write_char_tokenizer(dir: &Path) -> Result<(), ModelError> {
    let alphabet = char_alphabet();
    // Every token, specials included, is in the BPE vocabulary with its id: `tokenizers`
    // assigns added tokens the id they already have there (otherwise it renumbers them).
    let tokens: Vec<String> = alphabet
        .iter()
        .map(char::to_string)
        .chain(CHAR_SPECIAL_TOKENS.iter().map(|t| t.to_string()))
        .chain(CHAR_WORD_TOKENS.iter().map(|t| t.to_string()))
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = CHAR_SPECIAL_TOKENS
        .iter()
        .map(|t| (*t, true))
        .chain(CHAR_WORD_TOKENS.iter().map(|t| (*t, false)))
        .enumerate()
        .map(|(i, (content, special))| {
            json!({"id": alphabet.len() + i, "content": content, "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|unk|>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                  "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "mask_token": "<|MASK|>", "unk_token": "<|unk|>",
        "chat_template": DEFAULT_CHAT_TEMPLATE, "add_bos_token": false, "model_max_length": 4096
    });
    for (name, value) in [
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", config),
    ] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tokenizer::ChatMessage;
    use crate::model::{SdarConfig, TextTokenizer};

    #[test]
    fn one_token_per_character_and_whole_chat_words() {
        let dir = tempfile::tempdir().unwrap();
        write_char_tokenizer(dir.path()).unwrap();
        let mut cfg = SdarConfig::tiny(char_vocab_size());
        cfg.eos_token_id = None;
        let tok = TextTokenizer::from_dir(dir.path(), &cfg).unwrap();
        let ids = char_special_ids();
        assert_eq!(
            (tok.eos_id, tok.mask_id, tok.pad_id),
            (ids.eos, ids.mask, Some(ids.eos))
        );
        let text = "17+4=21;#21\n a~";
        let encoded = tok.encode(text).unwrap();
        assert_eq!(encoded.len(), text.len());
        assert_eq!(tok.decode(&encoded, true).unwrap(), text);
        let msg = ChatMessage::new("user", "2+3");
        let prompt = tok.apply_chat_template(&[msg], true).unwrap();
        // <|im_start|> user \n 2 + 3 <|im_end|> \n <|im_start|> assistant \n
        assert_eq!(tok.encode(&prompt).unwrap().len(), 11);
        assert!(tok.vocab_size() as i64 <= char_vocab_size());
        let unknown = tok.encode("é").unwrap();
        assert_eq!(unknown.len(), 1, "non-ASCII maps to <|unk|>");
    }
}
