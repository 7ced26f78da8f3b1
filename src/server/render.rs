//! Engine events → OpenAI response bodies: whole responses, and the SSE stream (one chunk per
//! committed block and choice, a final chunk with `finish_reason`, an optional usage chunk,
//! then `data: [DONE]`; an engine error mid-stream becomes a JSON error event).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::Event;
use futures::stream::{select_all, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::chat_message::{self, DeltaStream};
use super::chat_output::OutputParsing;
use super::error::ApiError;
use super::logprobs::LogprobFormat;
use super::schema::Usage;
use crate::engine::logprobs::TokenLogprob;
use crate::engine::request;
use crate::engine::runner::EngineEvent;

/// Which endpoint a response belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`.
    Completion,
    /// `/v1/chat/completions`.
    Chat,
}

/// The fields every body and chunk of one response shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `cmpl-…` / `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// The answering model's version.
    pub system_fingerprint: String,
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// What a chat answer splits into (reasoning, tool calls); nothing for completions.
    pub output: OutputParsing,
    /// How to write log-probabilities, when the request asks for them.
    pub logprobs: Option<LogprobFormat>,
    /// Text the answer was made to start with (a forced tool call's head): the chat parser
    /// reads it before the answer.
    pub answer_prefix: String,
}

/// One finished choice of a whole response.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceResult {
    /// Its text.
    pub text: String,
    /// Its `finish_reason`.
    pub finish: String,
    /// Its tokens' log-probabilities (when asked for).
    pub logprobs: Vec<TokenLogprob>,
}

impl ResponseMeta {
    fn envelope(&self, object: &str, choices: Value) -> Value {
        let mut body = json!({"id": self.id, "object": object, "created": self.created,
                              "model": self.model, "system_fingerprint": self.system_fingerprint});
        body["choices"] = choices;
        body
    }

    /// One streaming chunk for choice `index`.
    pub fn chunk(&self, index: usize, text: &str, finish: Option<&str>, first: bool) -> Value {
        match self.endpoint {
            Endpoint::Completion => self.envelope(
                "text_completion",
                json!([{"index": index, "text": text, "logprobs": null, "finish_reason": finish}]),
            ),
            Endpoint::Chat => self.delta_chunk(index, json!({"content": text}), finish, first),
        }
    }

    /// The `logprobs` value of a choice whose tokens are `tokens` (the completions form starts
    /// at character `offset` of the text and advances it); `null` when not asked for.
    fn logprobs_value(&self, tokens: &[TokenLogprob], offset: &mut usize) -> Value {
        match (&self.logprobs, self.endpoint) {
            (None, _) => Value::Null,
            (Some(format), Endpoint::Chat) => format.chat(tokens),
            (Some(format), Endpoint::Completion) => format.completion(tokens, offset),
        }
    }

    /// One chat chunk carrying `delta` (the first of a choice also says its role).
    fn delta_chunk(
        &self,
        index: usize,
        mut delta: Value,
        finish: Option<&str>,
        first: bool,
    ) -> Value {
        if first {
            delta["role"] = json!("assistant");
        }
        self.envelope(
            "chat.completion.chunk",
            json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        )
    }

    fn usage_chunk(&self, usage: &Usage) -> Value {
        let object = match self.endpoint {
            Endpoint::Completion => "text_completion",
            Endpoint::Chat => "chat.completion.chunk",
        };
        let mut chunk = self.envelope(object, json!([]));
        chunk["usage"] = json!(usage);
        chunk
    }

    /// The whole (non-streaming) response.
    pub fn full(&self, choices: &[ChoiceResult], usage: &Usage) -> Value {
        let item = |(i, c): (usize, &ChoiceResult)| {
            let logprobs = self.logprobs_value(&c.logprobs, &mut 0);
            match self.endpoint {
                Endpoint::Completion => json!({"index": i, "text": c.text, "logprobs": logprobs,
                                               "finish_reason": c.finish}),
                Endpoint::Chat => {
                    let text = format!("{}{}", self.answer_prefix, c.text);
                    let (message, finish) = chat_message::message(self.output, &text, &c.finish);
                    json!({"index": i, "message": message, "logprobs": logprobs,
                           "finish_reason": finish})
                }
            }
        };
        let items: Vec<Value> = choices.iter().enumerate().map(item).collect();
        let object = match self.endpoint {
            Endpoint::Completion => "text_completion",
            Endpoint::Chat => "chat.completion",
        };
        let mut body = self.envelope(object, json!(items));
        body["usage"] = json!(usage);
        body
    }
}

/// Waits for every choice to finish and returns the whole response body.
pub async fn collect(
    meta: &ResponseMeta,
    receivers: Vec<UnboundedReceiver<EngineEvent>>,
) -> Result<Value, ApiError> {
    let mut choices = Vec::with_capacity(receivers.len());
    let mut counts = Vec::with_capacity(receivers.len());
    for mut rx in receivers {
        let whole = request::collect(&mut rx)
            .await
            .map_err(ApiError::internal)?;
        let done = whole.done;
        choices.push(ChoiceResult {
            text: whole.text,
            finish: done.finish_reason.as_str().to_string(),
            logprobs: whole.logprobs,
        });
        counts.push((done.completion_tokens, done.forwards));
    }
    Ok(meta.full(&choices, &Usage::new(meta.prompt_tokens, &counts)))
}

