//! The block-diffusion decoder: one forward per denoising step for a whole group of sequences
//! (different prompt lengths, same block size), with the commit fused into the next step.
//!
//! [`BlockDecoder`] is the library API shared by the server's engine thread and the trainer's
//! rollouts: `admit` a [`Sequence`] (takes a KV slot), call `step` until it finishes, `release`
//! it. [`generate`] wraps that loop for a fixed list of prompts.

use tch::Tensor;

use super::batch::{ForwardBatch, StagedBatch};
use super::cuda_graph::{self, GraphCache, GraphKey, GraphRun};
use super::kv_cache::{Admission, CacheShape, KvCache};
use super::params::{GenerationParams, Remasking};
use super::penalties::{StagedPenalties, TokenPenalty};
use super::sampler::{sample_rows, RowSampling, StagedSampling};
use super::sequence::{Sequence, SpecialIds, StepOutcome};
use super::transfer::{Upload, Uploaded};
use super::EngineError;
use crate::model::{qwen3::ForwardInput, Sdar, TextTokenizer};

/// Counters of one decoder's work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecodeStats {
    /// Model forward passes.
    pub forwards: u64,
    /// Completion tokens committed.
    pub tokens: u64,
    /// Query rows processed (real rows, padding excluded).
    pub rows: u64,
    /// Key positions attended over, summed over forwards and sequences (the KV cache read).
    pub key_positions: u64,
    /// Bytes of keys/values copied out of the cache for attention (0 when it reads in place).
    pub kv_bytes_materialised: u64,
    /// Forwards that replayed a CUDA graph.
    pub graph_replays: u64,
    /// CUDA graphs captured.
    pub graph_captures: u64,
}

impl std::ops::Sub for DecodeStats {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            forwards: self.forwards - earlier.forwards,
            tokens: self.tokens - earlier.tokens,
            rows: self.rows - earlier.rows,
            key_positions: self.key_positions - earlier.key_positions,
            kv_bytes_materialised: self.kv_bytes_materialised - earlier.kv_bytes_materialised,
            graph_replays: self.graph_replays - earlier.graph_replays,
            graph_captures: self.graph_captures - earlier.graph_captures,
        }
    }
}

/// Owns a KV cache and runs denoising steps of a model over groups of sequences.
pub struct BlockDecoder<'m> {
    model: &'m Sdar,
    tokenizer: Option<&'m TextTokenizer>,
    cache: KvCache,
    special: SpecialIds,
    /// Ids never sampled (`<|MASK|>`, rows without a token), on the model's device.
    never_generate: Tensor,
    stats: DecodeStats,
    /// CUDA graphs of decode steps, when on.
    graphs: Option<GraphCache>,
    /// Decode steps run at the graphs' padded shapes (always so under graphs).
    padded_steps: bool,
}

impl<'m> BlockDecoder<'m> {
    /// A decoder with `slots` concurrent sequences of up to `capacity` positions each; with a
    /// tokenizer it also enforces stop strings.
    pub fn new(
        model: &'m Sdar,
        special: SpecialIds,
        tokenizer: Option<&'m TextTokenizer>,
        slots: usize,
        capacity: usize,
    ) -> Self {
        let shape = CacheShape::worst_case(slots, capacity);
        Self::with_cache(model, special, tokenizer, shape)
    }

    /// A decoder whose paged KV cache has `shape` (sequences share its pages).
    pub fn with_cache(
        model: &'m Sdar,
        special: SpecialIds,
        tokenizer: Option<&'m TextTokenizer>,
        shape: CacheShape,
    ) -> Self {
        let (kind, device) = (model.dtype(), model.device());
        let cache = KvCache::new(model.config(), shape, kind, device);
        let banned = tokenizer.map_or_else(|| vec![special.mask], |t| t.never_generate.clone());
        let mut upload = Upload::default();
        let banned = upload.push_i64(&banned);
        Self {
            model,
            tokenizer,
            cache,
            special,
            never_generate: upload.send(device).get(banned),
            stats: DecodeStats::default(),
            graphs: None,
            padded_steps: false,
        }
    }

    /// Replays decode steps as CUDA graphs when `enabled`, the model is on CUDA and this build
    /// has graph support; otherwise every step runs eagerly.
    pub fn with_cuda_graphs(mut self, enabled: bool) -> Self {
        self.graphs = cuda_graph::wanted(enabled, self.model.device()).map(GraphCache::new);
        self.padded_steps = self.graphs.is_some();
        self
    }

    /// Runs decode steps at the padded shapes graphs use (rows from slot 0 up to a bucket, keys
    /// up to a power of two) even without graphs, on any device: what padding does to the tokens
    /// (nothing, at `T = 0`) can then be checked where no GPU is.
    pub fn with_padded_steps(mut self) -> Self {
        self.padded_steps = true;
        self
    }

