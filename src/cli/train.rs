//! The `train` and `eval` subcommands (the thin `main` dispatches here).

use anyhow::Context;

use super::args::{DatasetArgs, EvalArgs, TrainArgs};
use super::common::{model_dir, setup_device};
use crate::engine::recommended::{recommended, set_recommended, Recommendation};
use crate::engine::DenoiseParams;
use crate::model::checkpoint;
use crate::model::SdarConfig;
use crate::model::TextTokenizer;
use crate::train::config::TrainConfig;
use crate::train::eval::{
    eval_params, evaluate, format_table, max_completion_tokens, settings, task_of, EvalRow,
};
use crate::train::frontier::{recommend, DEFAULT_MIN_TOKENS_PER_FORWARD};
use crate::train::plot::{accuracy_vs_steps, Series};
use crate::train::task::{
    test_set, ArithConfig, Problem, ProblemRecord, ProblemStream, Score, Split,
};
use crate::train::trainer::{train, TrainOptions};

fn check_task(task: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        task == "arith",
        "unknown task `{task}` (the bundled task is `arith`)"
    );
    Ok(())
}

/// `t3d train`: trains (or resumes) a model and prints a one-line report.
pub fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    check_task(&args.task)?;
    let (device, _) = setup_device(&args.device)?;
    let mut cfg = match &args.config {
        Some(path) => TrainConfig::from_file(path).map_err(anyhow::Error::msg)?,
        None => TrainConfig::default(),
    };
    if let Some(steps) = args.steps {
        cfg.steps = steps;
    }
    let opts = TrainOptions {
        out: args.run.out.clone(),
        run_dir: args.run.run_dir(),
        resume: args.run.resume,
        device,
        progress: true,
        stop_after: args.run.stop_after,
        init_from: args.init_from.clone(),
    };
    let report = train(&cfg, &opts)?;
    eprintln!(
        "[t3d] trained {} steps in {:.0} s, final loss {:.4}, {} parameters -> {}",
        report.steps_run,
        report.seconds,
        report.final_loss,
        report.parameters,
        args.run.out.display()
    );
    if let Some(path) = &args.run.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `t3d eval`: scores a model on held-out problems for each steps-per-block setting.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    check_task(&args.task)?;
    let (device, kind) = setup_device(&args.device)?;
    let dir = model_dir(args.model.as_deref())?;
    let loaded = checkpoint::load(&dir, device, kind)?;
    let tokenizer = TextTokenizer::from_dir(&dir, &loaded.config)?;
    let task = task_of(&loaded.config)?;
    let problems = test_set(&task, args.n);
    let served = recommended(&loaded.config).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    let mut dump = String::new();
    for denoise in eval_settings(args, &served) {
        let params = eval_params(denoise, args.temperature, max_completion_tokens(&task));
        params.validate().map_err(anyhow::Error::msg)?;
        let (row, scored) = evaluate(
            &loaded.model,
            &tokenizer,
            &problems,
            &params,
            args.batch_size,
        )?;
        dump.push_str(&dump_lines(&row, &problems, &scored));
        let marker = if params.denoise == served {
            print!("{}", show_examples(&problems, &scored, args.show));
            " (served default)"
        } else {
            ""
        };
        eprintln!(
            "[t3d] {}{marker}: accuracy {:.1}% at {:.2} tokens/forward in {:.1} s",
            row.decoding(),
            100.0 * row.answer_accuracy,
            row.tokens_per_forward,
            row.seconds
        );
        rows.push(row);
    }
    print!("{}", format_table(&rows));
    if args.recommend {
        write_recommendation(&dir, &rows)?;
    }
    if let Some(path) = &args.json {
        let record = serde_json::json!({"model": dir, "task": task, "remasking": args.remasking,
            "temperature": args.temperature, "served_default": Recommendation::of(&served),
            "rows": rows});
        std::fs::write(path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.dump {
        std::fs::write(path, dump).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let series = Series {
            label: dir.display().to_string(),
            points: rows
                .iter()
                .filter(|r| r.is_static())
                .map(|r| (r.steps_per_block as f64, 100.0 * r.answer_accuracy))
                .collect(),
        };
        accuracy_vs_steps(
            path,
            "arith: accuracy vs steps per block (b = 4)",
            &[series],
        )?;
    }
    Ok(())
}

/// Writes the setting [`recommend`] picks from `rows` into `dir/config.json` (atomically).
fn write_recommendation(dir: &std::path::Path, rows: &[EvalRow]) -> anyhow::Result<()> {
    let best = recommend(rows, DEFAULT_MIN_TOKENS_PER_FORWARD)
        .context("--recommend: nothing was evaluated")?;
    let path = dir.join("config.json");
    let mut config = SdarConfig::from_file(&path)?;
    set_recommended(&mut config, &best.denoise());
    crate::admin::jobs::write_atomic(&path, &serde_json::to_vec_pretty(&config)?)?;
    eprintln!(
        "[t3d] recommended decoding {} ({:.1}% at {:.2} tokens/forward) written to {}",
        best.decoding(),
        100.0 * best.answer_accuracy,
        best.tokens_per_forward,
        path.display()
    );
    Ok(())
}

/// The settings `args` asks for, plus the model's recommended decoding when it is not among them.
fn eval_settings(args: &EvalArgs, served: &DenoiseParams) -> Vec<DenoiseParams> {
    let mut all = settings(
        args.block_size,
        &args.steps,
        args.remasking,
        &args.thresholds,
        &args.entropy_bounds,
    );
    if served.block_size == args.block_size && !all.contains(served) {
        all.push(served.clone());
    }
    all
}

/// `t3d dataset`: writes problems of one split as JSONL.
pub fn run_dataset(args: &DatasetArgs) -> anyhow::Result<()> {
    check_task(&args.task)?;
    let task = match &args.config {
        Some(path) => {
            TrainConfig::from_file(path)
                .map_err(anyhow::Error::msg)?
                .task
        }
        None => ArithConfig::default(),
    };
    let (split, problems) = match args.split.as_str() {
        "test" => (Split::Test, test_set(&task, args.n)),
        "train" => (
            Split::Train,
            ProblemStream::new(&task, Split::Train, args.seed).take(args.n),
        ),
        other => anyhow::bail!("unknown split `{other}` (train, test)"),
    };
    let mut text = String::new();
    for p in &problems {
        text.push_str(&serde_json::to_string(&ProblemRecord::new(p, split))?);
        text.push('\n');
    }
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "[t3d] wrote {} {} problems to {}",
        problems.len(),
        args.split,
        args.out.display()
    );
    Ok(())
}

/// JSONL lines of one setting's completions with their scores.
/// The first `n` problems as `question → completion`, marked right or wrong.
fn show_examples(problems: &[Problem], scored: &[(String, Score)], n: usize) -> String {
    let mut out = String::new();
    for (problem, (text, score)) in problems.iter().zip(scored).take(n) {
        let verdict = if score.answer_correct {
            "right".to_string()
        } else {
            format!("wrong, the answer is {}", problem.answer())
        };
        out.push_str(&format!(
            "{} → {}   [{verdict}]\n",
            problem.question(),
            text.trim()
        ));
    }
    if n > 0 {
        out.push('\n');
    }
    out
}

fn dump_lines(row: &EvalRow, problems: &[Problem], scored: &[(String, Score)]) -> String {
    let mut out = String::new();
    for (problem, (text, score)) in problems.iter().zip(scored) {
        let line = serde_json::json!({"steps_per_block": row.steps_per_block,
            "decoding": row.decoding(), "question": problem.question(),
            "answer": problem.answer(), "completion": text, "answer_correct": score.answer_correct,
            "trace_valid": score.trace_valid});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}
