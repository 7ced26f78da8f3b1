//! Job handlers: start (202, or 409 while one runs), list, show, cancel, resume.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::jobs::{unix_now, JobRecord, JobState, PromptSource};
use super::paths::{existing_inside, new_child, PathError};
use super::settings::{
    objective, resolve_config, JobRequest, DEFAULT_PROMPT_COUNT, MAX_PROMPT_COUNT,
};
use super::view::job_json;
use super::{process, AdminState};
use crate::server::error::ApiError;

type AdminResult = Result<Response, ApiError>;

/// Parses a JSON body into `T` (an empty body is `{}`); errors name the field.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| ApiError::from_status(r.status(), r.body_text()))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        let field = field_of(&e.path().to_string(), &message);
        ApiError::invalid(&field, format!("{field}: {message}"))
    })
}

/// The field a body error is about: its path (which names an unknown field too), or `body`.
fn field_of(path: &str, message: &str) -> String {
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    match (path, unknown) {
        ("." | "?", Some(name)) => name.to_string(),
        ("." | "?", None) => "body".to_string(),
        _ => path.to_string(),
    }
}

/// A path error as a 400 naming `field`.
pub fn path_error(field: &str, e: &PathError) -> ApiError {
    ApiError::invalid(field, format!("{field}: {e}"))
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::from_status(StatusCode::CONFLICT, message)
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND, format!("no job `{id}`"))
}

/// `POST /admin/v1/jobs`.
pub async fn create_job(
    State(admin): State<Arc<AdminState>>,
    body: Result<Bytes, BytesRejection>,
) -> AdminResult {
    let request: JobRequest = parse_body(body)?;
    let id = format!("job-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut record = admin.new_record(&id, &request)?;
    let _starting = admin.start_lock.lock().await;
    if let Some(running) = admin.store.active() {
        return Err(conflict(format!(
            "job {} is {}; one job runs at a time",
            running.id,
            running.state.as_str()
        )));
    }
    record.run_dir = admin.store.job_dir(&id).join("run");
    admin.store.put(&record).map_err(internal)?;
    admin.launch(&record, false)?;
    let url = format!("/admin/v1/jobs/{id}");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "url": url, "state": "queued"})),
    )
        .into_response())
}

