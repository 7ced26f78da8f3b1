//! Dual-stream training layout (spec §2.2): which token may attend which, and its position.
//!
//! A training sample is a clean stream (prompt + response, as committed blocks are at inference)
//! followed by a noisy stream (the response blocks with some tokens masked). Every token is a
//! [`Slot`]: its stream, its block id and whether other rows may see it. One rule gives the mask:
//! - a clean row sees clean keys of blocks ≤ its own (block-causal, bidirectional inside a block);
//! - a noisy row sees clean keys of blocks < its own and noisy keys of its own block;
//! - invisible keys (pads) are seen by nobody; a row that sees nothing attends itself.
//!
//! Two layouts use the rule: [`aligned_layout`] (ours: blocks aligned at absolute position 0
//! exactly as at inference, so the first response block may hold the prompt's tail) and
//! [`upstream_layout`] (T3D's: prompt blocks aligned to end at the prompt, spec bug §8.3), kept
//! to check the rule against the spec's worked example.

use std::ops::Range;

/// Which stream a slot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Clean tokens: the prompt and the response as committed.
    Clean,
    /// Noisy copies of the response blocks (masked tokens live here).
    Noisy,
}

/// One token of the dual-stream layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Its stream.
    pub stream: Stream,
    /// Its block id (order matters, values do not).
    pub block: i64,
    /// Whether other rows may attend it (false for pads).
    pub visible: bool,
}

impl Slot {
    /// A padding slot: invisible, and its row attends only itself.
    pub fn padding() -> Self {
        Self {
            stream: Stream::Noisy,
            block: i64::MIN,
            visible: false,
        }
    }

    fn sees(&self, key: &Slot) -> bool {
        key.visible
            && match (self.stream, key.stream) {
                (Stream::Clean, Stream::Clean) => key.block <= self.block,
                (Stream::Clean, Stream::Noisy) => false,
                (Stream::Noisy, Stream::Clean) => key.block < self.block,
                (Stream::Noisy, Stream::Noisy) => key.block == self.block,
            }
    }
}

/// The `N × N` attention mask of `slots`, row-major (`true` = may attend).
pub fn attention_mask(slots: &[Slot]) -> Vec<bool> {
    let n = slots.len();
    let mut mask = vec![false; n * n];
    for (q, row) in slots.iter().enumerate() {
        let cells = &mut mask[q * n..(q + 1) * n];
        for (cell, key) in cells.iter_mut().zip(slots) {
            *cell = row.sees(key);
        }
        if !cells.iter().any(|&c| c) {
            cells[q] = true;
        }
    }
    mask
}

/// Our layout for a prompt of `prompt_len` and a response of `response_len` tokens, block size
/// `block`: the clean stream covers positions `0..P+R`, the noisy stream the positions of every
/// block that holds response tokens, `s0..P+R` with `s0 = ⌊P/b⌋·b` (its prompt-tail tokens stay
/// unmasked, as at inference). Returns the slots and their absolute positions.
pub fn aligned_layout(
    prompt_len: usize,
    response_len: usize,
    block: usize,
) -> (Vec<Slot>, Vec<i64>) {
    let total = prompt_len + response_len;
    let noisy_start = prompt_len / block * block;
    let slot = |stream, pos: usize| Slot {
        stream,
        block: (pos / block) as i64,
        visible: true,
    };
    let clean = (0..total).map(|p| (slot(Stream::Clean, p), p as i64));
    let noisy = (noisy_start..total).map(|p| (slot(Stream::Noisy, p), p as i64));
    clean.chain(noisy).unzip()
}

/// Index of the first noisy slot of [`aligned_layout`] and the position it stands for.
pub fn noisy_start(prompt_len: usize, response_len: usize, block: usize) -> (usize, usize) {
    (prompt_len + response_len, prompt_len / block * block)
}

/// T3D's layout `[prompt (L0, the first `left_pads` are pads) | clean (L1) | noisy (L1)]`:
/// prompt chunks aligned to end at L0, response blocks starting at L0 (spec §2.2).
pub fn upstream_layout(
    prompt_len: usize,
    left_pads: usize,
    response_len: usize,
    block: usize,
) -> Vec<Slot> {
    let prompt = (0..prompt_len).map(|j| Slot {
        stream: Stream::Clean,
        block: -(((prompt_len - 1 - j) / block) as i64) - 1,
        visible: j >= left_pads,
    });
    let response = |stream| {
        (0..response_len).map(move |j| Slot {
            stream,
            block: (j / block) as i64,
            visible: true,
        })
    };
    prompt
        .chain(response(Stream::Clean))
        .chain(response(Stream::Noisy))
        .collect()
}

/// T3D's positions (spec §2.2): left pads get 1, the first real prompt token 0, and the noisy
/// stream repeats the clean response positions.
pub fn upstream_positions(prompt: &[i64], response_len: usize, pad_id: i64) -> Vec<i64> {
    let valid = prompt
        .iter()
        .map(|&t| t != pad_id)
        .chain(std::iter::repeat_n(true, response_len));
    let mut seen = 0;
    let clean: Vec<i64> = valid
        .map(|v| {
            seen += i64::from(v);
            if v {
                seen - 1
            } else {
                1
            }
        })
        .collect();
    let noisy = clean[prompt.len()..].to_vec();
    [clean, noisy].concat()
}

