//! OpenAI request and response bodies (completions and chat completions, streaming chunks,
//! usage with our diffusion extensions, models list).

use serde::{Deserialize, Serialize};

/// A prompt: text, or token ids (a one-element batch of either is accepted too).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    /// Plain text.
    Text(String),
    /// Token ids.
    Tokens(Vec<i64>),
    /// A batch of texts (only one is accepted).
    Texts(Vec<String>),
    /// A batch of token-id lists (only one is accepted).
    TokenBatches(Vec<Vec<i64>>),
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StopInput {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and diffusion parameters shared by both endpoints (the body minus `prompt` /
/// `messages`, which are parsed on their own so type errors name their field).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CommonParams {
    /// Model name (must be the served one when given).
    pub model: Option<String>,
    /// Most completion tokens.
    pub max_tokens: Option<u64>,
    /// Chat alias of `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (0 = greedy).
    pub temperature: Option<f64>,
    /// Nucleus mass.
    pub top_p: Option<f64>,
    /// Top-k (0 or -1 = off).
    pub top_k: Option<i64>,
    /// Stop strings.
    pub stop: Option<StopInput>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Choices per prompt.
    pub n: Option<u64>,
    /// Stream as server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// End-user id (logged).
    pub user: Option<String>,
    /// Extension: tokens per diffusion block.
    pub block_size: Option<u64>,
    /// Extension: denoising steps per block.
    pub steps_per_block: Option<u64>,
    /// Extension: remasking policy.
    pub remasking: Option<String>,
    /// Extension: confidence threshold of `low_confidence_dynamic`.
    pub confidence_threshold: Option<f64>,
    /// Extension: keep generating past EOS until `max_tokens`.
    pub ignore_eos: Option<bool>,
    /// Extension (as vLLM): token ids that end the generation like EOS.
    pub stop_token_ids: Option<Vec<i64>>,
    /// Completions: alternatives per token (a number); chat: whether to return
    /// log-probabilities (a boolean).
    pub logprobs: Option<LogprobsInput>,
    /// Chat: alternatives per token (with `logprobs: true`).
    pub top_logprobs: Option<u64>,
    /// Extension: each log-probability also names the denoising step that unmasked its token.
    pub logprob_steps: Option<bool>,
    /// Drop tokens less likely than `min_p` × the likeliest.
    pub min_p: Option<f64>,
    /// Subtracted once from tokens the completion holds.
    pub presence_penalty: Option<f64>,
    /// Subtracted per occurrence from tokens the completion holds.
    pub frequency_penalty: Option<f64>,
    /// Divides logits of tokens seen in the prompt or completion (1 = off).
    pub repetition_penalty: Option<f64>,
    /// Extension: cumulative-entropy bound of `entropy_bounded`.
    pub entropy_bound: Option<f64>,
}

/// `logprobs`: a boolean (chat) or a count of alternatives (completions).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LogprobsInput {
    /// Chat's form.
    Enabled(bool),
    /// Completions' form.
    Alternatives(u64),
}

/// Content of a chat message: text, or a list of text parts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": …}, …]`.
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message (only text parts exist here).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    /// Must be `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
}

/// One input chat message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    /// `system` (or `developer`), `user`, `assistant` or `tool`.
    pub role: String,
    /// The content (may be null on an assistant turn that only calls tools).
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name (given to the template).
    #[serde(default)]
    pub name: Option<String>,
    /// An earlier assistant turn's reasoning (Qwen3-style templates render it in `<think>`).
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// An earlier assistant turn's tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// The call a `tool` message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

impl InputMessage {
    /// A plain text message.
    pub fn text(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
            name: None,
            reasoning_content: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// A chat request's prompt: the messages and what the template receives with them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatInput {
    /// The conversation.
    pub messages: Vec<InputMessage>,
    /// Tool definitions, rendered by templates that support them (no tool-call parsing).
    pub tools: Option<Vec<serde_json::Value>>,
    /// Extra template variables (`chat_template_kwargs`, e.g. `{"enable_thinking": false}`).
    pub template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// `tool_choice`.
    pub tool_choice: super::tool_choice::ToolChoice,
}

/// `usage`, with the diffusion extensions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Prompt tokens (counted once per request).
    pub prompt_tokens: usize,
    /// Completion tokens over all choices.
    pub completion_tokens: usize,
    /// Sum of the two.
    pub total_tokens: usize,
    /// Forward passes over all choices.
    pub forward_passes: u64,
    /// Completion tokens per forward pass.
    pub tokens_per_forward: f64,
}

impl Usage {
    /// Usage of `prompt_tokens` and per-choice (completion tokens, forwards).
    pub fn new(prompt_tokens: usize, choices: &[(usize, u32)]) -> Self {
        let completion_tokens = choices.iter().map(|c| c.0).sum();
        let forward_passes = choices.iter().map(|c| u64::from(c.1)).sum::<u64>();
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            forward_passes,
            tokens_per_forward: completion_tokens as f64 / forward_passes.max(1) as f64,
        }
    }
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    /// The served name.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Server start time (unix seconds).
    pub created: u64,
    /// Always `t3d`.
    pub owned_by: &'static str,
    /// Extension: the model's context length.
    pub max_model_len: usize,
    /// Extension (as vLLM): the checkpoint directory.
    pub root: String,
    /// Extension: the loaded weights' version (also each response's `system_fingerprint`).
    pub version: String,
    /// Extension: the default block size.
    pub block_size: usize,
    /// Extension: the default denoising steps per block.
    pub steps_per_block: usize,
    /// Extension: the whole default decoding (the checkpoint's recommendation): remasking,
    /// steps per block and threshold.
    pub decoding: crate::engine::recommended::Recommendation,
}
