//! The model the server answers with: its engine handle, tokenizer, request limits and
//! version. A handler takes one `Arc<ServedModel>` per request, so a hot swap changes what new
//! requests get while the ones already running finish on the model they started with (its
//! engine thread drains them, then exits once the last handle is gone).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::chat_output::Parsers;
use super::validate::Limits;
use crate::engine::device_memory::cuda_free_and_total;
use crate::engine::kv_budget::{self, available_memory, Budget, KvPlan};
use crate::engine::kv_cache::bytes_per_position;
use crate::engine::recommended::recommended;
use crate::engine::runner::{spawn_labelled, EngineHandle, RunnerLimits};
use crate::metrics::Metrics;
use crate::model::generation_config::GenerationConfig;
use crate::model::{checkpoint, SdarConfig, TextTokenizer};

/// What serving a checkpoint needs besides its directory (from `t3d serve`'s flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Name clients use in `model` (kept across swaps).
    pub served_model_name: String,
    /// Sequences decoded together.
    pub max_batch_size: usize,
    /// Requests waiting before 429.
    pub max_queue: usize,
    /// Longest prompt (default: the context limit less one).
    pub max_input_tokens: Option<usize>,
    /// Longest prompt + completion (default: the model's `max_position_embeddings`, capped
    /// by the KV budget).
    pub max_total_tokens: Option<usize>,
    /// Bytes of KV cache (default: derived from free memory).
    pub kv_cache_memory: Option<usize>,
    /// Share of a GPU's memory t3d may use in all (weights, cache, activations).
    pub gpu_memory_utilization: f64,
    /// Where the model runs.
    pub device: tch::Device,
    /// Weight dtype.
    pub kind: tch::Kind,
    /// How long the warm-up decode may take.
    pub warm_up_timeout: Duration,
    /// Replay decode steps as CUDA graphs (on CUDA).
    pub cuda_graphs: bool,
    /// How chat answers are parsed for tool calls and reasoning.
    pub parsers: Parsers,
}

/// One loaded model with its engine thread.
pub struct ServedModel {
    /// The engine's channel.
    pub engine: EngineHandle,
    /// Prompt tokenisation and chat templates (no tensors).
    pub tokenizer: TextTokenizer,
    /// Rows of the embedding (valid token ids).
    pub vocab_size: i64,
    /// Request limits and defaults.
    pub limits: Limits,
    /// `<first 12 hex of the weights' SHA-256>-<load time, unix s>`.
    pub version: String,
    /// The checkpoint directory.
    pub path: PathBuf,
    /// How chat answers are parsed for tool calls and reasoning.
    pub parsers: Parsers,
}

impl ServedModel {
    /// Marks this model as the one serving now in `metrics`.
    pub fn publish(&self, metrics: &crate::metrics::Metrics) {
        let path = self.path.display().to_string();
        metrics.set_model(&crate::metrics::ServingModel {
            version: &self.version,
            path: &path,
            block_size: self.limits.decoding.block_size,
            steps_per_block: self.limits.decoding.steps_per_block,
        });
    }

