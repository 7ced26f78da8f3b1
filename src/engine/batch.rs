//! Packs the sequences of one forward into padded tensors: ids and positions `(B, Q)`, the
//! block-causal mask `(B, 1, Q, K)` over the cache, the cache write plan, and the rows whose
//! logits are needed (each sequence's current block).
//!
//! Batch row r is KV slot `first + r`, for every slot from the lowest to the highest the step's
//! sequences hold, so the attention reads the batch's keys as one view of the cache; a slot in
//! between that is not in the step is a padding row. Sequence i feeds `Q_i` rows (pending commit
//! tokens, then its block) at absolute positions `C_i .. C_i + Q_i` (C_i = its cached length).
//! Row p may attend key k iff `k < C_i + Q_i` and `k / b ≤ p / b`: causal across blocks,
//! bidirectional inside one, over cache and new rows alike. Padding rows attend key 0 only and
//! write into the scratch slot.
//!
//! The host-side index arrays are staged into the step's one [`Upload`] ([`StagedBatch`]); the
//! positions, mask and row indices are then derived on the device. Under CUDA graphs a step
//! takes a fixed [`GraphKey`] layout instead (rows from slot 0 up to a bucket, keys padded): the
//! arrays the forward reads then lie first in the upload, at offsets fixed by that layout, so a
//! graph's input buffer is that prefix.

use tch::{Kind, Tensor};

use super::cuda_graph::GraphKey;
use super::kv_cache::{KvCache, WritePlan};
use super::sequence::Sequence;
use super::transfer::{Segment, Upload, Uploaded};

/// Tensors for one forward over a group of sequences sharing a block size.
#[derive(Debug)]
pub struct ForwardBatch {
    /// `(B, Q)` token ids.
    pub ids: Tensor,
    /// `(B, Q)` absolute positions.
    pub positions: Tensor,
    /// `(B, 1, Q, K)` boolean mask.
    pub mask: Tensor,
    /// Where the rows go in the cache.
    pub plan: WritePlan,
    /// `(B, b)` rows of the flattened `(B·Q)` query holding each batch row's block (padding
    /// rows point at their own first row).
    pub block_rows: Tensor,
}

/// A [`ForwardBatch`] whose index arrays are staged in the step's [`Upload`], not yet sent.
#[derive(Debug)]
pub struct StagedBatch {
    rows: i64,
    first_slot: i64,
    block: i64,
    q_max: i64,
    key_len: i64,
    real_rows: usize,
    key_positions: u64,
    /// The sequences are the batch rows, in order.
    rows_in_order: bool,
    /// What the forward reads: ids, cached, lens, block rows, write rows.
    inputs: [Segment; 5],
    /// Batch row of each sequence.
    sequence_rows: Segment,
}

impl StagedBatch {
    /// Stages the index arrays of `seqs` (all admitted, their pages grown to cover this forward,
    /// same block size; `pad_id` is any valid token id) into `upload`.
    pub fn stage(
        seqs: &[&mut Sequence],
        cache: &KvCache,
        pad_id: i64,
        layout: Option<GraphKey>,
        upload: &mut Upload,
    ) -> Self {
        let host = HostBatch::collect(seqs, cache, pad_id, layout);
        let inputs = [
            &host.ids,
            &host.cached,
            &host.lens,
            &host.block_starts,
            &host.write_rows,
        ];
        Self {
            rows: host.cached.len() as i64,
            first_slot: host.first_slot as i64,
            block: seqs[0].block_size() as i64,
            q_max: host.q_max,
            key_len: host.key_len,
            real_rows: host.lens.iter().sum::<i64>() as usize,
            key_positions: host
                .cached
                .iter()
                .zip(&host.lens)
                .map(|(c, l)| (c + l) as u64)
                .sum(),
            rows_in_order: host.sequence_rows.len() == host.cached.len()
                && host.sequence_rows.iter().zip(0..).all(|(&r, i)| r == i),
            inputs: inputs.map(|v| upload.push_i64(v)),
            sequence_rows: upload.push_i64(&host.sequence_rows),
        }
    }

