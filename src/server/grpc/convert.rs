//! gRPC ⇄ the shared request path: a `GenerateRequest` becomes the same [`CommonParams`] and
//! [`Prompt`] an HTTP body does (so both go through one validation), an [`ApiError`] becomes
//! the gRPC status of the same failure, and `grpc-timeout` becomes a deadline. Pure functions.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::pb;
use crate::engine::FinishReason;
use crate::server::admission::Prompt;
use crate::server::error::ApiError;
use crate::server::schema::{ChatInput, CommonParams, InputMessage, StopInput};

/// The parameters of `request`, as the HTTP API would read the same fields.
pub fn common_params(request: &pb::GenerateRequest) -> CommonParams {
    CommonParams {
        model: Some(request.model.clone()).filter(|m| !m.is_empty()),
        max_tokens: request.max_tokens.map(u64::from),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        stop: (!request.stop.is_empty()).then(|| StopInput::Many(request.stop.clone())),
        seed: request.seed,
        n: request.n.map(u64::from),
        user: Some(request.user.clone()).filter(|u| !u.is_empty()),
        block_size: request.block_size.map(u64::from),
        steps_per_block: request.steps_per_block.map(u64::from),
        remasking: request.remasking.clone(),
        confidence_threshold: request.confidence_threshold,
        ignore_eos: request.ignore_eos,
        stop_token_ids: (!request.stop_token_ids.is_empty())
            .then(|| request.stop_token_ids.clone()),
        ..CommonParams::default()
    }
}

/// The prompt of `request` (exactly one kind must be set).
pub fn prompt(request: &pb::GenerateRequest) -> Result<Prompt, ApiError> {
    use pb::generate_request::Prompt as P;
    match &request.prompt {
        Some(P::Text(text)) => Ok(Prompt::Text(text.clone())),
        Some(P::TokenIds(ids)) => Ok(Prompt::Tokens(ids.ids.clone())),
        Some(P::Chat(chat)) => Ok(Prompt::Chat(ChatInput {
            messages: chat
                .messages
                .iter()
                .map(|m| InputMessage {
                    name: Some(m.name.clone()).filter(|n| !n.is_empty()),
                    ..InputMessage::text(&m.role, &m.content)
                })
                .collect(),
            ..ChatInput::default()
        })),
        None => Err(ApiError::invalid(
            "prompt",
            "set one of text, token_ids or chat",
        )),
    }
}

/// The gRPC status of the failure HTTP answers with `error`.
pub fn status_of(error: &ApiError) -> Status {
    let code = match error.status.as_u16() {
        400 | 413 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        404 => Code::NotFound,
        409 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        500 => Code::Internal,
        _ => Code::Unknown,
    };
    let message = match &error.param {
        Some(param) if !error.message.contains(param.as_str()) => {
            format!("{param}: {}", error.message)
        }
        _ => error.message.clone(),
    };
    let mut status = Status::new(code, message);
    if let Some(seconds) = error.retry_after {
        status
            .metadata_mut()
            .insert("retry-after", MetadataValue::from(seconds));
    }
    status
}

/// The proto finish reason.
pub fn finish_reason(reason: FinishReason) -> pb::FinishReason {
    match reason {
        FinishReason::Stop => pb::FinishReason::Stop,
        FinishReason::Length => pb::FinishReason::Length,
    }
}

/// A `grpc-timeout` header value (`<up to 8 digits><H|M|S|m|u|n>`) as a duration.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn unset_fields_stay_unset_so_http_defaults_apply() {
        let params = common_params(&pb::GenerateRequest::default());
        assert_eq!(params, CommonParams::default());
        let request = pb::GenerateRequest {
            model: "m".into(),
            max_tokens: Some(8),
            temperature: Some(0.0),
            stop: vec!["#".into()],
            n: Some(2),
            seed: Some(7),
            steps_per_block: Some(2),
            remasking: Some("sequential".into()),
            ..Default::default()
        };
        let params = common_params(&request);
        assert_eq!(params.model.as_deref(), Some("m"));
        assert_eq!(params.max_tokens, Some(8));
        assert_eq!(params.temperature, Some(0.0));
        assert_eq!(params.stop, Some(StopInput::Many(vec!["#".into()])));
        assert_eq!((params.n, params.seed), (Some(2), Some(7)));
        assert_eq!(params.steps_per_block, Some(2));
        assert_eq!(params.remasking.as_deref(), Some("sequential"));
    }

    #[test]
    fn errors_map_to_the_codes_of_their_http_statuses() {
        let cases = [
            (
                ApiError::invalid("top_p", "top_p must be in (0, 1]"),
                Code::InvalidArgument,
            ),
            (ApiError::unknown_model("x", "y"), Code::NotFound),
            (ApiError::unauthorized(), Code::Unauthenticated),
            (ApiError::overloaded(), Code::ResourceExhausted),
            (ApiError::unavailable("draining"), Code::Unavailable),
            (ApiError::internal("boom"), Code::Internal),
            (
                ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE, "big"),
                Code::InvalidArgument,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(status_of(&error).code(), code, "{error:?}");
        }
        let status = status_of(&ApiError::overloaded());
        assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
        let named = status_of(&ApiError::invalid("n", "must be 1..=8"));
        assert_eq!(named.message(), "n: must be 1..=8");
    }

    #[test]
    fn grpc_timeouts_parse_by_unit() {
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_request_needs_a_prompt() {
        let err = prompt(&pb::GenerateRequest::default()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("prompt"));
        let chat = pb::GenerateRequest {
            prompt: Some(pb::generate_request::Prompt::Chat(pb::ChatMessages {
                messages: vec![pb::ChatMessage {
                    role: "user".into(),
                    content: "hi".into(),
                    name: String::new(),
                }],
            })),
            ..Default::default()
        };
        match prompt(&chat).unwrap() {
            Prompt::Chat(c) => assert_eq!(
                (c.messages[0].role.as_str(), c.messages[0].name.clone()),
                ("user", None)
            ),
            other => panic!("{other:?}"),
        }
    }
}
