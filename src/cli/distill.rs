//! The `rollout` and `distill` subcommands: T3D's pipeline from a teacher to an evaluated
//! few-step student (the thin `main` dispatches here).
//!
//! `t3d distill` = rollout (or `--trajectories`) → trajectory self-distillation → evaluation at
//! the configured steps per block → the student written atomically with `eval.json`,
//! `eval.md` and `distill_config.json` next to its weights.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::args::{DistillArgs, PromptArgs, RolloutArgs};
use super::common::{bundled_model, setup_device};
use crate::distill::config::DistillConfig;
use crate::distill::filter::{checkable_problem, keep_correct};
use crate::distill::rollout::{
    questions_of, read_questions, read_trajectories, rollout, write_trajectories, Trajectory,
};
use crate::distill::trainer::{distill, save_student, DistillOptions, DistillReport};
use crate::engine::recommended::set_recommended;
use crate::engine::Remasking;
use crate::model::checkpoint::{self, LoadedModel};
use crate::model::TextTokenizer;
use crate::train::eval::{
    eval_params, evaluate, format_table, max_completion_tokens, settings, task_of, EvalRow,
};
use crate::train::frontier::recommend;
use crate::train::task::{test_set, ArithConfig, ProblemStream, Split};

struct Teacher {
    dir: PathBuf,
    loaded: LoadedModel,
    tokenizer: TextTokenizer,
    task: ArithConfig,
}

fn load_teacher(args: &PromptArgs) -> anyhow::Result<(Teacher, tch::Device)> {
    let (device, _) = setup_device(&args.device)?;
    let dir = match &args.teacher {
        Some(dir) => dir.clone(),
        None => bundled_model(&["arith-teacher"])?,
    };
    let loaded = checkpoint::load(&dir, device, tch::Kind::Float)?;
    let tokenizer = TextTokenizer::from_dir(&dir, &loaded.config)?;
    let task = task_of(&loaded.config)?;
    let teacher = Teacher {
        dir,
        loaded,
        tokenizer,
        task,
    };
    Ok((teacher, device))
}

