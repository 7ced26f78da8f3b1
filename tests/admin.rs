//! The admin API through a live `t3d serve` on loopback, with the bundled models: a tiny
//! distillation job from 202 to `succeeded`, its student hot-swapped in while clients keep
//! streaming, rollback, cancel (the child is gone), auth, 409, 400s for bad keys and escaping
//! paths, a failing job and a refused swap that leave the served model alone, and the job list
//! across a server crash with an interrupted job resumed.

mod admin_harness;
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin_harness::{
    body_json, process_exists, stream_clients, tiny_job, wait_gone, Dirs, Server, TOKEN,
};
use common::http;
use serde_json::{json, Value};

#[test]
fn a_job_runs_to_success_and_its_student_is_hot_swapped_under_streaming_load() {
    let dirs = Dirs::new();
    let server = Server::start(&dirs);
    for token in [None, Some("wrong-token")] {
        let (status, text) = http(server.admin_port, "GET", "/admin/v1/jobs", "", token).unwrap();
        assert_eq!(status, 401);
        assert_eq!(body_json(&text)["error"]["code"], "invalid_admin_token");
    }
    let (status, _) = http(server.port, "GET", "/admin/v1/jobs", "", Some(TOKEN)).unwrap();
    assert_eq!(status, 404, "the admin API is not on the public port");

    let id = server.start_job(&tiny_job(6));
    let (status, conflict) = server.admin("POST", "/admin/v1/jobs", &tiny_job(6));
    assert_eq!(status, 409, "{conflict}");
    let job = server.wait_job(&id, 180, |j| {
        !["queued", "rollout", "training", "evaluating"].contains(&j["state"].as_str().unwrap())
    });
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["progress"]["step"], 6);
    assert!(job["losses"]["loss"].as_f64().unwrap().is_finite());
    assert_eq!(job["eval"].as_array().unwrap().len(), 4);
    assert!(job["eval_table"]
        .as_str()
        .unwrap()
        .contains("| 4 | H≤0.35 |"));
    assert!(job["eval_table"].as_str().unwrap().contains("| 4 | S=1 |"));
    assert!(job["eval_table"]
        .as_str()
        .unwrap()
        .contains("| 4 | τ=0.9 |"));
    assert!(job["command_line"].as_str().unwrap().contains(" distill "));
    let output = PathBuf::from(job["output"].as_str().unwrap());
    assert!(
        output.starts_with(dirs.models().canonicalize().unwrap())
            && output.join("config.json").exists()
    );

    let old_version = server.version();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = stream_clients(server.port, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let (status, swapped) = server.admin("POST", "/admin/v1/model", &json!({"job": id}));
    let swapped_at = Instant::now();
    assert_eq!(status, 200, "{swapped}");
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::SeqCst);
    let seen = clients.join().unwrap();
    let new_version = swapped["version"].as_str().unwrap();
    assert_ne!(new_version, old_version);
    assert_eq!(swapped["previous_version"], old_version);
    assert!(
        seen.iter().all(|(_, status, _)| *status == 200),
        "every streamed request succeeds"
    );
    let after: Vec<_> = seen
        .iter()
        .filter(|(sent, ..)| *sent > swapped_at)
        .collect();
    assert!(
        !after.is_empty() && seen.len() > after.len(),
        "requests before and after the swap"
    );
    assert!(
        after.iter().all(|(_, _, fp)| fp == new_version),
        "requests after the swap report the new version"
    );
    assert_eq!(server.version(), new_version);
    let (_, metrics) = http(server.port, "GET", "/metrics", "", None).unwrap();
    assert!(metrics.contains(&format!("version=\"{new_version}\"}} 1")));
    assert!(metrics.contains("t3d_model_swaps_total{result=\"swapped\"} 1"));

    let (status, back) = server.admin("POST", "/admin/v1/model/rollback", &json!({}));
    assert_eq!(status, 200, "{back}");
    assert!(back["path"].as_str().unwrap().ends_with("arith-student"));
    assert_eq!(
        &back["version"].as_str().unwrap()[..12],
        &old_version[..12],
        "same weights"
    );
    let (status, _) = server.admin("POST", "/admin/v1/model/rollback", &json!({}));
    assert_eq!(status, 409, "nothing left to roll back to");
}

