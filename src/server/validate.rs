//! Request validation (pure): unknown and unsupported fields, typed parsing with the offending
//! path named, value ranges, context limits, and the mapping to engine [`GenerationParams`].

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::schema::{CommonParams, LogprobsInput, StopInput};
use crate::engine::logprobs::MAX_TOP_LOGPROBS;
use crate::engine::params::Penalties;
use crate::engine::{DenoiseParams, GenerationParams, SamplingParams, StopParams};
use crate::model::generation_config::SamplingDefaults;

/// Fields of [`CommonParams`], accepted by both endpoints.
pub const COMMON_FIELDS: [&str; 26] = [
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "n",
    "stream",
    "stream_options",
    "user",
    "block_size",
    "steps_per_block",
    "remasking",
    "confidence_threshold",
    "ignore_eos",
    "stop_token_ids",
    "logprobs",
    "top_logprobs",
    "logprob_steps",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "entropy_bound",
];

/// OpenAI fields we know but cannot honour: present with a non-default value, they are
/// rejected with 400 naming them.
pub const UNSUPPORTED_FIELDS: [&str; 12] = [
    "echo",
    "suffix",
    "best_of",
    "logit_bias",
    "functions",
    "function_call",
    "response_format",
    "parallel_tool_calls",
    "audio",
    "modalities",
    "prediction",
    "reasoning_effort",
];

/// Most choices per request.
pub const MAX_N: u64 = 8;
/// Most stop strings per request.
pub const MAX_STOP: usize = 4;
/// Longest stop string (bytes).
pub const MAX_STOP_LEN: usize = 64;
/// Most `stop_token_ids` per request.
pub const MAX_STOP_TOKEN_IDS: usize = 16;

/// Server-side limits a request is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Name clients must use in `model`.
    pub served_model: String,
    /// Longest prompt in tokens.
    pub max_input_tokens: usize,
    /// Longest prompt + completion in tokens.
    pub max_total_tokens: usize,
    /// The model's recommended decoding: what a request gets for the block size, steps,
    /// remasking and threshold it leaves out.
    pub decoding: DenoiseParams,
    /// Sampling values a request gets for the fields it leaves out (`generation_config.json`).
    pub sampling: SamplingDefaults,
    /// Ids that end a generation unless `ignore_eos` (every EOS the model lists).
    pub eos_ids: Vec<i64>,
    /// Added tokens by text: a stop string equal to one is matched as that token id.
    pub added_tokens: BTreeMap<String, i64>,
    /// Valid token ids are `0..vocab_size`.
    pub vocab_size: i64,
}

/// A request turned into engine parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// Engine parameters of choice 0 (choice i uses `seed + i`).
    pub params: GenerationParams,
    /// Choices.
    pub n: usize,
    /// Stream as SSE.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Log-probabilities also name the step that unmasked their token.
    pub logprob_steps: bool,
}

fn is_default_value(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(_) | Value::Bool(true) => false,
    }
}

/// Rejects a body that is not an object, has unknown fields, or sets unsupported ones.
pub fn check_fields(body: &Value, endpoint_fields: &[&str]) -> Result<(), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    for (key, value) in object {
        if UNSUPPORTED_FIELDS.contains(&key.as_str()) {
            if is_default_value(value) {
                continue;
            }
            return Err(ApiError::unsupported(key));
        }
        if !COMMON_FIELDS.contains(&key.as_str()) && !endpoint_fields.contains(&key.as_str()) {
            return Err(ApiError::invalid(key, format!("unknown parameter `{key}`")));
        }
    }
    Ok(())
}

/// Parses the required field `name` of a checked body.
pub fn parse_field<T: DeserializeOwned>(body: &Value, name: &str) -> Result<T, ApiError> {
    let value = body
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::invalid(name, format!("`{name}` is required")))?;
    serde_path_to_error::deserialize(value)
        .map_err(|e| ApiError::invalid(name, format!("invalid value for `{name}`: {}", e.inner())))
}

