//! Per-request decoding parameters: block size and steps, remasking policy, sampling, stopping.

use serde::{Deserialize, Serialize};

use super::logprobs::MAX_TOP_LOGPROBS;
pub use super::penalties::Penalties;

/// Which masked positions a denoising step unmasks (spec §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Remasking {
    /// The `n_s` most confident positions.
    #[default]
    LowConfidenceStatic,
    /// Every position above the threshold, and at least the `n_s` most confident.
    LowConfidenceDynamic,
    /// The next `n_s` masked positions left to right.
    Sequential,
    /// The lowest-entropy positions whose cumulative entropy stays under a bound (at least `n_s`).
    EntropyBounded,
}

impl Remasking {
    /// Every policy.
    pub const ALL: [Self; 4] = [
        Self::LowConfidenceStatic,
        Self::LowConfidenceDynamic,
        Self::Sequential,
        Self::EntropyBounded,
    ];

    /// Its name in requests, flags and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LowConfidenceStatic => "low_confidence_static",
            Self::LowConfidenceDynamic => "low_confidence_dynamic",
            Self::Sequential => "sequential",
            Self::EntropyBounded => "entropy_bounded",
        }
    }
}

impl std::str::FromStr for Remasking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match Self::ALL.into_iter().find(|r| r.as_str() == s) {
            Some(r) => Ok(r),
            None => {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
                Err(format!("unknown remasking `{s}` ({})", names.join(", ")))
            }
        }
    }
}

/// How a denoising step turns logits into tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Nucleus mass to keep (1.0 = off).
    pub top_p: f64,
    /// Seed of this request's random stream (`None`: drawn from entropy).
    pub seed: Option<u64>,
    /// Drop tokens less likely than `min_p` × the likeliest one (0 = off).
    #[serde(default)]
    pub min_p: f64,
    /// Presence, frequency and repetition penalties.
    #[serde(default)]
    pub penalties: Penalties,
    /// Report each committed token's log-probability with this many alternatives (`None`: no
    /// log-probabilities).
    #[serde(default)]
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: None,
            min_p: 0.0,
            penalties: Penalties::default(),
            logprobs: None,
        }
    }
}

/// Block size, steps per block and the remasking policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenoiseParams {
    /// Tokens per block `b` (a power of two).
    pub block_size: usize,
    /// Denoising steps per block `S` (1 ≤ S ≤ b).
    pub steps_per_block: usize,
    /// Which positions each step unmasks.
    pub remasking: Remasking,
    /// Confidence threshold of `low_confidence_dynamic`.
    pub confidence_threshold: f64,
    /// Cumulative-entropy bound of `entropy_bounded`.
    pub entropy_bound: f64,
}

impl DenoiseParams {
    /// The threshold its policy reads: the confidence threshold of `low_confidence_dynamic`,
    /// the entropy bound of `entropy_bounded`, none for the static policies.
    pub fn threshold(&self) -> Option<f64> {
        match self.remasking {
            Remasking::LowConfidenceDynamic => Some(self.confidence_threshold),
            Remasking::EntropyBounded => Some(self.entropy_bound),
            _ => None,
        }
    }

    /// The policy and the threshold it reads, e.g. `entropy_bounded 1`.
    pub fn policy(&self) -> String {
        match self.threshold() {
            Some(t) => format!("{} {t}", self.remasking.as_str()),
            None => self.remasking.as_str().to_string(),
        }
    }
}

impl Default for DenoiseParams {
    fn default() -> Self {
        Self {
            block_size: 4,
            steps_per_block: 4,
            remasking: Remasking::LowConfidenceStatic,
            confidence_threshold: 0.9,
            entropy_bound: 0.35,
        }
    }
}

/// When a sequence stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopParams {
    /// Most completion tokens to produce.
    pub max_tokens: usize,
    /// Extra token ids that end the sequence (accepted, like EOS).
    pub stop_token_ids: Vec<i64>,
    /// Strings that end the sequence; the text is cut before the first match.
    pub stop_strings: Vec<String>,
    /// Keep going past EOS (benchmarks).
    pub ignore_eos: bool,
}

impl Default for StopParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl StopParams {
    /// Makes every id of `eos` stop the sequence too, unless `ignore_eos` (ids kept in order,
    /// each once): how a request meets a checkpoint that lists several EOS ids.
    pub fn add_eos_ids(&mut self, eos: &[i64]) {
        if !self.ignore_eos {
            self.stop_token_ids.extend(eos);
        }
        let mut seen = std::collections::HashSet::new();
        self.stop_token_ids.retain(|id| seen.insert(*id));
    }
}

/// Everything one request asks of the decoder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GenerationParams {
    /// Sampling.
    pub sampling: SamplingParams,
    /// Block diffusion.
    pub denoise: DenoiseParams,
    /// Stopping.
    pub stop: StopParams,
}

impl GenerationParams {
    /// Checks the combination is one the decoder can run.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.denoise;
        if d.block_size == 0 || !d.block_size.is_power_of_two() || d.block_size > 64 {
            return Err(format!(
                "block_size {} must be a power of two in 1..=64",
                d.block_size
            ));
        }
        if d.steps_per_block == 0 || d.steps_per_block > d.block_size {
            return Err(format!(
                "steps_per_block {} must be in 1..={}",
                d.steps_per_block, d.block_size
            ));
        }
        let s = &self.sampling;
        if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
            return Err(format!(
                "temperature {} must be a finite number ≥ 0",
                s.temperature
            ));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return Err(format!("top_p {} must be in (0, 1]", s.top_p));
        }
        if !(0.0..=1.0).contains(&s.min_p) {
            return Err(format!("min_p {} must be in [0, 1]", s.min_p));
        }
        if !(s.penalties.repetition > 0.0 && s.penalties.repetition.is_finite()) {
            return Err(format!(
                "repetition_penalty {} must be a finite number > 0",
                s.penalties.repetition
            ));
        }
        if s.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(format!("at most {MAX_TOP_LOGPROBS} top logprobs"));
        }
        if self.stop.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// EOS, a stop token id or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}
