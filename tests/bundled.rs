//! The committed models through the binary: `t3d eval` scores the teacher
//! (`models/arith-teacher`) on held-out problems (table, JSON, PNG), the T3D student
//! (`models/arith-student`) beats it at one step per block and is the default model of
//! `generate`, and `t3d dataset` exports the same held-out problems.

use std::path::Path;
use std::process::{Command, Output};

fn t3d(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_t3d"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .env_remove("T3D_MODEL")
        .output()
        .unwrap()
}

const TEACHER: &str = "models/arith-teacher";
const STUDENT: &str = "models/arith-student";

/// Stdout of a run that must succeed.
fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn eval_on_the_committed_teacher_writes_table_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("eval.json");
    let plot = dir.path().join("eval.png");
    let out = t3d(&[
        "eval",
        "--model",
        TEACHER,
        "--task",
        "arith",
        "--n",
        "48",
        "--steps",
        "1,4",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    let table = stdout_of(&out);
    assert!(
        table.contains("| 4 | S=1 | 48 |") && table.contains("| 4 | S=4 | 48 |"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let acc = |i: usize| report["rows"][i]["answer_accuracy"].as_f64().unwrap();
    let tpf = |i: usize| report["rows"][i]["tokens_per_forward"].as_f64().unwrap();
    // Full-step decoding solves nearly all of them; one step per block visibly fails.
    assert!(acc(1) >= 0.85, "S=4 accuracy {}", acc(1));
    assert!(acc(0) <= acc(1) - 0.2, "S=1 {} vs S=4 {}", acc(0), acc(1));
    assert!(
        tpf(0) > 3.0 && tpf(1) < 1.05,
        "tokens per forward {} / {}",
        tpf(0),
        tpf(1)
    );
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
}

#[test]
fn generate_defaults_to_the_students_recommended_decoding() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(STUDENT)
        .join("config.json");
    let config = t3d::model::SdarConfig::from_file(&config).unwrap();
    let served = t3d::engine::recommended::recommended(&config).unwrap();
    let out = t3d(&[
        "generate",
        "--chat",
        "--prompt",
        "12+7+3",
        "--temperature",
        "0",
        "--threads",
        "1",
    ]);
    let text = stdout_of(&out);
    let stats = String::from_utf8_lossy(&out.stderr);
    let expected = format!("b=4 S={} {} ", served.steps_per_block, served.policy());
    assert!(stats.contains(&expected), "{stats} lacks {expected}");
    let answer = text.trim().rsplit('#').next().unwrap();
    assert!(
        !answer.is_empty() && answer.chars().all(|c| c.is_ascii_digit()),
        "{text}"
    );
}

/// Answer accuracy of `model` at one step per block on the first `n` held-out problems.
fn one_step_accuracy(model: &str, n: usize, dir: &Path) -> f64 {
    let json = dir.join(format!("{}.json", model.replace('/', "_")));
    let n = n.to_string();
    let args = ["eval", "--model", model, "--n", &n, "--steps", "1"];
    stdout_of(&t3d(&[
        &args[..],
        &["--threads", "1", "--json", json.to_str().unwrap()],
    ]
    .concat()));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    report["rows"][0]["answer_accuracy"].as_f64().unwrap()
}

#[test]
fn the_committed_student_beats_its_teacher_at_one_step_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = one_step_accuracy(TEACHER, 200, dir.path());
    let student = one_step_accuracy(STUDENT, 200, dir.path());
    // Measured on 1000 problems: 34.5% vs ~70% (docs/results.md).
    assert!(
        student >= teacher + 0.2,
        "student {student:.3} vs teacher {teacher:.3} at S = 1"
    );
}

#[test]
fn dataset_exports_the_held_out_problems_as_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.jsonl");
    let out = t3d(&[
        "dataset",
        "--split",
        "test",
        "--n",
        "5",
        "--out",
        file.to_str().unwrap(),
    ]);
    stdout_of(&out);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let ops: Vec<u64> = l["operands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(l["answer"].as_u64().unwrap(), ops.iter().sum::<u64>());
        assert_eq!(l["split"], "test");
        assert!(l["reference_trace"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#{}", l["answer"])));
    }
    let bad = t3d(&[
        "dataset",
        "--split",
        "dev",
        "--n",
        "1",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown split `dev`"));
}
