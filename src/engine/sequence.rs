//! One request's decoding state (spec §3.3, §3.4, §3.8), with the commit fused into the next
//! forward: the tokens whose keys/values must be stored (the prompt's whole blocks at the start,
//! then each finished block) ride along as a "pending" prefix of the next denoising forward, so a
//! block costs exactly its `S` forwards instead of `S + 1`.
//!
//! Blocks are aligned at absolute position 0: the prompt's last `P mod b` tokens share the first
//! block with masks and are never overwritten.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::denoise::{self, BlockScores, PolicyParams};
use super::logprobs::TokenLogprob;
use super::params::{FinishReason, GenerationParams};
use super::penalties::{token_penalties, TokenPenalty};
use super::stop::CompletionText;
use crate::model::{ModelError, TextTokenizer};

/// Special ids the decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// End of sequence.
    pub eos: i64,
    /// `<|MASK|>`.
    pub mask: i64,
}

/// Cache positions a request with a `prompt_len`-token prompt can ever need: prompt and
/// completion rounded up to whole blocks, plus one block of scratch.
pub fn context_needed(prompt_len: usize, params: &GenerationParams) -> usize {
    let b = params.denoise.block_size.max(1);
    (prompt_len + params.stop.max_tokens).div_ceil(b) * b + b
}

/// Decoding state of one sequence.
#[derive(Debug)]
pub struct Sequence {
    /// Caller-chosen id.
    pub id: u64,
    /// The request's parameters.
    pub params: GenerationParams,
    prompt_len: usize,
    special: SpecialIds,
    schedule: Vec<usize>,
    rng: StdRng,
    /// KV-cache slot, while admitted.
    pub(crate) slot: Option<usize>,
    /// Tokens whose keys/values are stored in the cache.
    cached_len: usize,
    /// Committed tokens whose keys/values the next forward stores (fused commit).
    pending: Vec<i64>,
    /// The block being denoised (`b` tokens, masks included).
    block: Vec<i64>,
    /// Positions of `block` still masked.
    maskable: Vec<bool>,
    /// Global step (1-based) at which each block position was unmasked; 0 = not yet.
    first_unmask: Vec<u32>,
    /// Prompt tokens at the head of `block` (only in the first block).
    prompt_tail: usize,
    block_step: usize,
    global_step: u32,
    completion: Vec<i64>,
    trajectory: Vec<u32>,
    finish: Option<FinishReason>,
    forwards: u32,
    text: CompletionText,
    /// The last committed token is the EOS / stop token that ended the sequence (never text).
    ended_on_token: bool,
    /// The prompt, kept only when a repetition penalty reads it.
    penalised_prompt: Vec<i64>,
    /// This step's log-probabilities per block position, offered before [`Self::apply_step`].
    offered_logprobs: Vec<TokenLogprob>,
    /// Log-probabilities of the block's unmasked positions (when the request asks for them).
    block_logprobs: Vec<Option<TokenLogprob>>,
}

/// What one denoising step did to a sequence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepOutcome {
    /// Completion tokens accepted by a block commit in this step (empty if the block goes on).
    pub committed: Vec<i64>,
    /// Log-probabilities of the committed text tokens (when the request asks for them; the
    /// token that ended the sequence has none, as it is not text).
    pub logprobs: Vec<TokenLogprob>,
    /// Set when the sequence ended in this step.
    pub finished: Option<FinishReason>,
}

