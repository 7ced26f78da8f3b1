//! Training examples and their collation into dual-stream tensors.
//!
//! An [`Example`] is a prompt and a response (ending in EOS, padded with EOS to the end of its
//! block). A [`NoisyExample`] adds which response tokens are masked or replaced in the noisy
//! stream; [`collate`] packs several into one batch following [`aligned_layout`], right-padding
//! with [`Slot::padding`] and listing the rows that carry loss and their clean targets.

use rand::seq::index::sample;
use rand::Rng;
use tch::{Device, Tensor};

use super::masks::{aligned_layout, attention_mask, noisy_start, response_blocks, Slot};

/// A prompt and its response, as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Prompt ids (chat-templated).
    pub prompt: Vec<i64>,
    /// Response ids, EOS-terminated and EOS-padded to a block boundary.
    pub response: Vec<i64>,
}

impl Example {
    /// An example whose `response` is padded with `eos` so prompt + response fills whole blocks
    /// (`response` must already end with EOS).
    pub fn padded(prompt: Vec<i64>, mut response: Vec<i64>, eos: i64, block: usize) -> Self {
        let total = prompt.len() + response.len();
        response.resize(response.len() + (block - total % block) % block, eos);
        Self { prompt, response }
    }
}

/// An example with its noise: the noisy-stream token of every response position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisyExample {
    /// The clean example.
    pub example: Example,
    /// Noisy response tokens (same length as the response).
    pub noisy: Vec<i64>,
    /// Response positions that carry loss (masked or replaced).
    pub loss_positions: Vec<usize>,
}

/// SDAR-style random masking: per block of response tokens, a ratio `t ~ U(0, 1]` and
/// `⌈t·n⌉` of its `n` response tokens masked uniformly at random (so every block carries loss).
pub fn random_block_mask(
    example: &Example,
    block: usize,
    mask_id: i64,
    rng: &mut impl Rng,
) -> NoisyExample {
    let mut noisy = example.response.clone();
    let mut loss_positions = Vec::new();
    for range in response_blocks(example.prompt.len(), example.response.len(), block) {
        let n = range.len();
        let t: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let k = ((t * n as f64).ceil() as usize).clamp(1, n);
        let mut chosen: Vec<usize> = sample(rng, n, k)
            .into_iter()
            .map(|i| range.start + i)
            .collect();
        chosen.sort_unstable();
        for &i in &chosen {
            noisy[i] = mask_id;
        }
        loss_positions.extend(chosen);
    }
    NoisyExample {
        example: example.clone(),
        noisy,
        loss_positions,
    }
}

/// One collated batch on a device.
pub struct TrainBatch {
    /// Token ids `(B, N)`.
    pub ids: Tensor,
    /// Positions `(B, N)`.
    pub positions: Tensor,
    /// Boolean attention mask `(B, 1, N, N)`.
    pub mask: Tensor,
    /// Flat indices into `B·N` of the rows that carry loss.
    pub loss_rows: Tensor,
    /// Clean target token of each loss row.
    pub targets: Tensor,
    /// Real (non-padding) tokens in the batch.
    pub tokens: usize,
}

/// Host-side rows of one example: ids, positions, slots, loss rows (local) and targets.
struct Packed {
    ids: Vec<i64>,
    positions: Vec<i64>,
    slots: Vec<Slot>,
    loss_rows: Vec<usize>,
    targets: Vec<i64>,
}

/// The row (within its sample) of the noisy copy of response token 0; response token `i` sits
/// `i` rows further.
pub fn noisy_response_row(prompt_len: usize, response_len: usize, block: usize) -> usize {
    let (first_noisy, first_pos) = noisy_start(prompt_len, response_len, block);
    first_noisy + (prompt_len - first_pos)
}

fn pack(item: &NoisyExample, block: usize) -> Packed {
    let ex = &item.example;
    let (p, r) = (ex.prompt.len(), ex.response.len());
    let (slots, positions) = aligned_layout(p, r, block);
    let first_pos = noisy_start(p, r, block).1;
    let clean = ex.prompt.iter().chain(&ex.response);
    let noisy_tail = ex.prompt[first_pos..].iter().chain(&item.noisy);
    let ids = clean.chain(noisy_tail).copied().collect();
    let offset = noisy_response_row(p, r, block);
    Packed {
        ids,
        positions,
        slots,
        loss_rows: item.loss_positions.iter().map(|&i| offset + i).collect(),
        targets: item
            .loss_positions
            .iter()
            .map(|&i| ex.response[i])
            .collect(),
    }
}