struct StreamState {
    events: futures::stream::SelectAll<futures::stream::BoxStream<'static, (usize, EngineEvent)>>,
    meta: ResponseMeta,
    outbox: VecDeque<Event>,
    started: Vec<bool>,
    /// Per choice of a chat stream, its splitter.
    splitters: Vec<DeltaStream>,
    /// Per choice, log-probabilities not yet sent (they ride on the choice's next chunk).
    held_logprobs: Vec<Vec<TokenLogprob>>,
    /// Per choice, characters of text whose log-probabilities were sent (completions' offsets).
    text_offsets: Vec<usize>,
    remaining: usize,
    counts: Vec<(usize, u32)>,
    include_usage: bool,
    closed: bool,
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

impl StreamState {
    fn on_event(&mut self, index: usize, event: EngineEvent) {
        match event {
            EngineEvent::Block { text, logprobs, .. } => {
                self.held_logprobs[index].extend(logprobs);
                match self.meta.endpoint {
                    Endpoint::Chat => self.chat_deltas(index, &text, None),
                    Endpoint::Completion if text.is_empty() && self.started[index] => {}
                    Endpoint::Completion => {
                        let chunk = self.meta.chunk(index, &text, None, !self.started[index]);
                        self.send(index, chunk);
                    }
                }
            }
            EngineEvent::Done(done) => {
                let finish = done.finish_reason.as_str();
                match self.meta.endpoint {
                    Endpoint::Chat => self.chat_deltas(index, &done.text, Some(finish)),
                    Endpoint::Completion => {
                        let first = !self.started[index];
                        let chunk = self.meta.chunk(index, &done.text, Some(finish), first);
                        self.send(index, chunk);
                    }
                }
                self.done(&done);
            }
            EngineEvent::Error(message) => {
                self.outbox
                    .push_back(data(&ApiError::internal(message).body()));
                self.outbox.push_back(Event::default().data("[DONE]"));
                self.closed = true;
            }
        }
    }

    /// Queues `chunk` of choice `index`, with the log-probabilities held for it.
    fn send(&mut self, index: usize, mut chunk: Value) {
        let held = std::mem::take(&mut self.held_logprobs[index]);
        if !held.is_empty() {
            let offset = &mut self.text_offsets[index];
            chunk["choices"][0]["logprobs"] = self.meta.logprobs_value(&held, offset);
        }
        self.outbox.push_back(data(&chunk));
        self.started[index] = true;
    }

    /// Counts a finished choice; the last one ends the stream.
    fn done(&mut self, done: &crate::engine::request::Completion) {
        self.counts.push((done.completion_tokens, done.forwards));
        self.remaining -= 1;
        if self.remaining == 0 {
            self.finish();
        }
    }

    /// The chat chunks of choice `index`'s next `text`; with `finish`, its last chunk too.
    fn chat_deltas(&mut self, index: usize, text: &str, finish: Option<&str>) {
        let splitter = &mut self.splitters[index];
        let deltas = splitter.deltas(text, finish.is_some());
        let calls = splitter.calls;
        for delta in deltas {
            let chunk = self
                .meta
                .delta_chunk(index, delta, None, !self.started[index]);
            self.send(index, chunk);
        }
        if let Some(finish) = finish {
            let finish = chat_message::finish_reason(finish, calls);
            let chunk = self
                .meta
                .delta_chunk(index, json!({}), Some(finish), !self.started[index]);
            self.send(index, chunk);
        }
    }

    fn finish(&mut self) {
        if self.include_usage {
            let usage = Usage::new(self.meta.prompt_tokens, &self.counts);
            self.outbox.push_back(data(&self.meta.usage_chunk(&usage)));
        }
        self.outbox.push_back(Event::default().data("[DONE]"));
        self.closed = true;
    }
}

/// The SSE event stream of a response whose choices arrive on `receivers`.
pub fn sse_stream(
    meta: ResponseMeta,
    receivers: Vec<UnboundedReceiver<EngineEvent>>,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let n = receivers.len();
    let (meta_output, answer_prefix) = (meta.output, meta.answer_prefix.clone());
    let events = select_all(receivers.into_iter().enumerate().map(|(i, rx)| {
        UnboundedReceiverStream::new(rx)
            .map(move |e| (i, e))
            .boxed()
    }));
    let state = StreamState {
        events,
        meta,
        outbox: VecDeque::new(),
        started: vec![false; n],
        splitters: (0..n)
            .map(|_| DeltaStream::new(meta_output, &answer_prefix))
            .collect(),
        held_logprobs: vec![Vec::new(); n],
        text_offsets: vec![0; n],
        remaining: n,
        counts: Vec::with_capacity(n),
        include_usage,
        closed: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.outbox.pop_front() {
                return Some((Ok(event), st));
            }
            if st.closed {
                return None;
            }
            match st.events.next().await {
                Some((i, event)) => st.on_event(i, event),
                None => st.on_event(
                    0,
                    EngineEvent::Error("the engine dropped the request".into()),
                ),
            }
        }
    })
}
