//! `t3d compare`: eval.json files side by side. One table of accuracy per static steps-per-block
//! setting, one table of every setting on the accuracy / tokens-per-forward frontier (runs that
//! share a label are seeds and are pooled), and PNG plots of both.

use anyhow::Context;

use super::args::CompareArgs;
use crate::train::eval::EvalRow;
use crate::train::frontier::{best_at_least, dominates_over, pareto_optimal, pool, Point, Pooled};
use crate::train::plot::{accuracy_vs_steps, frontier, FrontierSeries, Series};

/// `t3d compare`: the static table, the frontier table, and with `--plot` / `--frontier` their
/// plots.
pub fn run_compare(args: &CompareArgs) -> anyhow::Result<()> {
    let mut models: Vec<(String, Vec<EvalRow>)> = Vec::new();
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
    let pooled = pooled_by_label(&models);
    print!("\n{}", frontier_table(&pooled));
    if let Some(baseline) = &args.baseline {
        print!("\n{}", domination_report(&pooled, baseline)?);
    }
    if let Some(path) = &args.frontier {
        frontier(
            path,
            "arith, b = 4: accuracy against tokens per forward",
            &frontier_series(&pooled),
        )?;
    }
    if let Some(path) = &args.plot {
        let series: Vec<Series> = models
            .iter()
            .map(|(label, rows)| Series {
                label: label.clone(),
                points: rows
                    .iter()
                    .filter(|r| r.is_static())
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
        .flat_map(|(_, rows)| {
            rows.iter()
                .filter(|r| r.is_static())
                .map(|r| r.steps_per_block)
        })
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
            match rows
                .iter()
                .find(|r| r.is_static() && r.steps_per_block == *s)
            {
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

/// One line per model: whether its frontier dominates `baseline`'s from 1 to 4 tokens per
/// forward, else the first speed where it does not.
fn domination_report(pooled: &[(String, Vec<Pooled>)], baseline: &str) -> anyhow::Result<String> {
    let points = |settings: &[Pooled]| settings.iter().map(|p| p.point).collect::<Vec<_>>();
    let base = pooled
        .iter()
        .find(|(label, _)| label == baseline)
        .map(|(_, settings)| points(settings))
        .with_context(|| format!("--baseline {baseline}: no --eval has that label"))?;
    let mut out = String::new();
    for (label, settings) in pooled.iter().filter(|(l, _)| l != baseline) {
        let ours = points(settings);
        let verdict = match dominates_over(&ours, &base, 1.0, 4.0) {
            Ok(()) => "dominates it".to_string(),
            Err(level) => format!(
                "does not dominate it: at ≥ {level:.2} tokens/forward its best is {:.1}%, {baseline}'s {:.1}%",
                100.0 * best_at_least(&ours, level).unwrap_or(0.0),
                100.0 * best_at_least(&base, level).unwrap_or(0.0)
            ),
        };
        out.push_str(&format!(
            "{label} against {baseline}, 1 to 4 tokens/forward: {verdict}\n"
        ));
    }
    Ok(out)
}

/// Every label's runs pooled setting by setting, labels in first-seen order.
fn pooled_by_label(models: &[(String, Vec<EvalRow>)]) -> Vec<(String, Vec<Pooled>)> {
    let mut labels: Vec<&String> = Vec::new();
    for (label, _) in models {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels
        .into_iter()
        .map(|label| {
            let runs: Vec<Vec<EvalRow>> = models
                .iter()
                .filter(|(l, _)| l == label)
                .map(|(_, rows)| rows.clone())
                .collect();
            (label.clone(), pool(&runs))
        })
        .collect()
}

/// Pareto-optimality of every pooled setting against all models' settings, label by label.
fn pareto_flags(pooled: &[(String, Vec<Pooled>)]) -> Vec<Vec<bool>> {
    let points: Vec<Point> = pooled
        .iter()
        .flat_map(|(_, settings)| settings.iter().map(|p| p.point))
        .collect();
    let mut flags = pareto_optimal(&points).into_iter();
    pooled
        .iter()
        .map(|(_, settings)| {
            settings
                .iter()
                .map(|_| flags.next().unwrap_or(false))
                .collect()
        })
        .collect()
}

/// Markdown: a row per model and setting, sorted by speed, with the standard error (the spread
/// across seeds when a label has several runs) and a mark on the Pareto-optimal settings.
pub fn frontier_table(pooled: &[(String, Vec<Pooled>)]) -> String {
    let mut out = String::from(
        "| model | decoding | runs | answer acc ± se | tokens/forward | Pareto |\n|---|---|---|---|---|---|\n",
    );
    for ((label, settings), flags) in pooled.iter().zip(pareto_flags(pooled)) {
        let mut order: Vec<usize> = (0..settings.len()).collect();
        order.sort_by(|&a, &b| {
            let speed = |i: usize| settings[i].point.tokens_per_forward;
            speed(a).total_cmp(&speed(b))
        });
        for i in order {
            let p = &settings[i];
            out.push_str(&format!(
                "| {label} | {} | {} | {:.1}% ± {:.1} | {:.2} | {} |\n",
                p.decoding,
                p.runs,
                100.0 * p.point.accuracy,
                100.0 * p.accuracy_se,
                p.point.tokens_per_forward,
                if flags[i] { "yes" } else { "" }
            ));
        }
    }
    out
}

fn frontier_series(pooled: &[(String, Vec<Pooled>)]) -> Vec<FrontierSeries> {
    pooled
        .iter()
        .zip(pareto_flags(pooled))
        .map(|((label, settings), flags)| FrontierSeries {
            label: label.clone(),
            points: settings
                .iter()
                .zip(flags)
                .map(|(p, best)| {
                    let (x, y) = (p.point.tokens_per_forward, 100.0 * p.point.accuracy);
                    (x, y, 100.0 * p.accuracy_se, best)
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(steps: usize, acc: f64, valid: f64) -> EvalRow {
        EvalRow {
            block_size: 4,
            steps_per_block: steps,
            remasking: crate::engine::Remasking::LowConfidenceStatic,
            threshold: None,
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

    #[test]
    fn frontier_table_pools_seeds_sorts_by_speed_and_marks_the_pareto_settings() {
        let at = |steps: usize, acc: f64, tpf: f64| EvalRow {
            tokens_per_forward: tpf,
            n: 1000,
            ..row(steps, acc, acc)
        };
        let models = vec![
            (
                "teacher".to_string(),
                vec![at(4, 0.94, 0.95), at(1, 0.35, 3.6)],
            ),
            ("t3d".to_string(), vec![at(1, 0.70, 3.6), at(4, 0.93, 0.96)]),
            ("t3d".to_string(), vec![at(1, 0.74, 3.6), at(4, 0.93, 0.96)]),
        ];
        let table = frontier_table(&pooled_by_label(&models));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        // The teacher's S=4 (0.94 at 0.95) is beaten by nothing; its S=1 is beaten by t3d's.
        assert_eq!(lines[2], "| teacher | S=4 | 1 | 94.0% ± 0.8 | 0.95 | yes |");
        assert_eq!(lines[3], "| teacher | S=1 | 1 | 35.0% ± 1.5 | 3.60 |  |");
        assert_eq!(lines[4], "| t3d | S=4 | 2 | 93.0% ± 0.0 | 0.96 | yes |");
        // Two seeds at 70% and 74%: mean 72%, standard error of the mean 2 points.
        assert_eq!(lines[5], "| t3d | S=1 | 2 | 72.0% ± 2.0 | 3.60 | yes |");
    }
}
