//! Command-line arguments: the top-level command and the serving subcommands (clap derive;
//! every flag also reads a `T3D_*` environment variable). Conversion into engine types happens here, once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use super::train_args::{
    CompareArgs, DatasetArgs, DistillArgs, EvalArgs, PromptArgs, RolloutArgs, RunArgs, TrainArgs,
};
use crate::engine::{DenoiseParams, GenerationParams, Remasking, SamplingParams, StopParams};
use crate::server::chat_output::{ReasoningParser, ToolCallParser};

/// t3d: few-step block-diffusion LMs (SDAR) and their T3D distillation.
#[derive(Debug, Parser)]
#[command(name = "t3d", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode one prompt and print the text and one line of stats.
    Generate(GenerateArgs),
    /// Engine-only throughput over batch sizes and steps per block (table + JSON).
    Bench(BenchArgs),
    /// Write a randomly initialised SDAR checkpoint of a named shape (with a byte-level tokenizer).
    Init(InitArgs),
    /// Rewrite a checkpoint with its weights in another dtype (bf16 halves it), other files kept.
    Convert(ConvertArgs),
    /// Train a block-diffusion model from scratch on a bundled task (resumable).
    Train(TrainArgs),
    /// Score a model on a bundled task's held-out problems at several steps per block.
    Eval(EvalArgs),
    /// Write problems of a bundled task's split as JSONL (question, operands, answer, trace).
    Dataset(DatasetArgs),
    /// Roll out a teacher on training prompts, recording each token's decode step (JSONL).
    Rollout(RolloutArgs),
    /// T3D trajectory self-distillation of a teacher into a few-step student (resumable).
    Distill(DistillArgs),
    /// Compare `eval.json` files: a Markdown table (accuracy / validity per S) and a PNG plot.
    Compare(CompareArgs),
    /// Serve the OpenAI-compatible HTTP API (completions, chat, SSE, metrics).
    Serve(ServeArgs),
    /// Exit 0 if a local server answers `/health` with 200 (a container health check).
    Health(HealthArgs),
}

/// Where the model runs.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, env = "T3D_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Weight and activation dtype: f32, bf16, f16 or auto (bf16 on CUDA, f32 on CPU).
    #[arg(long, env = "T3D_DTYPE", default_value = "auto")]
    pub dtype: String,
    /// libtorch intra-op threads (0 = libtorch's default).
    #[arg(long, env = "T3D_THREADS", default_value_t = 0)]
    pub threads: i32,
    /// On CUDA, replay decode steps as CUDA graphs (true or false; ignored elsewhere). Off until
    /// a GPU run of scripts/gpu-bench.sh has shown their tokens equal to eager decoding.
    #[arg(long, env = "T3D_CUDA_GRAPHS", default_value_t = false, action = clap::ArgAction::Set)]
    pub cuda_graphs: bool,
}

/// Block-diffusion and sampling knobs shared by `generate` and `bench`.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Tokens per block (default: the model's `block_size`).
    #[arg(long, env = "T3D_BLOCK_SIZE")]
    pub block_size: Option<usize>,
    /// Denoising steps per block (default: the model's recommended decoding, else full-step).
    #[arg(long, env = "T3D_STEPS_PER_BLOCK")]
    pub steps_per_block: Option<usize>,
    /// low_confidence_static, low_confidence_dynamic, sequential or entropy_bounded
    /// (default: the model's recommended decoding, else low_confidence_static).
    #[arg(long, env = "T3D_REMASKING")]
    pub remasking: Option<Remasking>,
    /// Confidence threshold of low_confidence_dynamic (default: the model's, else 0.9).
    #[arg(long, env = "T3D_THRESHOLD")]
    pub threshold: Option<f64>,
    /// 0 = greedy.
    #[arg(long, env = "T3D_TEMPERATURE", default_value_t = 0.0)]
    pub temperature: f64,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, env = "T3D_TOP_K", default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus mass (1 = off).
    #[arg(long, env = "T3D_TOP_P", default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, env = "T3D_SEED")]
    pub seed: Option<u64>,
    /// Most completion tokens.
    #[arg(long, env = "T3D_MAX_TOKENS", default_value_t = 128)]
    pub max_tokens: usize,
    /// Stop strings (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep going past EOS until --max-tokens (benchmarks, checks).
    #[arg(long)]
    pub ignore_eos: bool,
}