    /// Where what the forward reads ends in the upload, if it is the upload's prefix (staged
    /// first): a graph's input buffer is `upload[..end]`.
    pub fn forward_inputs_end(&self) -> Option<i64> {
        (self.inputs[0].start() == 0).then(|| self.inputs[4].end())
    }

    /// Batch row of each sequence, in the order given, unless that is every row in order.
    pub fn sequence_rows(&self, uploaded: &Uploaded) -> Option<Tensor> {
        (!self.rows_in_order).then(|| uploaded.get(self.sequence_rows))
    }

    /// The batch's tensors, built on the device from the sent upload.
    pub fn on_device(&self, uploaded: &Uploaded) -> ForwardBatch {
        let (rows, q_max, b) = (self.rows, self.q_max, self.block);
        let [ids, cached, lens, block_starts, write_rows] = self.inputs.map(|s| uploaded.get(s));
        let device = ids.device();
        let row = Tensor::arange(q_max, (Kind::Int64, device)).view([1, q_max]);
        let positions = cached.view([rows, 1]) + &row;
        let mask = block_causal_mask(&positions, &cached, &lens, b, self.key_len);
        // Rows of the flattened `(B·Q)` query: batch row r's block starts at `r·Q + start_r`.
        let block_rows = block_starts.view([rows, 1]) + Tensor::arange(b, (Kind::Int64, device));
        ForwardBatch {
            ids: ids.view([rows, q_max]),
            positions,
            mask,
            plan: WritePlan {
                write_rows: write_rows.view([rows, q_max]),
                first_slot: self.first_slot,
                rows,
                key_len: self.key_len,
            },
            block_rows,
        }
    }

    /// Real (non-padding) query rows.
    pub fn real_rows(&self) -> usize {
        self.real_rows
    }

    /// Key positions this forward attends over, summed over its sequences (for the bytes of KV
    /// cache it reads).
    pub fn key_positions(&self) -> u64 {
        self.key_positions
    }
}

/// The index arrays of one forward, on the host; batch row r is slot `first_slot + r`.
struct HostBatch {
    first_slot: usize,
    /// `(B·Q)` token ids, padded per row to `q_max`.
    ids: Vec<i64>,
    /// Cached length of each row (0 for padding rows).
    cached: Vec<i64>,
    /// Query rows of each row (0 for padding rows).
    lens: Vec<i64>,
    /// First block row of each batch row in the flattened `(B·Q)` query.
    block_starts: Vec<i64>,
    /// Pool row of every query row.
    write_rows: Vec<i64>,
    /// Batch row of each sequence, in the given order.
    sequence_rows: Vec<i64>,
    /// Longest query.
    q_max: i64,
    /// Keys the attention reads: the longest `cached + len`.
    key_len: i64,
}

