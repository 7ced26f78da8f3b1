//! Distillation data: teacher trajectories as training examples, their deterministic order
//! (a fresh permutation every epoch) and noise (fresh for every draw), and the collated batch
//! with the index sets the losses need.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Tensor};

use super::config::{DistillConfig, Objective};
use super::noise::{noisy_from_trajectory, path_levels, NoiseTokens};
use super::rollout::Trajectory;
use crate::train::batch::{collate, random_block_mask, Example, NoisyExample};
use crate::train::data::mix_seed;

/// One noised example and its path-loss levels (response positions per level).
#[derive(Debug, Clone)]
pub struct DistillItem {
    /// x_t and the masked positions M.
    pub noisy: NoisyExample,
    /// Path-loss levels (empty for `sft`).
    pub levels: Vec<Vec<usize>>,
}

/// Trajectories ready to sample from.
pub struct DistillData {
    examples: Vec<(Example, Vec<Option<u32>>)>,
    cfg: DistillConfig,
    block: usize,
    mask: i64,
    pad: i64,
    random_pool: Vec<i64>,
}

impl DistillData {
    /// Examples from `trajectories`: each completion padded with `eos` to a block boundary (the
    /// pad tail has no step). `random_pool` holds the ids random replacements use.
    pub fn new(
        trajectories: &[Trajectory],
        cfg: &DistillConfig,
        mask: i64,
        eos: i64,
        random_pool: Vec<i64>,
    ) -> Self {
        let block = cfg.train_block_size();
        let examples = trajectories
            .iter()
            .map(|t| {
                let ex =
                    Example::padded(t.prompt_ids.clone(), t.completion_ids.clone(), eos, block);
                let mut steps: Vec<Option<u32>> = t.step_map.iter().map(|&s| Some(s)).collect();
                steps.resize(ex.response.len(), None);
                (ex, steps)
            })
            .collect();
        Self {
            examples,
            cfg: cfg.clone(),
            block,
            mask,
            pad: eos,
            random_pool,
        }
    }

    /// Number of trajectories.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Pad id of collated batches.
    pub fn pad_id(&self) -> i64 {
        self.pad
    }

    /// The `micro`-th micro-batch of optimizer step `step` (a pure function of both and the
    /// seed, so a resumed run sees the same data).
    pub fn batch(&self, step: u64, micro: u64) -> Vec<DistillItem> {
        let size = self.cfg.batch_size;
        let n = self.examples.len();
        let first = (step * self.cfg.grad_accum as u64 + micro) as usize * size;
        let mut rng = StdRng::seed_from_u64(mix_seed(self.cfg.seed, step, micro));
        let mut order: Option<(usize, Vec<usize>)> = None;
        (first..first + size)
            .map(|g| {
                let epoch = g / n;
                if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    order = Some((epoch, self.permutation(epoch)));
                }
                let idx = order.as_ref().expect("set above").1[g % n];
                self.item(idx, &mut rng)
            })
            .collect()
    }

    fn permutation(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.examples.len()).collect();
        let mut rng = StdRng::seed_from_u64(mix_seed(self.cfg.seed, epoch as u64, 0x5045_524d));
        idx.shuffle(&mut rng);
        idx
    }

    fn item(&self, idx: usize, rng: &mut StdRng) -> DistillItem {
        let (ex, steps) = &self.examples[idx];
        if self.cfg.objective == Objective::Sft {
            return DistillItem {
                noisy: random_block_mask(ex, self.block, self.mask, rng),
                levels: Vec::new(),
            };
        }
        let tokens = NoiseTokens {
            mask: self.mask,
            pad: self.pad,
            random_pool: &self.random_pool,
        };
        DistillItem {
            noisy: noisy_from_trajectory(ex, steps, self.block, &self.cfg.noise, tokens, rng),
            levels: path_levels(ex.prompt.len(), steps, self.block, self.cfg.path_k_steps),
        }
    }
}

