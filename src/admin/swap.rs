//! Model hot-swap and rollback. The candidate is loaded on a new engine thread (never the
//! serving one), checked (config, tensors, tokenizer against the served vocabulary, a warm-up
//! decode) and optionally gated on held-out accuracy through its own engine; only then does it
//! replace the served model. Requests already running finish on the old model, whose engine
//! thread exits once they are done; on any failure the old model keeps serving (422).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::paths::existing_inside;
use super::routes::{parse_body, path_error};
use super::{gate, AdminState};
use crate::model::hub::{self, HubId};
use crate::server::error::ApiError;
use crate::server::served::ServedModel;

/// The body of `POST /admin/v1/model`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// A succeeded job whose student to serve.
    pub job: Option<String>,
    /// A checkpoint directory under `--models-dir`, else a Hub id `org/name[@revision]`
    /// (fetched into the Hub cache first).
    pub path: Option<String>,
    /// Refuse the model unless it scores at least this on held-out problems (0–1).
    pub min_accuracy: Option<f64>,
    /// Held-out problems for the gate.
    pub eval_problems: Option<usize>,
    /// Accept a tokenizer whose vocabulary differs from the served one.
    #[serde(default)]
    pub replace_tokenizer: bool,
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::from_status(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// `GET /admin/v1/model`: the served model and the rollback history.
pub async fn current_model(State(admin): State<Arc<AdminState>>) -> Json<Value> {
    let model = admin.app.served();
    let history: Vec<String> = admin
        .lock_history()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Json(json!({"version": model.version, "path": model.path, "history": history}))
}

/// `POST /admin/v1/model`.
pub async fn swap_model(
    State(admin): State<Arc<AdminState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: SwapRequest = parse_body(body)?;
    let dir = match admin.swap_target(&request) {
        Ok(dir) => dir,
        Err(not_a_dir) => match request.path.as_deref().and_then(|p| HubId::parse(p, None)) {
            Some(id) => from_hub(id).await?,
            None => return Err(not_a_dir),
        },
    };
    if let Some(m) = request.min_accuracy {
        if !(0.0..=1.0).contains(&m) {
            return Err(ApiError::invalid(
                "min_accuracy",
                "min_accuracy must be in [0, 1]",
            ));
        }
    }
    let problems = request.eval_problems.unwrap_or(200);
    if !(1..=10_000).contains(&problems) {
        return Err(ApiError::invalid(
            "eval_problems",
            "eval_problems must be 1..=10000",
        ));
    }
    let gate = request.min_accuracy.map(|min| (min, problems));
    let outcome = admin
        .swap_to(dir, gate, request.replace_tokenizer, true)
        .await?;
    Ok(Json(outcome).into_response())
}

/// The snapshot directory of `id`, fetched off the async workers; a Hub failure refuses the swap.
async fn from_hub(id: HubId) -> Result<PathBuf, ApiError> {
    tokio::task::spawn_blocking(move || hub::snapshot(&id))
        .await
        .map_err(|e| refused(format!("model swap refused: the Hub fetch failed: {e}")))?
        .map_err(|e| refused(format!("model swap refused: {e}")))
}

/// `POST /admin/v1/model/rollback`: back to the model served before the current one.
pub async fn rollback_model(State(admin): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    let Some(previous) = admin.lock_history().last().cloned() else {
        return Err(ApiError::from_status(
            StatusCode::CONFLICT,
            "no earlier model to roll back to",
        ));
    };
    let mut outcome = admin.swap_to(previous, None, true, false).await?;
    admin.lock_history().pop();
    outcome["rolled_back"] = json!(true);
    Ok(Json(outcome).into_response())
}

impl AdminState {
    fn swap_target(&self, request: &SwapRequest) -> Result<PathBuf, ApiError> {
        match (&request.job, &request.path) {
            (Some(_), Some(_)) | (None, None) => Err(ApiError::invalid(
                "job",
                "give exactly one of `job` or `path`",
            )),
            (Some(id), None) => {
                let job = self
                    .store
                    .get(id)
                    .ok_or_else(|| ApiError::invalid("job", format!("no job `{id}`")))?;
                if job.state != super::jobs::JobState::Succeeded {
                    return Err(ApiError::invalid(
                        "job",
                        format!("job {id} is {}, not succeeded", job.state.as_str()),
                    ));
                }
                Ok(job.output)
            }
            (None, Some(path)) => {
                existing_inside(&self.cfg.models_dir, path).map_err(|e| path_error("path", &e))
            }
        }
    }

    /// Loads, checks and (if it passes) serves `dir`; `remember` keeps the old model for
    /// rollback. Answers the new version, or 422 with the reason (the old model still serves).
    async fn swap_to(
        &self,
        dir: PathBuf,
        gate: Option<(f64, usize)>,
        replace_tokenizer: bool,
        remember: bool,
    ) -> Result<Value, ApiError> {
        let Ok(_swapping) = self.swap_lock.try_lock() else {
            return Err(ApiError::from_status(
                StatusCode::CONFLICT,
                "another swap is in progress",
            ));
        };
        let started = Instant::now();
        let result = self.checked_candidate(&dir, gate, replace_tokenizer).await;
        let metrics = &self.app.metrics;
        let (candidate, accuracy) = match result {
            Ok(ok) => ok,
            Err(reason) => {
                metrics.model_swaps.with_label_values(&["refused"]).inc();
                tracing::warn!(path = %dir.display(), reason = %reason, "model swap refused; the old model keeps serving");
                return Err(refused(format!("model swap refused: {reason}")));
            }
        };
        let (version, path) = (candidate.version.clone(), candidate.path.clone());
        candidate.publish(metrics);
        let old = self.app.model.replace(candidate);
        metrics
            .model_swaps
            .with_label_values(&[if remember { "swapped" } else { "rolled_back" }])
            .inc();
        if remember {
            self.lock_history().push(old.path.clone());
        }
        tracing::info!(from = %old.version, to = %version, path = %path.display(), "model swapped");
        Ok(
            json!({"version": version, "path": path, "previous_version": old.version,
            "accuracy": accuracy, "seconds": started.elapsed().as_secs_f64()}),
        )
    }

    /// The candidate loaded and warmed on its own engine thread, and its gate accuracy.
    async fn checked_candidate(
        &self,
        dir: &Path,
        gate: Option<(f64, usize)>,
        replace_tokenizer: bool,
    ) -> Result<(ServedModel, Option<f64>), String> {
        let served = self.app.served();
        let (dir_owned, opts, metrics) = (
            dir.to_path_buf(),
            self.cfg.serve.clone(),
            self.app.metrics.clone(),
        );
        let candidate = tokio::task::spawn_blocking(move || {
            let vocabulary = (!replace_tokenizer).then_some(&served.tokenizer);
            ServedModel::load(&dir_owned, &opts, metrics, vocabulary).map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(|e| format!("the loader failed: {e}"))??;
        let Some((min, problems)) = gate else {
            return Ok((candidate, None));
        };
        let accuracy = gate::held_out_accuracy(&candidate, problems).await?;
        if accuracy < min {
            return Err(format!("held-out accuracy {accuracy:.3} on {problems} problems is below min_accuracy {min}"));
        }
        Ok((candidate, Some(accuracy)))
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
