//! Set-up shared by the subcommands: the device and dtype from `--device`/`--dtype`/`--threads`,
//! and where the bundled models live.

use std::path::{Path, PathBuf};

use super::args::DeviceArgs;
use crate::model::hub::{self, HubId};
use crate::model::{parse_device, parse_dtype};

/// Applies `--threads` and returns the device and dtype.
pub fn setup_device(args: &DeviceArgs) -> anyhow::Result<(tch::Device, tch::Kind)> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let kind = parse_dtype(&args.dtype, device).map_err(anyhow::Error::msg)?;
    Ok((device, kind))
}

/// The bundled model `t3d generate`, `serve` and `eval` use when `--model` is not given: the
/// newest of the committed models under `models/` (the T3D student once it exists, else the
/// teacher), found next to the sources or the current directory.
pub fn default_model_dir() -> anyhow::Result<PathBuf> {
    bundled_model(&DEFAULT_MODELS)
}

/// `--model` if given, else the bundled default model.
pub fn model_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    resolve_model(given, None)
}

/// Where `--model` points: a checkpoint directory, a bundled model's name, or a Hub id
/// (`org/name[@revision]`, `revision` overriding) fetched into the Hub cache; the bundled
/// default when not given.
pub fn resolve_model(given: Option<&Path>, revision: Option<&str>) -> anyhow::Result<PathBuf> {
    let Some(path) = given else {
        return default_model_dir();
    };
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let text = path.to_string_lossy();
    if let Ok(dir) = bundled_model(&[&text]) {
        return Ok(dir);
    }
    match HubId::parse(&text, revision) {
        Some(id) => Ok(hub::snapshot(&id)?),
        None => anyhow::bail!(
            "{text}: no such model directory, bundled model or Hub id (org/name[@revision])"
        ),
    }
}

/// The first of `names` committed under `models/`, next to the sources or the current directory.
pub fn bundled_model(names: &[&str]) -> anyhow::Result<PathBuf> {
    let roots = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from("."),
    ];
    for name in names {
        for root in &roots {
            let dir = root.join("models").join(name);
            if dir.join("config.json").exists() {
                return Ok(dir);
            }
        }
    }
    anyhow::bail!(
        "no bundled model found under models/ ({}); pass the model directory",
        names.join(", ")
    )
}

/// Bundled models in order of preference.
pub const DEFAULT_MODELS: [&str; 2] = ["arith-student", "arith-teacher"];
