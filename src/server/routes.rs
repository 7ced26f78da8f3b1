//! HTTP handlers: completions, chat completions, models, health, readiness, metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::error::ApiError;
use super::render::{collect, sse_stream, Endpoint, ResponseMeta};
use super::schema::{CommonParams, InputMessage, MessageContent, ModelCard, PromptInput};
use super::served::ServedModel;
use super::validate::{check_fields, parse, parse_field, validate, Validated};
use super::{unix_now, AppState};
use crate::engine::runner::{EngineEvent, EngineRequest, SubmitError};
use crate::model::tokenizer::ChatMessage;

type AppResult = Result<Response, ApiError>;

fn read_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|r| ApiError::from_status(r.status(), r.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn prompt_ids(model: &ServedModel, prompt: PromptInput) -> Result<Vec<i64>, ApiError> {
    let ids = match prompt {
        PromptInput::Text(text) => encode(model, &text)?,
        PromptInput::Texts(texts) => encode(model, &one(texts)?)?,
        PromptInput::Tokens(ids) => ids,
        PromptInput::TokenBatches(batches) => one(batches)?,
    };
    let vocab = model.vocab_size;
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= vocab) {
        return Err(ApiError::invalid(
            "prompt",
            format!("token id {bad} is outside the vocabulary (0..{vocab})"),
        ));
    }
    Ok(ids)
}

/// The single element of a one-prompt batch.
fn one<T>(mut items: Vec<T>) -> Result<T, ApiError> {
    match items.len() {
        1 => Ok(items.remove(0)),
        _ => Err(ApiError::invalid(
            "prompt",
            "exactly one prompt per request is supported (use n for several choices)",
        )),
    }
}

fn encode(model: &ServedModel, text: &str) -> Result<Vec<i64>, ApiError> {
    model
        .tokenizer
        .encode(text)
        .map_err(|e| ApiError::invalid("prompt", e.to_string()))
}

fn chat_prompt(model: &ServedModel, input: &[InputMessage]) -> Result<Vec<i64>, ApiError> {
    if input.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    let mut messages = Vec::with_capacity(input.len());
    for (i, m) in input.iter().enumerate() {
        if !["system", "user", "assistant"].contains(&m.role.as_str()) {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "messages[{i}].role `{}` must be system, user or assistant",
                    m.role
                ),
            ));
        }
        let content = match &m.content {
            MessageContent::Text(t) => t.clone(),
            MessageContent::Parts(parts) => {
                if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                    return Err(ApiError::invalid(
                        "messages",
                        format!("content parts of type `{}` are not supported", p.kind),
                    ));
                }
                parts.iter().map(|p| p.text.as_str()).collect()
            }
        };
        messages.push(ChatMessage {
            role: m.role.clone(),
            content,
        });
    }
    let text = model
        .tokenizer
        .apply_chat_template(&messages, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    encode(model, &text)
}

/// Submits every choice; on any refusal the receivers already made are dropped (cancelling).
fn submit(
    state: &AppState,
    model: &ServedModel,
    prompt: &[i64],
    v: &Validated,
    request_id: &str,
) -> Result<Vec<UnboundedReceiver<EngineEvent>>, ApiError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let mut receivers = Vec::with_capacity(v.n);
    for i in 0..v.n {
        let (tx, rx) = unbounded_channel();
        let mut params = v.params.clone();
        params.sampling.seed = params.sampling.seed.map(|s| s.wrapping_add(i as u64));
        let request = EngineRequest {
            prompt: prompt.to_vec(),
            params,
            events: tx,
            enqueued: Instant::now(),
            request_id: request_id.to_string(),
        };
        model.engine.submit(request).map_err(|e| match e {
            SubmitError::QueueFull => {
                state
                    .metrics
                    .failures
                    .with_label_values(&["queue_full"])
                    .inc();
                ApiError::overloaded()
            }
            SubmitError::EngineGone => ApiError::unavailable("the engine has stopped"),
        })?;
        receivers.push(rx);
    }
    Ok(receivers)
}

async fn respond(
    state: &AppState,
    model: &ServedModel,
    endpoint: Endpoint,
    prompt: Vec<i64>,
    v: Validated,
    headers: &HeaderMap,
) -> AppResult {
    let request_id = headers
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-");
    let receivers = submit(state, model, &prompt, &v, request_id)?;
    let prefix = if endpoint == Endpoint::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let meta = ResponseMeta {
        id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        created: unix_now(),
        model: model.limits.served_model.clone(),
        system_fingerprint: model.version.clone(),
        endpoint,
        prompt_tokens: prompt.len(),
    };
    if v.stream {
        let stream = sse_stream(meta, receivers, v.include_usage);
        let keep_alive = KeepAlive::new().interval(Duration::from_secs(5));
        return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
    }
    Ok(Json(collect(&meta, receivers).await?).into_response())
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult {
    let value = read_json(body)?;
    check_fields(&value, &["prompt"])?;
    let model = state.served();
    let prompt = prompt_ids(&model, parse_field(&value, "prompt")?)?;
    let params: CommonParams = parse(value)?;
    let v = validate(&params, prompt.len(), &model.limits)?;
    respond(&state, &model, Endpoint::Completion, prompt, v, &headers).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult {
    let value = read_json(body)?;
    check_fields(&value, &["messages"])?;
    let messages: Vec<InputMessage> = parse_field(&value, "messages")?;
    let model = state.served();
    let prompt = chat_prompt(&model, &messages)?;
    let params: CommonParams = parse(value)?;
    let v = validate(&params, prompt.len(), &model.limits)?;
    respond(&state, &model, Endpoint::Chat, prompt, v, &headers).await
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let model = state.served();
    let card = ModelCard {
        id: model.limits.served_model.clone(),
        object: "model",
        created: state.created,
        owned_by: "t3d",
        max_model_len: model.limits.max_total_tokens,
        root: model.path.display().to_string(),
        version: model.version.clone(),
        steps_per_block: model.limits.default_steps,
        block_size: model.limits.default_block_size,
    };
    Json(json!({"object": "list", "data": [card]}))
}

/// `GET /health`: 200 while the engine thread runs.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.served().engine.is_alive() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        ApiError::unavailable("the engine thread has stopped").into_response()
    }
}

/// `GET /ready`: 200 once the warm-up decode succeeded and while not draining.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.served().engine.is_ready() && !state.draining.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        ApiError::unavailable("not ready").into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND, "no such route")
}
