//! The block-diffusion trainer end to end on a tiny model: loss decreases, an interrupted and
//! resumed run equals an uninterrupted one, and a saved model reloads with identical logits.

mod common;

use std::path::Path;

use t3d::model::checkpoint::{self, SaveOptions};
use t3d::model::qwen3::ForwardInput;
use t3d::model::TextTokenizer;
use t3d::train::batch::collate;
use t3d::train::config::TrainConfig;
use t3d::train::data::ArithData;
use t3d::train::trainer::{masked_cross_entropy, train, TrainOptions};
use tch::{Device, Kind};

fn tiny_config(steps: u64) -> TrainConfig {
    TrainConfig {
        model: common::tiny_train_shape(),
        batch_size: 8,
        steps,
        warmup: 2,
        lr: 3e-3,
        min_lr: 3e-4,
        save_every: 0,
        log_every: 1,
        ..TrainConfig::default()
    }
}

fn options(root: &Path, stop_after: Option<u64>, resume: bool) -> TrainOptions {
    TrainOptions {
        out: root.join("model"),
        run_dir: root.join("run"),
        resume,
        device: Device::Cpu,
        progress: false,
        stop_after,
        init_from: None,
    }
}

fn logged_losses(run_dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(run_dir.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn twenty_step_smoke_run_lowers_the_loss_and_writes_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let report = train(&tiny_config(20), &options(dir.path(), None, false)).unwrap();
    assert_eq!(report.steps_run, 20);
    let losses = logged_losses(&dir.path().join("run"));
    assert_eq!(losses.len(), 20);
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[15..].iter().sum::<f64>() / 5.0;
    assert!(
        last < first - 0.3,
        "loss did not decrease: {first:.3} -> {last:.3}"
    );
    let loaded = checkpoint::load(&dir.path().join("model"), Device::Cpu, Kind::Float).unwrap();
    assert!(loaded.config.extra.contains_key("t3d_task"));
    TextTokenizer::from_dir(&dir.path().join("model"), &loaded.config).unwrap();
}

#[test]
fn interrupted_and_resumed_run_equals_an_uninterrupted_one() {
    let cfg = tiny_config(6);
    let whole = tempfile::tempdir().unwrap();
    train(&cfg, &options(whole.path(), None, false)).unwrap();
    let split = tempfile::tempdir().unwrap();
    let first = train(&cfg, &options(split.path(), Some(3), false)).unwrap();
    assert_eq!(first.steps_run, 3);
    assert!(
        !split.path().join("model").exists(),
        "a stopped run writes no final model"
    );
    let second = train(&cfg, &options(split.path(), None, true)).unwrap();
    assert_eq!(second.steps_run, 3);
    let a = checkpoint::load(&whole.path().join("model"), Device::Cpu, Kind::Float).unwrap();
    let b = checkpoint::load(&split.path().join("model"), Device::Cpu, Kind::Float).unwrap();
    for (name, ta) in a.vars.variables() {
        let tb = &b.vars.variables()[&name];
        let diff = (&ta - tb).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name} differs by {diff}");
    }
    let mut other = cfg;
    other.lr *= 2.0;
    let err = train(&other, &options(split.path(), None, true)).unwrap_err();
    assert!(err.to_string().contains("different config"), "{err}");
}

#[test]
fn save_then_load_gives_identical_logits_on_a_training_batch() {
    let cfg = tiny_config(1);
    let dir = tempfile::tempdir().unwrap();
    train(&cfg, &options(dir.path(), None, false)).unwrap();
    let model_dir = dir.path().join("model");
    let a = checkpoint::load(&model_dir, Device::Cpu, Kind::Float).unwrap();
    let copy = dir.path().join("copy");
    let opts = SaveOptions {
        tokenizer_from: Some(model_dir),
        ..SaveOptions::default()
    };
    checkpoint::save(&copy, &a.vars, &a.config, &opts).unwrap();
    let b = checkpoint::load(&copy, Device::Cpu, Kind::Float).unwrap();
    let tokenizer = TextTokenizer::from_dir(&copy, &b.config).unwrap();
    let data = ArithData::new(&cfg.task, &tokenizer, cfg.block_size, 9);
    let batch = collate(&data.batch(0, 0, 4).unwrap(), 4, data.pad_id(), Device::Cpu);
    let input = ForwardInput::new(&batch.ids, &batch.positions, &batch.mask);
    let la = tch::no_grad(|| a.model.forward(&input));
    let lb = tch::no_grad(|| b.model.forward(&input));
    assert!(la.equal(&lb), "logits differ after a save/load round trip");
    let loss = tch::no_grad(|| masked_cross_entropy(&b.model, &batch)).double_value(&[]);
    assert!(loss.is_finite() && loss > 0.0);
}

#[test]
fn a_second_stage_starts_from_the_first_stages_weights() {
    let first = tempfile::tempdir().unwrap();
    train(&tiny_config(2), &options(first.path(), None, false)).unwrap();
    let second = tempfile::tempdir().unwrap();
    let mut opts = options(second.path(), None, false);
    opts.init_from = Some(first.path().join("model"));
    let mut cfg = tiny_config(1);
    cfg.lr = 1e-12; // one update that barely moves the weights
    cfg.min_lr = 0.0;
    train(&cfg, &opts).unwrap();
    let a = checkpoint::load(&first.path().join("model"), Device::Cpu, Kind::Float).unwrap();
    let b = checkpoint::load(&second.path().join("model"), Device::Cpu, Kind::Float).unwrap();
    for (name, ta) in a.vars.variables() {
        let diff = (&ta - &b.vars.variables()[&name])
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            diff < 1e-6,
            "{name} moved by {diff}: not initialised from stage one"
        );
    }
    let mut wider = tiny_config(1);
    wider.model.hidden_size = 64;
    let err = train(&wider, &opts).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}
