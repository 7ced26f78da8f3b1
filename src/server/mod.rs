//! The OpenAI-compatible HTTP server (axum): routes, schema, validation, SSE, errors, auth,
//! HTTP metrics, request ids, graceful shutdown. Handlers hold only an [`EngineHandle`]; all
//! tensor work happens on the engine thread.

pub mod admission;
pub mod chat;
pub mod chat_message;
pub mod chat_output;
pub mod error;
pub mod grpc;
pub mod listener;
pub mod logprobs;
pub mod render;
pub mod routes;
pub mod schema;
pub mod served;
pub mod tokenize;
pub mod tool_choice;
pub mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::Metrics;
use error::ApiError;
use served::{ModelSlot, ServedModel};

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the bearer credential `given` is `expected`, compared in constant time.
pub fn bearer_matches(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
}

/// What every handler shares.
pub struct AppState {
    /// The model new requests go to (hot-swappable).
    pub model: ModelSlot,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM/SIGINT: new requests get 503.
    pub draining: AtomicBool,
    /// Bearer key required on `/v1/*` when set.
    pub api_key: Option<String>,
    /// Server start (unix seconds).
    pub created: u64,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// How long a request head may take (and a kept-alive connection may idle).
    pub header_read_timeout: Duration,
    /// How long a request body may take once its head has arrived (then 408).
    pub body_read_timeout: Duration,
    /// Most client connections open at once (past it, an immediate 503).
    pub max_connections: usize,
}

impl AppState {
    /// The model serving now (one per request: a swap does not change it mid-request).
    pub fn served(&self) -> Arc<ServedModel> {
        self.model.current()
    }
}

/// The full router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    // Shedding comes before the body is read: a rejection costs a few microseconds.
    let generate = Router::new()
        .route("/v1/completions", post(routes::completions))
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            shed_when_full,
        ));
    let v1 = generate
        .route("/v1/models", get(routes::models))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .method_not_allowed_fallback(routes::method_not_allowed);
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request| {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
    });
    Router::new()
        .merge(v1)
        .route("/health", get(routes::health))
        .route("/version", get(tokenize::version))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(state.body_read_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), count_http))
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A router serving only `/metrics` (for `--metrics-port`).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(routes::metrics))
        .with_state(state)
}

async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !bearer_matches(given, key) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// 429 before the body is read when the serving engine's queue is full.
async fn shed_when_full(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.served().engine.is_full() {
        state
            .metrics
            .failures
            .with_label_values(&["queue_full"])
            .inc();
        return ApiError::overloaded().into_response();
    }
    next.run(request).await
}

async fn count_http(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Serves `state` on `addr` (and `/metrics` on `metrics_addr` when given) until SIGINT or
/// SIGTERM; then stops admitting (503), lets in-flight requests finish for up to `grace`.
pub async fn serve(
    state: Arc<AppState>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    grace: Duration,
) -> anyhow::Result<()> {
    let listener = listener::bind(addr)?;
    tracing::info!(address = %listener.local_addr()?, "serving");
    if let Some(metrics_addr) = metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        let app = metrics_router(state.clone());
        tokio::spawn(async move { axum::serve(metrics_listener, app).await });
    }
    let draining_state = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutting down: new requests get 503, draining"
        );
        draining_state.draining.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(grace + Duration::from_secs(1)).await;
            tracing::warn!("grace period over; exiting with requests in flight");
            std::process::exit(0);
        });
        let deadline = tokio::time::Instant::now() + grace;
        let m = &draining_state.metrics;
        while tokio::time::Instant::now() < deadline && (m.running.get() > 0 || m.waiting.get() > 0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let header_read_timeout = state.header_read_timeout;
    let limit = listener::ConnectionLimit {
        max: state.max_connections,
        open: state.metrics.http_connections.clone(),
        refused: state.metrics.http_connections_refused.clone(),
    };
    let app = router(state);
    listener::serve_connections(listener, app, header_read_timeout, limit, shutdown).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_credential_matches() {
        assert!(bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret!"), "s3cret"));
        assert!(!bearer_matches(Some("S3cret"), "s3cret"));
        assert!(!bearer_matches(Some(""), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
