//! Row sets derived by hand; the data order is deterministic and covers every trajectory.

use super::*;
use crate::distill::rollout::{TRAJECTORY_FORMAT, TRAJECTORY_VERSION};

fn item(loss: &[usize], levels: &[&[usize]], response_len: usize) -> DistillItem {
    DistillItem {
        noisy: NoisyExample {
            example: Example {
                prompt: vec![1, 2, 3, 4],
                response: vec![7; response_len],
            },
            noisy: vec![9; response_len],
            loss_positions: loss.to_vec(),
        },
        levels: levels.iter().map(|l| l.to_vec()).collect(),
    }
}

#[test]
fn path_weights_average_levels_pooled_over_the_batch() {
    let a = item(&[2, 3], &[&[0, 1], &[0, 1, 2, 3]], 4);
    let b = item(&[1], &[&[0, 1], &[0, 1, 2]], 4);
    let c = item(&[], &[&[0], &[0]], 4);
    let sets = row_sets(&[a, b, c]);
    assert_eq!(
        sets.positions,
        vec![vec![0, 1, 2, 3], vec![0, 1, 2], vec![0]]
    );
    // |D_0| = 2 + 2 + 1 = 5, |D_1| = 4 + 3 + 1 = 8, two live levels.
    let (l0, l1) = (1.0 / 10.0, 1.0 / 16.0);
    let expected = [l0 + l1, l0 + l1, l1, l1, l0 + l1, l0 + l1, l1, l0 + l1];
    for (got, want) in sets.path_weights.iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{:?}", sets.path_weights);
    }
    let total: f32 = sets.path_weights.iter().sum();
    assert!((total - 1.0).abs() < 1e-6);
    assert_eq!(sets.masked, vec![2, 3, 5]);
    assert_eq!(sets.owner, vec![0, 0, 1]);
    assert_eq!(sets.samples, 2);
}

fn trajectory(i: i64) -> Trajectory {
    Trajectory {
        format: TRAJECTORY_FORMAT.into(),
        version: TRAJECTORY_VERSION,
        question: format!("q{i}"),
        prompt_ids: vec![1, 2, 3, 4 + i],
        completion_ids: vec![10, 11, 12, 0],
        step_map: vec![2, 1, 4, 3],
        block_size: 4,
        steps_per_block: 4,
        finish_reason: "stop".into(),
    }
}

#[test]
fn batches_are_deterministic_and_every_epoch_covers_each_trajectory_once() {
    let trajs: Vec<Trajectory> = (0..6).map(trajectory).collect();
    let cfg = DistillConfig {
        batch_size: 3,
        ..DistillConfig::default()
    };
    let data = DistillData::new(&trajs, &cfg, 99, 0, vec![50, 51]);
    let prompt_of = |it: &DistillItem| it.noisy.example.prompt[3];
    let epoch: Vec<i64> = (0..2)
        .flat_map(|s| data.batch(s, 0))
        .map(|it| prompt_of(&it))
        .collect();
    let mut sorted = epoch.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![4, 5, 6, 7, 8, 9]);
    let again: Vec<i64> = data.batch(1, 0).iter().map(prompt_of).collect();
    assert_eq!(again, epoch[3..]);
    // Trace levels with k = 2 follow the step map [2, 1, 4, 3].
    assert_eq!(
        data.batch(0, 0)[0].levels,
        vec![vec![0, 1], vec![0, 1, 2, 3]]
    );
}
