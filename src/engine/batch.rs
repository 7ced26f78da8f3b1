//! Packs the sequences of one forward into padded tensors: ids and positions `(B, Q)`, the
//! block-causal mask `(B, 1, Q, K)` over the cache, the cache write plan, and the rows whose
//! logits are needed (each sequence's current block).
//!
//! Sequence i feeds `Q_i` rows (pending commit tokens, then its block) at absolute positions
//! `C_i .. C_i + Q_i` (C_i = its cached length). Row p may attend key k iff `k < C_i + Q_i` and
//! `k / b ≤ p / b`: causal across blocks, bidirectional inside one, over cache and new rows alike.
//! Padding rows attend key 0 only and write nothing.
//!
//! The host-side index arrays are staged into the step's one [`Upload`] ([`StagedBatch`]); the
//! positions, mask and row indices are then derived on the device.

use tch::{Kind, Tensor};

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
    /// `(B, b)` rows of the flattened `(B·Q)` query holding each sequence's block (for the
    /// LM head).
    pub block_rows: Tensor,
}

/// A [`ForwardBatch`] whose index arrays are staged in the step's [`Upload`], not yet sent.
#[derive(Debug)]
pub struct StagedBatch {
    batch: i64,
    block: i64,
    q_max: i64,
    key_len: i64,
    pages_per_row: i64,
    real_rows: usize,
    key_positions: u64,
    /// ids, cached, lens, tables, block starts, write pages, write offsets.
    segments: [Segment; 7],
}

impl StagedBatch {
    /// Stages the index arrays of `seqs` (all admitted, their pages grown to cover this forward,
    /// same block size; `pad_id` is any valid token id) into `upload`.
    pub fn stage(
        seqs: &[&mut Sequence],
        cache: &KvCache,
        pad_id: i64,
        upload: &mut Upload,
    ) -> Self {
        let host = HostBatch::collect(seqs, cache, pad_id);
        let parts = [
            &host.ids,
            &host.cached,
            &host.lens,
            &host.tables,
            &host.block_starts,
            &host.write_pages,
            &host.write_offsets,
        ];
        Self {
            batch: seqs.len() as i64,
            block: seqs[0].block_size() as i64,
            q_max: host.q_max,
            key_len: host.key_len,
            pages_per_row: host.pages_per_row,
            real_rows: host.lens.iter().sum::<i64>() as usize,
            key_positions: host
                .cached
                .iter()
                .zip(&host.lens)
                .map(|(c, l)| (c + l) as u64)
                .sum(),
            segments: parts.map(|v| upload.push_i64(v)),
        }
    }

    /// The batch's tensors, built on the device from the sent upload.
    pub fn on_device(&self, uploaded: &Uploaded) -> ForwardBatch {
        let (batch, q_max, b) = (self.batch, self.q_max, self.block);
        let [ids, cached, lens, tables, block_starts, write_pages, write_offsets] =
            self.segments.map(|s| uploaded.get(s));
        let device = ids.device();
        let row = Tensor::arange(q_max, (Kind::Int64, device)).view([1, q_max]);
        let positions = cached.view([batch, 1]) + &row;
        let mask = block_causal_mask(&positions, &cached, &lens, b, self.key_len);
        // Rows of the flattened `(B·Q)` query: sequence i's block starts at `i·Q + start_i`.
        let block_rows = block_starts.view([batch, 1]) + Tensor::arange(b, (Kind::Int64, device));
        ForwardBatch {
            ids: ids.view([batch, q_max]),
            positions,
            mask,
            plan: WritePlan {
                tables,
                pages_per_row: self.pages_per_row,
                write_pages: write_pages.view([batch, q_max]),
                write_offsets: write_offsets.view([batch, q_max]),
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

/// The index arrays of one forward, on the host.
struct HostBatch {
    /// `(B·Q)` token ids, padded per sequence to `q_max`.
    ids: Vec<i64>,
    /// Cached length of each sequence.
    cached: Vec<i64>,
    /// Query rows of each sequence.
    lens: Vec<i64>,
    /// Each sequence's page table padded with page 0 to `pages_per_row`, flattened.
    tables: Vec<i64>,
    pages_per_row: i64,
    /// First block row of each sequence in the flattened `(B·Q)` query.
    block_starts: Vec<i64>,
    /// Page and offset in the page of every query row (padding rows: page 0).
    write_pages: Vec<i64>,
    write_offsets: Vec<i64>,
    /// Longest query.
    q_max: i64,
    /// Keys the attention reads: the longest `cached + len`.
    key_len: i64,
}

impl HostBatch {
    fn collect(seqs: &[&mut Sequence], cache: &KvCache, pad_id: i64) -> Self {
        let queries: Vec<Vec<i64>> = seqs.iter().map(|s| s.query_tokens()).collect();
        let q_max = queries.iter().map(Vec::len).max().unwrap_or(0) as i64;
        // `BlockDecoder::step` only packs admitted sequences.
        let tables: Vec<&[usize]> = seqs
            .iter()
            .map(|s| cache.table(s.slot.unwrap_or(usize::MAX)))
            .collect();
        let pages_per_row = tables.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let page = cache.page_size() as i64;
        let mut host = Self {
            ids: Vec::with_capacity(seqs.len() * q_max as usize),
            cached: seqs.iter().map(|s| s.cached_len() as i64).collect(),
            lens: queries.iter().map(|q| q.len() as i64).collect(),
            tables: Vec::with_capacity(seqs.len() * pages_per_row),
            pages_per_row: pages_per_row as i64,
            block_starts: seqs
                .iter()
                .enumerate()
                .map(|(i, s)| (i * q_max as usize + s.block_row()) as i64)
                .collect(),
            write_pages: Vec::new(),
            write_offsets: Vec::new(),
            q_max,
            key_len: 0,
        };
        for (i, query) in queries.iter().enumerate() {
            let table = tables[i];
            host.tables.extend(table.iter().map(|&p| p as i64));
            host.tables.resize((i + 1) * pages_per_row, 0);
            host.key_len = host.key_len.max(host.cached[i] + host.lens[i]);
            for j in 0..q_max {
                host.ids
                    .push(query.get(j as usize).copied().unwrap_or(pad_id));
                let position = host.cached[i] + j;
                let page_of = |p: i64| table.get((p / page) as usize).map_or(0, |&p| p as i64);
                let (page_id, offset) = if j < host.lens[i] {
                    (page_of(position), position % page)
                } else {
                    (0, j % page)
                };
                host.write_pages.push(page_id);
                host.write_offsets.push(offset);
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