    /// Loads `dir` on a new engine thread and waits for its warm-up decode; with
    /// `same_vocabulary_as`, its tokenizer must map every token as that one does (checked
    /// before any weight is read). Blocking (weights are hashed and loaded): call it off the
    /// async runtime.
    pub fn load(
        dir: &Path,
        opts: &ServeOptions,
        metrics: Arc<Metrics>,
        same_vocabulary_as: Option<&TextTokenizer>,
    ) -> anyhow::Result<Self> {
        let dir = &dir
            .canonicalize()
            .with_context(|| format!("opening {}", dir.display()))?;
        let config = SdarConfig::from_file(&dir.join("config.json"))?;
        let tokenizer = TextTokenizer::from_dir(dir, &config)?;
        if let Some(served) = same_vocabulary_as {
            anyhow::ensure!(
                tokenizer.same_vocabulary(served),
                "its tokenizer's vocabulary differs from the served one (set replace_tokenizer to accept it)"
            );
        }
        let version = format!("{}-{}", weights_digest(dir)?, super::unix_now());
        let plan = kv_plan(&config, opts)?;
        tracing::info!("{}", plan.describe());
        let max_total = plan.max_model_len;
        let limits = Limits {
            served_model: opts.served_model_name.clone(),
            max_input_tokens: opts
                .max_input_tokens
                .unwrap_or(max_total)
                .min(max_total.saturating_sub(1)),
            max_total_tokens: max_total,
            decoding: recommended(&config).map_err(anyhow::Error::msg)?,
            sampling: GenerationConfig::from_dir(dir)?.sampling_defaults(),
            eos_ids: tokenizer.stop_ids.clone(),
            added_tokens: tokenizer.added_tokens(),
            vocab_size: config.vocab_size,
        };
        tracing::info!(chat_template = %tokenizer.chat_template_source(),
            stop_ids = ?tokenizer.stop_ids, sampling = ?limits.sampling, "decoding defaults");
        let runner_limits = RunnerLimits {
            max_queue: opts.max_queue,
            cache: plan.shape,
            cuda_graphs: opts.cuda_graphs,
        };
        let (load_dir, engine_tokenizer) = (dir.to_path_buf(), tokenizer.clone());
        let (device, kind) = (opts.device, opts.kind);
        let load = move || {
            let model = checkpoint::load(&load_dir, device, kind)?.model;
            Ok((model, engine_tokenizer))
        };
        let engine = spawn_labelled(&version, load, runner_limits, metrics)
            .with_context(|| format!("loading {}", dir.display()))?;
        engine
            .wait_warm(opts.warm_up_timeout)
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            engine,
            tokenizer,
            vocab_size: config.vocab_size,
            limits,
            version,
            path: dir.to_path_buf(),
            parsers: opts.parsers,
        })
    }
}

/// Sizes the KV cache of `config` under `opts` (see [`kv_budget::plan`]).
fn kv_plan(config: &SdarConfig, opts: &ServeOptions) -> anyhow::Result<KvPlan> {
    let weights = config.num_parameters() as usize * opts.kind.elt_size_in_bytes();
    let budget = match (opts.kv_cache_memory, opts.device) {
        (Some(bytes), _) => Budget::Bytes(bytes),
        (None, tch::Device::Cuda(index)) => {
            let (free, total) = cuda_free_and_total(index)
                .context("cannot read the GPU's free memory: set --kv-cache-memory")?;
            let held_back = ((1.0 - opts.gpu_memory_utilization) * total as f64) as usize;
            Budget::FreeFraction {
                free: free.saturating_sub(held_back),
                weights,
                fraction: 1.0,
            }
        }
        (None, _) => Budget::FreeFraction {
            free: available_memory()
                .context("cannot read the free memory: set --kv-cache-memory")?,
            weights,
            fraction: CPU_KV_FRACTION,
        },
    };
    let model_len = config.max_position_embeddings.max(1) as usize;
    let plan = kv_budget::plan(
        bytes_per_position(config, opts.kind),
        opts.max_batch_size,
        model_len,
        opts.max_total_tokens,
        budget,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(match opts.device {
        tch::Device::Cpu => plan,
        _ => kv_budget::fit_whole_slots(plan, opts.max_total_tokens),
    })
}

/// Share of the host memory left after the weights that the KV cache may take on the CPU
/// (committed only as sequences use it).
pub const CPU_KV_FRACTION: f64 = 0.5;

/// The model new requests go to; replaced atomically by a swap.
pub struct ModelSlot(RwLock<Arc<ServedModel>>);

impl ModelSlot {
    /// A slot serving `model`.
    pub fn new(model: ServedModel) -> Self {
        Self(RwLock::new(Arc::new(model)))
    }

    /// The model serving now.
    pub fn current(&self) -> Arc<ServedModel> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Serves `model` from now on; returns the one it replaces.
    pub fn replace(&self, model: ServedModel) -> Arc<ServedModel> {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *guard, Arc::new(model))
    }
}

/// SHA-256 over the checkpoint's `*.safetensors` files (by name order), first 12 hex digits.
pub fn weights_digest(dir: &Path) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no *.safetensors", dir.display());
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for file in &files {
        let mut f =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        loop {
            let n = f.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    let hex: String = hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex)
}