/// The response index ranges of each block, blocks aligned at absolute position 0 (the first
/// one starts after the prompt's tail).
pub fn response_blocks(prompt_len: usize, response_len: usize, block: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < response_len {
        let end = (((prompt_len + start) / block + 1) * block - prompt_len).min(response_len);
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_blocks_start_after_the_prompt_tail() {
        assert_eq!(response_blocks(4, 8, 4), vec![0..4, 4..8]);
        // P = 3: the first block holds one response token.
        assert_eq!(response_blocks(3, 9, 4), vec![0..1, 1..5, 5..9]);
    }

    fn parse(rows: &[&str]) -> Vec<bool> {
        rows.iter()
            .flat_map(|r| r.split_whitespace().map(|c| c == "1"))
            .collect()
    }

    /// Spec §2.2's worked example (L0 = 3, L1 = 5, b = 2), copied from the spec.
    #[test]
    fn upstream_mask_matches_the_spec_example() {
        let expected = parse(&[
            "1 0 0 0 0 0 0 0 0 0 0 0 0",
            "1 1 1 0 0 0 0 0 0 0 0 0 0",
            "1 1 1 0 0 0 0 0 0 0 0 0 0",
            "1 1 1 1 1 0 0 0 0 0 0 0 0",
            "1 1 1 1 1 0 0 0 0 0 0 0 0",
            "1 1 1 1 1 1 1 0 0 0 0 0 0",
            "1 1 1 1 1 1 1 0 0 0 0 0 0",
            "1 1 1 1 1 1 1 1 0 0 0 0 0",
            "1 1 1 0 0 0 0 0 1 1 0 0 0",
            "1 1 1 0 0 0 0 0 1 1 0 0 0",
            "1 1 1 1 1 0 0 0 0 0 1 1 0",
            "1 1 1 1 1 0 0 0 0 0 1 1 0",
            "1 1 1 1 1 1 1 0 0 0 0 0 1",
        ]);
        assert_eq!(attention_mask(&upstream_layout(3, 0, 5, 2)), expected);
    }

    /// `process_pad`: pad columns are zeroed and an all-zero pad row attends itself.
    #[test]
    fn upstream_pads_are_invisible_and_attend_themselves() {
        // Prompt [pad, pad, a, b], response [c, d], b = 2.
        let expected = parse(&[
            "1 0 0 0 0 0 0 0",
            "0 1 0 0 0 0 0 0",
            "0 0 1 1 0 0 0 0",
            "0 0 1 1 0 0 0 0",
            "0 0 1 1 1 1 0 0",
            "0 0 1 1 1 1 0 0",
            "0 0 1 1 0 0 1 1",
            "0 0 1 1 0 0 1 1",
        ]);
        assert_eq!(attention_mask(&upstream_layout(4, 2, 2, 2)), expected);
    }

    /// Spec §9 test 2.
    #[test]
    fn upstream_positions_match_the_spec() {
        let pad = 0;
        let positions = upstream_positions(&[pad, pad, 11, 12], 2, pad);
        assert_eq!(positions, vec![1, 1, 0, 1, 2, 3, 2, 3]);
    }

    /// Our layout for P = 3, R = 5, b = 2, derived by hand: blocks {p0 p1} {p2 c0} {c1 c2}
    /// {c3 c4}; the noisy stream starts at position 2 and carries p2 unmasked.
    #[test]
    fn aligned_mask_and_positions_match_inference_blocks() {
        //            p0 p1 p2 c0 c1 c2 c3 c4 | ñ2 ñ3 ñ4 ñ5 ñ6 ñ7
        let expected = parse(&[
            "1 1 0 0 0 0 0 0  0 0 0 0 0 0", // p0
            "1 1 0 0 0 0 0 0  0 0 0 0 0 0", // p1
            "1 1 1 1 0 0 0 0  0 0 0 0 0 0", // p2
            "1 1 1 1 0 0 0 0  0 0 0 0 0 0", // c0
            "1 1 1 1 1 1 0 0  0 0 0 0 0 0", // c1
            "1 1 1 1 1 1 0 0  0 0 0 0 0 0", // c2
            "1 1 1 1 1 1 1 1  0 0 0 0 0 0", // c3
            "1 1 1 1 1 1 1 1  0 0 0 0 0 0", // c4
            "1 1 0 0 0 0 0 0  1 1 0 0 0 0", // noisy p2 (block 1)
            "1 1 0 0 0 0 0 0  1 1 0 0 0 0", // noisy c0
            "1 1 1 1 0 0 0 0  0 0 1 1 0 0", // noisy c1 (block 2)
            "1 1 1 1 0 0 0 0  0 0 1 1 0 0", // noisy c2
            "1 1 1 1 1 1 0 0  0 0 0 0 1 1", // noisy c3 (block 3)
            "1 1 1 1 1 1 0 0  0 0 0 0 1 1", // noisy c4
        ]);
        let (slots, positions) = aligned_layout(3, 5, 2);
        assert_eq!(attention_mask(&slots), expected);
        assert_eq!(positions, vec![0, 1, 2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 7]);
        assert_eq!(noisy_start(3, 5, 2), (8, 2));
    }

    #[test]
    fn padding_rows_attend_only_themselves() {
        let (mut slots, _) = aligned_layout(2, 2, 2);
        slots.push(Slot::padding());
        let n = slots.len();
        let mask = attention_mask(&slots);
        let last_row = &mask[(n - 1) * n..];
        assert_eq!(last_row.iter().filter(|&&c| c).count(), 1);
        assert!(last_row[n - 1]);
        assert!(
            (0..n - 1).all(|q| !mask[q * n + n - 1]),
            "nobody sees the pad"
        );
    }
}
