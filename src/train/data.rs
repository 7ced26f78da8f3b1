//! Turns task problems into tokenised training examples and noisy batches.
//!
//! Every micro-batch draws its problems, trace orders and noise from its own RNG, seeded from
//! (run seed, optimizer step, micro-batch): a resumed run sees exactly the batches the original
//! would have, and every epoch-equivalent gets fresh noise (no frozen masks, spec bug §8.7).

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::batch::{random_block_mask, Example, NoisyExample};
use super::task::{ArithConfig, Problem, ProblemStream, Split};
use crate::model::tokenizer::ChatMessage;
use crate::model::{ModelError, TextTokenizer};

/// The chat-templated prompt of `problem`, as token ids.
pub fn prompt_ids(tokenizer: &TextTokenizer, problem: &Problem) -> Result<Vec<i64>, ModelError> {
    user_prompt_ids(tokenizer, &problem.question())
}

/// The chat-templated prompt of one user message, as token ids.
pub fn user_prompt_ids(tokenizer: &TextTokenizer, question: &str) -> Result<Vec<i64>, ModelError> {
    let msg = ChatMessage::new("user", question);
    tokenizer.encode(&tokenizer.apply_chat_template(&[msg], true)?)
}

/// A deterministic seed for (run seed, step, micro-batch).
pub fn mix_seed(seed: u64, step: u64, micro: u64) -> u64 {
    let mut z = seed
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(micro.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Training data of the `arith` task for one tokenizer and block size.
pub struct ArithData<'t> {
    task: ArithConfig,
    tokenizer: &'t TextTokenizer,
    block: usize,
    seed: u64,
}

impl<'t> ArithData<'t> {
    /// Data for `task`, tokenised by `tokenizer`, at block size `block`, seeded by `seed`.
    pub fn new(task: &ArithConfig, tokenizer: &'t TextTokenizer, block: usize, seed: u64) -> Self {
        Self {
            task: task.clone(),
            tokenizer,
            block,
            seed,
        }
    }

    /// Padding id of collated batches.
    pub fn pad_id(&self) -> i64 {
        self.tokenizer.pad_id.unwrap_or(self.tokenizer.eos_id)
    }

    /// `problem` with a random trace, EOS-terminated and padded to a block boundary.
    pub fn example(&self, problem: &Problem, rng: &mut StdRng) -> Result<Example, ModelError> {
        let prompt = prompt_ids(self.tokenizer, problem)?;
        let mut response = self.tokenizer.encode(&problem.random_trace(rng))?;
        response.push(self.tokenizer.eos_id);
        Ok(Example::padded(
            prompt,
            response,
            self.tokenizer.eos_id,
            self.block,
        ))
    }

    /// The `micro`-th micro-batch of optimizer step `step`: `size` random-masked examples.
    pub fn batch(
        &self,
        step: u64,
        micro: u64,
        size: usize,
    ) -> Result<Vec<NoisyExample>, ModelError> {
        let seed = mix_seed(self.seed, step, micro);
        let mut rng = StdRng::seed_from_u64(seed);
        let problems = ProblemStream::new(&self.task, Split::Train, seed).take(size);
        problems
            .iter()
            .map(|p| {
                let ex = self.example(p, &mut rng)?;
                Ok(random_block_mask(
                    &ex,
                    self.block,
                    self.tokenizer.mask_id,
                    &mut rng,
                ))
            })
            .collect()
    }
}