/// A collated distillation batch.
pub struct DistillBatch {
    /// Token ids `(B, N)`.
    pub ids: Tensor,
    /// Positions `(B, N)`.
    pub positions: Tensor,
    /// Attention mask `(B, 1, N, N)`.
    pub mask: Tensor,
    /// Flat `B·N` indices of every noisy row with a loss (M ∪ path rows).
    pub rows: Tensor,
    /// The teacher's token at each of `rows`.
    pub targets: Tensor,
    /// Indices into `rows` of the masked positions M.
    pub masked: Tensor,
    /// Sample (numbered among samples with M ≠ ∅) of each entry of `masked`.
    pub owner: Tensor,
    /// Samples with M ≠ ∅.
    pub samples: i64,
    /// Path-loss weight of each of `rows`: `Σ_s [row ∈ D_s] / (|D_s| · levels)`.
    pub path_weights: Tensor,
    /// Real (non-padding) tokens in the batch.
    pub tokens: usize,
}

/// Host-side index sets of a batch, in the row order of [`collate`].
#[derive(Debug, Default, PartialEq)]
pub struct RowSets {
    /// Loss positions per item (sorted union of M and the levels).
    pub positions: Vec<Vec<usize>>,
    /// Indices into the flat row list of M.
    pub masked: Vec<i64>,
    /// Owner of each `masked` entry.
    pub owner: Vec<i64>,
    /// Samples with M ≠ ∅.
    pub samples: i64,
    /// Path weight per row.
    pub path_weights: Vec<f32>,
}

/// The row sets of `items`: level `s` is pooled over the batch, and the path loss is the mean
/// over levels of the mean cross-entropy within each level (spec §5.4).
pub fn row_sets(items: &[DistillItem]) -> RowSets {
    let levels = items.iter().map(|it| it.levels.len()).max().unwrap_or(0);
    let level_sizes: Vec<usize> = (0..levels)
        .map(|s| {
            items
                .iter()
                .filter_map(|it| it.levels.get(s))
                .map(Vec::len)
                .sum()
        })
        .collect();
    let live = level_sizes.iter().filter(|&&n| n > 0).count().max(1) as f32;
    let mut sets = RowSets::default();
    let mut base = 0usize;
    for it in items {
        let mut union: Vec<usize> = it.noisy.loss_positions.clone();
        union.extend(it.levels.iter().flatten());
        union.sort_unstable();
        union.dedup();
        let has_mask = !it.noisy.loss_positions.is_empty();
        for (k, pos) in union.iter().enumerate() {
            if it.noisy.loss_positions.binary_search(pos).is_ok() {
                sets.masked.push((base + k) as i64);
                sets.owner.push(sets.samples);
            }
            let w: f32 = it
                .levels
                .iter()
                .zip(&level_sizes)
                .filter(|(level, _)| level.binary_search(pos).is_ok())
                .map(|(_, &n)| 1.0 / (n as f32 * live))
                .sum();
            sets.path_weights.push(w);
        }
        sets.samples += i64::from(has_mask);
        base += union.len();
        sets.positions.push(union);
    }
    sets
}

/// Packs `items` into one batch on `device`.
pub fn collate_distill(
    items: &[DistillItem],
    block: usize,
    pad_id: i64,
    device: Device,
) -> DistillBatch {
    let sets = row_sets(items);
    let widened: Vec<NoisyExample> = items
        .iter()
        .zip(&sets.positions)
        .map(|(it, pos)| NoisyExample {
            loss_positions: pos.clone(),
            ..it.noisy.clone()
        })
        .collect();
    let batch = collate(&widened, block, pad_id, device);
    DistillBatch {
        ids: batch.ids,
        positions: batch.positions,
        mask: batch.mask,
        rows: batch.loss_rows,
        targets: batch.targets,
        masked: Tensor::from_slice(&sets.masked).to(device),
        owner: Tensor::from_slice(&sets.owner).to(device),
        samples: sets.samples,
        path_weights: Tensor::from_slice(&sets.path_weights).to(device),
        tokens: batch.tokens,
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
