//! Checkpoints in Hugging Face layout: `config.json`, `model.safetensors` (or shards with
//! `model.safetensors.index.json`) and the tokenizer, template and generation files beside them.
//!
//! Loading checks every expected tensor is present with the right shape and nothing unexpected
//! is there, naming the file and tensor on failure. Saving writes a sibling temporary directory
//! and renames it into place, so an interrupted save never leaves a broken checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{nn, Device, Kind, Tensor};

use super::{ModelError, Sdar, SdarConfig};

/// The tokenizer, chat-template and generation files a checkpoint carries besides its config
/// and weights: every one present is copied into a checkpoint saved from it.
pub const COMPANION_FILES: [&str; 8] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "generation_config.json",
];
const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";

/// A model with its parameters and configuration.
pub struct LoadedModel {
    /// Owns every parameter tensor (train through it, save from it).
    pub vars: nn::VarStore,
    /// The forward pass over `vars`.
    pub model: Sdar,
    /// The parsed `config.json`.
    pub config: SdarConfig,
}

/// libtorch's generator is process-global and building a model draws its initial weights from
/// it (even when a checkpoint then overwrites them): every model construction holds this lock,
/// so a seeded build never interleaves with another thread's draws.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    INIT.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds a randomly initialised model (seeded) of the given shape.
pub fn random(config: &SdarConfig, device: Device, kind: Kind, seed: i64) -> LoadedModel {
    let _lock = init_lock();
    tch::manual_seed(seed);
    let mut vars = nn::VarStore::new(device);
    vars.set_kind(kind); // parameters are created directly in `kind`
    let model = Sdar::new(&vars.root(), config);
    LoadedModel {
        vars,
        model,
        config: config.clone(),
    }
}

/// Loads `dir` onto `device`, converting the weights to `kind`.
pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<LoadedModel, ModelError> {
    let config = SdarConfig::from_file(&dir.join("config.json"))?;
    let mut vars = nn::VarStore::new(device);
    vars.set_kind(kind); // no f32 copy of a bf16 model on the way in
    let model = {
        let _lock = init_lock();
        Sdar::new(&vars.root(), &config)
    };
    let expected = vars.variables();
    let mut seen = HashSet::new();
    let files = weight_files(dir)?;
    let _guard = tch::no_grad_guard();
    for file in &files {
        load_file(file, &expected, config.tie_word_embeddings, &mut seen)?;
    }
    let mut missing: Vec<_> = expected.keys().filter(|k| !seen.contains(*k)).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        let file = files
            .first()
            .cloned()
            .unwrap_or_else(|| dir.join(SINGLE_FILE));
        let msg = format!(
            "missing tensor `{first}` ({} missing in all)",
            missing.len()
        );
        return Err(ModelError::checkpoint(&file, msg));
    }
    Ok(LoadedModel {
        vars,
        model,
        config,
    })
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::checkpoint(&index, format!("invalid JSON: {e}")))?;
        let map = json["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::checkpoint(&index, "no `weight_map` object"))?;
        let names: std::collections::BTreeSet<&str> =
            map.values().filter_map(|v| v.as_str()).collect();
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    let single = dir.join(SINGLE_FILE);
    if !single.exists() {
        return Err(ModelError::checkpoint(
            &single,
            "not found (nor an index of shards)",
        ));
    }
    Ok(vec![single])
}

fn load_file(
    file: &Path,
    expected: &HashMap<String, Tensor>,
    tied: bool,
    seen: &mut HashSet<String>,
) -> Result<(), ModelError> {
    let bytes = map_file(file)?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::checkpoint(file, format!("not a safetensors file: {e}")))?;
    for (name, view) in tensors.tensors() {
        let Some(var) = expected.get(&name) else {
            if tied && name == "lm_head.weight" {
                continue; // Some tied checkpoints store the shared matrix twice.
            }
            return Err(ModelError::checkpoint(
                file,
                format!("unexpected tensor `{name}`"),
            ));
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if shape != var.size() {
            let msg = format!(
                "tensor `{name}` has shape {shape:?}, expected {:?}",
                var.size()
            );
            return Err(ModelError::checkpoint(file, msg));
        }
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            ModelError::checkpoint(file, format!("tensor `{name}`: dtype {:?}", view.dtype()))
        })?;
        let data = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        var.shallow_clone().f_copy_(&data)?;
        seen.insert(name);
    }
    Ok(())
}

/// Maps `file` read-only, so a multi-gigabyte shard is paged in rather than copied to the heap.
fn map_file(file: &Path) -> Result<memmap2::Mmap, ModelError> {
    let handle = std::fs::File::open(file).map_err(|e| ModelError::io(file, e))?;
    // SAFETY: the map is read-only and lives only while this shard is copied into the model;
    // a checkpoint file truncated by another process meanwhile is outside what we support.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&handle) };
    map.map_err(|e| ModelError::io(file, e))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<(Dtype, &'static str)> {
    Some(match kind {
        Kind::Float => (Dtype::F32, "float32"),
        Kind::BFloat16 => (Dtype::BF16, "bfloat16"),
        Kind::Half => (Dtype::F16, "float16"),
        _ => return None,
    })
}

/// A tensor copied to host memory, in the form the safetensors writer wants.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_host(name: &str, tensor: &Tensor) -> Result<HostTensor, ModelError> {
    let (dtype, _) = dtype_of(tensor.kind()).ok_or_else(|| {
        ModelError::Config(format!("cannot save `{name}` of kind {:?}", tensor.kind()))
    })?;
    let host = tensor.to_device(Device::Cpu).contiguous();
    let numel = host.numel();
    let mut data = vec![0u8; numel * host.kind().elt_size_in_bytes()];
    host.f_copy_data_u8(&mut data, numel)?;
    let shape = host.size().iter().map(|&d| d as usize).collect();
    Ok(HostTensor { dtype, shape, data })
}