/// Parses the optional field `name` of a checked body (`null` counts as absent).
pub fn parse_optional_field<T: DeserializeOwned>(
    body: &Value,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => parse_field(body, name).map(Some),
    }
}

/// Parses a checked body, naming the path of the first type error.
pub fn parse<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let param = path
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_string();
        ApiError::invalid(&param, format!("invalid value for `{path}`: {}", e.inner()))
    })
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ApiError> {
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {v}"),
        ))
    }
}

fn stop_strings(stop: Option<&StopInput>) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        None => Vec::new(),
        Some(StopInput::One(s)) => vec![s.clone()],
        Some(StopInput::Many(v)) => v.clone(),
    };
    if stops.len() > MAX_STOP {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOP} stop strings"),
        ));
    }
    if stops.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
        return Err(ApiError::invalid(
            "stop",
            format!("stop strings must be 1..={MAX_STOP_LEN} bytes"),
        ));
    }
    Ok(stops)
}

/// The request's stop strings and stop token ids: a stop string that is an added token's text
/// (`<|im_end|>`) becomes that token's id.
fn stops(p: &CommonParams, limits: &Limits) -> Result<(Vec<String>, Vec<i64>), ApiError> {
    let given = p.stop_token_ids.clone().unwrap_or_default();
    if given.len() > MAX_STOP_TOKEN_IDS {
        return Err(ApiError::invalid(
            "stop_token_ids",
            format!("at most {MAX_STOP_TOKEN_IDS} stop token ids"),
        ));
    }
    if let Some(bad) = given.iter().find(|&&t| t < 0 || t >= limits.vocab_size) {
        return Err(ApiError::invalid(
            "stop_token_ids",
            format!(
                "token id {bad} is outside the vocabulary (0..{})",
                limits.vocab_size
            ),
        ));
    }
    let (as_tokens, strings): (Vec<String>, Vec<String>) = stop_strings(p.stop.as_ref())?
        .into_iter()
        .partition(|s| limits.added_tokens.contains_key(s));
    let mut ids = given;
    ids.extend(as_tokens.iter().filter_map(|s| limits.added_tokens.get(s)));
    Ok((strings, ids))
}

fn denoise(p: &CommonParams, limits: &Limits) -> Result<DenoiseParams, ApiError> {
    let block = p
        .block_size
        .map_or(Ok(limits.decoding.block_size as u64), |b| {
            range("block_size", b, 1, 64)
        })?;
    if !block.is_power_of_two() {
        return Err(ApiError::invalid(
            "block_size",
            format!("`block_size` must be a power of two, got {block}"),
        ));
    }
    let defaults = &limits.decoding;
    let default_steps = defaults.steps_per_block.min(block as usize) as u64;
    let steps = p
        .steps_per_block
        .map_or(Ok(default_steps), |s| range("steps_per_block", s, 1, block))?;
    let remasking = match &p.remasking {
        None => defaults.remasking,
        Some(name) => name
            .parse()
            .map_err(|e: String| ApiError::invalid("remasking", e))?,
    };
    let threshold = p
        .confidence_threshold
        .map_or(Ok(defaults.confidence_threshold), |t| {
            range("confidence_threshold", t, 0.0, 1.0)
        })?;
    Ok(DenoiseParams {
        block_size: block as usize,
        steps_per_block: steps as usize,
        remasking,
        confidence_threshold: threshold,
        entropy_bound: p.entropy_bound.map_or(Ok(defaults.entropy_bound), |e| {
            range("entropy_bound", e, 0.0, 1000.0)
        })?,
    })
}

/// Alternatives per token when the request asks for log-probabilities: `logprobs: n`
/// (completions), or `logprobs: true` with `top_logprobs` (chat).
fn logprobs(p: &CommonParams) -> Result<Option<usize>, ApiError> {
    let max = MAX_TOP_LOGPROBS as u64;
    let top = p
        .top_logprobs
        .map(|k| range("top_logprobs", k, 0, max))
        .transpose()?;
    let wanted = match p.logprobs {
        None | Some(LogprobsInput::Enabled(false)) => None,
        Some(LogprobsInput::Enabled(true)) => Some(top.unwrap_or(0)),
        Some(LogprobsInput::Alternatives(k)) => Some(range("logprobs", k, 0, max)?),
    };
    if top.is_some() && !matches!(p.logprobs, Some(LogprobsInput::Enabled(true))) {
        return Err(ApiError::invalid(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        ));
    }
    Ok(wanted.map(|k| k as usize))
}

