//! What flows between the HTTP handlers and the engine thread: a request, the events it gets
//! back, the engine's limits, and the counters both sides share. Plain data, so the engine
//! thread's loop and the handle that feeds it depend on this module and not on each other.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::logprobs::TokenLogprob;
use super::{FinishReason, GenerationParams};

/// What the engine tells a request, in order: blocks, then exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// One committed block: its completion tokens and the text now safe to send.
    Block {
        /// Text delta (may be empty while a stop string could still match).
        text: String,
        /// Completion tokens of the block.
        tokens: Vec<i64>,
        /// Log-probabilities of the block's text tokens (when the request asks for them).
        logprobs: Vec<TokenLogprob>,
    },
    /// The request finished.
    Done(Completion),
    /// The request failed (its batch's forward failed, or it could not be admitted).
    Error(String),
}

/// Final accounting of a finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The last text delta (held-back tail, cut before a matched stop string).
    pub text: String,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Completion tokens.
    pub completion_tokens: usize,
    /// Forward passes the request took part in.
    pub forwards: u32,
}

/// One request for the engine.
pub struct EngineRequest {
    /// Prompt token ids (validated by the caller).
    pub prompt: Vec<i64>,
    /// Decoding parameters (validated by the caller).
    pub params: GenerationParams,
    /// Where events go; dropping the receiver cancels the request.
    pub events: UnboundedSender<EngineEvent>,
    /// When the request was enqueued.
    pub enqueued: Instant,
    /// The HTTP request id (`x-request-id`), for the engine's log lines.
    pub request_id: String,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The waiting queue is full (HTTP 429).
    #[error("the server is at capacity: too many requests are waiting")]
    QueueFull,
    /// The engine thread has stopped.
    #[error("the engine has stopped")]
    EngineGone,
}

use super::kv_cache::CacheShape;

/// Limits of the engine.
#[derive(Debug, Clone, Copy)]
pub struct RunnerLimits {
    /// Requests waiting for admission before new ones get 429.
    pub max_queue: usize,
    /// The paged KV cache: sequences decoded together and the pages they share.
    pub cache: CacheShape,
    /// Replay decode steps as CUDA graphs (on CUDA, where this build supports them).
    pub cuda_graphs: bool,
}

/// State shared between the engine thread and its handles.
pub(crate) struct Shared {
    /// Requests submitted and not yet admitted (or dropped).
    pub(crate) waiting: AtomicUsize,
    /// The warm-up decode has run (successfully or not).
    pub(crate) warmed: AtomicBool,
    /// The warm-up decode succeeded.
    pub(crate) ready: AtomicBool,
    /// The engine thread runs.
    pub(crate) alive: AtomicBool,
}

/// A whole finished request, as [`collect`] gathers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// Every block's text delta and the final one.
    pub text: String,
    /// Completion token ids.
    pub tokens: Vec<i64>,
    /// Log-probabilities of the text tokens (when asked for).
    pub logprobs: Vec<TokenLogprob>,
    /// Final accounting.
    pub done: Completion,
}

/// Waits for a request's end: everything it produced, or the engine's error message.
pub async fn collect(events: &mut UnboundedReceiver<EngineEvent>) -> Result<Collected, String> {
    let (mut text, mut tokens, mut logprobs) = (String::new(), Vec::new(), Vec::new());
    loop {
        match events.recv().await {
            Some(EngineEvent::Block {
                text: delta,
                tokens: block,
                logprobs: block_logprobs,
            }) => {
                text.push_str(&delta);
                tokens.extend_from_slice(&block);
                logprobs.extend(block_logprobs);
            }
            Some(EngineEvent::Done(done)) => {
                text.push_str(&done.text);
                return Ok(Collected {
                    text,
                    tokens,
                    logprobs,
                    done,
                });
            }
            Some(EngineEvent::Error(message)) => return Err(message),
            None => return Err("the engine dropped the request".into()),
        }
    }
}
