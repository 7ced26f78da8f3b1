//! Sizing the KV cache from memory. A budget in bytes, given (`--kv-cache-memory`) or derived
//! from the memory the device has free once the weights are in, becomes pages; the context limit
//! is the model's `max_position_embeddings` (or the asked limit) capped by what the budget holds.
//! [`plan`] is pure; [`available_memory`] reads the machine.

use super::kv_cache::{CacheShape, DEFAULT_PAGE_SIZE};

/// Positions of slack past prompt + completion: rounding to whole blocks and one block of
/// scratch, at the largest block size (64).
pub const CONTEXT_SLACK: usize = 128;

/// What the cache is sized from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Exactly this many bytes (`--kv-cache-memory`).
    Bytes(usize),
    /// This fraction of the memory free once the weights are loaded.
    FreeFraction {
        /// Bytes free on the device now (weights not yet loaded).
        free: usize,
        /// Bytes the weights will take.
        weights: usize,
        /// Share of what is left the cache may take.
        fraction: f64,
    },
}

/// The sizing decision.
#[derive(Debug, Clone, PartialEq)]
pub struct KvPlan {
    /// The cache to build.
    pub shape: CacheShape,
    /// Longest prompt + completion a request may ask for.
    pub max_model_len: usize,
    /// Bytes the cache spans.
    pub bytes: usize,
    /// Bytes one position takes over all layers.
    pub bytes_per_position: usize,
}

impl KvPlan {
    /// The start-up line.
    pub fn describe(&self) -> String {
        format!(
            "KV cache: {} for {} pages x {} positions ({} tokens, {} per token); max model len {}; up to {} sequences",
            human_bytes(self.bytes),
            self.shape.pages,
            self.shape.page_size,
            self.shape.pages * self.shape.page_size,
            human_bytes(self.bytes_per_position),
            self.max_model_len,
            self.shape.max_sequences,
        )
    }
}

/// Sizes the cache for `max_sequences` sequences of a model with `model_max_len` positions
/// (`asked_max_len` caps it further). The budget never exceeds what `max_sequences`
/// sequences of the longest context can use.
pub fn plan(
    bytes_per_position: usize,
    max_sequences: usize,
    model_max_len: usize,
    asked_max_len: Option<usize>,
    budget: Budget,
) -> Result<KvPlan, String> {
    let page_size = DEFAULT_PAGE_SIZE;
    let page_bytes = page_size * bytes_per_position.max(1);
    let wanted_len = asked_max_len
        .unwrap_or(model_max_len)
        .min(model_max_len)
        .max(1);
    let worst_pages = max_sequences.max(1) * (wanted_len + CONTEXT_SLACK).div_ceil(page_size);
    let budget_bytes = match budget {
        Budget::Bytes(b) => b,
        Budget::FreeFraction {
            free,
            weights,
            fraction,
        } => (free.saturating_sub(weights) as f64 * fraction.clamp(0.0, 1.0)) as usize,
    };
    let pages = (budget_bytes / page_bytes).min(worst_pages);
    let held = (pages * page_size).saturating_sub(CONTEXT_SLACK);
    if held < 2 * CONTEXT_SLACK {
        return Err(format!(
            "the KV-cache budget ({}) holds {} positions; give it more (--kv-cache-memory) or free memory",
            human_bytes(budget_bytes),
            pages * page_size
        ));
    }
    if let Some(asked) = asked_max_len.filter(|&a| a > held) {
        return Err(format!(
            "--max-total-tokens {asked} needs {} of KV cache; the budget is {} (raise --kv-cache-memory)",
            human_bytes((asked + CONTEXT_SLACK) * bytes_per_position),
            human_bytes(budget_bytes)
        ));
    }
    Ok(KvPlan {
        shape: CacheShape {
            max_sequences: max_sequences.max(1),
            pages,
            page_size,
            max_context: wanted_len.min(held) + CONTEXT_SLACK,
        },
        max_model_len: wanted_len.min(held),
        bytes: (pages + 1) * page_bytes,
        bytes_per_position,
    })
}

/// On a device where every slot holds the longest context in full (a GPU pool is allocated
/// whole), shortens that context until `plan`'s budget holds all its sequences, unless the user
/// asked for the context limit (`asked_max_len`): 128 sequences of 32k positions would otherwise
/// leave room for a quarter of them. Unchanged when they fit, or when the context would fall
/// under what one sequence needs at least.
pub fn fit_whole_slots(plan: KvPlan, asked_max_len: Option<usize>) -> KvPlan {
    let shape = plan.shape;
    let slot_pages = shape.max_context.div_ceil(shape.page_size);
    if asked_max_len.is_some() || shape.max_sequences * slot_pages <= shape.pages {
        return plan;
    }
    let per_slot = shape.pages / shape.max_sequences * shape.page_size;
    let held = per_slot.saturating_sub(CONTEXT_SLACK);
    if held < 2 * CONTEXT_SLACK {
        return plan;
    }
    KvPlan {
        shape: CacheShape {
            max_context: held + CONTEXT_SLACK,
            ..shape
        },
        max_model_len: held,
        ..plan
    }
}

