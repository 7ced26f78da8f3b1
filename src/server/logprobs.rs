//! Log-probabilities in OpenAI's two shapes: chat's `logprobs.content` entries (`token`,
//! `logprob`, `bytes`, `top_logprobs`) and the completions endpoint's parallel lists (`tokens`,
//! `token_logprobs`, `top_logprobs`, `text_offset`). A token's text is its own decoding; with
//! `logprob_steps` each chat entry (and a `steps` list for completions) also names the denoising
//! step that unmasked it.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::served::ServedModel;
use crate::engine::logprobs::TokenLogprob;

/// JSON has no infinities: an impossible token's log-probability is written as this (as vLLM).
const LOWEST_LOGPROB: f32 = -9999.0;

/// A token id's text.
type PieceOf = Arc<dyn Fn(i64) -> String + Send + Sync>;

/// Renders a request's log-probabilities with the serving model's tokenizer.
#[derive(Clone)]
pub struct LogprobFormat {
    piece_of: PieceOf,
    steps: bool,
}

impl std::fmt::Debug for LogprobFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogprobFormat")
            .field("steps", &self.steps)
            .finish()
    }
}

fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob
    } else {
        LOWEST_LOGPROB
    }
}

impl LogprobFormat {
    /// Renders with `model`'s tokenizer; `steps` adds the unmasking step.
    pub fn new(model: Arc<ServedModel>, steps: bool) -> Self {
        let piece_of = move |token| model.tokenizer.decode(&[token], false).unwrap_or_default();
        Self::with_pieces(Arc::new(piece_of), steps)
    }

    /// Renders with `piece_of` as the tokenizer.
    pub fn with_pieces(piece_of: PieceOf, steps: bool) -> Self {
        Self { piece_of, steps }
    }

    fn piece(&self, token: i64) -> String {
        (self.piece_of)(token)
    }

    fn chat_entry(&self, token: i64, logprob: f32) -> Value {
        let text = self.piece(token);
        json!({"token": text, "logprob": finite(logprob), "bytes": text.as_bytes()})
    }

    /// Chat's `logprobs` object for `tokens`.
    pub fn chat(&self, tokens: &[TokenLogprob]) -> Value {
        let content: Vec<Value> = tokens
            .iter()
            .map(|t| {
                let mut entry = self.chat_entry(t.token, t.logprob);
                entry["top_logprobs"] = t
                    .top
                    .iter()
                    .map(|&(id, lp)| self.chat_entry(id, lp))
                    .collect();
                if self.steps {
                    entry["step"] = json!(t.step);
                }
                entry
            })
            .collect();
        json!({"content": content, "refusal": null})
    }

    /// The completions endpoint's `logprobs` object for `tokens`, whose text starts `offset`
    /// characters into the completion (advanced past it).
    pub fn completion(&self, tokens: &[TokenLogprob], offset: &mut usize) -> Value {
        let mut body = json!({"tokens": [], "token_logprobs": [], "top_logprobs": [],
                              "text_offset": []});
        for t in tokens {
            let text = self.piece(t.token);
            let top: Map<String, Value> = t
                .top
                .iter()
                .map(|&(id, lp)| (self.piece(id), json!(finite(lp))))
                .collect();
            push(&mut body, "text_offset", json!(*offset));
            *offset += text.chars().count();
            push(&mut body, "tokens", json!(text));
            push(&mut body, "token_logprobs", json!(finite(t.logprob)));
            push(&mut body, "top_logprobs", Value::Object(top));
            if self.steps {
                push(&mut body, "steps", json!(t.step));
            }
        }
        body
    }
}

fn push(body: &mut Value, list: &str, value: Value) {
    match body.get_mut(list).and_then(Value::as_array_mut) {
        Some(items) => items.push(value),
        None => body[list] = json!([value]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(steps: bool) -> LogprobFormat {
        LogprobFormat::with_pieces(
            Arc::new(|t| ["a", "bc", "é"][t as usize].to_string()),
            steps,
        )
    }

    fn tokens() -> Vec<TokenLogprob> {
        vec![
            TokenLogprob {
                token: 1,
                logprob: -0.5,
                step: 2,
                top: vec![(1, -0.5), (0, f32::NEG_INFINITY)],
            },
            TokenLogprob {
                token: 2,
                logprob: -1.0,
                step: 3,
                top: vec![(2, -1.0), (1, -2.0)],
            },
        ]
    }

    #[test]
    fn chat_entries_carry_text_bytes_and_alternatives() {
        let body = format(false).chat(&tokens());
        let first = &body["content"][0];
        assert_eq!(first["token"], "bc");
        assert_eq!(first["logprob"], -0.5);
        assert_eq!(first["bytes"], json!([98, 99]));
        assert_eq!(first["top_logprobs"][1]["logprob"], LOWEST_LOGPROB);
        assert_eq!(body["content"][1]["bytes"], json!([0xc3, 0xa9]));
        assert!(first.get("step").is_none());
        assert_eq!(format(true).chat(&tokens())["content"][1]["step"], 3);
        assert_eq!(body["refusal"], Value::Null);
    }

    #[test]
    fn completion_lists_run_in_parallel_with_character_offsets() {
        let mut offset = 4;
        let body = format(true).completion(&tokens(), &mut offset);
        assert_eq!(body["tokens"], json!(["bc", "é"]));
        assert_eq!(body["token_logprobs"], json!([-0.5, -1.0]));
        assert_eq!(body["text_offset"], json!([4, 6]));
        assert_eq!(body["top_logprobs"][1], json!({"é": -1.0, "bc": -2.0}));
        assert_eq!(body["steps"], json!([2, 3]));
        assert_eq!(offset, 7);
    }
}