/// Packs `items` into one batch (right-padded with `pad_id`) on `device`.
pub fn collate(items: &[NoisyExample], block: usize, pad_id: i64, device: Device) -> TrainBatch {
    let packed: Vec<Packed> = items.iter().map(|it| pack(it, block)).collect();
    let width = packed.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let (b, n) = (packed.len(), width);
    let mut ids = Vec::with_capacity(b * n);
    let mut positions = Vec::with_capacity(b * n);
    let mut mask = Vec::with_capacity(b * n * n);
    let (mut loss_rows, mut targets) = (Vec::new(), Vec::new());
    let mut tokens = 0;
    for (row, mut item) in packed.into_iter().enumerate() {
        tokens += item.ids.len();
        item.ids.resize(n, pad_id);
        item.positions.resize(n, 0);
        item.slots.resize(n, Slot::padding());
        ids.extend(item.ids);
        positions.extend(item.positions);
        mask.extend(attention_mask(&item.slots));
        loss_rows.extend(item.loss_rows.iter().map(|&i| (row * n + i) as i64));
        targets.extend(item.targets);
    }
    let shape = [b as i64, n as i64];
    TrainBatch {
        ids: Tensor::from_slice(&ids).view(shape).to(device),
        positions: Tensor::from_slice(&positions).view(shape).to(device),
        mask: Tensor::from_slice(&mask)
            .view([b as i64, 1, n as i64, n as i64])
            .to(device),
        loss_rows: Tensor::from_slice(&loss_rows).to(device),
        targets: Tensor::from_slice(&targets).to(device),
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const MASK: i64 = 99;

    #[test]
    fn padding_fills_the_last_block_with_eos() {
        let ex = Example::padded(vec![1, 2, 3], vec![4, 5, 0], 0, 4);
        assert_eq!(ex.response, vec![4, 5, 0, 0, 0]);
        assert_eq!((ex.prompt.len() + ex.response.len()) % 4, 0);
    }

    #[test]
    fn every_block_masks_at_least_one_response_token_and_never_the_prompt() {
        let ex = Example::padded(vec![1, 2, 3], (10..19).collect(), 0, 4);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..50 {
            let noisy = random_block_mask(&ex, 4, MASK, &mut rng);
            // P = 3, R = 9, b = 4: blocks of response indices {0}, {1..5}, {5..9}.
            for (lo, hi) in [(0, 1), (1, 5), (5, 9)] {
                assert!(noisy.loss_positions.iter().any(|&i| (lo..hi).contains(&i)));
            }
            for (i, &t) in noisy.noisy.iter().enumerate() {
                assert_eq!(t == MASK, noisy.loss_positions.contains(&i));
            }
        }
    }

    #[test]
    fn collate_places_prompt_tail_noisy_tokens_and_targets() {
        // P = 3, R = 5, b = 2 (the layout of masks::tests): noisy stream = [p2, ñ0..ñ4].
        let ex = Example {
            prompt: vec![1, 2, 3],
            response: vec![10, 11, 12, 13, 14],
        };
        let item = NoisyExample {
            noisy: vec![MASK, 11, MASK, 13, 14],
            loss_positions: vec![0, 2],
            example: ex,
        };
        let short = NoisyExample {
            example: Example {
                prompt: vec![1, 2],
                response: vec![7, 8],
            },
            noisy: vec![MASK, 8],
            loss_positions: vec![0],
        };
        let batch = collate(&[item, short], 2, 0, Device::Cpu);
        let ids: Vec<i64> = Vec::try_from(batch.ids.flatten(0, -1)).unwrap();
        assert_eq!(
            &ids[..14],
            &[1, 2, 3, 10, 11, 12, 13, 14, 3, MASK, 11, MASK, 13, 14]
        );
        // Short example: clean [1 2 7 8], noisy [MASK 8], then pads.
        assert_eq!(&ids[14..20], &[1, 2, 7, 8, MASK, 8]);
        assert!(ids[20..].iter().all(|&t| t == 0));
        let rows: Vec<i64> = Vec::try_from(&batch.loss_rows).unwrap();
        assert_eq!(rows, vec![9, 11, 14 + 4]);
        let targets: Vec<i64> = Vec::try_from(&batch.targets).unwrap();
        assert_eq!(targets, vec![10, 12, 7]);
        assert_eq!(batch.mask.size(), vec![2, 1, 14, 14]);
        assert_eq!(batch.tokens, 14 + 6);
    }
}
