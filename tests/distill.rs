//! T3D distillation end to end on a tiny teacher trained in-process: a DDO step raises the
//! student's likelihood of the teacher's tokens, every objective trains, an interrupted and
//! resumed run equals an uninterrupted one, and the CLI runs the whole pipeline.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use t3d::distill::batch::{collate_distill, DistillBatch, DistillData};
use t3d::distill::config::{DistillConfig, Objective};
use t3d::distill::ddo::sequence_log_likelihood;
use t3d::distill::rollout::{
    read_trajectories, rollout, write_trajectories, RolloutConfig, Trajectory,
};
use t3d::distill::trainer::{distill, micro_batch_loss, DistillOptions};
use t3d::model::checkpoint::{self, LoadedModel};
use t3d::model::TextTokenizer;
use t3d::train::config::TrainConfig;
use t3d::train::task::{ArithConfig, ProblemStream, Split};
use t3d::train::trainer::{train, TrainOptions};
use tch::{Device, Kind, Tensor};

/// A 2-layer teacher trained for a few steps, written to `root/teacher`.
fn tiny_teacher(root: &Path) -> PathBuf {
    let cfg = TrainConfig {
        model: common::tiny_train_shape(),
        batch_size: 8,
        steps: 30,
        warmup: 2,
        lr: 3e-3,
        save_every: 0,
        ..TrainConfig::default()
    };
    let out = root.join("teacher");
    let opts = TrainOptions {
        out: out.clone(),
        run_dir: root.join("teacher-run"),
        resume: false,
        device: Device::Cpu,
        progress: false,
        init_from: None,
        stop_after: None,
    };
    train(&cfg, &opts).unwrap();
    out
}

fn load(dir: &Path) -> (LoadedModel, TextTokenizer) {
    let loaded = checkpoint::load(dir, Device::Cpu, Kind::Float).unwrap();
    let tokenizer = TextTokenizer::from_dir(dir, &loaded.config).unwrap();
    (loaded, tokenizer)
}

fn trajectories(teacher: &Path, n: usize) -> Vec<Trajectory> {
    let (loaded, tokenizer) = load(teacher);
    let problems = ProblemStream::new(&ArithConfig::default(), Split::Train, 3).take(n);
    let questions: Vec<String> = problems.iter().map(|p| p.question()).collect();
    let cfg = RolloutConfig {
        max_tokens: 24,
        batch_size: 16,
        ..RolloutConfig::default()
    };
    rollout(&loaded.model, &tokenizer, &questions, &cfg, |_| {}).unwrap()
}

fn small_config(objective: Objective, steps: u64) -> DistillConfig {
    DistillConfig {
        objective,
        batch_size: 4,
        steps,
        warmup: 1,
        lr: 1e-3,
        save_every: 0,
        log_every: 1,
        round_interval: 2,
        eval_n: 0,
        ..DistillConfig::default()
    }
}

fn batch_for(cfg: &DistillConfig, trajs: &[Trajectory], tokenizer: &TextTokenizer) -> DistillBatch {
    let data = DistillData::new(
        trajs,
        cfg,
        tokenizer.mask_id,
        tokenizer.eos_id,
        tokenizer.ordinary_ids(),
    );
    collate_distill(
        &data.batch(0, 0),
        cfg.train_block_size(),
        data.pad_id(),
        Device::Cpu,
    )
}

/// `LL_θ(y)` averaged over the batch's samples.
fn teacher_token_likelihood(model: &LoadedModel, batch: &DistillBatch) -> f64 {
    tch::no_grad(|| {
        let input = t3d::model::qwen3::ForwardInput::new(&batch.ids, &batch.positions, &batch.mask);
        let rows = batch.rows.index_select(0, &batch.masked);
        let hidden = model
            .model
            .hidden_states(&input)
            .flatten(0, 1)
            .index_select(0, &rows);
        let lp = model.model.logits(&hidden).log_softmax(-1, Kind::Float);
        let y = batch.targets.index_select(0, &batch.masked);
        sequence_log_likelihood(&lp, &y, &batch.owner, batch.samples)
            .mean(Kind::Float)
            .double_value(&[])
    })
}

