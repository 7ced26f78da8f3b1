//! Admission, shared by every transport (HTTP and gRPC): the prompt to token ids, the
//! parameters through the one validation path, and the choices submitted to the engine of the
//! model serving now. What a transport adds is only how it reads a request and writes events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::chat;
use super::chat_output::OutputParsing;
use super::error::ApiError;
use super::schema::{ChatInput, CommonParams, PromptInput};
use super::served::ServedModel;
use super::validate::{validate, Validated};
use super::AppState;
use crate::engine::runner::{EngineEvent, EngineRequest, SubmitError};

/// A request admitted into the engine.
pub struct Admitted {
    /// The model answering it.
    pub model: Arc<ServedModel>,
    /// Prompt token ids.
    pub prompt: Vec<i64>,
    /// Its validated parameters.
    pub validated: Validated,
    /// One event stream per choice; dropping one cancels that choice.
    pub receivers: Vec<UnboundedReceiver<EngineEvent>>,
    /// What a chat answer splits into.
    pub output: OutputParsing,
    /// Text the answer is made to start with (a forced tool call's head), which its parser
    /// reads first.
    pub answer_prefix: String,
}

/// Tokenises `prompt`, validates `params` and submits every choice to the serving model.
pub fn admit(
    state: &AppState,
    prompt: &Prompt,
    params: &CommonParams,
    request_id: &str,
) -> Result<Admitted, ApiError> {
    let model = state.served();
    let (ids, output, answer_prefix) = prompt_ids_and_parsing(&model, prompt)?;
    let validated = validate(params, ids.len(), &model.limits)?;
    tracing::info!(
        request_id,
        user = params.user.as_deref().unwrap_or("-"),
        prompt_tokens = ids.len(),
        max_tokens = validated.params.stop.max_tokens,
        n = validated.n,
        "admitted"
    );
    let receivers = submit(state, &model, &ids, &validated, request_id)?;
    Ok(Admitted {
        model,
        prompt: ids,
        validated,
        receivers,
        output,
        answer_prefix,
    })
}

/// A request's prompt as either transport gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text, tokenised as is.
    Text(String),
    /// Token ids.
    Tokens(Vec<i64>),
    /// Chat messages (with tools and template variables), rendered with the model's template.
    Chat(ChatInput),
}

impl Prompt {
    /// The single prompt of an OpenAI `prompt` field (a one-element batch is accepted).
    pub fn from_input(input: PromptInput) -> Result<Self, ApiError> {
        Ok(match input {
            PromptInput::Text(text) => Self::Text(text),
            PromptInput::Texts(texts) => Self::Text(one(texts)?),
            PromptInput::Tokens(ids) => Self::Tokens(ids),
            PromptInput::TokenBatches(batches) => Self::Tokens(one(batches)?),
        })
    }
}

/// The prompt's token ids for `model` (ids checked against its vocabulary).
pub fn prompt_ids(model: &ServedModel, prompt: &Prompt) -> Result<Vec<i64>, ApiError> {
    Ok(prompt_ids_and_parsing(model, prompt)?.0)
}

/// [`prompt_ids`], what the answer splits into and the text it is made to start with (chat
/// only).
fn prompt_ids_and_parsing(
    model: &ServedModel,
    prompt: &Prompt,
) -> Result<(Vec<i64>, OutputParsing, String), ApiError> {
    let plain = OutputParsing::default();
    let (ids, parsing, prefix) = match prompt {
        Prompt::Text(text) => (encode(model, text)?, plain, String::new()),
        Prompt::Tokens(ids) => (ids.clone(), plain, String::new()),
        Prompt::Chat(messages) => chat_prompt(model, messages)?,
    };
    let vocab = model.vocab_size;
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= vocab) {
        return Err(ApiError::invalid(
            "prompt",
            format!("token id {bad} is outside the vocabulary (0..{vocab})"),
        ));
    }
    Ok((ids, parsing, prefix))
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

fn chat_prompt(
    model: &ServedModel,
    input: &ChatInput,
) -> Result<(Vec<i64>, OutputParsing, String), ApiError> {
    let text = chat::render(&model.tokenizer, input)?;
    let mut parsing = chat::output_parsing(&model.tokenizer, &model.parsers, input, &text);
    let (text, prefix) = chat::forced_call(input, text, &mut parsing)?;
    Ok((encode(model, &text)?, parsing, prefix))
}

/// Submits every choice; on any refusal the receivers already made are dropped (cancelling).
pub fn submit(
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
