//! The admin API (`--admin-token`): offline T3D distillation jobs run as child processes of
//! this binary ([`jobs`], [`process`]), and a validated hot-swap of the served model with
//! rollback ([`swap`]), on a listener of its own ([`routes`]). Every path a client names is
//! confined to `--models-dir` / `--data-dir` ([`paths`]).

pub mod gate;
pub mod jobs;
pub mod paths;
pub mod process;
pub mod routes;
pub mod settings;
pub mod swap;
pub mod view;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::server::error::ApiError;
use crate::server::served::ServeOptions;
use crate::server::{bearer_matches, AppState};
use jobs::{JobState, JobStore};
use process::{ChildConfig, RunningChild};

/// Everything the admin API is configured with.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The bearer token every call needs.
    pub token: String,
    /// Teachers, outputs and swap targets live here.
    pub models_dir: PathBuf,
    /// Prompt files live here.
    pub data_dir: PathBuf,
    /// Job records and run directories.
    pub jobs_dir: PathBuf,
    /// How job children start.
    pub child: ChildConfig,
    /// How a swapped-in model is served (the server's own flags).
    pub serve: ServeOptions,
}

/// The admin API's shared state.
pub struct AdminState {
    cfg: AdminConfig,
    app: Arc<AppState>,
    store: Arc<JobStore>,
    children: Mutex<HashMap<String, RunningChild>>,
    /// Serialises job starts (one job at a time).
    start_lock: tokio::sync::Mutex<()>,
    /// Serialises swaps and rollbacks.
    swap_lock: tokio::sync::Mutex<()>,
    /// Models served before the current one, newest last (for rollback).
    history: Mutex<Vec<PathBuf>>,
}

impl AdminState {
    /// Opens the job store (marking jobs of a dead server `interrupted`), binds `addr` and
    /// serves the admin routes; stops running jobs on SIGTERM/SIGINT.
    pub async fn start(
        cfg: AdminConfig,
        app: Arc<AppState>,
        addr: SocketAddr,
    ) -> anyhow::Result<Arc<Self>> {
        let store = JobStore::open(&cfg.jobs_dir, process::stop_orphan)?;
        let state = Arc::new(Self {
            cfg,
            app,
            store: Arc::new(store),
            children: Mutex::new(HashMap::new()),
            start_lock: tokio::sync::Mutex::new(()),
            swap_lock: tokio::sync::Mutex::new(()),
            history: Mutex::new(Vec::new()),
        });
        state.publish_job_counts();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin listener {addr}"))?;
        tracing::info!(address = %listener.local_addr()?, "admin API listening");
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let on_signal = state.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            on_signal.shutdown();
        });
        Ok(state)
    }

    /// Marks the running job `interrupted` (resumable) and stops its child.
    pub fn shutdown(&self) {
        if let Some(job) = self.store.active() {
            let _ = self
                .store
                .update(&job.id, |r| r.state = JobState::Interrupted);
            // Signalled here, not through the monitor task: the runtime may stop first.
            if let Some(pid) = job.pid {
                tracing::info!(job = %job.id, pid, "server stopping: interrupting the job");
                process::signal_group(pid, nix::sys::signal::Signal::SIGTERM);
            }
            self.publish_job_counts();
        }
    }

    /// A callback that refreshes `t3d_admin_jobs{state}`.
    fn job_counts_updater(&self) -> Arc<dyn Fn() + Send + Sync> {
        let (store, metrics) = (self.store.clone(), self.app.metrics.clone());
        Arc::new(move || set_job_counts(&store, &metrics))
    }

    fn publish_job_counts(&self) {
        set_job_counts(&self.store, &self.app.metrics);
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningChild>> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn set_job_counts(store: &JobStore, metrics: &crate::metrics::Metrics) {
    for (state, count) in store.counts() {
        metrics
            .admin_jobs
            .with_label_values(&[state.as_str()])
            .set(count as i64);
    }
}

/// The admin routes, all behind the bearer token.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route(
            "/admin/v1/jobs",
            post(routes::create_job).get(routes::list_jobs),
        )
        .route(
            "/admin/v1/jobs/{id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .route("/admin/v1/jobs/{id}/resume", post(routes::resume_job))
        .route(
            "/admin/v1/model",
            post(swap::swap_model).get(swap::current_model),
        )
        .route("/admin/v1/model/rollback", post(swap::rollback_model))
        .fallback(crate::server::routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer_matches(given, &state.cfg.token) {
        return ApiError::unauthorized_admin().into_response();
    }
    next.run(request).await
}