#[test]
fn rollouts_record_one_step_per_token_and_survive_the_jsonl_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = tiny_teacher(dir.path());
    let trajs = trajectories(&teacher, 12);
    for t in &trajs {
        assert_eq!(t.step_map.len(), t.completion_ids.len());
        // b = S = 4: one token per step, so each block's steps are distinct.
        let mut steps = t.step_map.clone();
        steps.sort_unstable();
        steps.dedup();
        assert_eq!(steps.len(), t.step_map.len());
    }
    let path = dir.path().join("t.jsonl");
    write_trajectories(&path, &trajs).unwrap();
    assert_eq!(read_trajectories(&path, 104).unwrap(), trajs);
    let mut bad = serde_json::to_value(&trajs[0]).unwrap();
    bad["step_map"] = serde_json::json!([1]);
    std::fs::write(&path, bad.to_string()).unwrap();
    let err = read_trajectories(&path, 104).unwrap_err().to_string();
    assert!(err.contains("step_map"), "{err}");
}

#[test]
fn one_ddo_step_raises_the_students_likelihood_of_the_teacher_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = tiny_teacher(dir.path());
    let trajs = trajectories(&teacher, 8);
    let (student, tokenizer) = load(&teacher);
    let (reference, _) = load(&teacher);
    let cfg = small_config(Objective::Ddo, 1);
    let batch = batch_for(&cfg, &trajs, &tokenizer);
    let before = teacher_token_likelihood(&student, &batch);
    let (loss, metrics) = micro_batch_loss(&cfg, &student.model, Some(&reference.model), &batch);
    // θ = ref: L_real = ln 2, L_fake = α ln 2.
    assert!((metrics.get("loss_real") - std::f64::consts::LN_2).abs() < 1e-5);
    assert!((metrics.get("loss_fake") - 0.346574).abs() < 1e-5);
    loss.backward();
    tch::no_grad(|| {
        for (_, mut p) in student.vars.variables() {
            let step = p.grad() * 2.0;
            let _ = p.f_sub_(&step).unwrap();
        }
    });
    let after = teacher_token_likelihood(&student, &batch);
    assert!(after > before + 1e-4, "LL(y) {before:.5} -> {after:.5}");
}

#[test]
fn every_objective_trains_with_its_own_loss_terms() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = tiny_teacher(dir.path());
    let trajs = trajectories(&teacher, 8);
    let (student, tokenizer) = load(&teacher);
    for objective in [
        Objective::T3d,
        Objective::Ddo,
        Objective::Td,
        Objective::Sft,
    ] {
        let cfg = small_config(objective, 1);
        let batch = batch_for(&cfg, &trajs, &tokenizer);
        let (loss, m) = micro_batch_loss(&cfg, &student.model, Some(&student.model), &batch);
        let value = loss.double_value(&[]);
        assert!(value.is_finite() && value > 0.0, "{objective:?}: {value}");
        assert_eq!(m.get("loss_real").is_finite(), objective.uses_reference());
        assert_eq!(m.get("path_loss").is_finite(), objective != Objective::Sft);
        if objective == Objective::T3d {
            let expected = m.get("loss_real") + m.get("loss_fake") + 0.2 * m.get("path_loss");
            assert!((value - expected).abs() < 1e-5);
        }
    }
}

