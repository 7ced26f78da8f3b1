use super::*;
use crate::engine::Remasking;

fn pt(tokens_per_forward: f64, accuracy: f64) -> Point {
    Point {
        tokens_per_forward,
        accuracy,
    }
}

fn row(steps: usize, threshold: Option<f64>, acc: f64, tpf: f64, n: usize) -> EvalRow {
    EvalRow {
        block_size: 4,
        steps_per_block: steps,
        remasking: if threshold.is_some() {
            Remasking::LowConfidenceDynamic
        } else {
            Remasking::LowConfidenceStatic
        },
        threshold,
        n,
        answer_accuracy: acc,
        trace_validity: acc,
        tokens_per_forward: tpf,
        tokens_per_second: 1.0,
        seconds: 1.0,
    }
}

fn entropy_row(bound: f64, acc: f64, tpf: f64) -> EvalRow {
    EvalRow {
        remasking: Remasking::EntropyBounded,
        ..row(4, Some(bound), acc, tpf, 1000)
    }
}

#[test]
fn pareto_keeps_points_no_other_beats_on_both_axes() {
    // The committed models' measured settings (docs/results.md's table).
    let points = [
        pt(2.24, 0.944),
        pt(2.57, 0.916),
        pt(1.88, 0.784),
        pt(3.6, 0.696),
    ];
    assert_eq!(pareto_optimal(&points), vec![true, true, false, true]);
    // A tie on both axes dominates neither.
    assert_eq!(
        pareto_optimal(&[pt(2.0, 0.5), pt(2.0, 0.5)]),
        vec![true, true]
    );
    // Equal accuracy up to floating-point rounding (a mean over seeds), faster: dominates.
    let mean = (0.978 + 0.984 + 0.984) / 3.0;
    assert_eq!(
        pareto_optimal(&[pt(3.0, 0.982), pt(3.2, mean)]),
        vec![false, true]
    );
}

#[test]
fn best_at_least_takes_the_most_accurate_fast_enough_setting() {
    let points = [pt(1.0, 0.94), pt(2.0, 0.9), pt(4.0, 0.7)];
    assert_eq!(best_at_least(&points, 1.5), Some(0.9));
    assert_eq!(best_at_least(&points, 0.5), Some(0.94));
    assert_eq!(best_at_least(&points, 4.5), None);
}

#[test]
fn domination_is_checked_at_every_speed_of_the_other_frontier() {
    let teacher = [pt(0.95, 0.943), pt(2.24, 0.944), pt(1.9, 0.474)];
    // The committed student: better at 3.6 tokens per forward, worse at 2.24.
    let student = [pt(3.6, 0.696), pt(2.57, 0.916), pt(0.96, 0.932)];
    // At 1 token per forward the teacher's best at least that fast is 94.4% (at 2.24).
    assert_eq!(dominates_over(&student, &teacher, 1.0, 4.0), Err(1.0));
    let better = [pt(3.6, 0.95), pt(1.0, 0.95)];
    assert_eq!(dominates_over(&better, &teacher, 1.0, 4.0), Ok(()));
    // Beyond the teacher's fastest setting there is nothing to beat.
    assert_eq!(dominates_over(&[pt(3.6, 0.1)], &teacher, 3.0, 4.0), Ok(()));
    // A mean over three seeds that equals the teacher's accuracy ties it, rounding aside.
    let mean = (0.978 + 0.984 + 0.984) / 3.0;
    assert!(
        mean < 0.982,
        "the floating-point mean is below the exact one"
    );
    assert_eq!(
        dominates_over(&[pt(3.0, mean)], &[pt(2.25, 0.982)], 1.0, 4.0),
        Ok(())
    );
    assert_eq!(
        dominates_over(&[pt(3.0, 0.981)], &[pt(2.25, 0.982)], 1.0, 4.0),
        Err(1.0)
    );
}

#[test]
fn recommend_takes_the_most_accurate_setting_above_the_speed_floor() {
    // The larger student's measured settings (one seed).
    let rows = [
        row(4, None, 0.950, 0.96, 1000),
        row(4, Some(0.7), 0.874, 3.05, 1000),
        row(1, None, 0.710, 3.61, 1000),
        entropy_row(0.8, 0.932, 3.01),
        entropy_row(1.0, 0.910, 3.13),
    ];
    assert_eq!(recommend(&rows, 3.0).unwrap().decoding(), "H≤0.8");
    // A lower floor admits full-step decoding, the most accurate of all.
    assert_eq!(recommend(&rows, 0.0).unwrap().decoding(), "S=4");
    // Above H≤0.8's speed, H≤1 is the most accurate.
    assert_eq!(recommend(&rows, 3.1).unwrap().decoding(), "H≤1");
    // Nothing that fast: the fastest.
    assert_eq!(recommend(&rows, 5.0).unwrap().decoding(), "S=1");
    assert!(recommend(&[], 3.0).is_none());
    // Equal accuracy: the faster one.
    let tie = [
        row(4, Some(0.9), 0.9, 3.2, 1000),
        row(4, Some(0.8), 0.9, 3.4, 1000),
    ];
    assert_eq!(recommend(&tie, 3.0).unwrap().decoding(), "τ=0.8");
}

#[test]
fn pooling_averages_seeds_and_uses_their_spread() {
    let runs = vec![
        vec![
            row(1, None, 0.70, 3.6, 1000),
            row(4, Some(0.9), 0.92, 2.5, 1000),
        ],
        vec![row(1, None, 0.74, 3.4, 1000)],
    ];
    let pooled = pool(&runs);
    assert_eq!(pooled.len(), 2);
    assert_eq!(pooled[0].decoding, "S=1");
    assert_eq!(pooled[0].runs, 2);
    assert!((pooled[0].point.accuracy - 0.72).abs() < 1e-12);
    assert!((pooled[0].point.tokens_per_forward - 3.5).abs() < 1e-12);
    // Sample sd of {0.70, 0.74} is 0.02 * sqrt(2); over sqrt(2) runs: 0.02.
    assert!((pooled[0].accuracy_se - 0.02).abs() < 1e-12);
    // One run: the binomial standard error sqrt(0.92 * 0.08 / 1000).
    assert_eq!(pooled[1].decoding, "τ=0.9");
    assert!((pooled[1].accuracy_se - (0.92f64 * 0.08 / 1000.0).sqrt()).abs() < 1e-12);
}
