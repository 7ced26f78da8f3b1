//! HTTP handlers: completions, chat completions, models, health, readiness, metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::admission::{admit, Prompt};
use super::chat::{chat_input, CHAT_FIELDS};
use super::error::ApiError;
use super::logprobs::LogprobFormat;
use super::render::{collect, sse_stream, Endpoint, ResponseMeta};
use super::schema::{CommonParams, ModelCard};
use super::validate::{check_fields, parse, parse_field};
use super::{unix_now, AppState};
use crate::engine::recommended::Recommendation;

type AppResult = Result<Response, ApiError>;

pub(super) fn read_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|r| {
        if is_body_timeout(&r) {
            ApiError::request_timeout()
        } else {
            ApiError::from_status(r.status(), r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

async fn respond(
    state: &AppState,
    endpoint: Endpoint,
    prompt: &Prompt,
    params: &CommonParams,
    headers: &HeaderMap,
) -> AppResult {
    let request_id = headers
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-");
    let admitted = admit(state, prompt, params, request_id)?;
    let prefix = if endpoint == Endpoint::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let v = &admitted.validated;
    let meta = ResponseMeta {
        id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        created: unix_now(),
        model: admitted.model.limits.served_model.clone(),
        system_fingerprint: admitted.model.version.clone(),
        endpoint,
        prompt_tokens: admitted.prompt.len(),
        output: admitted.output,
        answer_prefix: admitted.answer_prefix.clone(),
        logprobs: v
            .params
            .sampling
            .logprobs
            .map(|_| LogprobFormat::new(admitted.model.clone(), v.logprob_steps)),
    };
    if v.stream {
        let stream = sse_stream(meta, admitted.receivers, v.include_usage);
        let keep_alive = KeepAlive::new().interval(Duration::from_secs(5));
        return Ok(Sse::new(stream).keep_alive(keep_alive).into_response());
    }
    Ok(Json(collect(&meta, admitted.receivers).await?).into_response())
}

/// Whether the body could not be read because it did not arrive in time.
fn is_body_timeout(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult {
    let value = read_json(body)?;
    check_fields(&value, &["prompt"])?;
    let prompt = Prompt::from_input(parse_field(&value, "prompt")?)?;
    let params: CommonParams = parse(value)?;
    respond(&state, Endpoint::Completion, &prompt, &params, &headers).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult {
    let value = read_json(body)?;
    check_fields(&value, &CHAT_FIELDS)?;
    let prompt = Prompt::Chat(chat_input(&value)?);
    let params: CommonParams = parse(value)?;
    respond(&state, Endpoint::Chat, &prompt, &params, &headers).await
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
        steps_per_block: model.limits.decoding.steps_per_block,
        block_size: model.limits.decoding.block_size,
        decoding: Recommendation::of(&model.limits.decoding),
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

/// A known route with the wrong method: 405 with the error body.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND, "no such route")
}