impl DecodeArgs {
    /// Generation parameters, filling what is not given from the model's recommended decoding.
    pub fn params(&self, model: &DenoiseParams) -> GenerationParams {
        let block_size = self.block_size.unwrap_or(model.block_size);
        GenerationParams {
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
                ..SamplingParams::default()
            },
            denoise: DenoiseParams {
                block_size,
                steps_per_block: self
                    .steps_per_block
                    .unwrap_or(model.steps_per_block.min(block_size)),
                remasking: self.remasking.unwrap_or(model.remasking),
                confidence_threshold: self.threshold.unwrap_or(model.confidence_threshold),
                entropy_bound: model.entropy_bound,
            },
            stop: StopParams {
                max_tokens: self.max_tokens,
                stop_strings: self.stop.clone(),
                ignore_eos: self.ignore_eos,
                ..StopParams::default()
            },
        }
    }
}

/// `t3d generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Checkpoint directory (Hugging Face layout), bundled model name or Hub id `org/name`
    /// (default: the bundled model).
    #[arg(long, env = "T3D_MODEL")]
    pub model: Option<PathBuf>,
    /// Hub revision (branch, tag or commit) of a `--model` given as `org/name`.
    #[arg(long, env = "T3D_REVISION")]
    pub revision: Option<String>,
    /// The prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as one user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Print one JSON object (text, prompt and completion token ids, trajectory, finish reason,
    /// forwards) instead of the plain text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub device: DeviceArgs,
}

/// `t3d bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Checkpoint directory, bundled model name or Hub id `org/name`; without it a random
    /// model of `--shape` is used.
    #[arg(long, env = "T3D_MODEL")]
    pub model: Option<PathBuf>,
    /// Hub revision (branch, tag or commit) of a `--model` given as `org/name`.
    #[arg(long, env = "T3D_REVISION")]
    pub revision: Option<String>,
    /// Random-model shape: tiny, small, sdar-1.7b or sdar-4b.
    #[arg(long, default_value = "small")]
    pub shape: String,
    /// Batch sizes to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch_sizes: Vec<usize>,
    /// Steps per block to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub steps: Vec<usize>,
    /// Tokens per block.
    #[arg(long, default_value_t = 4)]
    pub block_size: usize,
    /// Prompt length in tokens (random ids).
    #[arg(long, default_value_t = 32)]
    pub prompt_len: usize,
    /// Completion tokens per sequence (EOS ignored).
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Untimed warm-up runs per setting.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed repetitions per setting (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Write the results as JSON here (rewritten after every setting, so a run cut short
    /// keeps what it measured).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The device's memory bandwidth in GB/s (an H200: 4800): each row then reports its % of
    /// the bound set by reading the weights and the attended KV cache once per forward.
    #[arg(long)]
    pub hbm_bandwidth_gbs: Option<f64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub device: DeviceArgs,
}

/// `t3d init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Output checkpoint directory.
    #[arg(long)]
    pub out: PathBuf,
    /// tiny, small, sdar-1.7b or sdar-4b (the SDAR shapes keep their vocabulary size; their
    /// tokenizer is the byte-level one, the other rows are never generated).
    #[arg(long, default_value = "tiny")]
    pub shape: String,
    /// Initialisation seed.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// Weight dtype written: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// `t3d convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Checkpoint directory to read.
    #[arg(long)]
    pub model: PathBuf,
    /// Checkpoint directory to write (may be `--model`: replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight dtype written: f32, bf16 or f16.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
}

