//! `generation_config.json`: what a checkpoint says about decoding it. SDAR-Chat lists its
//! turn-end ids there (`eos_token_id: [151645, 151643]`) and its sampling defaults; the server
//! stops on every listed id and uses the sampling values as request defaults.

use std::path::Path;

use serde::Deserialize;

use super::config::TokenIds;
use super::ModelError;

/// The file name inside a checkpoint directory.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// The parts of `generation_config.json` t3d uses (other fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GenerationConfig {
    /// Ids that end a generation.
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Default sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Default nucleus mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Default top-k (0 = off).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// `false` means greedy decoding whatever the temperature says.
    #[serde(default)]
    pub do_sample: Option<bool>,
}

/// Sampling defaults a request gets for the fields it leaves out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingDefaults {
    /// Temperature (OpenAI's default: 1).
    pub temperature: f64,
    /// Nucleus mass (1 = off).
    pub top_p: f64,
    /// Top-k (0 = off).
    pub top_k: i64,
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
        }
    }
}

impl GenerationConfig {
    /// Reads `dir/generation_config.json`; a checkpoint without one gets the empty config.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(GENERATION_CONFIG_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
    }

    /// The file's ids that end a generation (empty when it names none).
    pub fn eos_ids(&self) -> Vec<i64> {
        self.eos_token_id
            .as_ref()
            .map_or_else(Vec::new, TokenIds::ids)
    }

    /// Request defaults: the file's values over OpenAI's; `do_sample: false` means greedy.
    pub fn sampling_defaults(&self) -> SamplingDefaults {
        let base = SamplingDefaults::default();
        let greedy = self.do_sample == Some(false);
        SamplingDefaults {
            temperature: if greedy {
                0.0
            } else {
                self.temperature.unwrap_or(base.temperature)
            },
            top_p: self.top_p.unwrap_or(base.top_p),
            top_k: self.top_k.unwrap_or(base.top_k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SDAR-4B-Chat's `generation_config.json` fields.
    const SDAR_CHAT: &str = r#"{"bos_token_id": 151643, "do_sample": true,
        "eos_token_id": [151645, 151643], "pad_token_id": 151643,
        "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.52.4"}"#;

    #[test]
    fn reads_the_eos_list_and_sampling_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            GenerationConfig::from_dir(dir.path()).unwrap(),
            GenerationConfig::default(),
            "no file: nothing changes"
        );
        std::fs::write(dir.path().join(GENERATION_CONFIG_FILE), SDAR_CHAT).unwrap();
        let cfg = GenerationConfig::from_dir(dir.path()).unwrap();
        assert_eq!(cfg.eos_ids(), vec![151_645, 151_643]);
        let d = cfg.sampling_defaults();
        assert_eq!((d.temperature, d.top_p, d.top_k), (0.6, 0.95, 20));
    }

    #[test]
    fn a_single_eos_and_greedy_files_are_read_too() {
        let cfg: GenerationConfig =
            serde_json::from_str(r#"{"eos_token_id": 2, "do_sample": false, "temperature": 0.7}"#)
                .unwrap();
        assert_eq!(cfg.eos_ids(), vec![2]);
        assert_eq!(cfg.sampling_defaults().temperature, 0.0);
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(
            bad.path().join(GENERATION_CONFIG_FILE),
            "{\"eos_token_id\": \"x\"}",
        )
        .unwrap();
        assert!(GenerationConfig::from_dir(bad.path()).is_err());
    }
}
