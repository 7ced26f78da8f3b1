//! `deploy/` proven with the real tools: the Kubernetes manifests rendered and validated strictly
//! (`kubernetes-validate`, `yamllint`), the alert rules checked and unit-tested by `promtool`,
//! and a real Prometheus server scraping a live `t3d serve` through
//! `deploy/prometheus/prometheus.yml`, loading the alert rules and answering every PromQL
//! expression of the Grafana dashboard and of the rules (scripts/deploy_promql.py).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv_bin(name: &str) -> PathBuf {
    repo().join(".venv/bin").join(name)
}

/// Runs `cmd` in the repository, prints what it said and asserts it succeeded.
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.current_dir(repo()).output().expect("the tool runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("$ {cmd:?}\n{text}");
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    out
}

#[test]
fn kubernetes_manifests_render_and_validate_strictly() {
    run_ok(Command::new(common::venv_python()).arg("scripts/deploy_manifests.py"));
    run_ok(Command::new(venv_bin("yamllint")).args([
        "--strict",
        "-c",
        "deploy/.yamllint.yaml",
        "deploy",
    ]));
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let promtool = common::prometheus_tool("promtool");
    let check =
        run_ok(Command::new(&promtool).args(["check", "rules", "deploy/prometheus/alerts.yml"]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("8 rules found"));
    run_ok(Command::new(&promtool).args(["test", "rules", "deploy/prometheus/alerts_test.yml"]));
}

/// A Prometheus server on loopback, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus with `deploy/prometheus/prometheus.yml`, pointed at `target` and scraping
/// and evaluating every second.
fn start_prometheus(target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    let config = [
        ("\"t3d:8000\"", format!("\"{target}\"")),
        ("scrape_interval: 15s", "scrape_interval: 1s".into()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
    ]
    .iter()
    .fold(shipped, |text, (from, to)| {
        assert!(text.contains(from), "prometheus.yml no longer holds {from}");
        text.replace(from, to)
    });
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        repo().join("deploy/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    let port = common::free_port();
    let child = Command::new(common::prometheus_tool("prometheus"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        port,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// Traffic that makes every series the dashboard and the alerts read: completions (plain,
/// streamed, chat), a 400, and a stream the client abandons (a `cancelled` failure).
fn send_traffic(port: u16) {
    let post = |path: &str, body: &str| common::http(port, "POST", path, body, None).unwrap().0;
    for i in 0..4 {
        let body = format!(r#"{{"prompt": "{i}+{i}=", "max_tokens": 16}}"#);
        assert_eq!(post("/v1/completions", &body), 200);
    }
    let stream = r#"{"prompt": "1+2=", "max_tokens": 16, "stream": true}"#;
    assert_eq!(post("/v1/completions", stream), 200);
    let chat = r#"{"messages": [{"role": "user", "content": "3+4="}], "max_tokens": 16}"#;
    assert_eq!(post("/v1/chat/completions", chat), 200);
    assert_eq!(
        post("/v1/completions", r#"{"prompt": "x", "max_tokens": 0}"#),
        400
    );
    abandon_a_stream(port);
}

fn abandon_a_stream(port: u16) {
    let body = r#"{"prompt": "1+1=", "max_tokens": 900, "ignore_eos": true, "steps_per_block": 4, "stream": true}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body.as_bytes()).unwrap();
    let mut first = [0u8; 256];
    let _ = conn.read(&mut first).unwrap();
    drop(conn);
    common::wait_until("the abandoned stream was never counted", 30, || {
        common::http(port, "GET", "/metrics", "", None)
            .is_some_and(|(_, m)| m.contains("t3d_request_failures_total{reason=\"cancelled\"}"))
    });
}

#[test]
fn real_prometheus_scrapes_the_server_and_answers_every_dashboard_and_alert_query() {
    let model = repo().join("models/arith-student");
    let admin_port = common::free_port().to_string();
    let server = common::LiveServer::start(
        &model,
        &["--admin-token", "deploy-test", "--admin-port", &admin_port],
    );
    let prometheus = start_prometheus(&format!("127.0.0.1:{}", server.port));
    // Its first scrape can come a few seconds after it starts: traffic goes after it.
    common::wait_until("Prometheus never scraped the server", 60, || {
        common::http(prometheus.port, "GET", "/api/v1/query?query=up", "", None)
            .is_some_and(|(status, body)| status == 200 && body.contains("\"value\""))
    });
    send_traffic(server.port);
    // Two scrapes after the traffic, so every rate has two samples to work with.
    std::thread::sleep(Duration::from_secs(3));
    run_ok(Command::new(common::venv_python()).args([
        "scripts/deploy_promql.py",
        "--prometheus",
        &prometheus.url,
    ]));
}