/// The request's penalties (OpenAI's ranges for presence and frequency).
fn penalties(p: &CommonParams) -> Result<Penalties, ApiError> {
    let d = Penalties::default();
    let penalty =
        |name, v: Option<f64>, default| v.map_or(Ok(default), |v| range(name, v, -2.0, 2.0));
    Ok(Penalties {
        presence: penalty("presence_penalty", p.presence_penalty, d.presence)?,
        frequency: penalty("frequency_penalty", p.frequency_penalty, d.frequency)?,
        repetition: p.repetition_penalty.map_or(Ok(d.repetition), |r| {
            range("repetition_penalty", r, 0.01, 10.0)
        })?,
    })
}

/// Checks `p` for a prompt of `prompt_len` tokens and builds the engine parameters.
pub fn validate(
    p: &CommonParams,
    prompt_len: usize,
    limits: &Limits,
) -> Result<Validated, ApiError> {
    if let Some(model) = p.model.as_deref().filter(|m| *m != limits.served_model) {
        return Err(ApiError::unknown_model(model, &limits.served_model));
    }
    if prompt_len == 0 {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    if prompt_len > limits.max_input_tokens {
        return Err(ApiError::invalid(
            "prompt",
            format!(
                "the prompt has {prompt_len} tokens; the limit is {}",
                limits.max_input_tokens
            ),
        ));
    }
    let room = limits.max_total_tokens.saturating_sub(prompt_len);
    let max_tokens = match p.max_completion_tokens.or(p.max_tokens) {
        None => room.min(256) as u64,
        Some(m) => range("max_tokens", m, 1, u64::MAX)?,
    };
    if max_tokens == 0 || max_tokens as usize > room {
        return Err(ApiError::invalid(
            "max_tokens",
            format!(
                "prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) exceeds the context limit of {} tokens",
                limits.max_total_tokens
            ),
        ));
    }
    let defaults = &limits.sampling;
    let temperature = p.temperature.map_or(Ok(defaults.temperature), |t| {
        range("temperature", t, 0.0, 2.0)
    })?;
    let top_p = p.top_p.map_or(Ok(defaults.top_p), |t| {
        range("top_p", t, f64::MIN_POSITIVE, 1.0)
    })?;
    let top_k = p
        .top_k
        .map_or(Ok(defaults.top_k), |k| range("top_k", k, -1, 1 << 20))?
        .max(0) as usize;
    let (stop_strings, stop_token_ids) = stops(p, limits)?;
    let n = p.n.map_or(Ok(1), |n| range("n", n, 1, MAX_N))? as usize;
    if p.stream_options.is_some() && p.stream != Some(true) {
        return Err(ApiError::invalid(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    let mut params = GenerationParams {
        sampling: SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: p.seed,
            min_p: p.min_p.map_or(Ok(0.0), |m| range("min_p", m, 0.0, 1.0))?,
            penalties: penalties(p)?,
            logprobs: logprobs(p)?,
        },
        denoise: denoise(p, limits)?,
        stop: StopParams {
            max_tokens: max_tokens as usize,
            stop_token_ids,
            stop_strings,
            ignore_eos: p.ignore_eos.unwrap_or(false),
        },
    };
    params.stop.add_eos_ids(&limits.eos_ids);
    params.validate().map_err(ApiError::bad_request)?;
    Ok(Validated {
        params,
        n,
        stream: p.stream.unwrap_or(false),
        include_usage: p.stream_options.as_ref().is_some_and(|o| o.include_usage),
        logprob_steps: p.logprob_steps.unwrap_or(false),
    })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
