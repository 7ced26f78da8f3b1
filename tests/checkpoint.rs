//! Checkpoint I/O: round trips (single file and shards) give identical logits, damaged
//! checkpoints fail with one error naming the file and tensor, and saving is atomic.

mod common;

use t3d::model::checkpoint::{self, SaveOptions};
use t3d::model::qwen3::ForwardInput;
use t3d::model::Sdar;
use tch::{Device, Kind, Tensor};

fn logits(model: &Sdar) -> Tensor {
    let ids = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([1, 6]);
    let positions = Tensor::arange(6, (Kind::Int64, Device::Cpu)).view([1, 6]);
    let mask = Tensor::ones([1, 1, 6, 6], (Kind::Bool, Device::Cpu));
    tch::no_grad(|| model.forward(&ForwardInput::new(&ids, &positions, &mask)))
}

#[test]
fn save_and_load_round_trip_gives_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::tiny_model(1);
    let path = common::save_with_tokenizer(&loaded, &dir.path().join("ckpt"));
    let back = checkpoint::load(&path, Device::Cpu, Kind::Float).unwrap();
    assert!(logits(&loaded.model).equal(&logits(&back.model)));
    let mut expected = loaded.config;
    expected
        .extra
        .insert("torch_dtype".into(), "float32".into());
    assert_eq!(back.config, expected);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(path.join(file).exists(), "{file}");
    }
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::tiny_model(2);
    let opts = SaveOptions {
        max_shard_bytes: Some(100_000),
        ..SaveOptions::default()
    };
    let path = dir.path().join("sharded");
    checkpoint::save(&path, &loaded.vars, &loaded.config, &opts).unwrap();
    assert!(path.join("model.safetensors.index.json").exists());
    let shards = std::fs::read_dir(&path).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("model-")
    });
    assert!(shards.count() >= 3);
    let back = checkpoint::load(&path, Device::Cpu, Kind::Float).unwrap();
    assert!(logits(&loaded.model).equal(&logits(&back.model)));
}

#[test]
fn bf16_checkpoints_keep_their_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let mut loaded = common::tiny_model(3);
    loaded.vars.set_kind(Kind::BFloat16);
    let path = dir.path().join("bf16");
    checkpoint::save(&path, &loaded.vars, &loaded.config, &SaveOptions::default()).unwrap();
    let text = std::fs::read_to_string(path.join("config.json")).unwrap();
    assert!(text.contains("\"torch_dtype\": \"bfloat16\""));
    let back = checkpoint::load(&path, Device::Cpu, Kind::BFloat16).unwrap();
    assert!(logits(&loaded.model).equal(&logits(&back.model)));
}

fn damaged(edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::tiny_model(4);
    let path = dir.path().join("ckpt");
    checkpoint::save(&path, &loaded.vars, &loaded.config, &SaveOptions::default()).unwrap();
    let file = path.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&file).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &file).unwrap();
    match checkpoint::load(&path, Device::Cpu, Kind::Float) {
        Ok(_) => panic!("a damaged checkpoint loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_unexpected_and_misshapen_tensors_are_named() {
    let missing = damaged(|t| t.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight"));
    assert!(
        missing.contains("model.safetensors")
            && missing.contains("missing tensor `model.layers.1.mlp.up_proj.weight`"),
        "{missing}"
    );
    let extra = damaged(|t| {
        t.push((
            "model.layers.9.bogus".into(),
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
        ))
    });
    assert!(
        extra.contains("unexpected tensor `model.layers.9.bogus`"),
        "{extra}"
    );
    let shape = damaged(|t| {
        let entry = t
            .iter_mut()
            .find(|(n, _)| n == "model.norm.weight")
            .unwrap();
        entry.1 = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    });
    assert!(
        shape.contains("`model.norm.weight` has shape [3], expected [64]"),
        "{shape}"
    );
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let good = common::tiny_model(5);
    let path = dir.path().join("ckpt");
    checkpoint::save(&path, &good.vars, &good.config, &SaveOptions::default()).unwrap();
    let bad = common::tiny_model(6);
    let _ = bad
        .vars
        .root()
        .add("step", Tensor::from_slice(&[1i64]), false); // int64: cannot be saved
    assert!(checkpoint::save(&path, &bad.vars, &bad.config, &SaveOptions::default()).is_err());
    let back = checkpoint::load(&path, Device::Cpu, Kind::Float).unwrap();
    assert!(
        logits(&good.model).equal(&logits(&back.model)),
        "old checkpoint still there and whole"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary directory left behind: {leftovers:?}"
    );
    // A successful save over an existing checkpoint replaces it.
    checkpoint::save(&path, &bad_free(&bad), &bad.config, &SaveOptions::default()).unwrap();
    let replaced = checkpoint::load(&path, Device::Cpu, Kind::Float).unwrap();
    assert!(logits(&replaced.model).equal(&logits(&bad.model)));
}

/// A var store holding `model`'s parameters without the unsavable extra entry.
fn bad_free(model: &checkpoint::LoadedModel) -> tch::nn::VarStore {
    // Built through `random` so its draws hold the model-construction lock.
    let mut vs = checkpoint::random(&model.config, Device::Cpu, Kind::Float, 0).vars;
    vs.copy(&model.vars).unwrap();
    vs
}