#[test]
fn bad_settings_escaping_paths_and_corrupt_models_are_refused_and_the_served_model_stays() {
    let dirs = Dirs::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("p.jsonl"),
        "{\"question\": \"1+2+3\"}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("p.jsonl"), dirs.path("data/link.jsonl"))
        .unwrap();
    let corrupt = dirs.models().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            dirs.models().join("arith-student").join(file),
            corrupt.join(file),
        )
        .unwrap();
    }
    std::fs::write(corrupt.join("model.safetensors"), b"not a safetensors file").unwrap();
    let server = Server::start(&dirs);
    let version = server.version();
    for (body, field) in [
        (json!({"settings": {"stepz": 3}}), "settings.stepz"),
        (
            json!({"settings": {"noise.trace_order": "sideways"}}),
            "settings.noise.trace_order",
        ),
        (json!({"objective": "gan"}), "objective"),
        (json!({"teacher": "../../etc"}), "teacher"),
        (json!({"teacher": "/etc"}), "teacher"),
        (
            json!({"prompts": {"file": "../../x.jsonl"}}),
            "prompts.file",
        ),
        (
            json!({"prompts": {"file": outside.path().join("p.jsonl")}}),
            "prompts.file",
        ),
        (json!({"prompts": {"file": "link.jsonl"}}), "prompts.file"),
        (json!({"output": "../escaped"}), "output"),
        (json!({"output": "arith-teacher"}), "output"),
        (json!({"bogus": 1}), "bogus"),
    ] {
        let (status, answer) = server.admin("POST", "/admin/v1/jobs", &body);
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["param"], field, "{body} -> {answer}");
    }
    let (status, answer) = server.admin(
        "POST",
        "/admin/v1/model",
        &json!({"path": "../arith-student"}),
    );
    assert_eq!(
        (status, answer["error"]["param"].as_str()),
        (400, Some("path"))
    );
    let (status, answer) = server.admin("POST", "/admin/v1/model", &json!({"path": "corrupt"}));
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("refused"));
    let (status, text) = http(
        server.port,
        "POST",
        "/v1/completions",
        r#"{"prompt": "1+2+3", "max_tokens": 8}"#,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body_json(&text)["system_fingerprint"],
        version.as_str(),
        "the old model still answers"
    );
    assert!(
        !dirs.path("jobs").read_dir().unwrap().any(|_| true),
        "no job was started"
    );
}

#[test]
fn a_corrupt_teacher_fails_its_job_and_a_cancelled_job_leaves_no_process() {
    let dirs = Dirs::new();
    let teacher = dirs.models().join("broken-teacher");
    std::fs::create_dir(&teacher).unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            dirs.models().join("arith-teacher").join(file),
            teacher.join(file),
        )
        .unwrap();
    }
    std::fs::write(teacher.join("model.safetensors"), vec![7u8; 4096]).unwrap();
    let server = Server::start(&dirs);
    let version = server.version();
    let mut body = tiny_job(4);
    body["teacher"] = json!("broken-teacher");
    let id = server.start_job(&body);
    let job = server.wait_job(&id, 60, |j| j["state"] == "failed");
    assert!(
        job["error"].as_str().unwrap().contains("safetensors"),
        "{job:#}"
    );
    assert!(!job["stderr_tail"].as_array().unwrap().is_empty());
    assert_eq!(server.version(), version, "the served model is untouched");

    let id = server.start_job(&tiny_job(100_000));
    let job = server.wait_job(&id, 60, |j| j["state"] == "training");
    let pid = job["pid"].as_u64().unwrap();
    assert!(process_exists(pid));
    let (status, _) = server.admin("DELETE", &format!("/admin/v1/jobs/{id}"), &json!({}));
    assert_eq!(status, 202);
    let job = server.wait_job(&id, 30, |j| j["state"] == "cancelled");
    assert!(job["pid"].is_null());
    assert!(!process_exists(pid), "the child {pid} is gone");
    let (status, _) = server.admin("DELETE", &format!("/admin/v1/jobs/{id}"), &json!({}));
    assert_eq!(status, 409, "nothing left to cancel");

    // SIGTERM to the server: the running job is stopped and left resumable.
    let mut server = server;
    let id = server.start_job(&tiny_job(100_000));
    let pid = server.wait_job(&id, 60, |j| j["state"] == "training")["pid"]
        .as_u64()
        .unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        server.child.wait().unwrap().success(),
        "the server drained and exited 0"
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.path("jobs").join(&id).join("job.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "interrupted");
    wait_gone(pid, "the child outlived the server");
}

#[test]
fn the_job_list_survives_a_crash_and_the_interrupted_job_resumes() {
    let dirs = Dirs::new();
    let mut server = Server::start(&dirs);
    let id = server.start_job(&tiny_job(40));
    let job = server.wait_job(&id, 120, |j| {
        j["progress"]["step"].as_u64().unwrap_or(0) >= 4
    });
    let pid = job["pid"].as_u64().unwrap();
    server.child.kill().unwrap(); // SIGKILL: no chance to clean up
    server.child.wait().unwrap();
    drop(server);
    let server = Server::start(&dirs);
    let (status, list) = server.admin("GET", "/admin/v1/jobs", &json!({}));
    assert_eq!(status, 200);
    let job = &list["data"][0];
    assert_eq!(
        (job["id"].as_str(), job["state"].as_str()),
        (Some(id.as_str()), Some("interrupted"))
    );
    wait_gone(pid, "the orphaned child was stopped");
    let (status, _) = server.admin("POST", &format!("/admin/v1/jobs/{id}/resume"), &json!({}));
    assert_eq!(status, 202);
    let job = server.wait_job(&id, 180, |j| {
        ["succeeded", "failed"].contains(&j["state"].as_str().unwrap())
    });
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["resumes"], 1);
    assert!(
        job["stderr_tail"].to_string().contains("resuming from"),
        "{job:#}"
    );
}