impl HostBatch {
    /// The arrays of `seqs`; under `layout`, rows are slots `0 .. layout.rows`, each
    /// `layout.queries` long, over `layout.keys` keys.
    fn collect(
        seqs: &[&mut Sequence],
        cache: &KvCache,
        pad_id: i64,
        layout: Option<GraphKey>,
    ) -> Self {
        // `BlockDecoder::step` only packs admitted sequences.
        let slots: Vec<usize> = seqs.iter().map(|s| s.slot.unwrap_or(0)).collect();
        let (first_slot, rows) = match layout {
            Some(key) => (0, key.rows),
            None => {
                let first = slots.iter().copied().min().unwrap_or(0);
                (first, slots.iter().copied().max().unwrap_or(0) - first + 1)
            }
        };
        let mut at_row: Vec<Option<&Sequence>> = vec![None; rows];
        for (seq, &slot) in seqs.iter().zip(&slots) {
            at_row[slot - first_slot] = Some(&**seq);
        }
        let queries: Vec<Vec<i64>> = at_row
            .iter()
            .map(|s| s.map_or_else(Vec::new, Sequence::query_tokens))
            .collect();
        let longest = queries.iter().map(Vec::len).max().unwrap_or(0);
        let q_max = layout.map_or(longest, |key| key.queries.max(longest)) as i64;
        let slot_positions = cache.slot_positions() as i64;
        let scratch = cache.scratch_slot() as i64 * slot_positions;
        let mut host = Self {
            first_slot,
            ids: Vec::with_capacity(rows * q_max as usize),
            cached: at_row
                .iter()
                .map(|s| s.map_or(0, |s| s.cached_len() as i64))
                .collect(),
            lens: queries.iter().map(|q| q.len() as i64).collect(),
            block_starts: Vec::with_capacity(rows),
            write_rows: Vec::with_capacity(rows * q_max as usize),
            sequence_rows: slots.iter().map(|&s| (s - first_slot) as i64).collect(),
            q_max,
            key_len: layout.map_or(1, |key| key.keys as i64),
        };
        for (r, query) in queries.iter().enumerate() {
            let base = (first_slot + r) as i64 * slot_positions + host.cached[r];
            host.key_len = host.key_len.max(host.cached[r] + host.lens[r]);
            let block_row = at_row[r].map_or(0, |s| s.block_row() as i64);
            host.block_starts.push(r as i64 * q_max + block_row);
            for j in 0..q_max {
                host.ids
                    .push(query.get(j as usize).copied().unwrap_or(pad_id));
                let real = j < host.lens[r];
                host.write_rows
                    .push(if real { base + j } else { scratch + j });
            }
        }
        host
    }
}

/// `(B, 1, Q, K)` mask for rows at `positions` `(B, Q)`, each sequence reading keys below
/// `cached + lens`; rows past a sequence's length (padding) see key 0 only.
pub fn block_causal_mask(
    positions: &Tensor,
    cached: &Tensor,
    lens: &Tensor,
    block: i64,
    key_len: i64,
) -> Tensor {
    let device = positions.device();
    let batch = positions.size()[0];
    let keys = Tensor::arange(key_len, (Kind::Int64, device)).view([1, 1, key_len]);
    let query = positions.unsqueeze(-1); // (B, Q, 1)
    let limit = (cached + lens).view([batch, 1, 1]);
    let allowed = keys.lt_tensor(&limit).logical_and(
        &keys
            .floor_divide_scalar(block)
            .le_tensor(&query.floor_divide_scalar(block)),
    );
    let real_row = query.lt_tensor(&limit);
    allowed.where_self(&real_row, &keys.eq(0)).unsqueeze(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn mask_is_block_causal_over_cache_and_new_rows() {
        // One sequence with 4 cached tokens, 8 new rows (a pending block and the current block), b = 4.
        let positions = Tensor::arange_start(4, 12, (Kind::Int64, Device::Cpu)).view([1, 8]);
        let mask = block_causal_mask(
            &positions,
            &Tensor::from_slice(&[4i64]),
            &Tensor::from_slice(&[8i64]),
            4,
            12,
        );
        let rows: Vec<Vec<i64>> = (0..8)
            .map(|r| Vec::<i64>::try_from(mask.get(0).get(0).get(r).to_kind(Kind::Int64)).unwrap())
            .collect();
        let expect_first = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];
        let expect_second = [1; 12];
        for r in 0..4 {
            assert_eq!(rows[r], expect_first, "row {r}");
            assert_eq!(rows[r + 4], expect_second, "row {}", r + 4);
        }
    }

    #[test]
    fn padding_rows_see_key_zero_only() {
        let positions = Tensor::arange(4, (Kind::Int64, Device::Cpu)).view([1, 4]);
        let mask = block_causal_mask(
            &positions,
            &Tensor::from_slice(&[0i64]),
            &Tensor::from_slice(&[2i64]),
            2,
            4,
        );
        let row3 = Vec::<i64>::try_from(mask.get(0).get(0).get(3).to_kind(Kind::Int64)).unwrap();
        let row1 = Vec::<i64>::try_from(mask.get(0).get(0).get(1).to_kind(Kind::Int64)).unwrap();
        assert_eq!(row1, vec![1, 1, 0, 0]);
        assert_eq!(row3, vec![1, 0, 0, 0]);
    }
}
