//! The KV cache: per layer, each sequence slot owns one contiguous run of positions, sized for
//! the longest context a request may reach, so a batch of neighbouring slots is one strided
//! view of the pool and attention reads the cache in place (no per-layer gather).
//!
//! Memory is still handed out and accounted in pages shared by every sequence: admission
//! promises a sequence the pages it can ever need (prompt + `max_tokens` + a block of scratch)
//! out of one budget, so many short requests fit where a few long ones would. On the CPU the
//! pool is address space the OS commits only where it is written ([`HostPool`]) and a released
//! slot gives its memory back, so the process holds what running sequences use; on a GPU the
//! pool is allocated whole, and the slots are as many as the budget holds at the longest
//! context. Memory the attention may read is never uninitialised (a NaN there would leak through
//! a masked weight of 0): the host pool reads as zeros until written, a device pool is zeroed
//! once, and what a released slot leaves behind is finite. One extra slot at the end takes the
//! writes of padding rows.

use std::cell::Cell;
use std::collections::BTreeSet;

use tch::{Device, Kind, Tensor};

use super::host_pool::HostPool;
use crate::model::{KvBinding, SdarConfig};

/// Positions per page unless a caller says otherwise (as vLLM's default block).
pub const DEFAULT_PAGE_SIZE: usize = 16;

/// The size of a cache: how many sequences, how long each may grow, and the page budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    /// Sequences decoded at once.
    pub max_sequences: usize,
    /// Usable pages (the budget every sequence draws on).
    pub pages: usize,
    /// Positions per page.
    pub page_size: usize,
    /// Positions one sequence may reach (its slot's length).
    pub max_context: usize,
}

impl CacheShape {
    /// Room for `sequences` sequences of `positions` positions each (the worst case).
    pub fn worst_case(sequences: usize, positions: usize) -> Self {
        Self {
            max_sequences: sequences,
            pages: sequences * positions.div_ceil(DEFAULT_PAGE_SIZE),
            page_size: DEFAULT_PAGE_SIZE,
            max_context: positions,
        }
    }
}

/// Whether a sequence needing some positions can be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Now.
    Fits,
    /// Once running sequences release pages or a sequence slot.
    Wait,
    /// Never: it needs more than a slot or the whole budget holds.
    Never,
}

/// One slot's pages: how many it holds, and how many more it was promised.
#[derive(Debug, Default)]
struct SlotPages {
    held: usize,
    promised: usize,
}

/// Key/value storage for up to `slots` sequences.
#[derive(Debug)]
pub struct KvCache {
    /// Keys of every layer and slot, `(layers, slots + 1, slot_positions, Hkv, D)`.
    key_pool: Tensor,
    value_pool: Tensor,
    /// Per layer, the pool's rows as `(rows, Hkv, D)`, row `slot · slot_positions + position`.
    key_rows: Vec<Tensor>,
    value_rows: Vec<Tensor>,
    page_size: usize,
    slot_pages: usize,
    usable_pages: usize,
    unpromised: usize,
    tables: Vec<Option<SlotPages>>,
    free_slots: BTreeSet<usize>,
    /// The CPU memory under the pools, when mapped by us (declared last: dropped after them).
    host: Option<(HostPool, HostPool)>,
}

/// Bytes one cached position takes over all layers (keys and values).
pub fn bytes_per_position(config: &SdarConfig, kind: Kind) -> usize {
    let per_layer = config.num_key_value_heads * config.head_dim() * 2;
    (per_layer * config.num_hidden_layers) as usize * kind.elt_size_in_bytes()
}

