//! vLLM's tokenizer routes and the version: `POST /tokenize` (a prompt, or chat messages rendered
//! with the model's template, to token ids), `POST /detokenize` (ids to text) and `GET /version`.
//! They sit behind `--api-key` like `/v1/*`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::chat::{chat_input, render};
use super::error::ApiError;
use super::routes::read_json;
use super::validate::{check_fields, parse_field};
use super::AppState;

/// Fields `/tokenize` takes besides `prompt` / `messages` (`model` and vLLM's flags are
/// accepted; no special tokens are ever added to a prompt).
const TOKENIZE_FIELDS: [&str; 7] = [
    "prompt",
    "messages",
    "tools",
    "chat_template_kwargs",
    "add_special_tokens",
    "add_generation_prompt",
    "return_token_strs",
];

/// `POST /tokenize`: `{"prompt": TEXT}` or `{"messages": [...]}` → `{"count", "max_model_len",
/// "tokens"}` (and `token_strs` when `return_token_strs` is true).
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let value = read_json(body)?;
    check_fields(&value, &TOKENIZE_FIELDS)?;
    let model = state.served();
    let text = match (value.get("prompt"), value.get("messages")) {
        (Some(_), None) => parse_field::<String>(&value, "prompt")?,
        (None, Some(_)) => render(&model.tokenizer, &chat_input(&value)?)?,
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "give exactly one of `prompt` or `messages`",
            ))
        }
    };
    let tokens = model
        .tokenizer
        .encode(&text)
        .map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
    let mut answer = json!({
        "count": tokens.len(),
        "max_model_len": model.limits.max_total_tokens,
        "tokens": tokens,
    });
    if value.get("return_token_strs") == Some(&Value::Bool(true)) {
        let pieces: Result<Vec<String>, _> = tokens
            .iter()
            .map(|&t| model.tokenizer.decode(&[t], false))
            .collect();
        answer["token_strs"] = json!(pieces.map_err(|e| ApiError::internal(e.to_string()))?);
    }
    Ok(Json(answer))
}

/// `POST /detokenize`: `{"tokens": [ids]}` → `{"prompt": TEXT}` (special tokens kept).
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let value = read_json(body)?;
    check_fields(&value, &["tokens"])?;
    let tokens: Vec<i64> = parse_field(&value, "tokens")?;
    let model = state.served();
    let vocab = model.limits.vocab_size;
    if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= vocab) {
        return Err(ApiError::invalid(
            "tokens",
            format!("token id {bad} is outside the vocabulary (0..{vocab})"),
        ));
    }
    let text = model
        .tokenizer
        .decode(&tokens, false)
        .map_err(|e| ApiError::invalid("tokens", e.to_string()))?;
    Ok(Json(json!({ "prompt": text })))
}

/// `GET /version`: the server's version.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}
