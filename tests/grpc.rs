//! The gRPC API of a live `t3d serve`: the Python suite (a client generated from `proto/` by
//! grpcio-tools, compared with the HTTP API, every error code, cancellation, reflection,
//! health and the drain), and the streaming path through a tonic client.

mod common;

use std::path::Path;
use std::process::{Child, Command};

use t3d::server::grpc::pb;
use t3d::server::grpc::pb::generation_client::GenerationClient;
use tonic::Request;

struct Server {
    child: Child,
    port: u16,
    grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = common::save_with_tokenizer(&common::tiny_model(3), &dir.path().join("tiny"));
        let (port, grpc_port) = (common::free_port(), common::free_port());
        let (model, port_arg, grpc_arg) = (
            model.to_str().unwrap(),
            port.to_string(),
            grpc_port.to_string(),
        );
        let mut args = vec!["--model", model, "--threads", "1", "--port", &port_arg];
        args.extend([
            "--grpc-port",
            &grpc_arg,
            "--max-total-tokens",
            "600",
            "--shutdown-grace",
            "20",
        ]);
        args.extend(extra);
        let child = common::spawn_serve(&args);
        let server = Self {
            child,
            port,
            grpc_port,
            _dir: dir,
        };
        common::wait_until("server did not become ready", 60, || {
            common::http(port, "GET", "/ready", "", None).map(|r| r.0) == Some(200)
                && std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()
        });
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn python_grpc_client_suite_matches_http_and_drains() {
    let mut server = Server::start(&[
        "--api-key",
        "k",
        "--max-batch-size",
        "1",
        "--max-queue",
        "2",
    ]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_client.py");
    let out = Command::new(common::venv_python())
        .arg(script)
        .arg(format!("127.0.0.1:{}", server.grpc_port))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args(["tiny", "k", &server.child.id().to_string()])
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "gRPC client suite failed:\n{log}");
    assert!(log.contains("grpc client suite: ok"), "{log}");
    let status = server.child.wait().unwrap();
    assert!(
        status.success(),
        "the server drained and exited 0: {status}"
    );
}

#[tokio::test]
async fn a_tonic_client_streams_blocks_then_choice_ends_then_usage() {
    let server = Server::start(&[]);
    let url = format!("http://127.0.0.1:{}", server.grpc_port);
    let mut client = GenerationClient::connect(url).await.unwrap();
    let request = || pb::GenerateRequest {
        prompt: Some(pb::generate_request::Prompt::Text("Hello".into())),
        max_tokens: Some(16),
        temperature: Some(0.0),
        steps_per_block: Some(1),
        ignore_eos: Some(true),
        n: Some(2),
        ..Default::default()
    };
    let mut stream = client
        .generate(Request::new(request()))
        .await
        .unwrap()
        .into_inner();
    let (mut blocks, mut ends, mut usage) = (vec![Vec::new(), Vec::new()], Vec::new(), None);
    while let Some(message) = stream.message().await.unwrap() {
        assert!(usage.is_none(), "usage is the last message");
        match message.event.unwrap() {
            pb::generate_response::Event::Block(b) => {
                assert!(!ends.iter().any(|e: &pb::ChoiceEnd| e.index == b.index));
                blocks[b.index as usize].push(b);
            }
            pb::generate_response::Event::ChoiceEnd(e) => ends.push(e),
            pb::generate_response::Event::Usage(u) => usage = Some(u),
        }
    }
    let usage = usage.expect("a final usage message");
    assert_eq!(ends.len(), 2);
    let forwards: u32 = ends.iter().map(|e| e.forward_passes).sum();
    assert_eq!(usage.completion_tokens, 32);
    assert_eq!(usage.forward_passes, u64::from(forwards));
    assert_eq!(usage.tokens_per_forward, 32.0 / f64::from(forwards));
    let done = client
        .complete(Request::new(request()))
        .await
        .unwrap()
        .into_inner();
    for (i, choice) in done.choices.iter().enumerate() {
        let streamed: Vec<i64> = blocks[i].iter().flat_map(|b| b.token_ids.clone()).collect();
        assert!(blocks[i]
            .iter()
            .all(|b| (1..=4).contains(&b.token_ids.len())));
        assert_eq!(
            choice.token_ids, streamed,
            "choice {i}: the stream and Complete agree"
        );
        let text: String = blocks[i]
            .iter()
            .map(|b| b.text.as_str())
            .collect::<String>()
            + &ends.iter().find(|e| e.index as usize == i).unwrap().text;
        assert_eq!(choice.text, text);
        assert_eq!(choice.finish_reason, pb::FinishReason::Length as i32);
    }
    let models = client
        .list_models(Request::new(pb::ListModelsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(models.models[0].version, done.system_fingerprint);
}
