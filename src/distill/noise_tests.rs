//! Spec §9 tests 7, 8 and 10, with values derived by hand from the spec.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

/// Spec §9 test 7/8 step map: two blocks of b = 4 decoded in the order [2,1,4,3], [6,5,8,7].
fn spec_steps() -> Vec<Option<u32>> {
    [2, 1, 4, 3, 6, 5, 8, 7].into_iter().map(Some).collect()
}

#[test]
fn ratio_probabilities_match_the_spec_for_exponent_8() {
    let p = NoiseConfig::default().ratio_probabilities();
    let expected = [0.90577, 0.09068, 0.00354, 0.0000138];
    for (got, want) in p.iter().zip(expected) {
        assert!((got - want).abs() < 5e-6 * want.max(1.0), "{p:?}");
    }
}

#[test]
fn whole_steps_mask_one_steps_tokens_together() {
    // Block decoded at steps 1, 2, 2, 2 (three tokens committed together at step 2).
    let steps = [Some(1), Some(2), Some(2), Some(2)];
    let mask = |ratio, order, whole| trace_block_mask(&steps, 0..4, ratio, order, whole);
    // ρ = 0.5: ⌊4·0.5⌋ = 2 splits step 2; the nearest cuts mask 3 (one away) or 0 (two away).
    assert_eq!(mask(0.5, TraceOrder::Trajectory, false), vec![2, 3]);
    assert_eq!(mask(0.5, TraceOrder::Trajectory, true), vec![1, 2, 3]);
    // ρ = 0.25: 1 is one away from 0 and two from 3.
    assert_eq!(
        mask(0.25, TraceOrder::Trajectory, true),
        Vec::<usize>::new()
    );
    // Code order masks the earliest: cuts at 0, 1, 4 masked; 2 is nearest 1.
    assert_eq!(mask(0.5, TraceOrder::Code, true), vec![0]);
    // A tie (steps 1, 1, 2, 2 at ρ = 0.75: 3 is one from 2 and one from 4) masks more.
    let pairs = [Some(1), Some(1), Some(2), Some(2)];
    assert_eq!(
        trace_block_mask(&pairs, 0..4, 0.75, TraceOrder::Trajectory, true),
        vec![0, 1, 2, 3]
    );
    // One token a step (full-step rollouts): unchanged.
    let spec = spec_steps();
    assert_eq!(
        trace_block_mask(&spec, 0..4, 0.5, TraceOrder::Trajectory, true),
        trace_block_mask(&spec, 0..4, 0.5, TraceOrder::Trajectory, false)
    );
}

#[test]
fn trace_masking_in_code_order_masks_the_earliest_decoded() {
    let steps = spec_steps();
    let code: Vec<usize> = [0..4, 4..8]
        .into_iter()
        .flat_map(|r| trace_block_mask(&steps, r, 0.5, TraceOrder::Code, false))
        .collect();
    assert_eq!(code, vec![0, 1, 4, 5]); // decoded at steps 2, 1, 6, 5
}

#[test]
fn trace_masking_in_trajectory_order_masks_the_latest_decoded() {
    let steps = spec_steps();
    let traj: Vec<usize> = [0..4, 4..8]
        .into_iter()
        .flat_map(|r| trace_block_mask(&steps, r, 0.5, TraceOrder::Trajectory, false))
        .collect();
    assert_eq!(traj, vec![2, 3, 6, 7]); // decoded at steps 4, 3, 8, 7
    let all = trace_block_mask(&steps, 0..4, 1.0, TraceOrder::Trajectory, false);
    assert_eq!(all, vec![0, 1, 2, 3]);
    // ⌊3·0.5⌋ = 1 of a block with one undecoded pad: the latest of the three.
    let partial = [Some(3), None, Some(1), Some(2)];
    assert_eq!(
        trace_block_mask(&partial, 0..4, 0.5, TraceOrder::Trajectory, false),
        vec![0]
    );
}

#[test]
fn path_levels_for_k_2_are_the_first_two_decoded_then_all() {
    let levels = path_levels(4, &spec_steps(), 4, 2);
    assert_eq!(
        levels,
        vec![vec![0, 1, 4, 5], (0..8).collect::<Vec<usize>>()]
    );
    // k = b: one level, every generated token.
    assert_eq!(
        path_levels(4, &spec_steps(), 4, 4),
        vec![(0..8).collect::<Vec<usize>>()]
    );
    // The pad tail has no step and is in no level.
    let mut steps = spec_steps();
    steps.truncate(6);
    steps.extend([None, None]);
    assert_eq!(path_levels(4, &steps, 4, 4), vec![vec![0, 1, 2, 3, 4, 5]]);
}

#[test]
fn random_ratio_replaces_at_least_one_token() {
    assert_eq!(random_token_count(3, 0.1), 1); // max(1, ⌊0.3⌋)
    assert_eq!(random_token_count(25, 0.1), 2);
    assert_eq!(random_token_count(0, 0.1), 0);
    assert_eq!(random_token_count(5, 0.0), 0);
}

#[test]
fn post_num_keeps_only_the_first_pads_in_the_loss() {
    let response = [5, 6, 0, 0, 0, 0];
    assert_eq!(
        keep_first_pads(&[1, 2, 3, 4, 5], &response, 0, 2),
        vec![1, 2, 3]
    );
}

#[test]
fn a_full_trace_mask_covers_every_generated_token_and_one_is_random() {
    let ex = Example {
        prompt: vec![1, 2, 3, 4],
        response: vec![10, 11, 12, 13, 14, 0, 0, 0],
    };
    let steps: Vec<Option<u32>> = [1, 2, 3, 4, 5, 6]
        .map(Some)
        .into_iter()
        .chain([None, None])
        .collect();
    let cfg = NoiseConfig {
        mask_ratios: vec![1.0],
        random_ratio: 0.1,
        ..NoiseConfig::default()
    };
    let pool = [40, 41];
    let tokens = NoiseTokens {
        mask: 99,
        pad: 0,
        random_pool: &pool,
    };
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..20 {
        let noisy = noisy_from_trajectory(&ex, &steps, 4, &cfg, tokens, &mut rng);
        assert_eq!(noisy.loss_positions, vec![0, 1, 2, 3, 4, 5]);
        let masks = noisy.noisy[..6].iter().filter(|&&t| t == 99).count();
        let random = noisy.noisy[..6].iter().filter(|t| pool.contains(t)).count();
        assert_eq!((masks, random), (5, 1));
        assert_eq!(&noisy.noisy[6..], &[0, 0]); // the pad tail is never noised in trace mode
    }
}