    /// Whether decode steps may run as CUDA graphs.
    pub fn cuda_graphs(&self) -> bool {
        self.graphs.as_ref().is_some_and(|g| g.failure().is_none())
    }

    /// Work counters so far.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// The ids of EOS and `<|MASK|>` this decoder uses.
    pub fn special(&self) -> SpecialIds {
        self.special
    }

    /// The model this decoder runs.
    pub fn model(&self) -> &'m Sdar {
        self.model
    }

    /// The KV cache (for occupancy reporting).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Gives `seq` a KV slot with the pages its longest context needs promised; fails if the
    /// cache could never hold it, or cannot now.
    pub fn admit(&mut self, seq: &mut Sequence) -> Result<(), EngineError> {
        let needed = seq.max_context();
        match self.cache.admission(needed) {
            Admission::Never => Err(EngineError::TooLong {
                needed,
                capacity: self.cache.capacity(),
            }),
            Admission::Wait => Err(EngineError::CacheFull),
            Admission::Fits => {
                seq.slot = self.cache.allocate(needed);
                seq.slot.map(|_| ()).ok_or(EngineError::CacheFull)
            }
        }
    }

    /// Frees `seq`'s KV slot.
    pub fn release(&mut self, seq: &mut Sequence) {
        if let Some(slot) = seq.slot.take() {
            self.cache.release(slot);
        }
    }

    /// One denoising forward for every sequence of `seqs` (admitted, unfinished, one block size).
    pub fn step(&mut self, seqs: &mut [&mut Sequence]) -> Result<Vec<StepOutcome>, EngineError> {
        let Some(first) = seqs.first() else {
            return Ok(Vec::new());
        };
        let b = first.block_size();
        if seqs
            .iter()
            .any(|s| s.block_size() != b || s.slot.is_none() || s.finish_reason().is_some())
        {
            return Err(EngineError::Invalid(
                "a step needs admitted, unfinished sequences of one block size".into(),
            ));
        }
        let rows: Vec<RowSampling> = seqs
            .iter()
            .flat_map(|s| vec![row_sampling(&s.params); b])
            .collect();
        let uniforms: Vec<f32> = seqs.iter_mut().flat_map(|s| s.draw_uniforms()).collect();
        let want_entropy = seqs
            .iter()
            .any(|s| s.params.denoise.remasking == Remasking::EntropyBounded);
        let needs: Vec<(usize, usize)> = seqs
            .iter()
            .filter_map(|s| Some((s.slot?, s.cached_len() + s.query_len())))
            .collect();
        self.cache.grow(&needs).map_err(EngineError::Invalid)?;
        // Everything the step needs on the device goes in one copy; what the forward reads
        // goes first (a graph's input buffer is that prefix).
        let layout = self
            .padded_steps
            .then(|| self.graph_layout(seqs, b))
            .flatten();
        let mut upload = Upload::default();
        let staged = StagedBatch::stage(seqs, &self.cache, self.special.mask, layout, &mut upload);
        let sampling = StagedSampling::stage(&mut upload, &rows, &uniforms, want_entropy)
            .with_logprobs(seqs.iter().filter_map(|s| s.params.sampling.logprobs).max())
            .with_penalties(stage_penalties(seqs, b, &mut upload));
        // libtorch reports shape errors and out-of-memory as panics through tch's infallible
        // API; contain them so one failing batch cannot take the caller down.
        let forward = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let uploaded = upload.send(self.model.device());
            tch::no_grad(|| {
                let (hidden, materialised, run) = self.block_hidden(&staged, &uploaded, layout);
                let logits = self.block_logits(hidden, staged.sequence_rows(&uploaded));
                (
                    sample_rows(&logits, &sampling, &uploaded),
                    materialised,
                    run,
                )
            })
        }));
        let (sampled, materialised, run) =
            forward.map_err(|panic| EngineError::Forward(panic_message(&*panic)))?;
        match run {
            Some(GraphRun::Replayed) => self.stats.graph_replays += 1,
            Some(GraphRun::Captured) => self.stats.graph_captures += 1,
            None => {}
        }
        self.stats.kv_bytes_materialised += materialised;
        self.stats.forwards += 1;
        self.stats.rows += staged.real_rows() as u64;
        self.stats.key_positions += staged.key_positions();
        let mut outcomes = Vec::with_capacity(seqs.len());
        for (i, seq) in seqs.iter_mut().enumerate() {
            let span = i * b..(i + 1) * b;
            if let (Some(_), Some(logprobs)) = (
                seq.params.sampling.logprobs,
                sampled.logprobs.get(span.clone()),
            ) {
                seq.offer_logprobs(logprobs.to_vec());
            }
            let entropy = sampled.entropy.get(span.clone()).unwrap_or(&[]);
            let mut outcome = seq.apply_step(
                &sampled.tokens[span.clone()],
                &sampled.confidence[span],
                entropy,
            );
            if let (Some(tokenizer), false) = (self.tokenizer, outcome.committed.is_empty()) {
                if seq.push_text(tokenizer, &outcome.committed)? {
                    outcome.finished = seq.finish_reason();
                }
            }
            outcomes.push(outcome);
        }
        self.stats.tokens += outcomes
            .iter()
            .map(|o| o.committed.len() as u64)
            .sum::<u64>();
        Ok(outcomes)
    }

    /// The padded shape this step runs at as a graph, if it can.
    fn graph_layout(&self, seqs: &[&mut Sequence], block: usize) -> Option<GraphKey> {
        let top_slot = seqs.iter().filter_map(|s| s.slot).max()?;
        let queries = seqs.iter().map(|s| s.query_len()).max()?;
        let keys = seqs.iter().map(|s| s.cached_len() + s.query_len()).max()?;
        let cache = &self.cache;
        cuda_graph::padded_layout(
            top_slot,
            queries,
            keys,
            block,
            cache.slots(),
            cache.slot_positions(),
        )
    }

    /// Final hidden states `(B, b, H)` of every batch row's block, the bytes of KV the forward
    /// copied, and whether a graph ran it (replayed, or captured after an eager run).
    fn block_hidden(
        &mut self,
        staged: &StagedBatch,
        uploaded: &Uploaded,
        layout: Option<GraphKey>,
    ) -> (Tensor, u64, Option<GraphRun>) {
        let (model, cache) = (self.model, &self.cache);
        let eager = |uploaded: &Uploaded| hidden_of(model, cache, &staged.on_device(uploaded));
        if let (Some(key), Some(graphs), Some(end)) =
            (layout, self.graphs.as_mut(), staged.forward_inputs_end())
        {
            let forward = |inputs: &Tensor| eager(&Uploaded::wrap(inputs.shallow_clone())).0;
            if let Ok((hidden, run)) = graphs.run(key, &uploaded.prefix(end), &forward) {
                return (hidden, 0, Some(run));
            }
        }
        let (hidden, materialised) = eager(uploaded);
        (hidden, materialised, None)
    }

    /// Logits `(N·b, V)` of the sequences' block rows (`sequence_rows` picks and orders the
    /// batch rows; `None`: every row in order). Never-generate ids get `-inf`, so a mask id is
    /// never committed as a finished token.
    fn block_logits(&self, hidden: Tensor, sequence_rows: Option<Tensor>) -> Tensor {
        let hidden = match sequence_rows {
            Some(rows) => hidden.index_select(0, &rows),
            None => hidden,
        };
        let logits = self.model.logits(&hidden); // (N, b, V)
        let vocab = logits.size()[2];
        let mut rows = logits.reshape([-1, vocab]);
        let _ = rows.index_fill_(1, &self.never_generate, f64::NEG_INFINITY);
        rows
    }
}

