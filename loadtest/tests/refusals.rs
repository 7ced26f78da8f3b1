//! The load generator refuses what it must not run before it sends anything: a target off
//! loopback, a soak without a rate, a scenario that makes no sense. Each refusal exits non-zero
//! with a message that names the cause. (These tests also make `cargo test --workspace` build
//! the `loadtest` binary that t3d's own `gpu_bench_script` test drives.)

use std::process::{Command, Output};

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("the loadtest binary runs")
}

fn refused_with(output: &Output, cause: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted; stderr: {stderr}");
    assert!(stderr.contains(cause), "stderr lacks `{cause}`: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "a refused run printed a report: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_target_off_loopback_is_refused() {
    let output = loadtest(&["--url", "http://10.1.2.3:8000", "--concurrency", "1"]);
    refused_with(&output, "loadtest only targets loopback, not `10.1.2.3`");
}

#[test]
fn a_grpc_target_off_loopback_is_refused() {
    let output = loadtest(&["--grpc", "http://example.com:50051"]);
    refused_with(&output, "not `example.com`");
}

#[test]
fn a_soak_needs_a_rate() {
    let output = loadtest(&["--soak", "1"]);
    refused_with(&output, "--soak needs a rate (--rates R)");
}

#[test]
fn a_scenario_with_an_empty_mix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.toml");
    std::fs::write(&path, "mix = []\nconcurrency = [1]\n").unwrap();
    let output = loadtest(&["--scenario", path.to_str().unwrap()]);
    refused_with(&output, "the mix is empty");
}
