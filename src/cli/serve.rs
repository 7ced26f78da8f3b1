//! The `serve` subcommand: loads the model on its engine thread, runs the HTTP server and,
//! with `--admin-token`, the admin API on its own listener.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::args::{HealthArgs, ServeArgs};
use super::common::{resolve_model, setup_device};
use super::threads::ThreadLayout;
use crate::admin::process::ChildConfig;
use crate::admin::{AdminConfig, AdminState};
use crate::engine::kv_budget::parse_bytes;
use crate::engine::runner::start_engine_spawner;
use crate::metrics::Metrics;
use crate::server::chat_output::Parsers;
use crate::server::grpc::serve_grpc;
use crate::server::served::{ModelSlot, ServeOptions, ServedModel};
use crate::server::{listener, serve, unix_now, AppState};

/// `t3d serve`.
pub fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    let (device, kind) = setup_device(&args.device)?;
    let layout = ThreadLayout::for_serve(args);
    tch::set_num_threads(i32::try_from(layout.intra_op).unwrap_or(1));
    tracing::info!(
        intra_op_threads = layout.intra_op,
        http_threads = layout.http_workers,
        http_nice = layout.http_nice,
        "thread layout"
    );
    start_engine_spawner()?;
    let dir = resolve_model(args.model.as_deref(), args.revision.as_deref())?;
    anyhow::ensure!(
        args.max_batch_size > 0 && args.max_queue > 0,
        "--max-batch-size and --max-queue must be at least 1"
    );
    anyhow::ensure!(
        args.gpu_memory_utilization > 0.0 && args.gpu_memory_utilization <= 1.0,
        "--gpu-memory-utilization must be in (0, 1]"
    );
    let options = ServeOptions {
        served_model_name: args
            .served_model_name
            .clone()
            .unwrap_or_else(|| default_served_name(args.model.as_deref(), &dir)),
        max_batch_size: args.max_batch_size,
        max_queue: args.max_queue,
        max_input_tokens: args.max_input_tokens,
        max_total_tokens: args.max_total_tokens,
        kv_cache_memory: args
            .kv_cache_memory
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--kv-cache-memory: {e}"))?,
        gpu_memory_utilization: args.gpu_memory_utilization,
        device,
        kind,
        warm_up_timeout: Duration::from_secs(600),
        cuda_graphs: args.device.cuda_graphs,
        parsers: Parsers {
            tool_calls: args.tool_call_parser,
            reasoning: args.reasoning_parser,
        },
    };
    let metrics = Arc::new(Metrics::new());
    let served = ServedModel::load(&dir, &options, metrics.clone(), None)?;
    served.publish(&metrics);
    tracing::info!(model = %dir.display(), name = %options.served_model_name,
        version = %served.version, "model loaded");
    let state = Arc::new(AppState {
        model: ModelSlot::new(served),
        metrics,
        draining: AtomicBool::new(false),
        api_key: args.api_key.clone(),
        created: unix_now(),
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        body_read_timeout: Duration::from_secs(args.body_read_timeout.max(1)),
        max_connections: max_connections(args),
    });
    let addr = socket_addr(&args.host, args.port)?;
    let metrics_addr = args.metrics_port.map(|p| SocketAddr::new(addr.ip(), p));
    let admin = admin_config(args, &dir, options)?;
    let runtime = layout.runtime()?;
    runtime.block_on(async move {
        let admin = match admin {
            Some((cfg, addr)) => Some(AdminState::start(cfg, state.clone(), addr).await?),
            None => None,
        };
        let grace = Duration::from_secs(args.shutdown_grace);
        let grpc = args.grpc_port.map(|port| {
            let grpc_addr = SocketAddr::new(addr.ip(), port);
            tokio::spawn(serve_grpc(state.clone(), grpc_addr, grace))
        });
        let result = serve(state, addr, metrics_addr, grace).await;
        if let Some(admin) = admin {
            admin.shutdown();
        }
        if let Some(grpc) = grpc {
            match tokio::time::timeout(grace + Duration::from_secs(1), grpc).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %format!("{e:#}"), "gRPC server"),
                Ok(_) => {}
                Err(_) => tracing::warn!("gRPC streams still open after the grace period"),
            }
        }
        result
    })
}

/// `t3d health`: one `GET /health` over plain TCP; Ok when the answer is 200.
pub fn run_health(args: &HealthArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let addr = socket_addr(&args.host, args.port)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.split_whitespace().nth(1).unwrap_or("none");
    anyhow::ensure!(status == "200", "{addr}/health answered {status}");
    println!("ok");
    Ok(())
}

fn socket_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    format!("{host}:{port}")
        .parse()
        .with_context(|| format!("bad listen address {host}:{port}"))
}

/// The admin API's settings and address, when `--admin-token` is set.
fn admin_config(
    args: &ServeArgs,
    served_dir: &std::path::Path,
    serve: ServeOptions,
) -> anyhow::Result<Option<(AdminConfig, SocketAddr)>> {
    let Some(token) = args.admin.admin_token.clone() else {
        return Ok(None);
    };
    anyhow::ensure!(!token.is_empty(), "--admin-token must not be empty");
    let a = &args.admin;
    let models_dir = match &a.models_dir {
        Some(dir) => dir.clone(),
        None => served_dir
            .parent()
            .map_or_else(|| ".".into(), std::path::Path::to_path_buf),
    };
    anyhow::ensure!(
        a.admin_port != args.port,
        "--admin-port must differ from --port (the admin API has its own listener)"
    );
    let cfg = AdminConfig {
        token,
        models_dir,
        data_dir: a.data_dir.clone(),
        jobs_dir: a.jobs_dir.clone(),
        child: ChildConfig {
            exe: std::env::current_exe().context("locating the t3d binary")?,
            threads: a.admin_job_threads,
            device: args.device.device.clone(),
            base_config: a.admin_distill_config.clone(),
            kill_grace: Duration::from_secs(a.admin_kill_grace),
            nice: a.admin_job_nice,
        },
        serve,
    };
    Ok(Some((cfg, socket_addr(&a.admin_host, a.admin_port)?)))
}

/// `--max-connections`, else what the open-file limit (raised to its hard limit) allows.
fn max_connections(args: &ServeArgs) -> usize {
    let open_files = listener::raise_open_file_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading the open-file limit");
        1024
    });
    let max = args
        .max_connections
        .unwrap_or_else(|| listener::default_max_connections(open_files))
        .max(1);
    tracing::info!(open_files, max_connections = max, "connection limit");
    max
}

/// The name clients use when `--served-model-name` is not given: a Hub id as typed (without
/// its revision), else the checkpoint directory's name.
fn default_served_name(given: Option<&std::path::Path>, dir: &std::path::Path) -> String {
    let hub_id = given
        .filter(|p| !p.is_dir())
        .and_then(|p| crate::model::hub::HubId::parse(&p.to_string_lossy(), None));
    match hub_id {
        Some(id) => id.repo,
        None => dir
            .file_name()
            .map_or("t3d".into(), |n| n.to_string_lossy().into_owned()),
    }
}
