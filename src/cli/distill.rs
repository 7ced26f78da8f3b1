//! The `rollout` and `distill` subcommands: T3D's pipeline from a teacher to an evaluated
//! few-step student (the thin `main` dispatches here).
//!
//! `t3d distill` = rollout (or `--trajectories`) → trajectory self-distillation → evaluation at
//! the configured steps per block → the student written atomically with `eval.json`,
//! `eval.md` and `distill_config.json` next to its weights.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::args::{CompareArgs, DistillArgs, PromptArgs, RolloutArgs};
use super::common::{bundled_model, setup_device};
use crate::distill::config::DistillConfig;
use crate::distill::rollout::{
    questions_of, read_questions, read_trajectories, rollout, write_trajectories, Trajectory,
};
use crate::distill::trainer::{distill, save_student, DistillOptions, DistillReport};
use crate::engine::GenerationParams;
use crate::model::checkpoint::{self, LoadedModel};
use crate::model::TextTokenizer;
use crate::train::eval::{evaluate, format_table, max_completion_tokens, task_of, EvalRow};
use crate::train::plot::{accuracy_vs_steps, Series};
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
    let trajectories = trajectories_for(args, &cfg, &teacher, &run_dir)?;
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

/// `t3d compare`: one table row per `LABEL=eval.json` (answer accuracy / trace validity at each
/// steps-per-block setting) and, with `--plot`, accuracy against S per model.
pub fn run_compare(args: &CompareArgs) -> anyhow::Result<()> {
    let mut models = Vec::new();
    for item in &args.evals {
        let (label, path) = item
            .split_once('=')
            .with_context(|| format!("--eval {item}: expected LABEL=FILE"))?;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let record: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?;
        let rows: Vec<EvalRow> = serde_json::from_value(record["rows"].clone())
            .with_context(|| format!("{path}: no `rows` of an eval.json"))?;
        models.push((label.to_string(), rows));
    }
    print!("{}", comparison_table(&models));
    if let Some(path) = &args.plot {
        let series: Vec<Series> = models
            .iter()
            .map(|(label, rows)| Series {
                label: label.clone(),
                points: rows
                    .iter()
                    .map(|r| (r.steps_per_block as f64, 100.0 * r.answer_accuracy))
                    .collect(),
            })
            .collect();
        accuracy_vs_steps(
            path,
            "arith, b = 4: answer accuracy vs steps per block",
            &series,
        )?;
    }
    Ok(())
}

/// Markdown: a row per model, a column per S with `accuracy / validity` in %.
pub fn comparison_table(models: &[(String, Vec<EvalRow>)]) -> String {
    let mut steps: Vec<usize> = models
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.steps_per_block))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let mut out = String::from("| model |");
    for s in &steps {
        out.push_str(&format!(" S={s} acc / valid |"));
    }
    out.push_str(&format!("\n|---|{}\n", "---|".repeat(steps.len())));
    for (label, rows) in models {
        out.push_str(&format!("| {label} |"));
        for s in &steps {
            match rows.iter().find(|r| r.steps_per_block == *s) {
                Some(r) => out.push_str(&format!(
                    " {:.1}% / {:.1}% |",
                    100.0 * r.answer_accuracy,
                    100.0 * r.trace_validity
                )),
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(steps: usize, acc: f64, valid: f64) -> EvalRow {
        EvalRow {
            block_size: 4,
            steps_per_block: steps,
            n: 10,
            answer_accuracy: acc,
            trace_validity: valid,
            tokens_per_forward: 1.0,
            tokens_per_second: 1.0,
            seconds: 1.0,
        }
    }

    #[test]
    fn comparison_rows_align_steps_and_mark_missing_settings() {
        let models = vec![
            (
                "teacher".to_string(),
                vec![row(1, 0.345, 0.286), row(4, 0.943, 0.941)],
            ),
            ("t3d".to_string(), vec![row(1, 0.9, 0.85)]),
        ];
        let table = comparison_table(&models);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| model | S=1 acc / valid | S=4 acc / valid |");
        assert_eq!(lines[2], "| teacher | 34.5% / 28.6% | 94.3% / 94.1% |");
        assert_eq!(lines[3], "| t3d | 90.0% / 85.0% | – |");
    }
}
