//! `scripts/gpu-bench.sh` is run on a GPU machine only when a task has one, so its CPU path
//! (`GPU_BENCH_DRY=1`: tiny shapes, same phases) runs here with this build's binaries, and its
//! summary must hold every phase's figures: bench rows with their % of the bandwidth bound, the
//! transformers loop beside them, the server's answers over the engine's, and the KV plan.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's `loadtest` binary, built beside this crate's by `cargo test --workspace`.
fn loadtest_binary() -> PathBuf {
    let t3d = Path::new(env!("CARGO_BIN_EXE_t3d"));
    let path = t3d.with_file_name("loadtest");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_gpu_benchmark_runs_its_whole_path_on_the_cpu_and_summarises_it() {
    let out = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(repo().join("scripts/gpu-bench.sh"))
        .env("GPU_BENCH_DRY", "1")
        .env("OUT", out.path())
        .env("GPU_BENCH_WORK", work.path())
        .env("GPU_BENCH_PORT", free_port().to_string())
        .env("T3D_BIN", env!("CARGO_BIN_EXE_t3d"))
        .env("LOADTEST_BIN", loadtest_binary())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.path().join("summary.json")).unwrap();
    let summary: Value = serde_json::from_str(&text).unwrap();

    let like_for_like = summary["like_for_like"].as_array().unwrap();
    assert_eq!(
        like_for_like.len(),
        3 * 2 + 2 * 2,
        "both shapes' rows at S = 1, 2\n{log}"
    );
    for row in like_for_like {
        assert_eq!(row["forwards_equal"], true, "{row}");
        assert_eq!(row["tokens_equal"], true, "{row}");
        assert!(row["ratio"].as_f64().unwrap() > 0.0, "{row}");
    }

    let bench = summary["bench"].as_array().unwrap();
    for shape in ["tiny", "small"] {
        let rows: Vec<&Value> = bench.iter().filter(|r| r["shape"] == shape).collect();
        assert_eq!(rows.len(), 9, "{shape}: batch 1, 4, 2 x S = 1, 2, 4\n{log}");
        for row in rows {
            let bound = row["hbm_bound_percent"].as_f64().unwrap();
            assert!(bound > 0.0 && row["tokens_per_second"].as_f64().unwrap() > 0.0);
            let ops = row["aten_ops_per_forward"].as_f64().unwrap();
            assert!(ops >= row["kernel_ops_per_forward"].as_f64().unwrap() && ops > 0.0);
            assert_eq!(
                row["sdpa_backend"], "flash",
                "the CPU's fused kernel\n{log}"
            );
        }
    }
    let beside_transformers = bench
        .iter()
        .filter(|r| r["t3d_over_transformers"].as_f64().is_some_and(|x| x > 0.0))
        .count();
    assert_eq!(beside_transformers, 4, "tiny, batch 1 and 2 x S = 1 and 4");

    let server = summary["server"].as_array().unwrap();
    assert_eq!(server.len(), 2, "concurrency 1 and 4\n{log}");
    for level in server {
        assert_eq!(
            (level["completed"].as_u64(), level["lost"].as_u64()),
            (Some(8), Some(0))
        );
        assert!(level["server_over_engine"].as_f64().unwrap() > 0.0);
    }
    let plan = summary["kv_plan"].as_str().unwrap();
    assert!(plan.starts_with("KV cache: "), "{plan}");
    assert_eq!(summary["targets"].as_array().unwrap().len(), 3);
    let table = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(table.contains("% of HBM bound") && table.contains("server / engine"));
}