/// Final hidden states `(B, b, H)` of `batch`'s block rows over `cache`, and the bytes of KV the
/// forward copied out of it.
fn hidden_of(model: &Sdar, cache: &KvCache, batch: &ForwardBatch) -> (Tensor, u64) {
    let binding = cache.bind(&batch.plan);
    let input = ForwardInput {
        ids: &batch.ids,
        positions: &batch.positions,
        mask: &batch.mask,
        kv: Some(&binding),
        output_rows: Some(&batch.block_rows),
    };
    let hidden = model.hidden_states(&input);
    (hidden, binding.materialised_bytes())
}

/// The text of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload.downcast_ref::<String>().map(String::as_str);
    let text = text.or_else(|| payload.downcast_ref::<&str>().copied());
    text.unwrap_or("forward pass panicked")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn row_sampling(params: &GenerationParams) -> RowSampling {
    let s = &params.sampling;
    RowSampling {
        temperature: s.temperature as f32,
        top_k: s.top_k as i64,
        top_p: s.top_p as f32,
        min_p: s.min_p as f32,
    }
}

/// Stages the penalties of every sequence that has some, for each of its `block` logits rows.
fn stage_penalties(
    seqs: &[&mut Sequence],
    block: usize,
    upload: &mut Upload,
) -> Option<StagedPenalties> {
    let lists: Vec<(usize, Vec<TokenPenalty>)> = seqs
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.penalties()))
        .filter(|(_, list)| !list.is_empty())
        .collect();
    let per_row: Vec<(usize, &[TokenPenalty])> = lists
        .iter()
        .flat_map(|(i, list)| (0..block).map(move |r| (i * block + r, list.as_slice())))
        .collect();
    StagedPenalties::stage(upload, &per_row)
}

#[cfg(test)]
#[path = "decoder_tests.rs"]
mod tests;
