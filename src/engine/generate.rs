//! Whole generations over a [`BlockDecoder`]: every request of a list admitted as slots free up,
//! stepped to its end and returned in input order ([`generate`], [`BlockDecoder::generate`]).

use super::decoder::BlockDecoder;
use super::kv_cache::Admission;
use super::params::{FinishReason, GenerationParams};
use super::sequence::{Sequence, SpecialIds};
use super::{DecodeStats, EngineError};
use crate::model::{Sdar, TextTokenizer};

/// One finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Completion token ids (EOS included when it ended the sequence).
    pub tokens: Vec<i64>,
    /// Completion text (special tokens skipped, cut before a matched stop string).
    pub text: String,
    /// Global step at which each completion token was unmasked (1-based).
    pub trajectory: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Forward passes this sequence took part in.
    pub forwards: u32,
}

/// Checks one request before it reaches the decoder.
fn validate_request(
    model: &Sdar,
    index: usize,
    prompt: &[i64],
    params: &GenerationParams,
) -> Result<(), EngineError> {
    params.validate().map_err(EngineError::Invalid)?;
    if prompt.is_empty() {
        return Err(EngineError::Invalid(format!("prompt {index} is empty")));
    }
    let vocab = model.config().vocab_size;
    match prompt.iter().find(|&&t| t < 0 || t >= vocab) {
        Some(bad) => Err(EngineError::Invalid(format!(
            "prompt {index}: token id {bad} is outside the vocabulary (0..{vocab})"
        ))),
        None => Ok(()),
    }
}

/// Decodes every prompt of `requests` (one block size) together, at most `max_batch` at a time,
/// returning the generations in input order and the decoder's counters.
///
/// Without a tokenizer, texts are empty and stop strings are ignored (benchmarks).
pub fn generate(
    model: &Sdar,
    special: SpecialIds,
    tokenizer: Option<&TextTokenizer>,
    requests: &[(Vec<i64>, GenerationParams)],
    max_batch: usize,
) -> Result<(Vec<Generation>, DecodeStats), EngineError> {
    let capacity = requests
        .iter()
        .map(|(prompt, params)| super::sequence::context_needed(prompt.len(), params))
        .max()
        .unwrap_or(0);
    let slots = max_batch.clamp(1, requests.len().max(1));
    BlockDecoder::new(model, special, tokenizer, slots, capacity).generate(requests)
}

impl BlockDecoder<'_> {
    /// Decodes every prompt of `requests` (one block size), as many at a time as the cache
    /// admits, returning the generations in input order and this call's counters. The decoder
    /// (its cache, its CUDA graphs) can run call after call.
    pub fn generate(
        &mut self,
        requests: &[(Vec<i64>, GenerationParams)],
    ) -> Result<(Vec<Generation>, DecodeStats), EngineError> {
        let before = self.stats();
        let mut seqs = Vec::with_capacity(requests.len());
        for (i, (prompt, params)) in requests.iter().enumerate() {
            validate_request(self.model(), i, prompt, params)?;
            seqs.push(Sequence::new(
                i as u64,
                prompt,
                params.clone(),
                self.special(),
            ));
        }
        let mut results: Vec<Option<Generation>> = vec![None; seqs.len()];
        let mut waiting = seqs.iter_mut().enumerate().peekable();
        let mut active: Vec<(usize, &mut Sequence)> = Vec::new();
        while waiting.peek().is_some() || !active.is_empty() {
            while let Some((_, next)) = waiting.peek() {
                if !active.is_empty()
                    && self.cache().admission(next.max_context()) != Admission::Fits
                {
                    break;
                }
                let Some((i, seq)) = waiting.next() else {
                    break;
                };
                self.admit(seq)?;
                active.push((i, seq));
            }
            let mut batch: Vec<&mut Sequence> = active.iter_mut().map(|(_, s)| &mut **s).collect();
            let stepped = self.step(&mut batch);
            if stepped.is_err() {
                for (_, seq) in active.iter_mut() {
                    self.release(seq);
                }
            }
            stepped?;
            for (i, seq) in active
                .iter_mut()
                .filter(|(_, s)| s.finish_reason().is_some())
            {
                self.release(seq);
                results[*i] = Some(finished(seq));
            }
            active.retain(|(_, s)| s.finish_reason().is_none());
        }
        Ok((
            results.into_iter().flatten().collect(),
            self.stats() - before,
        ))
    }
}

fn finished(seq: &Sequence) -> Generation {
    Generation {
        tokens: seq.completion().to_vec(),
        text: seq.text().to_string(),
        trajectory: seq.trajectory().to_vec(),
        // Only finished sequences are collected, so the fallback is never used.
        finish_reason: seq.finish_reason().unwrap_or(FinishReason::Stop),
        prompt_tokens: seq.prompt_len(),
        forwards: seq.forwards(),
    }
}