/// `GET /admin/v1/jobs`.
pub async fn list_jobs(State(admin): State<Arc<AdminState>>) -> Json<Value> {
    let data: Vec<Value> = admin
        .store
        .list()
        .iter()
        .map(|r| job_json(r, &admin.store.job_dir(&r.id)))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /admin/v1/jobs/{id}`.
pub async fn get_job(
    State(admin): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
) -> AdminResult {
    let record = admin.store.get(&id).ok_or_else(|| job_not_found(&id))?;
    Ok(Json(job_json(&record, &admin.store.job_dir(&id))).into_response())
}

/// `DELETE /admin/v1/jobs/{id}`: SIGTERM, then SIGKILL after the grace period.
pub async fn cancel_job(
    State(admin): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
) -> AdminResult {
    let record = admin.store.get(&id).ok_or_else(|| job_not_found(&id))?;
    if !record.state.is_active() {
        return Err(conflict(format!(
            "job {id} is {}; nothing to cancel",
            record.state.as_str()
        )));
    }
    if let Some(child) = admin.lock_children().get(&id) {
        child.cancel();
    }
    let body = json!({"id": id, "state": "cancelling", "url": format!("/admin/v1/jobs/{id}")});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `POST /admin/v1/jobs/{id}/resume`: continues an interrupted (or cancelled) job from its
/// newest checkpoint with the trainer's `--resume`.
pub async fn resume_job(
    State(admin): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
) -> AdminResult {
    let record = admin.store.get(&id).ok_or_else(|| job_not_found(&id))?;
    if !matches!(record.state, JobState::Interrupted | JobState::Cancelled) {
        return Err(conflict(format!(
            "job {id} is {}; only interrupted or cancelled jobs resume",
            record.state.as_str()
        )));
    }
    let _starting = admin.start_lock.lock().await;
    if let Some(running) = admin.store.active() {
        return Err(conflict(format!(
            "job {} is running; one job runs at a time",
            running.id
        )));
    }
    let record = admin
        .store
        .update(&id, |r| {
            r.state = JobState::Queued;
            r.resumes += 1;
        })
        .map_err(internal)?
        .ok_or_else(|| job_not_found(&id))?;
    admin.launch(&record, true)?;
    let url = format!("/admin/v1/jobs/{id}");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "url": url, "state": "queued"})),
    )
        .into_response())
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(internal)`
fn internal(e: anyhow::Error) -> ApiError {
    ApiError::internal(format!("{e:#}"))
}

impl AdminState {
    /// A validated, not yet stored record for `request`.
    fn new_record(&self, id: &str, request: &JobRequest) -> Result<JobRecord, ApiError> {
        let models = &self.cfg.models_dir;
        let teacher = match &request.teacher {
            Some(name) => existing_inside(models, name).map_err(|e| path_error("teacher", &e))?,
            None => self.app.served().path.clone(),
        };
        if !teacher.join("config.json").is_file() {
            return Err(ApiError::invalid(
                "teacher",
                format!("teacher: {} has no config.json", teacher.display()),
            ));
        }
        let objective = objective(request.objective.as_deref())?;
        let cfg = resolve_config(
            self.cfg.child.base_config.as_deref(),
            objective,
            &request.settings,
        )?;
        let prompts = self.prompt_source(request)?;
        let teacher_name = teacher
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned());
        let output_name = request.output.clone().unwrap_or_else(|| {
            format!(
                "{teacher_name}-{}-{}",
                objective.as_str(),
                id.trim_start_matches("job-")
            )
        });
        let output = new_child(models, &output_name).map_err(|e| path_error("output", &e))?;
        Ok(JobRecord {
            id: id.to_string(),
            state: JobState::Queued,
            teacher,
            objective: objective.as_str().to_string(),
            prompts,
            settings: request.settings.clone(),
            output,
            run_dir: PathBuf::new(),
            total_steps: cfg.steps,
            command: Vec::new(),
            pid: None,
            created_at: unix_now(),
            started_at: None,
            ended_at: None,
            exit_code: None,
            error: None,
            resumes: 0,
        })
    }

    fn prompt_source(&self, request: &JobRequest) -> Result<PromptSource, ApiError> {
        let prompts = request.prompts.clone().unwrap_or_default();
        match (prompts.count, prompts.file) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "prompts",
                "prompts: give `count` or `file`, not both",
            )),
            (_, Some(file)) => existing_inside(&self.cfg.data_dir, &file)
                .map(PromptSource::File)
                .map_err(|e| path_error("prompts.file", &e)),
            (Some(n), None) if !(1..=MAX_PROMPT_COUNT).contains(&n) => Err(ApiError::invalid(
                "prompts.count",
                format!("prompts.count must be 1..={MAX_PROMPT_COUNT}"),
            )),
            (count, None) => Ok(PromptSource::Count(count.unwrap_or(DEFAULT_PROMPT_COUNT))),
        }
    }

    /// Starts `record`'s child; a failure to start marks the job failed.
    fn launch(&self, record: &JobRecord, resume: bool) -> Result<(), ApiError> {
        let on_change = self.job_counts_updater();
        match process::start(
            &self.cfg.child,
            self.store.clone(),
            record,
            resume,
            on_change,
        ) {
            Ok(child) => {
                self.lock_children().insert(record.id.clone(), child);
                Ok(())
            }
            Err(e) => {
                let message = format!("{e:#}");
                let _ = self.store.update(&record.id, |r| {
                    r.state = JobState::Failed;
                    r.error = Some(message.clone());
                    r.ended_at = Some(unix_now());
                });
                self.publish_job_counts();
                Err(ApiError::internal(format!(
                    "could not start the job: {message}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_their_field() {
        let param = |body: &str| {
            parse_body::<JobRequest>(Ok(Bytes::from(body.to_string())))
                .unwrap_err()
                .param
                .unwrap()
        };
        assert_eq!(param(r#"{"bogus": 1}"#), "bogus");
        assert_eq!(param(r#"{"prompts": {"files": "x"}}"#), "prompts.files");
        assert_eq!(param(r#"{"prompts": {"count": "many"}}"#), "prompts.count");
        assert_eq!(param("{"), "body");
        assert_eq!(param(r#"{"teacher": "#), "teacher");
        assert_eq!(
            parse_body::<JobRequest>(Ok(Bytes::from_static(b" "))).unwrap(),
            JobRequest::default()
        );
    }
}
