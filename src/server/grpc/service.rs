//! The `t3d.v1.Generation` service: requests go through the same admission as HTTP; events of
//! the engine become stream messages. Dropping the response stream drops the engine receivers,
//! which cancels the request at the engine's next step.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, BoxStream, SelectAll, Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::convert::{common_params, finish_reason, parse_grpc_timeout, prompt, status_of};
use super::pb;
use crate::engine::request::{collect, Collected};
use crate::engine::runner::EngineEvent;
use crate::server::admission::{admit, Admitted};
use crate::server::schema::Usage;
use crate::server::AppState;

/// The service over the shared server state.
pub struct GenerationService {
    state: Arc<AppState>,
}

impl GenerationService {
    /// A service admitting into `state`'s engine.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    fn count(&self, method: &str, code: Code) {
        let code = format!("{code:?}");
        self.state
            .metrics
            .grpc_requests
            .with_label_values(&[method, code.as_str()])
            .inc();
    }

    /// Admits `request`; the deadline from `grpc-timeout`, if any.
    fn admit(
        &self,
        request: &Request<pb::GenerateRequest>,
    ) -> Result<(Admitted, Option<Instant>), Status> {
        let metadata = request.metadata();
        let request_id = metadata
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        let deadline = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|t| Instant::now() + t);
        let body = request.get_ref();
        let prompt = prompt(body).map_err(|e| status_of(&e))?;
        let admitted = admit(&self.state, &prompt, &common_params(body), &request_id)
            .map_err(|e| status_of(&e))?;
        Ok((admitted, deadline))
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::generation_server::Generation for GenerationService {
    type GenerateStream = ResponseStream;

    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        let (admitted, deadline) = self
            .admit(&request)
            .inspect_err(|s| self.count("Generate", s.code()))?;
        let metrics = self.state.metrics.clone();
        let events = event_stream(admitted, deadline).inspect(move |item| {
            let code = match item {
                Ok(pb::GenerateResponse {
                    event: Some(pb::generate_response::Event::Usage(_)),
                    ..
                }) => Code::Ok,
                Ok(_) => return,
                Err(status) => status.code(),
            };
            let code = format!("{code:?}");
            metrics
                .grpc_requests
                .with_label_values(&["Generate", code.as_str()])
                .inc();
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn complete(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let result = async {
            let (admitted, deadline) = self.admit(&request)?;
            let work = complete(admitted);
            match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), work)
                    .await
                    .map_err(|_| Status::deadline_exceeded("the client's deadline passed"))?,
                None => work.await,
            }
        }
        .await;
        self.count(
            "Complete",
            result.as_ref().map_or_else(Status::code, |_| Code::Ok),
        );
        result.map(Response::new)
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let model = self.state.served();
        let limits = &model.limits;
        let card = pb::Model {
            id: limits.served_model.clone(),
            version: model.version.clone(),
            max_model_len: limits.max_total_tokens as u32,
            block_size: limits.decoding.block_size as u32,
            steps_per_block: limits.decoding.steps_per_block as u32,
        };
        self.count("ListModels", Code::Ok);
        Ok(Response::new(pb::ListModelsResponse { models: vec![card] }))
    }
}

fn response_id() -> String {
    format!("cmpl-{}", uuid::Uuid::new_v4().simple())
}

async fn complete(admitted: Admitted) -> Result<pb::CompleteResponse, Status> {
    let mut choices = Vec::with_capacity(admitted.receivers.len());
    let mut counts = Vec::with_capacity(admitted.receivers.len());
    for (index, mut rx) in admitted.receivers.into_iter().enumerate() {
        let Collected {
            text,
            tokens: token_ids,
            done,
            ..
        } = collect(&mut rx).await.map_err(Status::internal)?;
        counts.push((done.completion_tokens, done.forwards));
        choices.push(pb::Choice {
            index: index as u32,
            text,
            token_ids,
            finish_reason: finish_reason(done.finish_reason) as i32,
        });
    }
    Ok(pb::CompleteResponse {
        id: response_id(),
        model: admitted.model.limits.served_model.clone(),
        system_fingerprint: admitted.model.version.clone(),
        choices,
        usage: Some(usage(&Usage::new(admitted.prompt.len(), &counts))),
    })
}

fn usage(u: &Usage) -> pb::Usage {
    pb::Usage {
        prompt_tokens: u.prompt_tokens as u32,
        completion_tokens: u.completion_tokens as u32,
        total_tokens: u.total_tokens as u32,
        forward_passes: u.forward_passes,
        tokens_per_forward: u.tokens_per_forward,
    }
}

/// What the stream still has to do.
struct StreamState {
    events: SelectAll<BoxStream<'static, (usize, EngineEvent)>>,
    envelope: pb::GenerateResponse,
    prompt_tokens: usize,
    counts: Vec<(usize, u32)>,
    remaining: usize,
    deadline: Option<Instant>,
    done: bool,
}

/// Blocks and choice ends as they come, then the usage; an engine error or a passed deadline
/// ends the stream with its status.
fn event_stream(
    admitted: Admitted,
    deadline: Option<Instant>,
) -> impl Stream<Item = Result<pb::GenerateResponse, Status>> + Send {
    let choices = admitted.receivers.len();
    let events = stream::select_all(admitted.receivers.into_iter().enumerate().map(|(i, rx)| {
        UnboundedReceiverStream::new(rx)
            .map(move |e| (i, e))
            .boxed()
    }));
    let envelope = pb::GenerateResponse {
        id: response_id(),
        model: admitted.model.limits.served_model.clone(),
        system_fingerprint: admitted.model.version.clone(),
        event: None,
    };
    let state = StreamState {
        events,
        envelope,
        prompt_tokens: admitted.prompt.len(),
        counts: vec![(0, 0); choices],
        remaining: choices,
        deadline,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let item = st.next_item().await;
        Some((item, st))
    })
}

impl StreamState {
    async fn next_item(&mut self) -> Result<pb::GenerateResponse, Status> {
        use pb::generate_response::Event;
        if self.remaining == 0 {
            self.done = true;
            return Ok(self.message(Event::Usage(usage(&Usage::new(
                self.prompt_tokens,
                &self.counts,
            )))));
        }
        let next = match self.deadline {
            Some(at) => tokio::time::timeout_at(at.into(), self.events.next())
                .await
                .map_err(|_| {
                    self.done = true;
                    Status::deadline_exceeded("the client's deadline passed")
                })?,
            None => self.events.next().await,
        };
        match next {
            Some((index, EngineEvent::Block { text, tokens, .. })) => {
                Ok(self.message(Event::Block(pb::Block {
                    index: index as u32,
                    text,
                    token_ids: tokens,
                })))
            }
            Some((index, EngineEvent::Done(done))) => {
                self.remaining -= 1;
                self.counts[index] = (done.completion_tokens, done.forwards);
                Ok(self.message(Event::ChoiceEnd(pb::ChoiceEnd {
                    index: index as u32,
                    finish_reason: finish_reason(done.finish_reason) as i32,
                    text: done.text,
                    completion_tokens: done.completion_tokens as u32,
                    forward_passes: done.forwards,
                })))
            }
            Some((_, EngineEvent::Error(message))) => {
                self.done = true;
                Err(Status::internal(message))
            }
            None => {
                self.done = true;
                Err(Status::internal("the engine dropped the request"))
            }
        }
    }

    fn message(&self, event: pb::generate_response::Event) -> pb::GenerateResponse {
        pb::GenerateResponse {
            event: Some(event),
            ..self.envelope.clone()
        }
    }
}
