//! The accuracy / tokens-per-forward frontier of evaluated decoding settings (pure): which
//! settings are Pareto-optimal, whether one model's frontier dominates another's over a range of
//! speeds, the setting a checkpoint should be served with (the most accurate above a speed
//! floor), and seeds pooled into one curve.

use super::eval::EvalRow;

/// One setting on the plane: tokens per forward (speed) and answer accuracy, both higher-better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Completion tokens per forward pass.
    pub tokens_per_forward: f64,
    /// Answer accuracy in [0, 1].
    pub accuracy: f64,
}

impl From<&EvalRow> for Point {
    fn from(r: &EvalRow) -> Self {
        Self {
            tokens_per_forward: r.tokens_per_forward,
            accuracy: r.answer_accuracy,
        }
    }
}

/// Accuracies closer than this are equal: a mean over seeds (0.978, 0.984, 0.984) is
/// 0.98199999… in floating point, not the 0.982 it is; real differences are ≥ 1 / n.
const ACCURACY_TOLERANCE: f64 = 1e-9;

/// Whether accuracy `a` is at least `b`, up to floating-point rounding.
fn at_least_as_accurate(a: f64, b: f64) -> bool {
    a >= b - ACCURACY_TOLERANCE
}

/// Whether `a` dominates `b`: at least as fast and as accurate, strictly better in one.
fn dominates(a: Point, b: Point) -> bool {
    let more_accurate = !at_least_as_accurate(b.accuracy, a.accuracy);
    a.tokens_per_forward >= b.tokens_per_forward
        && at_least_as_accurate(a.accuracy, b.accuracy)
        && (a.tokens_per_forward > b.tokens_per_forward || more_accurate)
}

/// For each point, whether no other point dominates it.
pub fn pareto_optimal(points: &[Point]) -> Vec<bool> {
    points
        .iter()
        .map(|&p| !points.iter().any(|&q| dominates(q, p)))
        .collect()
}

/// The best accuracy among settings at least `level` tokens per forward fast.
pub fn best_at_least(points: &[Point], level: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.tokens_per_forward >= level)
        .map(|p| p.accuracy)
        .reduce(f64::max)
}

/// Whether `a`'s frontier is at least as accurate as `b`'s at every speed in `[lo, hi]`: at
/// each level, the best `a` setting at least that fast is as accurate as the best `b` one.
/// `Err(level)` names the first speed where it is not.
pub fn dominates_over(a: &[Point], b: &[Point], lo: f64, hi: f64) -> Result<(), f64> {
    let mut levels: Vec<f64> = b
        .iter()
        .map(|p| p.tokens_per_forward)
        .filter(|&t| t > lo && t <= hi)
        .collect();
    levels.push(lo);
    levels.sort_by(f64::total_cmp);
    for level in levels {
        match (best_at_least(a, level), best_at_least(b, level)) {
            (_, None) => {}
            (Some(ours), Some(theirs)) if at_least_as_accurate(ours, theirs) => {}
            _ => return Err(level),
        }
    }
    Ok(())
}

/// The default speed floor of [`recommend`]: three times full-step decoding's one token per
/// forward, the few-step regime this server is for.
pub const DEFAULT_MIN_TOKENS_PER_FORWARD: f64 = 3.0;

/// The setting to serve: among those at least `min_tokens_per_forward` fast, the most accurate
/// (ties to the faster); when none is that fast, the fastest.
pub fn recommend(rows: &[EvalRow], min_tokens_per_forward: f64) -> Option<&EvalRow> {
    let accuracy_then_speed = |a: &&EvalRow, b: &&EvalRow| {
        a.answer_accuracy
            .total_cmp(&b.answer_accuracy)
            .then(a.tokens_per_forward.total_cmp(&b.tokens_per_forward))
    };
    let fast_enough = rows
        .iter()
        .filter(|r| r.tokens_per_forward >= min_tokens_per_forward)
        .max_by(accuracy_then_speed);
    fast_enough.or_else(|| {
        rows.iter()
            .max_by(|a, b| a.tokens_per_forward.total_cmp(&b.tokens_per_forward))
    })
}

/// One decoding setting pooled over runs (seeds): mean accuracy and speed, and the spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    /// The decoding setting (`EvalRow::decoding`).
    pub decoding: String,
    /// Runs pooled.
    pub runs: usize,
    /// Mean over runs.
    pub point: Point,
    /// Standard error of the mean accuracy: the spread across runs when there are several,
    /// else the binomial standard error of the one run.
    pub accuracy_se: f64,
}

/// Pools the rows of several runs of one model, setting by setting (in first-seen order).
pub fn pool(runs: &[Vec<EvalRow>]) -> Vec<Pooled> {
    let mut settings: Vec<String> = Vec::new();
    for row in runs.iter().flatten() {
        if !settings.contains(&row.decoding()) {
            settings.push(row.decoding());
        }
    }
    settings
        .into_iter()
        .map(|decoding| {
            let rows: Vec<&EvalRow> = runs
                .iter()
                .flatten()
                .filter(|r| r.decoding() == decoding)
                .collect();
            let k = rows.len() as f64;
            let mean = |f: fn(&EvalRow) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / k;
            let accuracy = mean(|r| r.answer_accuracy);
            let accuracy_se = if rows.len() > 1 {
                let var = rows
                    .iter()
                    .map(|r| (r.answer_accuracy - accuracy).powi(2))
                    .sum::<f64>()
                    / (k - 1.0);
                (var / k).sqrt()
            } else {
                rows[0].accuracy_se()
            };
            Pooled {
                decoding,
                runs: rows.len(),
                point: Point {
                    tokens_per_forward: mean(|r| r.tokens_per_forward),
                    accuracy,
                },
                accuracy_se,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "frontier_tests.rs"]
mod tests;
