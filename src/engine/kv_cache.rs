//! The paged KV cache: per layer one key and one value pool of `(pages, page_size, Hkv, D)`,
//! shared by every sequence through its page table, so long contexts and many short requests
//! draw on one budget instead of each slot reserving the worst case.
//!
//! Admission promises a sequence the pages it can ever need (prompt + `max_tokens` + a block of
//! scratch), so a running sequence never runs out; it takes them as it grows and gives back
//! every page on release. Page 0 is a zeroed padding page that is never handed out. On the CPU
//! the pools are allocated uninitialised, so the OS commits memory only as pages are first
//! written (the process grows with what the sequences hold); a page is zeroed when first handed
//! out, so a masked attention read never meets an uninitialised NaN.

use std::cell::Cell;

use tch::{Device, Kind, Tensor};

use crate::model::{KvBinding, SdarConfig};

/// Positions per page unless a caller says otherwise (as vLLM's default block).
pub const DEFAULT_PAGE_SIZE: usize = 16;

/// The size of a cache: how many sequences, and pages of how many positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    /// Sequences decoded at once.
    pub max_sequences: usize,
    /// Usable pages (shared by every sequence).
    pub pages: usize,
    /// Positions per page.
    pub page_size: usize,
}

impl CacheShape {
    /// Room for `sequences` sequences of `positions` positions each (the worst case).
    pub fn worst_case(sequences: usize, positions: usize) -> Self {
        Self {
            max_sequences: sequences,
            pages: sequences * positions.div_ceil(DEFAULT_PAGE_SIZE),
            page_size: DEFAULT_PAGE_SIZE,
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
    /// Never: it needs more pages than the whole cache has.
    Never,
}

/// One sequence's pages: those it holds, and how many more it was promised.
#[derive(Debug, Default)]
struct PageTable {
    pages: Vec<usize>,
    promised: usize,
}

/// Paged key/value storage for up to `max_sequences` sequences.
#[derive(Debug)]
pub struct KvCache {
    /// Every layer's key pages, `(layers, pages + 1, page_size, Hkv, D)`; `keys[l]` is layer l's.
    key_pool: Tensor,
    value_pool: Tensor,
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    page_size: usize,
    usable_pages: usize,
    free_pages: Vec<usize>,
    zeroed: Vec<bool>,
    unpromised: usize,
    tables: Vec<Option<PageTable>>,
    free_slots: Vec<usize>,
}

/// Bytes one cached position takes over all layers (keys and values).
pub fn bytes_per_position(config: &SdarConfig, kind: Kind) -> usize {
    let per_layer = config.num_key_value_heads * config.head_dim() * 2;
    (per_layer * config.num_hidden_layers) as usize * kind.elt_size_in_bytes()
}

impl KvCache {
    /// A cache of `pages` usable pages of `page_size` positions for up to `max_sequences`
    /// sequences.
    pub fn new(
        config: &SdarConfig,
        max_sequences: usize,
        pages: usize,
        page_size: usize,
        kind: Kind,
        device: Device,
    ) -> Self {
        let page_size = page_size.max(1);
        // Position-major pages: a gathered table reads as `(B, K, Hkv, D)` without a copy.
        let layers = config.num_hidden_layers;
        let shape = [
            layers,
            pages as i64 + 1,
            page_size as i64,
            config.num_key_value_heads,
            config.head_dim(),
        ];
        let pool = || {
            let t = if device == Device::Cpu {
                Tensor::empty(shape, (kind, device))
            } else {
                Tensor::zeros(shape, (kind, device))
            };
            let _ = t.narrow(1, 0, 1).zero_();
            t
        };
        let (key_pool, value_pool) = (pool(), pool());
        let mut zeroed = vec![device != Device::Cpu; pages + 1];
        zeroed[0] = true;
        Self {
            keys: (0..layers).map(|l| key_pool.get(l)).collect(),
            values: (0..layers).map(|l| value_pool.get(l)).collect(),
            key_pool,
            value_pool,
            page_size,
            usable_pages: pages,
            free_pages: (1..=pages).rev().collect(),
            zeroed,
            unpromised: pages,
            tables: (0..max_sequences).map(|_| None).collect(),
            free_slots: (0..max_sequences).rev().collect(),
        }
    }

    /// Positions per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Pages sequences can hold (the padding page excluded).
    pub fn pages(&self) -> usize {
        self.usable_pages
    }

    /// Pages held by sequences now.
    pub fn pages_in_use(&self) -> usize {
        self.usable_pages - self.free_pages.len()
    }

    /// Positions the whole cache holds.
    pub fn capacity(&self) -> usize {
        self.usable_pages * self.page_size
    }

    /// Sequences the cache serves at once.
    pub fn slots(&self) -> usize {
        self.tables.len()
    }

    /// Sequence slots not in use.
    pub fn free_slots(&self) -> usize {
        self.free_slots.len()
    }

    /// Pages needed for `positions` positions.
    pub fn pages_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.page_size)
    }

