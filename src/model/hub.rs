//! Checkpoints by Hugging Face Hub id (`org/name`, `org/name@revision`): downloaded with the
//! `hf-hub` crate into the cache layout Python's `huggingface_hub` uses
//! (`models--org--name/{blobs,refs,snapshots}`), so either side reuses what the other fetched.
//!
//! The environment is the Hub's own: `HF_HUB_CACHE` (else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), `HF_ENDPOINT`, `HF_TOKEN` (else the token file `huggingface-cli
//! login` writes), `HF_HUB_OFFLINE=1` (the cache only). Only what a checkpoint needs is fetched:
//! config, generation config, tokenizer and chat-template files, safetensors and their index.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use super::checkpoint::COMPANION_FILES;

/// A model repository on the Hub at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit (`main` unless given).
    pub revision: String,
}

impl HubId {
    /// `org/name` or `org/name@revision`; `revision` (from `--revision`) wins over `@`.
    /// `None` unless the text has that shape (one `/`, no path-like parts).
    pub fn parse(text: &str, revision: Option<&str>) -> Option<Self> {
        let (repo, at) = match text.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (text, None),
        };
        let (org, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !part_ok(org) || !part_ok(name) || at.is_some_and(str::is_empty) {
            return None;
        }
        Some(Self {
            repo: repo.to_string(),
            revision: revision.or(at).unwrap_or("main").to_string(),
        })
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo, self.revision)
    }
}

/// Why a Hub checkpoint could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No such repository (or it is private and no token was given).
    #[error("{0}: no such model on the Hub (a private one needs HF_TOKEN)")]
    NotFound(String),
    /// The repository has no such branch, tag or commit.
    #[error("{repo}: no revision `{revision}` on the Hub")]
    RevisionNotFound {
        /// `org/name`.
        repo: String,
        /// What was asked.
        revision: String,
    },
    /// The repository is gated and the token is missing or not granted access.
    #[error("{0} is gated: accept its terms on the Hub and set HF_TOKEN")]
    Gated(String),
    /// Offline, and the cache does not hold the checkpoint.
    #[error("{0} is not in the Hub cache ({1}) and HF_HUB_OFFLINE is set")]
    NotCached(String, String),
    /// The repository holds no safetensors checkpoint.
    #[error("{0} has no config.json and .safetensors weights")]
    NotACheckpoint(String),
    /// Anything else (network, disk).
    #[error("{0}: {1}")]
    Other(String, String),
}

/// The Hub cache directory, as `huggingface_hub` finds it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env_path("HF_HUB_CACHE") {
        return dir;
    }
    hf_home().join("hub")
}

fn hf_home() -> PathBuf {
    env_path("HF_HOME").unwrap_or_else(|| {
        let home = env_path("HOME").unwrap_or_else(|| PathBuf::from("."));
        env_path("XDG_CACHE_HOME")
            .unwrap_or_else(|| home.join(".cache"))
            .join("huggingface")
    })
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `HF_TOKEN`, else the token file next to the cache (`huggingface-cli login`).
fn token() -> Option<String> {
    std::env::var("HF_TOKEN")
        .ok()
        .or_else(|| std::fs::read_to_string(hf_home().join("token")).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Whether a file of a repository belongs to what t3d loads.
pub fn wanted(file: &str) -> bool {
    file == "config.json"
        || file == "model.safetensors.index.json"
        || COMPANION_FILES.contains(&file)
        || (file.ends_with(".safetensors") && !file.contains('/'))
}

/// The local snapshot directory of `id`: from the cache when offline, else fetched (what is
/// already cached is not fetched again).
pub fn snapshot(id: &HubId) -> Result<PathBuf, HubError> {
    if offline() {
        return cached_snapshot(id)
            .ok_or_else(|| HubError::NotCached(id.to_string(), cache_dir().display().to_string()));
    }
    download(id)
}

/// The cached snapshot of `id`, if it holds a checkpoint: `revision` read through `refs/`,
/// or taken as a commit hash.
fn cached_snapshot(id: &HubId) -> Option<PathBuf> {
    let repo = Cache::new(cache_dir()).repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let config = repo.get("config.json").or_else(|| {
        let folder = cache_dir()
            .join(format!("models--{}", id.repo.replace('/', "--")))
            .join("snapshots")
            .join(&id.revision);
        Some(folder.join("config.json")).filter(|p| p.exists())
    })?;
    let dir = config.parent()?.to_path_buf();
    has_weights(&dir).then_some(dir)
}

fn has_weights(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
    })
}

fn download(id: &HubId) -> Result<PathBuf, HubError> {
    let mut builder = ApiBuilder::new()
        .with_cache_dir(cache_dir())
        .with_token(token())
        .with_progress(std::io::stderr().is_terminal());
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder
        .build()
        .map_err(|e| HubError::Other(id.to_string(), e.to_string()))?;
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let info = repo.info().map_err(|e| classify(id, &e))?;
    let files: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| wanted(f))
        .collect();
    if !files.iter().any(|f| f == "config.json")
        || !files.iter().any(|f| f.ends_with(".safetensors"))
    {
        return Err(HubError::NotACheckpoint(id.to_string()));
    }
    let mut snapshot = None;
    for file in &files {
        tracing::info!(model = %id, file = %file, "fetching from the Hub (cached files are reused)");
        let path = repo.get(file).map_err(|e| classify(id, &e))?;
        snapshot = path.parent().map(Path::to_path_buf);
    }
    snapshot.ok_or_else(|| HubError::NotACheckpoint(id.to_string()))
}

/// The Hub's answer as one of [`HubError`]: its `X-Error-Code` header first, the status next.
fn classify(id: &HubId, error: &ApiError) -> HubError {
    if let ApiError::RequestError(boxed) = error {
        if let ureq::Error::Status(status, response) = boxed.as_ref() {
            let code = response.header("x-error-code").unwrap_or_default();
            return match (code, status) {
                ("RevisionNotFound", _) => HubError::RevisionNotFound {
                    repo: id.repo.clone(),
                    revision: id.revision.clone(),
                },
                ("GatedRepo", _) | (_, 403) => HubError::Gated(id.repo.clone()),
                ("RepoNotFound", _) | (_, 401 | 404) => HubError::NotFound(id.repo.clone()),
                _ => HubError::Other(id.to_string(), format!("the Hub answered {status}")),
            };
        }
    }
    HubError::Other(id.to_string(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_parse_with_and_without_revisions() {
        let id = HubId::parse("JetLM/SDAR-4B-Chat", None).unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("JetLM/SDAR-4B-Chat", "main")
        );
        let id = HubId::parse("JetLM/SDAR-4B-Chat@v1.0", None).unwrap();
        assert_eq!(id.revision, "v1.0");
        let id = HubId::parse("JetLM/SDAR-4B-Chat@v1.0", Some("abc123")).unwrap();
        assert_eq!(id.revision, "abc123", "--revision wins");
        for not_an_id in [
            "models/arith-student/x",
            "./a/b",
            "/abs/path",
            "name",
            "a/",
            "a/b@",
            "../x",
        ] {
            assert_eq!(HubId::parse(not_an_id, None), None, "{not_an_id}");
        }
    }

    #[test]
    fn only_checkpoint_files_are_fetched() {
        for file in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "tokenizer.json",
            "model.safetensors.index.json",
            "chat_template.jinja",
            "generation_config.json",
        ] {
            assert!(wanted(file), "{file}");
        }
        for file in [
            "pytorch_model.bin",
            "README.md",
            "onnx/model.safetensors",
            ".gitattributes",
        ] {
            assert!(!wanted(file), "{file}");
        }
    }
}