/// `4GiB`, `512MiB`, `1.5GB`, `64k`, or plain bytes.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 4GiB, 512MiB, 1.5GB)"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("`{text}`: unknown unit `{other}`")),
    };
    if value < 0.0 || !value.is_finite() {
        return Err(format!("`{text}` is not a size"));
    }
    Ok((value * scale) as usize)
}

/// `1.5 GiB`-style text.
pub fn human_bytes(bytes: usize) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

/// Bytes of host memory this process may still use: `MemAvailable`, and the cgroup's
/// `memory.max − memory.current` when that is lower.
pub fn available_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available_kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let read = |name: &str| -> Option<usize> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let cgroup =
        read("memory.max").map(|max| max.saturating_sub(read("memory.current").unwrap_or(0)));
    Some(cgroup.map_or(available_kib * 1024, |c| c.min(available_kib * 1024)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_becomes_pages_and_caps_the_context() {
        // 1 KiB per position: 16 KiB per page.
        let p = plan(1024, 8, 32_768, None, Budget::Bytes(64 << 20)).unwrap();
        assert_eq!(p.shape.pages, 4096, "64 MiB / 16 KiB");
        assert_eq!(
            p.max_model_len, 32_768,
            "the model's length fits (65,536 positions)"
        );
        let small = plan(1024, 8, 32_768, None, Budget::Bytes(8 << 20)).unwrap();
        assert_eq!(
            (small.shape.pages, small.max_model_len),
            (512, 8192 - CONTEXT_SLACK)
        );
        let err = plan(1024, 8, 32_768, Some(16_000), Budget::Bytes(8 << 20)).unwrap_err();
        assert!(err.contains("--max-total-tokens 16000"), "{err}");
        assert!(plan(1024, 8, 32_768, None, Budget::Bytes(100 << 10)).is_err());
    }

    #[test]
    fn the_budget_never_exceeds_the_worst_case_and_free_memory_is_shared() {
        let p = plan(1024, 2, 1024, None, Budget::Bytes(1 << 30)).unwrap();
        assert_eq!(p.shape.pages, 2 * (1024 + CONTEXT_SLACK) / 16);
        let free = Budget::FreeFraction {
            free: 10 << 30,
            weights: 2 << 30,
            fraction: 0.5,
        };
        let p = plan(1024, 1000, 32_768, None, free).unwrap();
        assert_eq!(
            p.shape.pages,
            (4usize << 30) / (16 << 10),
            "half of the 8 GiB left"
        );
        assert_eq!(
            p.bytes,
            (p.shape.pages + 1) * (16 << 10),
            "one padding page"
        );
    }

    #[test]
    fn whole_slots_shorten_the_context_until_every_sequence_fits() {
        // 1 KiB per position, 8 MiB: 512 pages of 16 positions, 8 sequences of 32k asked.
        let p = plan(1024, 8, 32_768, None, Budget::Bytes(8 << 20)).unwrap();
        assert_eq!(
            p.shape.max_context, 8192,
            "one sequence takes the whole budget"
        );
        let fitted = fit_whole_slots(p.clone(), None);
        // 512 / 8 = 64 pages = 1024 positions a slot, less the slack.
        assert_eq!(fitted.max_model_len, 1024 - CONTEXT_SLACK);
        assert_eq!(fitted.shape.max_context, 1024);
        assert_eq!(fitted.shape.pages, p.shape.pages);
        assert_eq!(
            fit_whole_slots(p.clone(), Some(4000)),
            p,
            "an asked limit stays"
        );
        let roomy = plan(1024, 2, 1024, None, Budget::Bytes(1 << 30)).unwrap();
        assert_eq!(
            fit_whole_slots(roomy.clone(), None),
            roomy,
            "they fit already"
        );
        let crowded = plan(1024, 400, 32_768, None, Budget::Bytes(8 << 20)).unwrap();
        assert_eq!(
            fit_whole_slots(crowded.clone(), None),
            crowded,
            "a slot under 256"
        );
    }

    #[test]
    fn sizes_parse_in_both_unit_systems() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err() && parse_bytes("3 parsecs").is_err());
        assert_eq!(human_bytes(3 << 29), "1.50 GiB");
    }
}