impl Sequence {
    /// Starts a sequence for `prompt` (non-empty); `params` must be valid.
    pub fn new(id: u64, prompt: &[i64], params: GenerationParams, special: SpecialIds) -> Self {
        let b = params.denoise.block_size;
        let whole = prompt.len() / b * b;
        let tail = prompt.len() - whole;
        let mut block = prompt[whole..].to_vec();
        block.resize(b, special.mask);
        let rng = match params.sampling.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            id,
            schedule: denoise::transfer_schedule(b, params.denoise.steps_per_block),
            prompt_len: prompt.len(),
            special,
            rng,
            slot: None,
            cached_len: 0,
            pending: prompt[..whole].to_vec(),
            block,
            maskable: (0..b).map(|i| i >= tail).collect(),
            first_unmask: vec![0; b],
            prompt_tail: tail,
            block_step: 0,
            global_step: 0,
            completion: Vec::new(),
            trajectory: Vec::new(),
            finish: None,
            forwards: 0,
            text: CompletionText::new(&params.stop.stop_strings),
            ended_on_token: false,
            penalised_prompt: if params.sampling.penalties.repetition != 1.0 {
                prompt.to_vec()
            } else {
                Vec::new()
            },
            offered_logprobs: Vec::new(),
            block_logprobs: vec![None; b],
            params,
        }
    }

    /// Block size `b`.
    pub fn block_size(&self) -> usize {
        self.params.denoise.block_size
    }

    /// Tokens whose keys/values are already cached.
    pub fn cached_len(&self) -> usize {
        self.cached_len
    }

    /// How many rows [`Self::query_tokens`] has.
    pub fn query_len(&self) -> usize {
        self.pending.len() + self.block.len()
    }

    /// The rows this sequence feeds the next forward: pending commit tokens, then the block.
    pub fn query_tokens(&self) -> Vec<i64> {
        [self.pending.as_slice(), self.block.as_slice()].concat()
    }

    /// Row of the first block token within [`Self::query_tokens`].
    pub fn block_row(&self) -> usize {
        self.pending.len()
    }

    /// Cache positions this sequence can ever need (prompt + completion + one block of scratch).
    pub fn max_context(&self) -> usize {
        context_needed(self.prompt_len, &self.params)
    }

    /// One uniform in `(0, 1)` per block position from this request's stream.
    pub fn draw_uniforms(&mut self) -> Vec<f32> {
        (0..self.block_size())
            .map(|_| self.rng.random_range(f32::EPSILON..1.0))
            .collect()
    }

    /// The logit adjustments its penalties make now (over the completion and the block's
    /// unmasked tokens; the prompt too for repetition); empty without penalties.
    pub fn penalties(&self) -> Vec<TokenPenalty> {
        let penalties = &self.params.sampling.penalties;
        if !penalties.active() {
            return Vec::new();
        }
        let unmasked = (self.prompt_tail..self.block.len())
            .filter(|&i| !self.maskable[i])
            .map(|i| self.block[i]);
        let written: Vec<i64> = self.completion.iter().copied().chain(unmasked).collect();
        token_penalties(penalties, &self.penalised_prompt, &written)
    }

    /// Gives the next [`Self::apply_step`] the forward's log-probability of each block
    /// position's drawn token.
    pub fn offer_logprobs(&mut self, logprobs: Vec<TokenLogprob>) {
        self.offered_logprobs = logprobs;
    }

    /// Applies one forward's samples for this block (`tokens`, `confidence`, `entropy` of the `b`
    /// positions) and commits the block if it is done.
    pub fn apply_step(
        &mut self,
        tokens: &[i64],
        confidence: &[f32],
        entropy: &[f32],
    ) -> StepOutcome {
        self.cached_len += self.pending.len();
        self.pending.clear();
        self.forwards += 1;
        let d = &self.params.denoise;
        let policy = PolicyParams {
            remasking: d.remasking,
            confidence_threshold: d.confidence_threshold,
            entropy_bound: d.entropy_bound,
        };
        let scores = BlockScores {
            confidence,
            entropy,
            maskable: &self.maskable,
        };
        let mut offered = std::mem::take(&mut self.offered_logprobs);
        for i in denoise::select_transfer(scores, self.schedule[self.block_step], policy) {
            self.block[i] = tokens[i];
            self.maskable[i] = false;
            self.first_unmask[i] = self.global_step + 1;
            if let Some(lp) = offered.get_mut(i) {
                let keep = self.params.sampling.logprobs.unwrap_or(0);
                let mut lp = std::mem::take(lp);
                lp.top.truncate(keep);
                lp.step = self.global_step + 1;
                self.block_logprobs[i] = Some(lp);
            }
        }
        self.block_step += 1;
        self.global_step += 1;
        if self.maskable.contains(&true) && self.block_step < self.schedule.len() {
            return StepOutcome::default();
        }
        self.commit_block()
    }

    /// Accepts the finished block's tokens in order (§3.4) and starts the next block.
    fn commit_block(&mut self) -> StepOutcome {
        let stop = &self.params.stop;
        let mut committed = Vec::new();
        let mut logprobs = Vec::new();
        for i in self.prompt_tail..self.block.len() {
            if self.completion.len() >= stop.max_tokens {
                self.finish = Some(FinishReason::Length);
                break;
            }
            let token = self.block[i];
            self.completion.push(token);
            self.trajectory.push(self.first_unmask[i]);
            committed.push(token);
            if (token == self.special.eos && !stop.ignore_eos)
                || stop.stop_token_ids.contains(&token)
            {
                self.finish = Some(FinishReason::Stop);
                self.ended_on_token = true;
                break;
            }
            logprobs.extend(self.block_logprobs[i].take());
        }
        if self.finish.is_none() && self.completion.len() >= stop.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        if self.finish.is_none() {
            self.start_next_block();
        }
        StepOutcome {
            committed,
            logprobs,
            finished: self.finish,
        }
    }

    fn start_next_block(&mut self) {
        let b = self.block_size();
        self.pending = std::mem::replace(&mut self.block, vec![self.special.mask; b]);
        self.maskable = vec![true; b];
        self.block_logprobs = vec![None; b];
        self.first_unmask = vec![0; b];
        self.prompt_tail = 0;
        self.block_step = 0;
    }

    /// Detokenises newly committed tokens (the token that ended the sequence, if one did, is
    /// not text); a stop string in them ends the sequence (`finish_reason` becomes `Stop`) and
    /// returns `true`.
    pub fn push_text(
        &mut self,
        tokenizer: &TextTokenizer,
        committed: &[i64],
    ) -> Result<bool, ModelError> {
        let text_tokens = match committed.split_last() {
            Some((_, before)) if self.ended_on_token => before,
            _ => committed,
        };
        if !self.text.push(tokenizer, text_tokens)? {
            return Ok(false);
        }
        self.finish.get_or_insert(FinishReason::Stop);
        Ok(true)
    }

    /// The completion text so far (cut before a matched stop string); empty when the decoder
    /// runs without a tokenizer.
    pub fn text(&self) -> &str {
        self.text.text()
    }

    /// Ends the sequence early (a stop string matched, or the caller cancelled it).
    pub fn finish_now(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
    }

    /// Why the sequence ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Completion tokens so far.
    pub fn completion(&self) -> &[i64] {
        &self.completion
    }

    /// Global step (1-based) at which each completion token was unmasked.
    pub fn trajectory(&self) -> &[u32] {
        &self.trajectory
    }

    /// Prompt length in tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Forward passes this sequence took part in.
    pub fn forwards(&self) -> u32 {
        self.forwards
    }
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
