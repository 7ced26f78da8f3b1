//! The admin tests' harness: a models directory with copies of the bundled models, a live
//! `t3d serve` with the admin API, JSON over raw HTTP, and process and streaming helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common;
use crate::common::http;

pub const TOKEN: &str = "admin-test-token";

/// A models directory with copies of the bundled teacher and student, plus a data directory.
pub struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for name in ["arith-teacher", "arith-student"] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models")
                .join(name);
            let to = root.path().join("models").join(name);
            std::fs::create_dir_all(&to).unwrap();
            for file in [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
            ] {
                std::fs::copy(from.join(file), to.join(file)).unwrap();
            }
        }
        std::fs::create_dir_all(root.path().join("data")).unwrap();
        Self { root }
    }

    pub fn models(&self) -> PathBuf {
        self.root.path().join("models")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
}

impl Server {
    pub fn start(dirs: &Dirs) -> Self {
        Self::start_with_env(dirs, &[])
    }

    /// [`Server::start`] with extra environment variables for the server.
    pub fn start_with_env(dirs: &Dirs, env: &[(&str, &str)]) -> Self {
        let (port, admin_port) = (common::free_port(), common::free_port());
        let (jobs, data) = (dirs.path("jobs"), dirs.path("data"));
        let model = dirs.models().join("arith-student");
        let (port_arg, admin_arg) = (port.to_string(), admin_port.to_string());
        let mut args = vec!["--model", model.to_str().unwrap(), "--port", &port_arg];
        args.extend([
            "--admin-port",
            &admin_arg,
            "--admin-token",
            TOKEN,
            "--threads",
            "1",
        ]);
        args.extend([
            "--admin-job-threads",
            "1",
            "--jobs-dir",
            jobs.to_str().unwrap(),
        ]);
        args.extend([
            "--data-dir",
            data.to_str().unwrap(),
            "--admin-kill-grace",
            "2",
        ]);
        args.extend(["--shutdown-grace", "5"]);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_t3d"))
            .arg("serve")
            .args(&args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            port,
            admin_port,
        };
        common::wait_until("server did not become ready", 60, || {
            http(port, "GET", "/ready", "", None).map(|r| r.0) == Some(200)
                && http(admin_port, "GET", "/admin/v1/jobs", "", Some(TOKEN)).is_some()
        });
        server
    }

    pub fn admin(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = http(
            self.admin_port,
            method,
            path,
            &body.to_string(),
            Some(TOKEN),
        )
        .unwrap();
        (status, body_json(&text))
    }

    pub fn version(&self) -> String {
        let (_, text) = http(self.port, "GET", "/v1/models", "", None).unwrap();
        body_json(&text)["data"][0]["version"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls job `id` until `done` holds (or panics after `secs`).
    pub fn wait_job(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, job) = self.admin("GET", &format!("/admin/v1/jobs/{id}"), &json!({}));
            assert_eq!(status, 200, "{job}");
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job did not get there: {job:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn start_job(&self, body: &Value) -> String {
        let (status, answer) = self.admin("POST", "/admin/v1/jobs", body);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(
            answer["url"],
            format!("/admin/v1/jobs/{}", answer["id"].as_str().unwrap())
        );
        answer["id"].as_str().unwrap().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn body_json(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A tiny job on the bundled teacher (a few seconds on CPU).
pub fn tiny_job(steps: u64) -> Value {
    json!({"teacher": "arith-teacher", "prompts": {"count": 32},
           "settings": {"steps": steps, "batch_size": 8, "eval_n": 16, "eval_steps": [1, 4],
                        "eval_thresholds": [0.9], "eval_entropy_bounds": [0.35],
                        "save_every": 2, "log_every": 1}})
}

/// The process runs (a zombie waiting for a reaper has ended).
pub fn process_exists(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z' && s != 'X')
}

/// Waits up to 10 s for process `pid` to end.
pub fn wait_gone(pid: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Streaming completions sent back to back until stopped: (status, fingerprint) per request,
/// with the time each was sent.
pub fn stream_clients(
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, u16, String)>> {
    std::thread::spawn(move || {
        let seen = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let body = r#"{"prompt": "12+7+30+5", "max_tokens": 24, "stream": true}"#;
                        let (status, text) = http(port, "POST", "/v1/completions", body, None)
                            .unwrap_or((0, String::new()));
                        let fp = text
                            .split("\"system_fingerprint\":\"")
                            .nth(1)
                            .and_then(|t| t.split('"').next())
                            .unwrap_or("")
                            .to_string();
                        let complete = text.contains("data: [DONE]");
                        seen.lock()
                            .unwrap()
                            .push((sent, if complete { status } else { 0 }, fp));
                    }
                });
            }
        });
        seen.into_inner().unwrap()
    })
}
