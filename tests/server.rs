//! `t3d serve` on loopback: the official `openai` client suite (tests/server_client.py), metrics
//! through `promtool`, cancellation on disconnect, 429 under overload, graceful shutdown.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = common::save_with_tokenizer(&common::tiny_model(3), &dir.path().join("tiny"));
        let port = common::free_port();
        let (model, port_arg) = (model.to_str().unwrap(), port.to_string());
        let mut args = vec!["--model", model, "--port", &port_arg, "--threads", "1"];
        args.extend(["--max-body-bytes", "65536", "--max-total-tokens", "600"]);
        args.extend(extra);
        let child = common::spawn_serve(&args);
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        common::wait_until("server did not become ready", 60, || {
            request(port, "GET", "/ready", "").map(|r| r.0) == Some(200)
        });
        server
    }

    fn metric(&self, line_prefix: &str) -> f64 {
        let (_, body) = request(self.port, "GET", "/metrics", "").unwrap();
        body.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.split_whitespace().last())
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request without keep-alive; (status, the whole response: head and body).
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    common::http(port, method, path, body, None)
}

#[test]
fn openai_client_suite_and_promtool() {
    let server = Server::start(&["--api-key", "test-key", "--max-batch-size", "8"]);
    let metrics = tempfile::NamedTempFile::new().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server_client.py");
    let out = Command::new(common::venv_python())
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", server.port),
            "tiny",
            "test-key",
        ])
        .arg(metrics.path())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client suite failed:\n{log}");
    let check = Command::new(common::prometheus_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(metrics.path()).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

const LONG: &str = r#"{"prompt": "count", "max_tokens": 500, "ignore_eos": true, "temperature": 0, "stream": true}"#;

#[test]
fn client_disconnect_cancels_the_sequence_and_frees_its_slot() {
    let server = Server::start(&["--max-batch-size", "2"]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{LONG}",
        LONG.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.starts_with("data: {") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader); // the client goes away after the first block
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("t3d_request_failures_total{reason=\"cancelled\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the sequence was never cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.metric("t3d_running_requests"), 0.0);
    assert_eq!(server.metric("t3d_kv_cache_slots_used"), 0.0);
    let generated = server.metric("t3d_generated_tokens_total");
    assert!(
        generated < 500.0,
        "ran to completion anyway ({generated} tokens)"
    );
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_keeps_serving() {
    let server = Server::start(&["--max-batch-size", "1", "--max-queue", "1"]);
    let port = server.port;
    let body = LONG.replace("\"stream\": true", "\"stream\": false");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || request(port, "POST", "/v1/completions", &body).unwrap())
        })
        .collect();
    let results: Vec<(u16, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let overloaded: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(
        !overloaded.is_empty(),
        "no 429 among {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(results.iter().any(|r| r.0 == 200));
    assert!(overloaded[0].1.contains("rate_limit_exceeded"));
    let head = overloaded[0].1.to_lowercase();
    assert!(head.contains("retry-after: 1"), "{head}");
    let (status, _) = request(
        port,
        "POST",
        "/v1/completions",
        r#"{"prompt": "a", "max_tokens": 4}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "serving goes on after the burst");
}

#[test]
fn sigterm_finishes_in_flight_work_and_refuses_new_requests() {
    let mut server = Server::start(&["--max-batch-size", "2"]);
    let port = server.port;
    let body = LONG.replace("\"stream\": true", "\"stream\": false");
    let in_flight = std::thread::spawn(move || request(port, "POST", "/v1/completions", &body));
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(100));
    let refused = request(
        port,
        "POST",
        "/v1/completions",
        r#"{"prompt": "a", "max_tokens": 4}"#,
    );
    if let Some((status, _)) = refused {
        assert_eq!(status, 503, "new work during drain");
    }
    let (status, body) = in_flight
        .join()
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"finish_reason\":\"length\""), "{body}");
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn the_health_subcommand_checks_a_live_server() {
    let server = Server::start(&[]);
    let health = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_t3d"))
            .args(["health", "--port", &port.to_string()])
            .output()
            .unwrap()
    };
    let up = health(server.port);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let down = health(common::free_port());
    assert!(!down.status.success());
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(
        err.starts_with("error: connecting to 127.0.0.1:") && err.lines().count() == 1,
        "{err}"
    );
}

/// vLLM's `/tokenize` and `/detokenize` round-trip a prompt and chat messages; `/version` answers;
/// bad ids and bodies get OpenAI error JSON.
#[test]
fn tokenize_and_detokenize_round_trip() {
    let server = Server::start(&[]);
    let port = server.port;
    let body = |text: &str| -> serde_json::Value {
        let at = text.find("\r\n\r\n").unwrap();
        serde_json::from_str(&text[at + 4..]).unwrap()
    };
    let (status, text) = request(port, "POST", "/tokenize", r#"{"prompt": "12+3=15"}"#).unwrap();
    assert_eq!(status, 200, "{text}");
    let tokens = body(&text);
    assert_eq!(tokens["count"], 7, "one byte-level token per character");
    assert_eq!(tokens["max_model_len"], 600);
    let ids = tokens["tokens"].to_string();
    let (status, text) = request(
        port,
        "POST",
        "/detokenize",
        &format!(r#"{{"tokens": {ids}}}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(body(&text)["prompt"], "12+3=15");

    let chat = r#"{"messages": [{"role": "user", "content": "hi"}], "return_token_strs": true}"#;
    let (status, text) = request(port, "POST", "/tokenize", chat).unwrap();
    assert_eq!(status, 200, "{text}");
    let rendered = body(&text);
    let count = rendered["count"].as_u64().unwrap();
    assert!(count > 2, "the template adds its own tokens: {rendered}");
    assert_eq!(
        rendered["token_strs"].as_array().unwrap().len() as u64,
        count
    );

    let (status, text) = request(port, "POST", "/detokenize", r#"{"tokens": [-1]}"#).unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(body(&text)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("outside the vocabulary"));
    let both = r#"{"prompt": "a", "messages": []}"#;
    assert_eq!(request(port, "POST", "/tokenize", both).unwrap().0, 400);
    let (status, text) = request(port, "GET", "/version", "").unwrap();
    assert_eq!(status, 200);
    assert_eq!(body(&text)["version"], env!("CARGO_PKG_VERSION"));
}

/// The request's `user` is recorded in its admission log line.
#[test]
fn the_user_field_is_logged_with_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::save_with_tokenizer(&common::tiny_model(3), &dir.path().join("tiny"));
    let log_path = dir.path().join("serve.log");
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_t3d"))
        .args([
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--threads",
            "1",
        ])
        .args(["--port", &port.to_string()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    common::wait_until("server did not become ready", 60, || {
        request(port, "GET", "/ready", "").map(|r| r.0) == Some(200)
    });
    let body = r#"{"prompt": "1+1", "max_tokens": 4, "user": "alice-42"}"#;
    let (status, text) = request(port, "POST", "/v1/completions", body).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{text}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let line = log.lines().find(|l| l.contains("admitted"));
    assert!(
        line.is_some_and(|l| l.contains("user=\"alice-42\"") || l.contains("user=alice-42")),
        "{log}"
    );
}
