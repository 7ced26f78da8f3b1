//! The `serve` subcommand: loads the model on the engine thread and runs the HTTP server.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::args::ServeArgs;
use super::common::{default_model_dir, setup_device};
use crate::engine::runner::{spawn, RunnerLimits};
use crate::metrics::Metrics;
use crate::model::{checkpoint, SdarConfig, TextTokenizer};
use crate::server::validate::Limits;
use crate::server::{serve, AppState};

/// `t3d serve`.
pub fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    let (device, kind) = setup_device(&args.device)?;
    let dir = match &args.model {
        Some(dir) => dir.clone(),
        None => default_model_dir()?,
    };
    let config = SdarConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = TextTokenizer::from_dir(&dir, &config)?;
    let block = config.block_size.unwrap_or(4);
    let max_total = args
        .max_total_tokens
        .min(config.max_position_embeddings as usize);
    anyhow::ensure!(
        args.max_batch_size > 0 && args.max_queue > 0,
        "--max-batch-size and --max-queue must be at least 1"
    );
    let limits = Limits {
        served_model: args.served_model_name.clone().unwrap_or_else(|| {
            dir.file_name()
                .map_or("t3d".into(), |n| n.to_string_lossy().into_owned())
        }),
        max_input_tokens: args.max_input_tokens.min(max_total.saturating_sub(1)),
        max_total_tokens: max_total,
        default_block_size: block,
        default_steps: config.default_steps_per_block(),
    };
    let metrics = Arc::new(Metrics::new());
    let runner_limits = RunnerLimits {
        max_batch_size: args.max_batch_size,
        max_queue: args.max_queue,
        // One block of slack: the last block may run past max_tokens before it is cut.
        slot_capacity: max_total + 64,
    };
    let load_dir = dir.clone();
    let engine_tokenizer = tokenizer.clone();
    let engine = spawn(
        move || {
            Ok((
                checkpoint::load(&load_dir, device, kind)?.model,
                engine_tokenizer,
            ))
        },
        runner_limits,
        metrics.clone(),
    )
    .with_context(|| format!("loading {}", dir.display()))?;
    tracing::info!(model = %dir.display(), name = %limits.served_model, "model loaded");
    let state = Arc::new(AppState {
        engine,
        tokenizer,
        vocab_size: config.vocab_size,
        limits,
        metrics,
        draining: AtomicBool::new(false),
        api_key: args.api_key.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        max_body_bytes: args.max_body_bytes,
    });
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("bad listen address {}:{}", args.host, args.port))?;
    let metrics_addr = args.metrics_port.map(|p| SocketAddr::new(addr.ip(), p));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(
        state,
        addr,
        metrics_addr,
        Duration::from_secs(args.shutdown_grace),
    ))
}