    /// Whether a sequence that may reach `positions` positions can be admitted.
    pub fn admission(&self, positions: usize) -> Admission {
        let needed = self.pages_for(positions);
        if needed > self.usable_pages {
            Admission::Never
        } else if self.free_slots.is_empty() || needed > self.unpromised {
            Admission::Wait
        } else {
            Admission::Fits
        }
    }

    /// Admits a sequence that may reach `positions` positions (its pages are promised, not
    /// yet taken); `None` unless [`Self::admission`] says it fits.
    pub fn allocate(&mut self, positions: usize) -> Option<usize> {
        if self.admission(positions) != Admission::Fits {
            return None;
        }
        let slot = self.free_slots.pop()?;
        let promised = self.pages_for(positions);
        self.unpromised -= promised;
        self.tables[slot] = Some(PageTable {
            pages: Vec::new(),
            promised,
        });
        Some(slot)
    }

    /// Gives back every page of `slot` (held and promised) and the slot itself.
    pub fn release(&mut self, slot: usize) {
        let Some(table) = self.tables.get_mut(slot).and_then(Option::take) else {
            debug_assert!(false, "slot {slot} released twice");
            return;
        };
        self.unpromised += table.pages.len() + table.promised;
        self.free_pages.extend(table.pages);
        self.free_slots.push(slot);
    }

    /// Makes each `(slot, positions)` hold pages for that many positions; fails if a slot asks
    /// past what it was promised. Returns the pages handed out for the first time, which the
    /// caller zeroes with [`Self::zero_pages`] before the forward reads them (their memory is
    /// uninitialised, and a NaN there would leak through a masked attention weight of 0).
    pub fn grow(&mut self, needs: &[(usize, usize)]) -> Result<Vec<i64>, String> {
        let mut fresh = Vec::new();
        let mut outcome = Ok(());
        for &(slot, positions) in needs {
            let wanted = self.pages_for(positions);
            let Some(table) = self.tables.get_mut(slot).and_then(Option::as_mut) else {
                outcome = Err(format!("KV slot {slot} is not allocated"));
                break;
            };
            let missing = wanted.saturating_sub(table.pages.len());
            if missing > table.promised || missing > self.free_pages.len() {
                outcome = Err(format!("KV slot {slot} grew past its promised pages"));
                break;
            }
            for _ in 0..missing {
                let Some(page) = self.free_pages.pop() else {
                    break;
                };
                table.promised -= 1;
                table.pages.push(page);
                if !self.zeroed[page] {
                    self.zeroed[page] = true;
                    fresh.push(page as i64);
                }
            }
        }
        if outcome.is_err() {
            // Nothing will zero them now: the next grow that hands them out again must.
            fresh
                .iter()
                .for_each(|&page| self.zeroed[page as usize] = false);
        }
        outcome.map(|()| fresh)
    }