impl KvCache {
    /// A cache of `shape`'s page budget for up to `shape.max_sequences` sequences of up to
    /// `shape.max_context` positions (on a GPU, fewer slots if the budget holds fewer).
    pub fn new(config: &SdarConfig, shape: CacheShape, kind: Kind, device: Device) -> Self {
        let page_size = shape.page_size.max(1);
        let slot_pages = shape.max_context.max(1).div_ceil(page_size);
        let slots = match device {
            Device::Cpu => shape.max_sequences,
            _ => shape.max_sequences.min(shape.pages / slot_pages),
        }
        .max(1);
        if slots < shape.max_sequences {
            tracing::warn!(
                asked = shape.max_sequences,
                slots,
                positions = shape.max_context,
                "the KV budget holds fewer sequences of the longest context than asked; \
                 a lower context limit (--max-total-tokens) leaves room for more"
            );
        }
        let layers = config.num_hidden_layers;
        let (heads, dim) = (config.num_key_value_heads, config.head_dim());
        let slot_positions = (slot_pages * page_size) as i64;
        let pool_shape = [layers, slots as i64 + 1, slot_positions, heads, dim];
        let elements: i64 = pool_shape.iter().product();
        let host = (device == Device::Cpu)
            .then(|| {
                let bytes = elements as usize * kind.elt_size_in_bytes();
                Some((HostPool::new(bytes).ok()?, HostPool::new(bytes).ok()?))
            })
            .flatten();
        let pool = |mapped: Option<&HostPool>| match mapped {
            Some(memory) => memory.tensor(&pool_shape, kind),
            None => Tensor::zeros(pool_shape, (kind, device)),
        };
        let (key_pool, value_pool) = (
            pool(host.as_ref().map(|h| &h.0)),
            pool(host.as_ref().map(|h| &h.1)),
        );
        let rows = |pool: &Tensor| -> Vec<Tensor> {
            (0..layers)
                .map(|l| pool.get(l).view([-1, heads, dim]))
                .collect()
        };
        Self {
            key_rows: rows(&key_pool),
            value_rows: rows(&value_pool),
            key_pool,
            value_pool,
            page_size,
            slot_pages,
            usable_pages: shape.pages,
            unpromised: shape.pages,
            tables: (0..slots).map(|_| None).collect(),
            free_slots: (0..slots).collect(),
            host,
        }
    }

    /// Positions per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Pages sequences can hold between them (the budget).
    pub fn pages(&self) -> usize {
        self.usable_pages
    }

    /// Pages held by sequences now.
    pub fn pages_in_use(&self) -> usize {
        self.tables.iter().flatten().map(|t| t.held).sum()
    }

    /// Positions one sequence can reach: its slot's length, or the whole budget if less.
    pub fn capacity(&self) -> usize {
        self.slot_pages.min(self.usable_pages) * self.page_size
    }

    /// Positions of one slot.
    pub fn slot_positions(&self) -> usize {
        self.slot_pages * self.page_size
    }

    /// Sequences the cache serves at once.
    pub fn slots(&self) -> usize {
        self.tables.len()
    }

    /// Sequence slots not in use.
    pub fn free_slots(&self) -> usize {
        self.free_slots.len()
    }

    /// The slot padding rows write to.
    pub fn scratch_slot(&self) -> usize {
        self.tables.len()
    }

