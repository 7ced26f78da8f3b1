//! Shared helpers of the integration tests: tiny random SDAR checkpoints on disk and in memory.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use t3d::model::checkpoint::{self, LoadedModel, SaveOptions};
use t3d::model::tokenizer::write_byte_tokenizer;
use t3d::model::{SdarConfig, TextTokenizer};

/// Byte-level vocabulary (256 bytes + 4 specials).
pub const VOCAB: i64 = 260;

/// The tiny test config: 2 layers, 4 query / 2 KV heads (GQA), untied head, b = 4.
pub fn tiny_config() -> SdarConfig {
    let mut cfg = SdarConfig::tiny(VOCAB);
    cfg.eos_token_id = Some(256.into());
    cfg.mask_token_id = Some(257);
    cfg
}

/// A random tiny model whose weights are scaled up so logits are well separated (argmax
/// comparisons then do not hinge on float noise).
pub fn tiny_model(seed: i64) -> LoadedModel {
    let loaded = checkpoint::random(&tiny_config(), tch::Device::Cpu, tch::Kind::Float, seed);
    tch::no_grad(|| {
        for (name, mut var) in loaded.vars.variables() {
            if name.ends_with("proj.weight") || name.contains("embed") || name.contains("lm_head") {
                let _ = var.g_mul_scalar_(8.0);
            }
        }
    });
    loaded
}

/// Writes `loaded` with a byte-level tokenizer to `dir` and returns the directory.
pub fn save_with_tokenizer(loaded: &LoadedModel, dir: &Path) -> PathBuf {
    let staging = tempfile::tempdir().unwrap();
    write_byte_tokenizer(staging.path()).unwrap();
    let opts = SaveOptions {
        tokenizer_from: Some(staging.path().to_path_buf()),
        ..SaveOptions::default()
    };
    checkpoint::save(dir, &loaded.vars, &loaded.config, &opts).unwrap();
    dir.to_path_buf()
}

/// The byte-level tokenizer of a saved tiny checkpoint.
pub fn tokenizer(dir: &Path) -> TextTokenizer {
    TextTokenizer::from_dir(dir, &tiny_config()).unwrap()
}

/// The project venv's Python (made by `scripts/setup.sh`).
pub fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh",
        python.display()
    );
    python
}

/// Max |a − b| / max |b| over all elements.
pub fn max_relative_error(ours: &tch::Tensor, reference: &tch::Tensor) -> f64 {
    let diff = (ours - reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[])
}

/// The tiny character-vocabulary shape the trainer tests train: 2 layers, hidden 32, GQA.
pub fn tiny_train_shape() -> t3d::train::config::ModelShape {
    t3d::train::config::ModelShape {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        intermediate_size: 64,
        tie_word_embeddings: true,
    }
}

/// One HTTP/1.1 request without keep-alive, with an optional bearer token: (status, the whole
/// response: head and body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// A program of Debian's `prometheus` package (`prometheus`, `promtool`), which the set-up installs.
pub fn prometheus_tool(name: &str) -> PathBuf {
    let found = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("{name} missing: install Debian's `prometheus` package (scripts/setup.sh does)")
    })
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `t3d serve ARGS…` with warnings-only logs and stdout discarded.
pub fn spawn_serve(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_t3d"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `ready` every 100 ms for up to `secs` seconds; panics with `what` if it never holds.
pub fn wait_until(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `t3d serve` child serving `model` on a free port, ready when made, killed on drop.
pub struct LiveServer {
    /// The server process.
    pub child: Child,
    /// Its HTTP port.
    pub port: u16,
}

impl LiveServer {
    /// Starts `t3d serve --model MODEL --port P ARGS…` and waits for `/ready`.
    pub fn start(model: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let (model, port_arg) = (model.to_str().unwrap(), port.to_string());
        let mut all = vec!["--model", model, "--port", port_arg.as_str()];
        all.extend_from_slice(args);
        let server = Self {
            child: spawn_serve(&all),
            port,
        };
        wait_until("the server never became ready", 120, || {
            http(port, "GET", "/ready", "", None).is_some_and(|(s, _)| s == 200)
        });
        server
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decoding parameters of the decoder tests: static remasking with `steps` per block, greedy,
/// `max_tokens`, EOS ignored (so lengths are fixed).
pub fn decode_params(steps: usize, max_tokens: usize) -> t3d::engine::GenerationParams {
    let mut p = t3d::engine::GenerationParams::default();
    p.denoise.steps_per_block = steps;
    p.stop.max_tokens = max_tokens;
    p.stop.ignore_eos = true;
    p
}

/// A deterministic prompt of `len` byte ids (1..=250), varied by `salt`.
pub fn test_prompt(len: usize, salt: i64) -> Vec<i64> {
    (0..len as i64)
        .map(|i| (i * 37 + salt * 11) % 250 + 1)
        .collect()
}
