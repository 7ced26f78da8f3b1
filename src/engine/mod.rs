//! The block-diffusion engine: per-request parameters, the pure denoising policy, the sampler,
//! sequence state with trajectory recording, the KV cache, batch packing, the counted host↔device
//! transfers, and the decoder that runs one forward per denoising step for a whole group of
//! sequences.

pub mod batch;
pub mod cuda_graph;
pub mod decoder;
pub mod denoise;
pub mod device_memory;
pub mod generate;
pub mod host_pool;
pub mod kv_budget;
pub mod kv_cache;
pub mod logprobs;
pub mod params;
pub mod penalties;
pub mod recommended;
pub mod request;
pub mod runner;
pub mod sampler;
pub mod sequence;
mod serve_loop;
pub mod stop;
pub mod text_stream;
pub mod transfer;

pub use decoder::{BlockDecoder, DecodeStats};
pub use generate::{generate, Generation};
pub use params::{
    DenoiseParams, FinishReason, GenerationParams, Remasking, SamplingParams, StopParams,
};
pub use sequence::{Sequence, SpecialIds};

use crate::model::ModelError;

/// Errors of the decoder.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request cannot be decoded as asked.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No KV slot is free.
    #[error("KV cache full")]
    CacheFull,
    /// The sequence needs more positions than a KV slot holds.
    #[error("sequence needs {needed} positions, the KV cache holds {capacity}")]
    TooLong {
        /// Positions the sequence may need.
        needed: usize,
        /// Positions per slot.
        capacity: usize,
    },
    /// A forward pass failed (libtorch error or out of memory); only its batch is affected.
    #[error("forward pass failed: {0}")]
    Forward(String),
    /// The model or tokenizer failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A libtorch operation failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}
