//! The `rollout` and `distill` subcommands: T3D's pipeline from a teacher to an evaluated
//! few-step student (the thin `main` dispatches here).
//!
//! `t3d distill` = rollout (or `--trajectories`) → trajectory self-distillation → evaluation at
//! the configured steps per block → the student written atomically with `eval.json`,
//! `eval.md` and `distill_config.json` next to its weights.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::setup_device;
use crate::config::{DistillArgs, PromptArgs, RolloutArgs};
use crate::engine::GenerationParams;
use crate::model::checkpoint::{self, LoadedModel};
use crate::model::{SdarConfig, TextTokenizer};
use crate::train::distill::{distill, save_student, DistillOptions, DistillReport};
use crate::train::distill_config::DistillConfig;
use crate::train::eval::{evaluate, format_table, max_completion_tokens, EvalRow};
use crate::train::rollout::{
    questions_of, read_questions, read_trajectories, rollout, write_trajectories, Trajectory,
};
use crate::train::task::{test_set, ArithConfig, ProblemStream, Split};

/// The bundled teacher, relative to the sources or the current directory.
fn default_teacher() -> anyhow::Result<PathBuf> {
    let roots = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from("."),
    ];
    roots
        .iter()
        .map(|r| r.join("models").join("arith-teacher"))
        .find(|d| d.join("config.json").exists())
        .context("no bundled teacher under models/arith-teacher; pass --teacher DIR")
}

/// The task a checkpoint was trained on (`t3d_task` in its config), else the default one.
fn task_of(config: &SdarConfig) -> anyhow::Result<ArithConfig> {
    match config.extra.get("t3d_task") {
        Some(v) => serde_json::from_value(v.clone()).context("t3d_task in config.json"),
        None => Ok(ArithConfig::default()),
    }
}

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
        None => default_teacher()?,
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
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        let name = args
            .out
            .file_name()
            .map_or("student".into(), |n| n.to_os_string());
        PathBuf::from("runs").join(name)
    });
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let (teacher, device) = load_teacher(&args.source)?;
    let trajectories = trajectories_for(args, &cfg, &teacher, &run_dir)?;
    let opts = DistillOptions {
        teacher: teacher.dir.clone(),
        run_dir,
        resume: args.resume,
        device,
        progress: true,
        stop_after: args.stop_after,
    };
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
        return write_report(args.report.as_deref(), &report, &[]);
    };
    let rows = evaluate_student(&cfg, &student, &teacher)?;
    print!("{}", format_table(&rows));
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
    save_student(&student, &teacher.dir, &args.out, files)?;
    eprintln!("[t3d] wrote the student to {}", args.out.display());
    write_report(args.report.as_deref(), &report, &rows)
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
    if args.resume && saved.exists() {
        return read_trajectories(&saved, vocab);
    }
    let trajectories = roll_out(&args.source, cfg, teacher)?;
    write_trajectories(&saved, &trajectories)?;
    Ok(trajectories)
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
    for &steps in &cfg.eval_steps {
        let mut params = GenerationParams::default();
        params.denoise.block_size = cfg.rollout.block_size;
        params.denoise.steps_per_block = steps;
        params.sampling.temperature = 0.0;
        params.sampling.seed = Some(0);
        params.stop.max_tokens = max_completion_tokens(&teacher.task);
        params.validate().map_err(anyhow::Error::msg)?;
        let (row, _) = evaluate(&student.model, &teacher.tokenizer, &problems, &params, 64)?;
        rows.push(row);
    }
    Ok(rows)
}

fn eval_record(cfg: &DistillConfig, teacher: &Teacher, rows: &[EvalRow]) -> serde_json::Value {
    serde_json::json!({"teacher": teacher.dir, "objective": cfg.objective.as_str(),
        "task": teacher.task, "remasking": "low_confidence_static", "temperature": 0.0,
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