/// Rolls the teacher out on the prompts `args` names, with a progress bar.
fn roll_out(
    args: &PromptArgs,
    cfg: &DistillConfig,
    teacher: &Teacher,
) -> anyhow::Result<Vec<Trajectory>> {
    let questions = match &args.prompts {
        Some(path) => read_questions(path)?,
        None => {
            let problems = ProblemStream::new(&teacher.task, Split::Train, args.prompt_seed)
                .take(args.num_prompts);
            questions_of(&problems)
        }
    };
    if cfg.keep_correct {
        for (i, question) in questions.iter().enumerate() {
            checkable_problem(i, question)?;
        }
    }
    let mut rollout_cfg = cfg.rollout;
    if rollout_cfg.max_tokens == 0 {
        rollout_cfg.max_tokens = max_completion_tokens(&teacher.task);
    }
    let bar = indicatif::ProgressBar::new(questions.len() as u64);
    let start = std::time::Instant::now();
    let out = rollout(
        &teacher.loaded.model,
        &teacher.tokenizer,
        &questions,
        &rollout_cfg,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let ended = out.iter().filter(|t| t.finish_reason == "stop").count();
    eprintln!(
        "[t3d] rolled out {} prompts in {:.1} s ({} ended with EOS)",
        out.len(),
        start.elapsed().as_secs_f64(),
        ended
    );
    Ok(out)
}

/// `t3d rollout`: writes the teacher's trajectories on the prompts.
pub fn run_rollout(args: &RolloutArgs) -> anyhow::Result<()> {
    let cfg = DistillConfig::load(args.source.config.as_deref(), &args.source.set)
        .map_err(anyhow::Error::msg)?;
    let (teacher, _) = load_teacher(&args.source)?;
    let trajectories = roll_out(&args.source, &cfg, &teacher)?;
    write_trajectories(&args.out, &trajectories)?;
    eprintln!("[t3d] wrote {}", args.out.display());
    Ok(())
}

/// `t3d distill`: rollout (unless given), distillation, evaluation, the student on disk.
pub fn run_distill(args: &DistillArgs) -> anyhow::Result<()> {
    let mut cfg = DistillConfig::load(args.source.config.as_deref(), &args.source.set)
        .map_err(anyhow::Error::msg)?;
    if let Some(objective) = args.objective {
        cfg.objective = objective;
    }
    if let Some(steps) = args.steps {
        cfg.steps = steps;
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    let run_dir = args.run.run_dir();
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let status = args.status_file.as_deref();
    report_phase(status, "rollout")?;
    let (teacher, device) = load_teacher(&args.source)?;
    let mut trajectories = trajectories_for(args, &cfg, &teacher, &run_dir)?;
    if cfg.keep_correct {
        trajectories = keep_correct_only(trajectories, &teacher.tokenizer)?;
    }
    let opts = DistillOptions {
        teacher: teacher.dir.clone(),
        run_dir,
        resume: args.run.resume,
        device,
        progress: true,
        stop_after: args.run.stop_after,
    };
    report_phase(status, "training")?;
    let (report, student) = distill(&cfg, &trajectories, &opts)?;
    eprintln!(
        "[t3d] distilled ({}) {} steps in {:.0} s, final loss {:.4}",
        cfg.objective.as_str(),
        report.steps_run,
        report.seconds,
        report.final_loss
    );
    let Some(student) = student else {
        eprintln!("[t3d] stopped early; continue with --resume");
        return write_report(args.run.report.as_deref(), &report, &[]);
    };
    report_phase(status, "evaluating")?;
    let mut student = student;
    let rows = evaluate_student(&cfg, &student, &teacher)?;
    print!("{}", format_table(&rows));
    if let Some(best) = recommend(&rows, cfg.serve_min_tokens_per_forward) {
        let decoding = best.denoise();
        eprintln!(
            "[t3d] serving default: {} ({:.1}% at {:.2} tokens/forward)",
            best.decoding(),
            100.0 * best.answer_accuracy,
            best.tokens_per_forward
        );
        set_recommended(&mut student.config, &decoding);
    }
    let files = vec![
        (
            "eval.json".into(),
            serde_json::to_vec_pretty(&eval_record(&cfg, &teacher, &rows))?,
        ),
        ("eval.md".into(), format_table(&rows).into_bytes()),
        (
            "distill_config.json".into(),
            serde_json::to_vec_pretty(&cfg)?,
        ),
    ];
    save_student(&student, &teacher.dir, &args.run.out, files)?;
    eprintln!("[t3d] wrote the student to {}", args.run.out.display());
    write_report(args.run.report.as_deref(), &report, &rows)
}

/// Writes `{"phase": …}` to the `--status-file`, if any (atomically).
fn report_phase(path: Option<&Path>, phase: &str) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let body = serde_json::json!({"phase": phase, "at": crate::admin::jobs::unix_now()});
    crate::admin::jobs::write_atomic(path, body.to_string().as_bytes())
}

/// `--trajectories`, else the run directory's from an earlier invocation when resuming, else a
/// fresh rollout saved into the run directory.
fn trajectories_for(
    args: &DistillArgs,
    cfg: &DistillConfig,
    teacher: &Teacher,
    run_dir: &Path,
) -> anyhow::Result<Vec<Trajectory>> {
    let vocab = teacher.loaded.config.vocab_size;
    if let Some(path) = &args.trajectories {
        return read_trajectories(path, vocab);
    }
    let saved = run_dir.join("trajectories.jsonl");
    if args.run.resume && saved.exists() {
        return read_trajectories(&saved, vocab);
    }
    let trajectories = roll_out(&args.source, cfg, teacher)?;
    write_trajectories(&saved, &trajectories)?;
    Ok(trajectories)
}

/// The trajectories with a correct answer (`keep_correct`), saying how many were dropped.
fn keep_correct_only(
    trajectories: Vec<Trajectory>,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<Vec<Trajectory>> {
    let total = trajectories.len();
    let filtered = keep_correct(trajectories, |ids| Ok(tokenizer.decode(ids, true)?))?;
    eprintln!(
        "[t3d] keep_correct: training on {} of {total} trajectories ({} with a wrong answer dropped)",
        filtered.kept.len(),
        filtered.dropped
    );
    Ok(filtered.kept)
}

fn evaluate_student(
    cfg: &DistillConfig,
    student: &LoadedModel,
    teacher: &Teacher,
) -> anyhow::Result<Vec<EvalRow>> {
    if cfg.eval_n == 0 {
        return Ok(Vec::new());
    }
    let problems = test_set(&teacher.task, cfg.eval_n);
    let mut rows = Vec::new();
    let all = settings(
        cfg.rollout.block_size,
        &cfg.eval_steps,
        Remasking::LowConfidenceStatic,
        &cfg.eval_thresholds,
        &cfg.eval_entropy_bounds,
    );
    for denoise in all {
        let params = eval_params(denoise, 0.0, max_completion_tokens(&teacher.task));
        params.validate().map_err(anyhow::Error::msg)?;
        let (row, _) = evaluate(&student.model, &teacher.tokenizer, &problems, &params, 64)?;
        rows.push(row);
    }
    Ok(rows)
}

fn eval_record(cfg: &DistillConfig, teacher: &Teacher, rows: &[EvalRow]) -> serde_json::Value {
    serde_json::json!({"teacher": teacher.dir, "objective": cfg.objective.as_str(),
        "task": teacher.task, "remasking": "low_confidence_static", "temperature": 0.0,
        "served_default": recommend(rows, cfg.serve_min_tokens_per_forward).map(EvalRow::decoding),
        "rows": rows})
}

fn write_report(
    path: Option<&Path>,
    report: &DistillReport,
    rows: &[EvalRow],
) -> anyhow::Result<()> {
    if let Some(path) = path {
        let record = serde_json::json!({"train": report, "eval": rows});
        std::fs::write(path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
