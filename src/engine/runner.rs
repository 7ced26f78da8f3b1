//! The engine thread: one OS thread owns the model, the tokenizer's decoding side and the KV
//! cache, and serves requests with continuous batching. HTTP handlers hold only an
//! [`EngineHandle`] (a bounded channel plus shared counters).
//!
//! Every iteration: take new requests, drop cancelled ones (their event receiver is gone),
//! admit waiting requests while KV slots are free, then run **one** forward for the running
//! sequences of one block size (block sizes take turns), and deliver each committed block as an
//! event. A failing forward fails only the sequences of that batch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::serve_loop::Engine;
use super::{FinishReason, GenerationParams};
use crate::metrics::Metrics;
use crate::model::{Sdar, TextTokenizer};

/// What the engine tells a request, in order: blocks, then exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// One committed block: its completion tokens and the text now safe to send.
    Block {
        /// Text delta (may be empty while a stop string could still match).
        text: String,
        /// Completion tokens of the block.
        tokens: Vec<i64>,
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

/// Limits of the engine.
#[derive(Debug, Clone, Copy)]
pub struct RunnerLimits {
    /// Sequences in the running batch (= KV-cache slots).
    pub max_batch_size: usize,
    /// Requests waiting for a slot before new ones get 429.
    pub max_queue: usize,
    /// Positions per KV slot (prompt + completion + one block).
    pub slot_capacity: usize,
}

/// State shared between the engine thread and its handles.
pub(crate) struct Shared {
    /// Requests submitted and not yet admitted (or dropped).
    pub(crate) waiting: AtomicUsize,
    /// The warm-up decode succeeded.
    pub(crate) ready: AtomicBool,
    /// The engine thread runs.
    pub(crate) alive: AtomicBool,
}

/// The handlers' side of the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: SyncSender<EngineRequest>,
    shared: Arc<Shared>,
    max_queue: usize,
}

impl EngineHandle {
    /// Enqueues a request, or refuses at once when the queue is full.
    pub fn submit(&self, request: EngineRequest) -> Result<(), SubmitError> {
        let admitted = self
            .shared
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < self.max_queue).then_some(w + 1)
            });
        if admitted.is_err() {
            return Err(SubmitError::QueueFull);
        }
        self.tx.try_send(request).map_err(|e| {
            self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => SubmitError::QueueFull,
                TrySendError::Disconnected(_) => SubmitError::EngineGone,
            }
        })
    }

    /// The engine passed its warm-up decode and is serving.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && self.is_alive()
    }

    /// The engine thread is running.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }
}

/// Marks the engine dead when its thread ends, however it ends.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        self.0.ready.store(false, Ordering::SeqCst);
    }
}

/// Starts the engine thread. `load` runs on that thread and builds the model (tch tensors stay
/// on the thread that made them); the call returns once loading succeeded or failed.
pub fn spawn<L>(
    load: L,
    limits: RunnerLimits,
    metrics: Arc<Metrics>,
) -> anyhow::Result<EngineHandle>
where
    L: FnOnce() -> anyhow::Result<(Sdar, TextTokenizer)> + Send + 'static,
{
    let (tx, rx) = sync_channel(limits.max_queue.max(1));
    let shared = Arc::new(Shared {
        waiting: AtomicUsize::new(0),
        ready: AtomicBool::new(false),
        alive: AtomicBool::new(true),
    });
    let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("t3d-engine".into())
        .spawn(move || {
            let _guard = AliveGuard(thread_shared.clone());
            let (model, tokenizer) = match load() {
                Ok(m) => m,
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                    return;
                }
            };
            let _ = loaded_tx.send(Ok(()));
            let engine = Engine::new(&model, &tokenizer, limits, metrics, thread_shared);
            engine.run(&rx);
        })?;
    loaded_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the engine thread died while loading"))??;
    Ok(EngineHandle {
        tx,
        shared,
        max_queue: limits.max_queue,
    })
}