fn student_weights(model: &LoadedModel) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model.vars.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[test]
fn interrupted_and_resumed_distillation_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = tiny_teacher(dir.path());
    let trajs = trajectories(&teacher, 8);
    let cfg = small_config(Objective::T3d, 5);
    let opts = |run: &str, stop_after, resume| DistillOptions {
        teacher: teacher.clone(),
        run_dir: dir.path().join(run),
        resume,
        device: Device::Cpu,
        progress: false,
        stop_after,
    };
    let (_, whole) = distill(&cfg, &trajs, &opts("a", None, false)).unwrap();
    let (report, none) = distill(&cfg, &trajs, &opts("b", Some(3), false)).unwrap();
    assert!(none.is_none() && !report.finished);
    let (report, resumed) = distill(&cfg, &trajs, &opts("b", None, true)).unwrap();
    assert_eq!(report.steps_run, 2);
    let (whole, resumed) = (whole.unwrap(), resumed.unwrap());
    for ((name, a), (_, b)) in student_weights(&whole)
        .iter()
        .zip(student_weights(&resumed))
    {
        assert!(
            a.allclose(&b, 1e-6, 1e-7, false),
            "{name} differs after resume"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("b/distill_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 5);
}

#[test]
fn ten_step_distill_cli_run_writes_an_evaluated_few_step_student() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = tiny_teacher(dir.path());
    // Files a real checkpoint carries besides the tokenizer (the template renders as the
    // built-in one, so the rollouts are unchanged).
    let companions = [
        (
            "chat_template.jinja",
            t3d::model::tokenizer::DEFAULT_CHAT_TEMPLATE,
        ),
        (
            "generation_config.json",
            "{\"eos_token_id\": [96], \"top_k\": 20}",
        ),
        (
            "special_tokens_map.json",
            "{\"eos_token\": \"<|endoftext|>\"}",
        ),
    ];
    for (name, text) in companions {
        std::fs::write(teacher.join(name), text).unwrap();
    }
    let out = dir.path().join("student");
    let status = Command::new(env!("CARGO_BIN_EXE_t3d"))
        .args([
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--num-prompts",
            "32",
        ])
        .args([
            "--steps",
            "10",
            "--set",
            "batch_size=4",
            "--set",
            "eval_n=8",
        ])
        .args([
            "--set",
            "rollout.max_tokens=24",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--run-dir", dir.path().join("run").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (student, _) = load(&out);
    // Served with the most accurate evaluated setting at ≥ 3 tokens per forward (else its
    // fastest), as its eval.json measured.
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    let rows: Vec<t3d::train::eval::EvalRow> =
        serde_json::from_value(eval["rows"].clone()).unwrap();
    let floor = t3d::train::frontier::DEFAULT_MIN_TOKENS_PER_FORWARD;
    let best = t3d::train::frontier::recommend(&rows, floor).unwrap();
    assert_eq!(
        t3d::engine::recommended::recommended(&student.config).unwrap(),
        best.denoise()
    );
    for (name, text) in companions.iter().chain(&[("tokenizer.json", "")]) {
        let copied = std::fs::read_to_string(out.join(name))
            .unwrap_or_else(|e| panic!("the student lacks {name}: {e}"));
        assert!(
            text.is_empty() || copied == *text,
            "{name} changed on the way"
        );
    }
    let decodings: Vec<String> = rows.iter().map(|r| r.decoding()).collect();
    assert_eq!(
        decodings,
        [
            "S=1", "S=2", "S=4", "τ=0.5", "τ=0.7", "τ=0.8", "τ=0.9", "τ=0.95", "H≤0.1", "H≤0.35",
            "H≤0.5", "H≤0.7", "H≤0.8", "H≤0.9", "H≤1"
        ]
    );
    let trajs = read_trajectories(&dir.path().join("run/trajectories.jsonl"), 104).unwrap();
    assert_eq!(trajs.len(), 32);
    let log = std::fs::read_to_string(dir.path().join("run/distill_log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 10);
    for key in [
        "loss_real",
        "loss_fake",
        "ll_theta_real",
        "ll_ref_fake",
        "path_loss",
        "lr",
    ] {
        assert!(last[key].is_f64(), "{key} missing from {last}");
    }
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"question\": \"1+2+3\"}\n{\"question\": \"4+5+6\"}\n",
    )
    .unwrap();
    let traj = dir.path().join("traj.jsonl");
    let rolled = Command::new(env!("CARGO_BIN_EXE_t3d"))
        .args(["rollout", "--teacher", teacher.to_str().unwrap()])
        .args([
            "--prompts",
            prompts.to_str().unwrap(),
            "--out",
            traj.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    let questions: Vec<String> = read_trajectories(&traj, 104)
        .unwrap()
        .into_iter()
        .map(|t| t.question)
        .collect();
    assert_eq!(questions, vec!["1+2+3", "4+5+6"]);
    let bad = Command::new(env!("CARGO_BIN_EXE_t3d"))
        .args([
            "distill",
            "--teacher",
            teacher.to_str().unwrap(),
            "--set",
            "beta=-1",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("beta"), "{err}");
}