/// `t3d serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Checkpoint directory, bundled model name or Hub id `org/name[@revision]` (default: the
    /// bundled model).
    #[arg(long, env = "T3D_MODEL")]
    pub model: Option<PathBuf>,
    /// Hub revision (branch, tag or commit) of a `--model` given as `org/name`.
    #[arg(long, env = "T3D_REVISION")]
    pub revision: Option<String>,
    /// Name clients use in `model` (default: the Hub id, else the directory name).
    #[arg(long, env = "T3D_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,
    /// Listen address.
    #[arg(long, env = "T3D_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Listen port.
    #[arg(long, env = "T3D_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Serve the gRPC API (`proto/t3d/v1`) on this port (off unless set).
    #[arg(long, env = "T3D_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// Serve `/metrics` on this port too (it is always on the main port).
    #[arg(long, env = "T3D_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Require `Authorization: Bearer KEY` on `/v1/*`.
    #[arg(long, env = "T3D_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Sequences decoded together (they share the KV cache's pages).
    #[arg(long, env = "T3D_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,
    /// Requests waiting for admission before new ones get 429.
    #[arg(long, env = "T3D_MAX_QUEUE", default_value_t = 256)]
    pub max_queue: usize,
    /// Longest prompt in tokens [default: the context limit less one].
    #[arg(long, env = "T3D_MAX_INPUT_TOKENS")]
    pub max_input_tokens: Option<usize>,
    /// Longest prompt + completion in tokens [default: the model's max_position_embeddings,
    /// capped by the KV-cache budget].
    #[arg(long, env = "T3D_MAX_TOTAL_TOKENS")]
    pub max_total_tokens: Option<usize>,
    /// KV-cache memory, e.g. 4GiB [default: half the host memory left after the weights on
    /// CPU (committed as used); on CUDA what --gpu-memory-utilization leaves after them].
    #[arg(long, env = "T3D_KV_CACHE_MEMORY")]
    pub kv_cache_memory: Option<String>,
    /// Share of the GPU's memory t3d may use in all (weights, KV cache, activations).
    #[arg(long, env = "T3D_GPU_MEMORY_UTILIZATION", default_value_t = 0.9)]
    pub gpu_memory_utilization: f64,
    /// Tokio threads for HTTP, gRPC and admin (0 = a quarter of the usable cores, at least 1).
    #[arg(long, env = "T3D_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// Nice value added to those threads, so the engine keeps its cores under a flood.
    #[arg(long, env = "T3D_HTTP_NICE", default_value_t = 10)]
    pub http_nice: i32,
    /// Seconds a request head may take, and a kept-alive connection may idle (then closed).
    #[arg(long, env = "T3D_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Most client connections open at once; past it a new one gets 503 + `Retry-After` at
    /// once [default: the open-file limit (raised to its hard limit at start) less 512].
    #[arg(long, env = "T3D_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a request body may take once its head arrived (then 408).
    #[arg(long, env = "T3D_BODY_READ_TIMEOUT", default_value_t = 30)]
    pub body_read_timeout: u64,
    /// Largest request body in bytes (413 above).
    #[arg(long, env = "T3D_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "T3D_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Log format: text or json.
    #[arg(long, env = "T3D_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// How chat answers' tool calls are parsed (auto: as the chat template writes them).
    #[arg(long, env = "T3D_TOOL_CALL_PARSER", value_enum, default_value_t)]
    pub tool_call_parser: ToolCallParser,
    /// How chat answers' reasoning is parsed (auto: as the chat template thinks).
    #[arg(long, env = "T3D_REASONING_PARSER", value_enum, default_value_t)]
    pub reasoning_parser: ReasoningParser,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub device: DeviceArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub admin: AdminArgs,
}

/// `t3d health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server's address (its `--port` is read from `T3D_PORT` too).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The server's port.
    #[arg(long, env = "T3D_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// The admin API of `t3d serve` (distillation jobs, model hot-swap): off unless a token is set.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Enables the admin API; every admin call needs `Authorization: Bearer TOKEN`.
    #[arg(long, env = "T3D_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Admin listen address (its own listener, never the API port).
    #[arg(long, env = "T3D_ADMIN_HOST", default_value = "127.0.0.1")]
    pub admin_host: String,
    /// Admin listen port.
    #[arg(long, env = "T3D_ADMIN_PORT", default_value_t = 8001)]
    pub admin_port: u16,
    /// Teachers, students and swap targets live here (default: the served model's parent).
    #[arg(long, env = "T3D_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Prompt files a job may name live here.
    #[arg(long, env = "T3D_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Job records and run directories.
    #[arg(long, env = "T3D_JOBS_DIR", default_value = "runs/admin-jobs")]
    pub jobs_dir: PathBuf,
    /// libtorch threads of a job's trainer process (the engine keeps the rest).
    #[arg(long, env = "T3D_ADMIN_JOB_THREADS", default_value_t = 1)]
    pub admin_job_threads: usize,
    /// Base distillation config every job starts from (default: the trainer's defaults).
    #[arg(long, env = "T3D_ADMIN_DISTILL_CONFIG")]
    pub admin_distill_config: Option<PathBuf>,
    /// Niceness of a job's trainer process (0 = the server's priority), so serving keeps the
    /// CPU it needs while a job trains.
    #[arg(long, env = "T3D_ADMIN_JOB_NICE", default_value_t = 10)]
    pub admin_job_nice: u8,
    /// Seconds between SIGTERM and SIGKILL when a job is cancelled.
    #[arg(long, env = "T3D_ADMIN_KILL_GRACE", default_value_t = 10)]
    pub admin_kill_grace: u64,
}
