//! The gRPC API (`proto/t3d/v1/generation.proto`, tonic) on `--grpc-port`: the
//! `t3d.v1.Generation` service over the same engine, admission, validation and limits as HTTP
//! ([`service`], [`convert`]), the standard `grpc.health.v1.Health` service (NOT_SERVING while
//! draining) and server reflection, so `grpcurl` works without the `.proto` files.

pub mod convert;
pub mod service;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Status};
use tonic_health::ServingStatus;

use super::{bearer_matches, AppState};
use pb::generation_server::GenerationServer;
use service::GenerationService;

/// Code generated from `proto/t3d/v1/generation.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("t3d.v1");

    /// The encoded descriptor set of `t3d.v1` (server reflection serves it).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("t3d_v1_descriptor");
}

/// The full name of the generation service.
pub const SERVICE_NAME: &str = "t3d.v1.Generation";

/// Serves gRPC on `addr` until SIGTERM/SIGINT; then reports NOT_SERVING, refuses new requests
/// (UNAVAILABLE) and lets streams in flight finish for up to `grace`.
pub async fn serve_grpc(
    state: Arc<AppState>,
    addr: SocketAddr,
    grace: Duration,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    // Both reflection versions: grpcurl asks v1 first, many clients still only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?;
    let key = state.api_key.clone();
    let generation =
        GenerationServer::with_interceptor(GenerationService::new(state.clone()), move |request| {
            check_key(request, key.as_deref())
        });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the gRPC listener {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "gRPC serving");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let drained = drain(state, reporter, grace);
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(generation)
        .serve_with_incoming_shutdown(incoming, drained)
        .await
        .context("the gRPC server failed")
}

/// `authorization: Bearer KEY` when the server has an API key.
fn check_key(request: Request<()>, key: Option<&str>) -> Result<Request<()>, Status> {
    let Some(key) = key else { return Ok(request) };
    let given = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer_matches(given, key) {
        Ok(request)
    } else {
        Err(Status::unauthenticated(
            "missing or invalid API key (send `authorization: Bearer <key>` metadata)",
        ))
    }
}

/// Resolves once a shutdown signal came and the engine drained (or `grace` passed).
async fn drain(
    state: Arc<AppState>,
    reporter: tonic_health::server::HealthReporter,
    grace: Duration,
) {
    super::shutdown_signal().await;
    state.draining.store(true, Ordering::SeqCst);
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    tracing::info!("gRPC draining: health is NOT_SERVING, new requests get UNAVAILABLE");
    let deadline = tokio::time::Instant::now() + grace;
    let m = &state.metrics;
    while tokio::time::Instant::now() < deadline && (m.running.get() > 0 || m.waiting.get() > 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