    /// Zeroes the pages `index` (on the cache's device) in every layer: two ops in all.
    pub fn zero_pages(&mut self, index: &Tensor) {
        for pool in [&mut self.key_pool, &mut self.value_pool] {
            let _ = pool.index_fill_(1, index, 0.0);
        }
    }

    /// The pages `slot` holds, in position order.
    pub fn table(&self, slot: usize) -> &[usize] {
        self.tables
            .get(slot)
            .and_then(Option::as_ref)
            .map_or(&[], |t| t.pages.as_slice())
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
}

/// Where one forward's rows go in the cache and which pages each batch row reads.
#[derive(Debug)]
pub struct WritePlan {
    /// `(B · pages_per_row)` page ids: each batch row's table, padded with page 0.
    pub tables: Tensor,
    /// Pages read per batch row.
    pub pages_per_row: i64,
    /// Page of every query row, `(B, Q)`; padding rows write to the padding page 0.
    pub write_pages: Tensor,
    /// Offset inside its page of every query row, `(B, Q)`.
    pub write_offsets: Tensor,
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

    /// Writes `new` `(B, Q, Hkv, D)` into `pool` and reads back each batch row's pages as
    /// `(B, Hkv, K, D)`.
    fn store_and_read(&self, pool: &Tensor, new: &Tensor) -> Tensor {
        let (b, _, h, d) = new.size4().unwrap_or((0, 0, 0, 0));
        let plan = self.plan;
        let indices = [Some(&plan.write_pages), Some(&plan.write_offsets)];
        let _ = pool.shallow_clone().index_put_(&indices, new, false);
        let page = self.cache.page_size as i64;
        pool.index_select(0, &plan.tables)
            .view([b, plan.pages_per_row * page, h, d])
            .narrow(1, 0, plan.key_len)
            .transpose(1, 2)
    }
}

impl KvBinding for CacheBinding<'_> {
    fn attend_over(&self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let keys = self.store_and_read(&self.cache.keys[layer], k);
        let values = self.store_and_read(&self.cache.values[layer], v);
        for t in [&keys, &values] {
            if !self.cache.holds(t) {
                let bytes = t.numel() * t.kind().elt_size_in_bytes();
                self.materialised
                    .set(self.materialised.get() + bytes as u64);
            }
        }
        (keys, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pages: usize, slots: usize) -> KvCache {
        KvCache::new(
            &SdarConfig::tiny(16),
            slots,
            pages,
            4,
            Kind::Float,
            Device::Cpu,
        )
    }

    #[test]
    fn admission_promises_pages_and_release_returns_them() {
        let mut c = cache(10, 3);
        assert_eq!(c.admission(41), Admission::Never, "11 pages > 10");
        let a = c.allocate(24).unwrap(); // 6 pages promised
        assert_eq!(c.admission(20), Admission::Wait, "5 > 4 unpromised");
        let b = c.allocate(16).unwrap(); // 4 pages
        assert_eq!(c.pages_in_use(), 0, "promised, not taken");
        assert_eq!(
            c.grow(&[(a, 9), (b, 4)]).unwrap().len(),
            4,
            "4 pages, all new"
        );
        assert_eq!(
            (c.table(a).len(), c.table(b).len(), c.pages_in_use()),
            (3, 1, 4)
        );
        assert!(c.grow(&[(b, 17)]).is_err(), "b was promised 4 pages");
        c.release(a);
        assert_eq!(c.pages_in_use(), 1);
        assert_eq!(c.admission(24), Admission::Fits);
        let again = c.allocate(24).unwrap();
        let fresh = c.grow(&[(again, 24)]).unwrap();
        assert_eq!(
            fresh.len(),
            3,
            "a's 3 pages come back already zeroed, 3 more are new"
        );
        assert!(
            !c.table(b).contains(&0),
            "page 0 is padding, never handed out"
        );
    }

    #[test]
    fn a_sequence_slot_limit_still_applies() {
        let mut c = cache(100, 1);
        c.allocate(4).unwrap();
        assert_eq!(c.admission(4), Admission::Wait);
    }
}
