//! The pure denoising policy: how many tokens each step unmasks (the transfer schedule of spec
//! §3.2) and which positions (§3.3). Plain slices in, indices out; no tensors.

use super::params::Remasking;

/// Tokens unmasked at each of the `steps` steps of a `block`-token block:
/// `n_s = b / S + (s < b mod S)`.
///
/// ```
/// use t3d::engine::denoise::transfer_schedule;
/// assert_eq!(transfer_schedule(4, 3), vec![2, 1, 1]);
/// assert_eq!(transfer_schedule(8, 3), vec![3, 3, 2]);
/// ```
pub fn transfer_schedule(block: usize, steps: usize) -> Vec<usize> {
    (0..steps)
        .map(|s| block / steps + usize::from(s < block % steps))
        .collect()
}

/// Scores of one block's positions at one step.
#[derive(Debug, Clone, Copy)]
pub struct BlockScores<'a> {
    /// Probability of the sampled token at each position.
    pub confidence: &'a [f32],
    /// Entropy of each position's distribution (read by `entropy_bounded` only).
    pub entropy: &'a [f32],
    /// Whether each position is still masked (prompt tail and decided tokens are not).
    pub maskable: &'a [bool],
}

/// Knobs of the policies that need them.
#[derive(Debug, Clone, Copy)]
pub struct PolicyParams {
    /// The strategy.
    pub remasking: Remasking,
    /// `low_confidence_dynamic`: unmask everything strictly above this confidence.
    pub confidence_threshold: f64,
    /// `entropy_bounded`: cumulative entropy bound.
    pub entropy_bound: f64,
}

/// Positions to unmask this step, ascending. `n` is clamped to the number of maskable positions,
/// so prompt tokens sharing the first block are never overwritten (fixes upstream bug §8.5).
pub fn select_transfer(scores: BlockScores, n: usize, policy: PolicyParams) -> Vec<usize> {
    let maskable: Vec<usize> = (0..scores.maskable.len())
        .filter(|&i| scores.maskable[i])
        .collect();
    let n = n.min(maskable.len());
    let mut chosen = match policy.remasking {
        Remasking::LowConfidenceStatic => most_confident(&maskable, scores.confidence, n),
        Remasking::LowConfidenceDynamic => {
            let mut set = most_confident(&maskable, scores.confidence, n);
            let above = maskable
                .iter()
                .filter(|&&i| f64::from(scores.confidence[i]) > policy.confidence_threshold);
            set.extend(above);
            set
        }
        Remasking::Sequential => maskable.iter().copied().take(n).collect(),
        Remasking::EntropyBounded => {
            entropy_bounded(&maskable, scores.entropy, n, policy.entropy_bound)
        }
    };
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// The `n` positions of `candidates` with the highest confidence (ties: lower index first).
fn most_confident(candidates: &[usize], confidence: &[f32], n: usize) -> Vec<usize> {
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// Lowest-entropy positions while the running entropy sum stays below `bound` (at least one,
/// and at least `n` so the block always finishes within its steps).
fn entropy_bounded(candidates: &[usize], entropy: &[f32], n: usize, bound: f64) -> Vec<usize> {
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| entropy[a].total_cmp(&entropy[b]).then(a.cmp(&b)));
    let mut total = 0.0;
    let within = order
        .iter()
        .take_while(|&&i| {
            total += f64::from(entropy[i]);
            total < bound
        })
        .count();
    order.truncate(within.max(n).max(1).min(candidates.len()));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(remasking: Remasking) -> PolicyParams {
        PolicyParams {
            remasking,
            confidence_threshold: 0.9,
            entropy_bound: 0.35,
        }
    }

    fn scores<'a>(confidence: &'a [f32], maskable: &'a [bool]) -> BlockScores<'a> {
        BlockScores {
            confidence,
            entropy: confidence,
            maskable,
        }
    }

    #[test]
    fn transfer_schedules_match_spec() {
        assert_eq!(transfer_schedule(4, 1), vec![4]);
        assert_eq!(transfer_schedule(4, 2), vec![2, 2]);
        assert_eq!(transfer_schedule(4, 3), vec![2, 1, 1]);
        assert_eq!(transfer_schedule(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(transfer_schedule(8, 3), vec![3, 3, 2]);
    }

    #[test]
    fn static_picks_most_confident_and_never_the_prompt_slot() {
        let conf = [0.9, 0.99, 0.2, 0.8];
        let maskable = [true, false, true, true];
        assert_eq!(
            select_transfer(
                scores(&conf, &maskable),
                2,
                policy(Remasking::LowConfidenceStatic)
            ),
            vec![0, 3]
        );
        // Spec §9 test 4: n = 4 would overwrite the prompt slot upstream; we clamp.
        assert_eq!(
            select_transfer(
                scores(&conf, &maskable),
                4,
                policy(Remasking::LowConfidenceStatic)
            ),
            vec![0, 2, 3]
        );
    }

    #[test]
    fn dynamic_adds_everything_above_threshold() {
        let all = [true; 4];
        let conf = [0.95, 0.91, 0.3, 0.2];
        assert_eq!(
            select_transfer(
                scores(&conf, &all),
                1,
                policy(Remasking::LowConfidenceDynamic)
            ),
            vec![0, 1]
        );
        let low = [0.5, 0.6, 0.3, 0.2];
        assert_eq!(
            select_transfer(
                scores(&low, &all),
                1,
                policy(Remasking::LowConfidenceDynamic)
            ),
            vec![1]
        );
    }

    #[test]
    fn sequential_takes_the_first_masked_positions() {
        let conf = [0.1, 0.9, 0.9, 0.9];
        let maskable = [false, true, true, true];
        assert_eq!(
            select_transfer(scores(&conf, &maskable), 2, policy(Remasking::Sequential)),
            vec![1, 2]
        );
    }

    #[test]
    fn entropy_bounded_stops_at_the_bound_but_takes_at_least_n() {
        let entropy = [0.3, 0.01, 0.02, 0.5];
        let all = [true; 4];
        // Ascending: 1 (0.01), 2 (0.03 cumulative), 0 (0.33), 3 (0.83 ≥ 0.35).
        assert_eq!(
            select_transfer(scores(&entropy, &all), 1, policy(Remasking::EntropyBounded)),
            vec![0, 1, 2]
        );
        let high = [2.0, 3.0, 1.0, 4.0];
        assert_eq!(
            select_transfer(scores(&high, &all), 2, policy(Remasking::EntropyBounded)),
            vec![0, 2]
        );
    }
}