/// Options for [`save`].
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Split the weights into shards of at most this many bytes (`None`: one file).
    pub max_shard_bytes: Option<usize>,
    /// Directory whose [`COMPANION_FILES`] are copied next to the weights.
    pub tokenizer_from: Option<PathBuf>,
    /// Further files (name, bytes) written into the directory before it is swapped in, so they
    /// are as atomic as the weights (trainer state, optimizer moments).
    pub extra_files: Vec<(String, Vec<u8>)>,
}

/// Saves `vars` with `config` to `dir` atomically (temporary sibling directory, then rename).
pub fn save(
    dir: &Path,
    vars: &nn::VarStore,
    config: &SdarConfig,
    opts: &SaveOptions,
) -> Result<(), ModelError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let written = write_contents(&tmp, vars, config, opts);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    swap_into_place(&tmp, dir)
}

fn write_contents(
    tmp: &Path,
    vars: &nn::VarStore,
    config: &SdarConfig,
    opts: &SaveOptions,
) -> Result<(), ModelError> {
    let mut named: BTreeMap<String, HostTensor> = BTreeMap::new();
    for (name, tensor) in vars.variables() {
        named.insert(name.clone(), to_host(&name, &tensor)?);
    }
    let kind = vars
        .variables()
        .values()
        .next()
        .map(|t| t.kind())
        .unwrap_or(Kind::Float);
    let mut config = config.clone();
    let torch_dtype = dtype_of(kind).map(|(_, n)| n).unwrap_or("float32");
    config
        .extra
        .insert("torch_dtype".into(), torch_dtype.into());
    let json =
        serde_json::to_string_pretty(&config).map_err(|e| ModelError::Config(e.to_string()))?;
    write_file(&tmp.join("config.json"), json.as_bytes())?;
    write_weights(tmp, &named, opts.max_shard_bytes)?;
    for (name, bytes) in &opts.extra_files {
        write_file(&tmp.join(name), bytes)?;
    }
    if let Some(src) = &opts.tokenizer_from {
        for file in COMPANION_FILES {
            let from = src.join(file);
            if from.exists() {
                std::fs::copy(&from, tmp.join(file)).map_err(|e| ModelError::io(&from, e))?;
            }
        }
    }
    Ok(())
}

/// Serialises named tensors as one safetensors file in memory (for [`SaveOptions::extra_files`]).
pub fn safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, ModelError> {
    let host = tensors
        .iter()
        .map(|(name, t)| Ok((name.as_str(), to_host(name, t)?)))
        .collect::<Result<Vec<_>, ModelError>>()?;
    safetensors::tensor::serialize(host.iter().map(|(n, t)| (*n, t)), &None)
        .map_err(|e| ModelError::Config(format!("serialising tensors: {e}")))
}

fn write_weights(
    dir: &Path,
    named: &BTreeMap<String, HostTensor>,
    max_shard: Option<usize>,
) -> Result<(), ModelError> {
    let shards = split_shards(named, max_shard.unwrap_or(usize::MAX));
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    if shards.len() == 1 {
        return serialize(&dir.join(SINGLE_FILE), &shards[0], &metadata);
    }
    let mut weight_map = BTreeMap::new();
    let total: usize = named.values().map(|t| t.data.len()).sum();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len());
        serialize(&dir.join(&file), shard, &metadata)?;
        for (name, _) in shard {
            weight_map.insert(name.to_string(), file.clone());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    write_file(&dir.join(INDEX_FILE), index.to_string().as_bytes())
}

fn split_shards(
    named: &BTreeMap<String, HostTensor>,
    max_bytes: usize,
) -> Vec<Vec<(&str, &HostTensor)>> {
    let mut shards: Vec<Vec<(&str, &HostTensor)>> = vec![Vec::new()];
    let mut size = 0;
    for (name, tensor) in named {
        if size > 0 && size + tensor.data.len() > max_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += tensor.data.len();
        // Unwrap is safe: `shards` starts with one element and only grows.
        shards.last_mut().unwrap().push((name, tensor));
    }
    shards
}

fn serialize(
    path: &Path,
    tensors: &[(&str, &HostTensor)],
    meta: &Option<HashMap<String, String>>,
) -> Result<(), ModelError> {
    safetensors::tensor::serialize_to_file(tensors.iter().copied(), meta, path)
        .map_err(|e| ModelError::checkpoint(path, format!("write failed: {e}")))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    std::fs::write(path, bytes).map_err(|e| ModelError::io(path, e))
}

fn swap_into_place(tmp: &Path, dir: &Path) -> Result<(), ModelError> {
    if !dir.exists() {
        return std::fs::rename(tmp, dir).map_err(|e| ModelError::io(dir, e));
    }
    let old = tmp.with_extension("old");
    std::fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
    std::fs::rename(tmp, dir).map_err(|e| ModelError::io(dir, e))?;
    std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))
}