    /// Pages needed for `positions` positions.
    pub fn pages_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.page_size)
    }

    /// Whether a sequence that may reach `positions` positions can be admitted.
    pub fn admission(&self, positions: usize) -> Admission {
        let needed = self.pages_for(positions);
        if positions > self.capacity() {
            Admission::Never
        } else if self.free_slots.is_empty() || needed > self.unpromised {
            Admission::Wait
        } else {
            Admission::Fits
        }
    }

    /// Admits a sequence that may reach `positions` positions into the lowest free slot (its
    /// pages are promised, not yet taken); `None` unless [`Self::admission`] says it fits.
    pub fn allocate(&mut self, positions: usize) -> Option<usize> {
        if self.admission(positions) != Admission::Fits {
            return None;
        }
        let slot = self.free_slots.pop_first()?;
        let promised = self.pages_for(positions);
        self.unpromised -= promised;
        self.tables[slot] = Some(SlotPages { held: 0, promised });
        Some(slot)
    }

    /// Gives back every page of `slot` (held and promised) and the slot itself.
    pub fn release(&mut self, slot: usize) {
        let Some(table) = self.tables.get_mut(slot).and_then(Option::take) else {
            debug_assert!(false, "slot {slot} released twice");
            return;
        };
        self.unpromised += table.held + table.promised;
        self.free_slots.insert(slot);
        self.give_back_memory(slot, table.held);
    }

    /// Hands the host memory of `slot`'s first `pages` pages back to the OS (it reads as zeros
    /// afterwards); nothing to do on a device.
    fn give_back_memory(&self, slot: usize, pages: usize) {
        let Some((keys, values)) = &self.host else {
            return;
        };
        let size = self.key_pool.size();
        let element = self.key_pool.kind().elt_size_in_bytes();
        let position = (size[3] * size[4]) as usize * element;
        let slot_bytes = size[2] as usize * position;
        let bytes = pages * self.page_size * position;
        for layer in 0..size[0] as usize {
            let offset = (layer * size[1] as usize + slot) * slot_bytes;
            keys.discard(offset, bytes);
            values.discard(offset, bytes);
        }
    }

    /// Makes each `(slot, positions)` hold pages for that many positions; fails if a slot asks
    /// past what it was promised.
    pub fn grow(&mut self, needs: &[(usize, usize)]) -> Result<(), String> {
        for &(slot, positions) in needs {
            let wanted = self.pages_for(positions);
            let Some(table) = self.tables.get_mut(slot).and_then(Option::as_mut) else {
                return Err(format!("KV slot {slot} is not allocated"));
            };
            let missing = wanted.saturating_sub(table.held);
            if missing > table.promised {
                return Err(format!("KV slot {slot} grew past its promised pages"));
            }
            table.promised -= missing;
            table.held += missing;
        }
        Ok(())
    }

    /// Bytes the cache tensors span (on the CPU, memory is committed as pages are first used).
    pub fn bytes(&self) -> usize {
        [&self.key_pool, &self.value_pool]
            .iter()
            .map(|t| t.numel() * t.kind().elt_size_in_bytes())
            .sum()
    }

    /// Binds the cache to one batch's [`WritePlan`].
    pub fn bind<'a>(&'a self, plan: &'a WritePlan) -> CacheBinding<'a> {
        CacheBinding {
            cache: self,
            plan,
            materialised: Cell::new(0),
        }
    }

    /// Whether `t`'s data lies inside one of the cache's pools (it is a view of the cache).
    fn holds(&self, t: &Tensor) -> bool {
        let at = t.data_ptr() as usize;
        [&self.key_pool, &self.value_pool].iter().any(|pool| {
            let start = pool.data_ptr() as usize;
            (start..start + pool.numel() * pool.kind().elt_size_in_bytes()).contains(&at)
        })
    }

    /// Layer `layer`'s keys or values of slots `first .. first + rows`, positions `0..key_len`,
    /// as a `(rows, Hkv, key_len, D)` view of `pool`.
    fn slots_view(
        &self,
        pool: &Tensor,
        layer: usize,
        first: i64,
        rows: i64,
        key_len: i64,
    ) -> Tensor {
        let size = pool.size();
        let (slots, positions, heads, dim) = (size[1], size[2], size[3], size[4]);
        let position_stride = heads * dim;
        let slot_stride = positions * position_stride;
        let offset = layer as i64 * slots * slot_stride + first * slot_stride;
        pool.as_strided(
            [rows, heads, key_len, dim],
            [slot_stride, dim, position_stride, 1],
            offset,
        )
    }
}

/// Where one forward's rows go in the cache and which slots its batch rows are.
#[derive(Debug)]
pub struct WritePlan {
    /// Pool row (`slot · slot_positions + position`) of every query row, `(B, Q)`; padding
    /// rows write into the scratch slot.
    pub write_rows: Tensor,
    /// Slot of batch row 0; batch row r is slot `first_slot + r`.
    pub first_slot: i64,
    /// Batch rows.
    pub rows: i64,
    /// Positions the attention reads from every row.
    pub key_len: i64,
}

/// A [`KvCache`] bound to one batch (see [`KvCache::bind`]).
pub struct CacheBinding<'a> {
    cache: &'a KvCache,
    plan: &'a WritePlan,
    materialised: Cell<u64>,
}

impl CacheBinding<'_> {
    /// Bytes of keys/values this binding handed to attention as copies rather than views of the
    /// cache (measured from where their data lies).
    pub fn materialised_bytes(&self) -> u64 {
        self.materialised.get()
    }

    /// Writes `new` `(B, Q, Hkv, D)` into layer `layer` of `pool` and returns the batch's slots
    /// as `(B, Hkv, K, D)`, a view.
    fn store_and_read(&self, pool: &Tensor, rows: &Tensor, layer: usize, new: &Tensor) -> Tensor {
        let plan = self.plan;
        let _ = rows
            .shallow_clone()
            .index_put_(&[Some(&plan.write_rows)], new, false);
        self.cache
            .slots_view(pool, layer, plan.first_slot, plan.rows, plan.key_len)
    }
}

impl KvBinding for CacheBinding<'_> {
    fn attend_over(&self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let cache = self.cache;
        let keys = self.store_and_read(&cache.key_pool, &cache.key_rows[layer], layer, k);
        let values = self.store_and_read(&cache.value_pool, &cache.value_rows[layer], layer, v);
        for t in [&keys, &values] {
            if !cache.holds(t) {
                let bytes = t.numel() * t.kind().elt_size_in_bytes();
                self.materialised
                    .set(self.materialised.get() + bytes as u64);
            }
        }
        (keys, values)
    }
}

#[cfg(test)]
#[path = "kv_cache_tests.rs"]
mod tests;
