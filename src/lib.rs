//! t3d: serve few-step block-diffusion language models (SDAR) and distill them with T3D.
//!
//! # Layout
//! - [`model`]: SDAR/Qwen3 in tch, `config.json`, checkpoint load/save, tokenizer + chat template.
//! - [`engine`]: sequence state, denoising policy, sampler, KV cache, the batched block decoder.
//! - [`server`]: the OpenAI-compatible HTTP API over the engine thread.
//! - [`metrics`]: Prometheus metrics.
//! - [`train`]: the bundled task, the block-diffusion trainer, evaluation, T3D distillation.
//! - [`bench`]: engine-only throughput measurements (`t3d bench`).
//! - [`config`]: the command-line arguments of every subcommand.

pub mod bench;
pub mod cli;
pub mod config;
pub mod distill_cli;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod serve_cli;
pub mod server;
pub mod train;
pub mod train_cli;
