//! The `t3d` binary end to end: `init` + `generate` + `bench` + `convert`, one-line errors for
//! bad input (a `distill` filter that cannot check its prompts included), and the CUDA link that
//! `build.rs` forces.

use std::process::{Command, Output};

fn t3d(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_t3d"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn init_then_generate_prints_text_and_one_stats_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let model = model.to_str().unwrap();
    assert!(t3d(&["init", "--out", model, "--seed", "3"])
        .status
        .success());
    let out = t3d(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "Hi there",
        "--chat",
        "--steps-per-block",
        "2",
        "--max-tokens",
        "16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let stats = err
        .lines()
        .find(|l| l.starts_with("[t3d] b=4 S=2"))
        .expect("stats line");
    assert!(
        stats.contains("tokens=16")
            && stats.contains("tokens/forward=")
            && stats.contains("tokens/s="),
        "{stats}"
    );
    // The chat prompt is 27 byte tokens: the first block holds 3 of them and 1 new token
    // (one step), then 15 tokens take 4 blocks of 2 steps. No extra commit forwards.
    assert!(stats.contains("forwards=9"), "{stats}");
}

#[test]
fn bad_input_gets_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let model = model.to_str().unwrap();
    assert!(t3d(&["init", "--out", model]).status.success());
    let absent = dir.path().join("absent");
    let converted = dir.path().join("converted");
    let (absent, converted) = (absent.to_str().unwrap(), converted.to_str().unwrap());
    let cases: [(&[&str], &str); 6] = [
        (
            &["generate", "--model", "/nonexistent", "--prompt", "x"],
            "/nonexistent: no such model directory, bundled model or Hub id",
        ),
        (
            &[
                "generate",
                "--model",
                model,
                "--prompt",
                "x",
                "--steps-per-block",
                "8",
            ],
            "steps_per_block 8",
        ),
        (
            &[
                "generate", "--model", model, "--prompt", "x", "--top-p", "0",
            ],
            "top_p",
        ),
        (&["bench", "--shape", "huge"], "unknown shape"),
        (
            &["convert", "--model", absent, "--out", converted],
            "config.json: No such file",
        ),
        (
            &[
                "convert", "--model", model, "--out", converted, "--dtype", "f8",
            ],
            "unknown dtype",
        ),
    ];
    for (args, needle) in cases {
        let out = t3d(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        let line = err
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{args:?}: {err}"));
        assert!(line.contains(needle), "{args:?}: {line}");
        // The cause is said once, not repeated by the error chain.
        assert!(line.matches("(os error").count() <= 1, "{line}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(
        !std::path::Path::new(converted).exists(),
        "a failed convert wrote {converted}"
    );
}

#[test]
fn convert_writes_a_bf16_copy_that_generates_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let (f32_dir, bf16_dir) = (dir.path().join("f32"), dir.path().join("bf16"));
    let (f32_dir, bf16_dir) = (f32_dir.to_str().unwrap(), bf16_dir.to_str().unwrap());
    assert!(t3d(&["init", "--out", f32_dir, "--seed", "5"])
        .status
        .success());
    let out = t3d(&["convert", "--model", f32_dir, "--out", bf16_dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("of bf16 weights"), "{}", stderr(&out));
    let size = |d: &str| {
        std::fs::metadata(std::path::Path::new(d).join("model.safetensors"))
            .unwrap()
            .len()
    };
    assert!(
        size(bf16_dir) * 10 < size(f32_dir) * 6,
        "{} vs {}",
        size(bf16_dir),
        size(f32_dir)
    );
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        assert!(
            std::path::Path::new(bf16_dir).join(file).exists(),
            "{file} not copied"
        );
    }
    let generated = t3d(&[
        "generate",
        "--model",
        bf16_dir,
        "--prompt",
        "Hi",
        "--max-tokens",
        "8",
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
}

#[test]
fn bench_writes_json_with_one_row_per_setting() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let args = [
        "bench",
        "--shape",
        "tiny",
        "--batch-sizes",
        "1,3",
        "--steps",
        "1,4",
        "--gen-tokens",
        "8",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--json",
        json.to_str().unwrap(),
    ];
    let out = t3d(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let steps = row["steps_per_block"].as_f64().unwrap();
        assert_eq!(
            row["tokens_per_forward"].as_f64().unwrap(),
            4.0 / steps,
            "{row}"
        );
        assert_eq!(
            row["tokens"].as_u64().unwrap(),
            8 * row["batch"].as_u64().unwrap()
        );
    }
}

#[test]
fn binary_links_libtorch_cuda_when_libtorch_has_it() {
    let lib = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/third_party/libtorch/lib/libtorch_cuda.so"
    );
    let readelf = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_t3d")])
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&readelf.stdout);
    assert!(
        std::path::Path::new(lib).exists(),
        "setup installs the CUDA build of PyTorch"
    );
    assert!(
        dynamic.contains("[libtorch_cuda.so]"),
        "--as-needed dropped libtorch_cuda:\n{dynamic}"
    );
}

#[test]
fn keep_correct_refuses_prompts_it_cannot_check_and_writes_no_student() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"question\": \"What is the capital of France?\"}\n",
    )
    .unwrap();
    let (run, out) = (dir.path().join("run"), dir.path().join("student"));
    let output = t3d(&[
        "distill",
        "--prompts",
        prompts.to_str().unwrap(),
        "--set",
        "keep_correct=true",
        "--set",
        "rollout.max_tokens=8",
        "--threads",
        "1",
        "--run-dir",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: ")).expect(&err);
    assert!(
        line.contains("prompt 1 asks \"What is the capital of France?\"")
            && line.contains("not a problem of the bundled task"),
        "{line}"
    );
    assert!(!out.exists(), "a refused distillation wrote a student");
    // Refused before the teacher decoded anything, not after a rollout.
    assert!(
        !run.join("trajectories.jsonl").exists(),
        "rolled out prompts it then refused"
    );
}
