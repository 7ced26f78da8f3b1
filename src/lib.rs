//! t3d: serve few-step block-diffusion language models (SDAR) and distill them with T3D.
//!
//! # Layout
//! - [`model`]: SDAR/Qwen3 in tch, `config.json`, checkpoint load/save, tokenizer + chat template.
//! - [`engine`]: sequence state, denoising policy, sampler, KV cache, the batched block decoder.
//! - [`server`]: the OpenAI-compatible HTTP API over the engine thread.
//! - [`metrics`]: Prometheus metrics.
//! - [`train`]: the bundled task, masks, batches, optimiser, the base trainer, evaluation, plots.
//! - [`distill`]: T3D: rollouts, noisy states, DDO + path losses, the distillation trainer.
//! - [`admin`]: the admin API: distillation jobs as child processes, validated model hot-swap.
//! - [`cli`]: the clap arguments and one module per subcommand group (`bench` included).

pub mod admin;
pub mod cli;
pub mod distill;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod server;
pub mod train;
