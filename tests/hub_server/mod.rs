//! A Hub-compatible file server on loopback for the Hub tests: `/api/models/…/revision/…` (what
//! `hf-hub` asks), `…/tree/…` (what Python's `snapshot_download` asks) and `…/resolve/…` with
//! ranges and the Hub's headers; a gated repository wants [`TOKEN`], an unknown one or revision
//! gets the Hub's `X-Error-Code`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
pub const TOKEN: &str = "hf_test_token";

/// One repository: its files, and whether it wants the token.
pub struct HubRepo {
    pub files: HashMap<String, Vec<u8>>,
    pub gated: bool,
}

type Repos = Arc<HashMap<String, HubRepo>>;

/// A Hub-compatible server on a loopback port, serving `repos` at revision `main` = [`COMMIT`].
pub fn start_hub(repos: HashMap<String, HubRepo>) -> String {
    let repos: Repos = Arc::new(repos);
    let app = Router::new()
        .route("/api/models/{org}/{name}/{kind}/{rev}", get(repo_api))
        .route(
            "/{org}/{name}/resolve/{rev}/{*file}",
            get(resolve).head(resolve),
        )
        .with_state(repos);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{address}")
}

fn hub_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [("x-error-code", code.to_string())],
        code.to_string(),
    )
        .into_response()
}

/// The repository `org/name` at `rev`, or the Hub's error for it.
fn lookup<'a>(
    repos: &'a Repos,
    org: &str,
    name: &str,
    rev: &str,
    headers: &HeaderMap,
) -> Result<&'a HubRepo, (StatusCode, &'static str)> {
    let Some(repo) = repos.get(&format!("{org}/{name}")) else {
        return Err((StatusCode::UNAUTHORIZED, "RepoNotFound"));
    };
    let authorised = headers
        .get("authorization")
        .is_some_and(|v| v.to_str().unwrap_or_default() == format!("Bearer {TOKEN}"));
    if repo.gated && !authorised {
        return Err((StatusCode::UNAUTHORIZED, "GatedRepo"));
    }
    if rev != "main" && rev != COMMIT {
        return Err((StatusCode::NOT_FOUND, "RevisionNotFound"));
    }
    Ok(repo)
}

/// `/api/models/{org}/{name}/revision/{rev}` (what `hf-hub` asks) and `…/tree/{rev}` (what
/// Python's `snapshot_download` asks): the repository's files.
async fn repo_api(
    State(repos): State<Repos>,
    UrlPath((org, name, kind, rev)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = match lookup(&repos, &org, &name, &rev, &headers) {
        Ok(repo) => repo,
        Err((status, code)) => return hub_error(status, code),
    };
    if kind == "tree" {
        let entries: Vec<_> = repo
            .files
            .iter()
            .map(|(path, bytes)| {
                serde_json::json!({"type": "file", "path": path, "size": bytes.len(),
                    "oid": format!("{:016x}", fnv(bytes))})
            })
            .collect();
        return Json(entries).into_response();
    }
    let siblings: Vec<_> = repo
        .files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    Json(serde_json::json!({
        "id": format!("{org}/{name}"), "sha": COMMIT, "siblings": siblings, "gated": repo.gated,
    }))
    .into_response()
}

async fn resolve(
    State(repos): State<Repos>,
    method: Method,
    UrlPath((org, name, rev, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = match lookup(&repos, &org, &name, &rev, &headers) {
        Ok(repo) => repo,
        Err((status, code)) => return hub_error(status, code),
    };
    let Some(bytes) = repo.files.get(&file) else {
        return hub_error(StatusCode::NOT_FOUND, "EntryNotFound");
    };
    let etag = format!("\"{:016x}{:08x}\"", fnv(bytes), bytes.len());
    let total = bytes.len();
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .map(|r| {
            let (start, end) = r.split_once('-').unwrap_or((r, ""));
            let start: usize = start.parse().unwrap_or(0);
            let end = end.parse().unwrap_or(total.saturating_sub(1));
            (start.min(total), end.min(total.saturating_sub(1)))
        });
    let (status, body, content_range) = match range {
        Some((start, end)) if start <= end => (
            StatusCode::PARTIAL_CONTENT,
            bytes[start..=end].to_vec(),
            Some(format!("bytes {start}-{end}/{total}")),
        ),
        Some(_) => (
            StatusCode::PARTIAL_CONTENT,
            Vec::new(),
            Some(format!("bytes */{total}")),
        ),
        None => (StatusCode::OK, bytes.clone(), None),
    };
    let mut response = if method == Method::HEAD {
        let mut r = (status, ()).into_response();
        r.headers_mut()
            .insert("content-length", body.len().to_string().parse().unwrap());
        r
    } else {
        (status, body).into_response()
    };
    let h = response.headers_mut();
    h.insert("x-repo-commit", COMMIT.parse().unwrap());
    h.insert("etag", etag.parse().unwrap());
    if let Some(range) = content_range {
        h.insert("content-range", range.parse().unwrap());
    }
    response
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
