//! Models by Hub id against a Hub-compatible file server on loopback: the real `hf-hub` client
//! fetches through `HF_ENDPOINT` into the cache layout of Python's `huggingface_hub`, the cache
//! is reused offline, a cache written by Python's `snapshot_download` from the same server is read
//! as is, and each failure (no such repo, no such revision, gated without a token, offline with
//! nothing cached) is one clear line.

mod common;

mod hub_server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hub_server::{start_hub, HubRepo, COMMIT, TOKEN};

/// A tiny checkpoint's files, plus one file a checkpoint does not need.
fn checkpoint_files(dir: &Path) -> HashMap<String, Vec<u8>> {
    let model = common::save_with_tokenizer(&common::tiny_model(3), &dir.join("tiny"));
    let mut files: HashMap<String, Vec<u8>> = std::fs::read_dir(&model)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.insert("README.md".into(), b"not fetched".to_vec());
    files
}

/// `t3d generate --model MODEL` under `env`: (success, stdout, stderr).
fn generate(model: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_t3d"));
    command.args([
        "generate",
        "--model",
        model,
        "--prompt",
        "12+3=",
        "--max-tokens",
        "8",
        "--ignore-eos",
        "--json",
    ]);
    for var in [
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token_ids(stdout: &str) -> Vec<i64> {
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    serde_json::from_value(record["token_ids"].clone()).unwrap()
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--t3d-test--tiny")
}

#[test]
fn a_hub_id_downloads_into_the_python_layout_and_is_reused_offline() {
    let dir = tempfile::tempdir().unwrap();
    let files = checkpoint_files(dir.path());
    let repos = HashMap::from([(
        "t3d-test/tiny".to_string(),
        HubRepo {
            files: files.clone(),
            gated: false,
        },
    )]);
    let endpoint = start_hub(repos);
    let cache = dir.path().join("cache");
    let cache_str = cache.to_str().unwrap();
    let online = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_CACHE", cache_str),
    ];
    let (ok, stdout, stderr) = generate("t3d-test/tiny", &online);
    assert!(ok, "{stderr}");
    let fetched = token_ids(&stdout);
    assert_eq!(fetched.len(), 8);
    assert_eq!(
        std::fs::read_to_string(repo_dir(&cache).join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    let snapshot = repo_dir(&cache).join("snapshots").join(COMMIT);
    for name in files.keys().filter(|n| n.as_str() != "README.md") {
        assert!(snapshot.join(name).exists(), "{name} in the snapshot");
    }
    assert!(
        !snapshot.join("README.md").exists(),
        "only checkpoint files are fetched"
    );

    let offline = [("HF_HUB_OFFLINE", "1"), ("HF_HUB_CACHE", cache_str)];
    let (ok, stdout, stderr) = generate("t3d-test/tiny", &offline);
    assert!(ok, "{stderr}");
    assert_eq!(
        token_ids(&stdout),
        fetched,
        "the cached checkpoint decodes the same"
    );
    let (ok, stdout, stderr) = generate(&format!("t3d-test/tiny@{COMMIT}"), &offline);
    assert!(ok, "a commit as the revision: {stderr}");
    assert_eq!(token_ids(&stdout), fetched);

    let (ok, _, stderr) = generate("t3d-test/other", &offline);
    assert!(!ok);
    assert!(
        stderr.contains("t3d-test/other@main is not in the Hub cache"),
        "{stderr}"
    );
}

#[test]
fn a_cache_written_by_python_huggingface_hub_is_read_offline() {
    let dir = tempfile::tempdir().unwrap();
    let files = checkpoint_files(dir.path());
    let endpoint = start_hub(HashMap::from([(
        "t3d-test/tiny".to_string(),
        HubRepo {
            files,
            gated: false,
        },
    )]));
    let cache = dir.path().join("python-cache");
    let script = "import sys\nfrom huggingface_hub import snapshot_download\n\
                  print(snapshot_download('t3d-test/tiny', cache_dir=sys.argv[1], endpoint=sys.argv[2]))";
    let out = Command::new(common::venv_python())
        .args(["-c", script, cache.to_str().unwrap(), &endpoint])
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(snapshot.ends_with(COMMIT), "{snapshot}");

    let offline = [
        ("HF_HUB_OFFLINE", "1"),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
    ];
    let (ok, stdout, stderr) = generate("t3d-test/tiny", &offline);
    assert!(ok, "{stderr}");
    let online = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
    ];
    let (ok, again, stderr) = generate("t3d-test/tiny", &online);
    assert!(ok, "{stderr}");
    assert_eq!(token_ids(&stdout), token_ids(&again));
}

#[test]
fn hub_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = checkpoint_files(dir.path());
    let endpoint = start_hub(HashMap::from([(
        "t3d-test/gated".to_string(),
        HubRepo { files, gated: true },
    )]));
    let cache = dir.path().join("cache");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
    ];
    let failure = |model: &str, extra: &[(&str, &str)]| {
        let all: Vec<(&str, &str)> = env.iter().chain(extra).copied().collect();
        let (ok, _, stderr) = generate(model, &all);
        assert!(!ok, "{model} should fail");
        stderr.trim().to_string()
    };
    let missing = failure("t3d-test/missing", &[]);
    assert!(
        missing.contains("t3d-test/missing: no such model on the Hub"),
        "{missing}"
    );
    let gated = failure("t3d-test/gated", &[]);
    assert!(gated.contains("t3d-test/gated is gated"), "{gated}");
    let revision = failure("t3d-test/gated@v9", &[("HF_TOKEN", TOKEN)]);
    assert!(revision.contains("no revision `v9`"), "{revision}");
    for message in [&missing, &gated, &revision] {
        assert_eq!(message.lines().count(), 1, "one line: {message}");
    }
    let all: Vec<(&str, &str)> = env.iter().chain(&[("HF_TOKEN", TOKEN)]).copied().collect();
    let (ok, _, stderr) = generate("t3d-test/gated", &all);
    assert!(ok, "with the token: {stderr}");
}

#[path = "admin_harness/mod.rs"]
mod admin_harness;

/// The admin hot-swap takes a Hub id where it takes a directory: the bundled teacher, served by
/// the loopback Hub, replaces the bundled student.
#[test]
fn the_admin_swap_takes_a_hub_id() {
    let dirs = admin_harness::Dirs::new();
    let teacher = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/arith-teacher");
    let files: HashMap<String, Vec<u8>> = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(teacher.join(f)).unwrap()))
    .collect();
    let endpoint = start_hub(HashMap::from([(
        "t3d-test/teacher".to_string(),
        HubRepo {
            files,
            gated: false,
        },
    )]));
    let cache = dirs.path("hub-cache");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
    ];
    let server = admin_harness::Server::start_with_env(&dirs, &env);
    let before = server.version();
    let (status, body) = server.admin(
        "POST",
        "/admin/v1/model",
        &serde_json::json!({"path": "t3d-test/teacher"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_ne!(server.version(), before);
    assert!(body["path"].as_str().unwrap().ends_with(COMMIT), "{body}");
    let (status, body) = server.admin(
        "POST",
        "/admin/v1/model",
        &serde_json::json!({"path": "t3d-test/missing"}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("no such model on the Hub"),
        "{body}"
    );
}
