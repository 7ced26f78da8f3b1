//! The engine thread: one OS thread owns the model, the tokenizer's decoding side and the KV
//! cache, and serves requests with continuous batching. HTTP handlers hold only an
//! [`EngineHandle`] (a bounded channel plus shared counters).
//!
//! Every iteration: take new requests, drop cancelled ones (their event receiver is gone),
//! admit waiting requests while KV slots are free, then run **one** forward for the running
//! sequences of one block size (block sizes take turns), and deliver each committed block as an
//! event. A failing forward fails only the sequences of that batch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use super::request::Shared;
pub use super::request::{Completion, EngineEvent, EngineRequest, RunnerLimits, SubmitError};
use super::serve_loop::Engine;
use crate::metrics::Metrics;
use crate::model::{Sdar, TextTokenizer};

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

    /// Whether the waiting queue is full (a submit now would be refused).
    pub fn is_full(&self) -> bool {
        self.shared.waiting.load(Ordering::SeqCst) >= self.max_queue
    }

    /// The engine passed its warm-up decode and is serving.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && self.is_alive()
    }

    /// The engine thread is running.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Blocks until the warm-up decode has run (or `timeout` passes); `Ok` once it succeeded.
    pub fn wait_warm(&self, timeout: std::time::Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        while !self.shared.warmed.load(Ordering::SeqCst) && self.is_alive() {
            if std::time::Instant::now() >= deadline {
                return Err(format!("the warm-up decode took longer than {timeout:?}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if self.is_ready() {
            Ok(())
        } else {
            Err("the warm-up decode failed (see the server log)".into())
        }
    }
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// A thread made by a niced thread inherits its nice value (Linux), and the server lowers the
/// priority of its HTTP threads: engine threads (a hot swap starts one from such a thread) are
/// made by one long-lived thread started at normal priority, when [`start_engine_spawner`] ran.
static ENGINE_SPAWNER: OnceLock<Mutex<Sender<SpawnJob>>> = OnceLock::new();

/// Starts the thread that makes engine threads; call it from a normal-priority thread before
/// lowering the priority of others. Later calls do nothing.
pub fn start_engine_spawner() -> std::io::Result<()> {
    let (tx, rx) = channel::<SpawnJob>();
    if ENGINE_SPAWNER.set(Mutex::new(tx)).is_ok() {
        std::thread::Builder::new()
            .name("t3d-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))?;
    }
    Ok(())
}

/// Spawns `body` as a named thread, through the engine spawner when it runs.
fn spawn_engine_thread(body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let spawn = move || {
        std::thread::Builder::new()
            .name("t3d-engine".into())
            .spawn(body)
            .map(|_| ())
    };
    let Some(spawner) = ENGINE_SPAWNER.get() else {
        return spawn();
    };
    let (done_tx, done_rx) = channel();
    let job: SpawnJob = Box::new(move || {
        let _ = done_tx.send(spawn());
    });
    let sent = spawner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job);
    if let Err(std::sync::mpsc::SendError(job)) = sent {
        job(); // the spawner is gone: spawn from here
    }
    done_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the engine spawner stopped")))
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
    spawn_labelled("-", load, limits, metrics)
}

/// [`spawn`], with every log line of the engine thread carrying `model = label` (the served
/// model's version, so the log shows which model answered).
pub fn spawn_labelled<L>(
    label: &str,
    load: L,
    limits: RunnerLimits,
    metrics: Arc<Metrics>,
) -> anyhow::Result<EngineHandle>
where
    L: FnOnce() -> anyhow::Result<(Sdar, TextTokenizer)> + Send + 'static,
{
    let label = label.to_string();
    let (tx, rx) = sync_channel(limits.max_queue.max(1));
    let shared = Arc::new(Shared {
        waiting: AtomicUsize::new(0),
        warmed: AtomicBool::new(false),
        ready: AtomicBool::new(false),
        alive: AtomicBool::new(true),
    });
    let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
    let thread_shared = shared.clone();
    spawn_engine_thread(move || {
        let _span = tracing::info_span!("engine", model = %label).entered();
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
