//! The SDAR model: `config.json` ([`SdarConfig`]), the Qwen3 transformer in tch ([`Sdar`]),
//! checkpoint load/save in Hugging Face layout ([`checkpoint`], [`convert`] between dtypes), and
//! the tokenizer with its chat template and incremental detokeniser ([`tokenizer`]).
//!
//! Nothing here knows about decoding or scheduling: the model maps token ids, positions and an
//! attention mask to logits, reading and writing keys/values through a [`KvBinding`].

mod attention;
pub mod char_tokenizer;
pub mod chat_template;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod fused;
pub mod generation_config;
pub mod hub;
pub mod op_count;
pub mod qwen3;
pub mod rope;
pub mod tokenizer;

pub use config::SdarConfig;
pub use qwen3::{KvBinding, Sdar};
pub use tokenizer::TextTokenizer;

use std::path::{Path, PathBuf};

/// Everything that can go wrong loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error (in the message, not chained as a source: printed once).
        error: std::io::Error,
    },
    /// `config.json` is malformed or describes something we cannot run.
    #[error("invalid config: {0}")]
    Config(String),
    /// A checkpoint tensor is missing, unexpected or misshapen.
    #[error("checkpoint {file}: {message}")]
    Checkpoint {
        /// The safetensors (or index) file concerned.
        file: PathBuf,
        /// What is wrong, naming the tensor.
        message: String,
    },
    /// The tokenizer files are missing or inconsistent.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A libtorch operation failed (shape mismatch, out of memory, …).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

impl ModelError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn checkpoint(file: &Path, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else CPU).
pub fn parse_device(name: &str) -> Result<tch::Device, String> {
    match name {
        "cpu" => Ok(tch::Device::Cpu),
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cuda" => cuda_device(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda_device(i),
            _ => Err(format!(
                "unknown device `{other}` (cpu, cuda, cuda:N, auto)"
            )),
        },
    }
}

fn cuda_device(index: usize) -> Result<tch::Device, String> {
    if tch::Cuda::is_available() && (index as i64) < tch::Cuda::device_count() {
        Ok(tch::Device::Cuda(index))
    } else {
        Err(format!(
            "CUDA device {index} is not available on this machine"
        ))
    }
}

/// Parses `f32`, `bf16`, `f16` or `auto` (bf16 on CUDA, f32 elsewhere) into a tensor kind.
pub fn parse_dtype(name: &str, device: tch::Device) -> Result<tch::Kind, String> {
    match name {
        "auto" if device.is_cuda() => Ok(tch::Kind::BFloat16),
        "auto" | "f32" | "float32" => Ok(tch::Kind::Float),
        "bf16" | "bfloat16" => Ok(tch::Kind::BFloat16),
        "f16" | "float16" => Ok(tch::Kind::Half),
        other => Err(format!("unknown dtype `{other}` (auto, f32, bf16, f16)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_dtype_is_bf16_on_cuda_and_f32_on_cpu() {
        assert_eq!(
            parse_dtype("auto", tch::Device::Cuda(0)),
            Ok(tch::Kind::BFloat16)
        );
        assert_eq!(parse_dtype("auto", tch::Device::Cpu), Ok(tch::Kind::Float));
        assert_eq!(parse_dtype("f16", tch::Device::Cpu), Ok(tch::Kind::Half));
        assert!(parse_dtype("f64", tch::Device::Cpu).is_err());
    }
}
