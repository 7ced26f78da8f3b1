//! Rewriting a checkpoint in another weight dtype (`t3d convert`): the weights are loaded as the
//! target dtype and saved atomically beside every other file of the checkpoint (tokenizer,
//! recommended decoding, evaluation reports), so a bf16 copy serves with the same tokenizer and
//! decoding as the original. A sharded checkpoint is written in shards of at most 5 GB.

use std::path::Path;

use tch::{Device, Kind};

use super::checkpoint::{self, SaveOptions, COMPANION_FILES};
use super::ModelError;

/// Shard size of a converted checkpoint that was sharded (Hugging Face's usual 5 GB).
const SHARD_BYTES: usize = 5 << 30;

/// Writes `src` to `out` with its weights in `kind` (`out` may be `src`: the weights are read
/// before anything is written, and the swap is atomic). Returns the weight bytes written.
pub fn convert(src: &Path, out: &Path, kind: Kind) -> Result<usize, ModelError> {
    let loaded = checkpoint::load(src, Device::Cpu, kind)?;
    let opts = SaveOptions {
        max_shard_bytes: src
            .join("model.safetensors.index.json")
            .exists()
            .then_some(SHARD_BYTES),
        tokenizer_from: Some(src.to_path_buf()),
        extra_files: other_files(src)?,
    };
    checkpoint::save(out, &loaded.vars, &loaded.config, &opts)?;
    let bytes = loaded
        .vars
        .variables()
        .values()
        .map(|t| t.numel() * t.kind().elt_size_in_bytes())
        .sum();
    Ok(bytes)
}

/// Weight files of other formats (PyTorch pickles) left out of a copy: they would keep the old
/// weights beside the converted ones.
const OTHER_WEIGHT_SUFFIXES: [&str; 3] = [".bin", ".pt", ".pth"];

/// The regular files of `dir` that are neither weights, config nor companions (those are
/// written by [`checkpoint::save`]): reports and logs a checkpoint carries.
fn other_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let written_by_save = name == "config.json"
            || name.ends_with(".safetensors")
            || name == "model.safetensors.index.json"
            || COMPANION_FILES.contains(&name.as_str());
        let stale_weights = OTHER_WEIGHT_SUFFIXES.iter().any(|s| name.ends_with(s));
        if written_by_save || stale_weights || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        files.push((name, bytes));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SdarConfig;

    fn tiny_checkpoint(dir: &Path) -> checkpoint::LoadedModel {
        let mut config = SdarConfig::named_shape("tiny", 64).unwrap();
        config.eos_token_id = Some(62.into());
        config.mask_token_id = Some(63);
        let model = checkpoint::random(&config, Device::Cpu, Kind::Float, 7);
        let opts = SaveOptions {
            extra_files: vec![("eval.json".into(), b"{\"rows\": []}".to_vec())],
            ..SaveOptions::default()
        };
        checkpoint::save(dir, &model.vars, &config, &opts).unwrap();
        model
    }

    #[test]
    fn bf16_copy_halves_the_weights_keeps_the_other_files_and_loads_as_f32() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, out) = (tmp.path().join("f32"), tmp.path().join("bf16"));
        let original = tiny_checkpoint(&src);
        std::fs::write(src.join("pytorch_model.bin"), b"old weights").unwrap();
        let f32_bytes = convert(&src, &tmp.path().join("f32-again"), Kind::Float).unwrap();
        let bf16_bytes = convert(&src, &out, Kind::BFloat16).unwrap();
        assert_eq!(2 * bf16_bytes, f32_bytes);
        let weights = |d: &Path| {
            std::fs::metadata(d.join("model.safetensors"))
                .unwrap()
                .len()
        };
        assert!(
            weights(&out) * 10 < weights(&src) * 6,
            "bf16 file not ~half"
        );
        assert_eq!(
            std::fs::read(out.join("eval.json")).unwrap(),
            b"{\"rows\": []}"
        );
        assert!(
            !out.join("pytorch_model.bin").exists(),
            "stale weights copied"
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["torch_dtype"], "bfloat16");
        // Loaded back as f32, every weight is the original rounded to bf16.
        let back = checkpoint::load(&out, Device::Cpu, Kind::Float).unwrap();
        let back_vars = back.vars.variables();
        for (name, tensor) in original.vars.variables() {
            let rounded = tensor.to_kind(Kind::BFloat16).to_kind(Kind::Float);
            assert!(back_vars[&name].equal(&rounded), "{name} differs");
        }
    }

    #[test]
    fn converting_in_place_keeps_a_loadable_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("model");
        tiny_checkpoint(&dir);
        convert(&dir, &dir, Kind::BFloat16).unwrap();
        assert!(checkpoint::load(&dir, Device::Cpu, Kind::Float).is_ok());
        assert!(dir.join("eval.json").exists());
    }

    #[test]
    fn a_missing_checkpoint_is_an_error_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        assert!(convert(&tmp.path().join("absent"), &out, Kind::BFloat16).is_err());
        assert!(!out.exists());
    }
}
