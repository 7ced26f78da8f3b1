//! The KV cache: per layer one `(slots, Hkv, capacity, D)` key and value tensor, a slot per
//! admitted sequence, and a free list. Keys/values are written at absolute positions; a forward
//! binds the cache to a batch through [`CacheBinding`], which stores the new rows and hands the
//! attention the cached prefix of every slot in the batch.

use tch::{Device, Kind, Tensor};

use crate::model::{KvBinding, SdarConfig};

/// Key/value storage for up to `slots` sequences of up to `capacity` positions each.
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    capacity: usize,
    free: Vec<usize>,
    slots: usize,
}

impl KvCache {
    /// Allocates (zeroed) storage for `slots` sequences of `capacity` positions.
    pub fn new(
        config: &SdarConfig,
        slots: usize,
        capacity: usize,
        kind: Kind,
        device: Device,
    ) -> Self {
        let shape = [
            slots as i64,
            config.num_key_value_heads,
            capacity as i64,
            config.head_dim(),
        ];
        let layers = config.num_hidden_layers as usize;
        Self {
            keys: (0..layers)
                .map(|_| Tensor::zeros(shape, (kind, device)))
                .collect(),
            values: (0..layers)
                .map(|_| Tensor::zeros(shape, (kind, device)))
                .collect(),
            capacity,
            free: (0..slots).rev().collect(),
            slots,
        }
    }

    /// Positions per slot.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Total slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Slots not in use.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Takes a free slot (the lowest), if any.
    pub fn allocate(&mut self) -> Option<usize> {
        self.free.pop()
    }

    /// Returns `slot` to the free list.
    pub fn release(&mut self, slot: usize) {
        debug_assert!(!self.free.contains(&slot), "slot {slot} released twice");
        self.free.push(slot);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Bytes held by the cache tensors.
    pub fn bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|t| t.numel() * t.kind().elt_size_in_bytes())
            .sum()
    }

    /// Binds the cache to one batch: `slots` (one per batch row), where each valid query row
    /// writes (`write_rows` into the flattened `(B·Q)` rows, at `write_slots`/`write_positions`),
    /// and how many positions the attention reads (`key_len`).
    pub fn bind<'a>(&'a self, plan: &'a WritePlan) -> CacheBinding<'a> {
        CacheBinding { cache: self, plan }
    }
}

/// Where one forward's rows go in the cache.
#[derive(Debug)]
pub struct WritePlan {
    /// Slot of each batch row, `(B,)` int64.
    pub slots: Tensor,
    /// `Some(first)` when the slots are `first..first+B` (read with a view, no gather).
    pub contiguous_from: Option<i64>,
    /// Indices of the valid (non-padding) rows in the flattened `(B·Q)` query, `(N,)`.
    pub write_rows: Tensor,
    /// Slot of each valid row, `(N,)`.
    pub write_slots: Tensor,
    /// Absolute position of each valid row, `(N,)`.
    pub write_positions: Tensor,
    /// Positions the attention reads from every slot.
    pub key_len: i64,
}

/// A [`KvCache`] bound to one batch (see [`KvCache::bind`]).
pub struct CacheBinding<'a> {
    cache: &'a KvCache,
    plan: &'a WritePlan,
}

impl CacheBinding<'_> {
    fn store_and_read(&self, store: &Tensor, new: &Tensor) -> Tensor {
        let (b, h, q, d) = new.size4().unwrap_or((0, 0, 0, 0));
        let rows = new
            .transpose(1, 2)
            .reshape([b * q, h, d])
            .index_select(0, &self.plan.write_rows);
        let indices = [
            Some(&self.plan.write_slots),
            None,
            Some(&self.plan.write_positions),
        ];
        let _ = store.shallow_clone().index_put_(&indices, &rows, false);
        let prefix = store.narrow(2, 0, self.plan.key_len);
        match self.plan.contiguous_from {
            Some(first) => prefix.narrow(0, first, b),
            None => prefix.index_select(0, &self.plan.slots),
        }
    }
}

impl KvBinding for CacheBinding<'_> {
    fn attend_over(&self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let keys = self.store_and_read(&self.cache.keys[layer], k);
        let values = self.store_and_read(&self.cache.values[layer], v);
        (keys, values)
    }
}
