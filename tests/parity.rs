//! Forward-pass parity with `transformers`' Qwen3 (the reference is not our code): a saved
//! t3d checkpoint loads in transformers as Qwen3 and gives the same logits under a 4-D
//! block-causal mask with explicit positions.

mod common;

use std::process::Command;

use t3d::engine::batch::block_causal_mask;
use t3d::model::qwen3::ForwardInput;
use tch::{Device, Kind, Tensor};

#[test]
fn logits_match_transformers_qwen3_under_block_causal_mask() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::tiny_model(3);
    let model_dir = common::save_with_tokenizer(&loaded, &dir.path().join("model"));
    let (batch, len) = (2i64, 14i64);
    tch::manual_seed(11);
    let ids = Tensor::randint(common::VOCAB, [batch, len], (Kind::Int64, Device::Cpu));
    // Second row starts at position 5 (as a sequence with 5 cached tokens would).
    let offsets = Tensor::from_slice(&[0i64, 5]);
    let positions =
        offsets.view([batch, 1]) + Tensor::arange(len, (Kind::Int64, Device::Cpu)).view([1, len]);
    let zeros = Tensor::zeros([batch], (Kind::Int64, Device::Cpu));
    let lens = Tensor::full([batch], len, (Kind::Int64, Device::Cpu));
    // Mask over this pass's own rows: key k allowed iff k/4 <= row/4 (block-causal, b = 4).
    let local = Tensor::arange(len, (Kind::Int64, Device::Cpu))
        .view([1, len])
        .repeat([batch, 1]);
    let mask = block_causal_mask(&local, &zeros, &lens, 4, len);
    let inputs = dir.path().join("inputs.safetensors");
    let mask_u8 = mask.to_kind(Kind::Uint8);
    Tensor::write_safetensors(
        &[
            ("input_ids", &ids),
            ("position_ids", &positions),
            ("mask", &mask_u8),
        ],
        &inputs,
    )
    .unwrap();

    let out = dir.path().join("logits.safetensors");
    let status = Command::new(common::venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/hf_forward.py"
        ))
        .args([&model_dir, &inputs, &out])
        .status()
        .unwrap();
    assert!(status.success(), "transformers reference failed");
    let reference = Tensor::read_safetensors(&out).unwrap().remove(0).1;

    let reloaded = t3d::model::checkpoint::load(&model_dir, Device::Cpu, Kind::Float).unwrap();
    let input = ForwardInput::new(&ids, &positions, &mask);
    let ours = tch::no_grad(|| reloaded.model.forward(&input));
    assert_eq!(ours.size(), reference.size());
    let err = common::max_relative_error(&ours, &reference);
    println!("parity: max |ours - transformers| / max |transformers| = {err:.3e}");
    assert!(err <= 1e-4, "relative error {err}");
    assert!(
        reference.abs().max().double_value(&[]) > 1.0,
        "logits are not trivially small"
    );
}

#[test]
fn bf16_and_f16_forwards_track_f32() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = common::save_with_tokenizer(&common::tiny_model(4), &dir.path().join("m"));
    let ids = Tensor::from_slice(&[5i64, 9, 44, 200, 17, 3, 3, 120]).view([1, 8]);
    let positions = Tensor::arange(8, (Kind::Int64, Device::Cpu)).view([1, 8]);
    let local = positions.shallow_clone();
    let (zero, eight) = (Tensor::from_slice(&[0i64]), Tensor::from_slice(&[8i64]));
    let mask = block_causal_mask(&local, &zero, &eight, 4, 8);
    let run = |kind: Kind| {
        let loaded = t3d::model::checkpoint::load(&model_dir, Device::Cpu, kind).unwrap();
        let input = ForwardInput::new(&ids, &positions, &mask);
        let logits = tch::no_grad(|| loaded.model.forward(&input));
        assert_eq!(logits.kind(), kind);
        logits.to_kind(Kind::Float)
    };
    let full = run(Kind::Float);
    for kind in [Kind::BFloat16, Kind::Half] {
        let err = common::max_relative_error(&run(kind), &full);
        println!("{kind:?}: max relative error vs f32 = {err:.3e}");
        assert!(err < 5e-2, "{kind:?}: {err}");
    }
}

/// Greedy completion ids of `prompt` from the Python loop over `transformers` (prefill, S
/// cached denoising forwards per block with the cache cropped back, a separate commit forward).
fn transformers_decode(
    model_dir: &std::path::Path,
    prompt: &[i64],
    steps: usize,
    tokens: usize,
) -> Vec<i64> {
    let ids: Vec<String> = prompt.iter().map(i64::to_string).collect();
    let out = Command::new(common::venv_python())
        .args([
            "-W",
            "ignore",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hf_decode_bench.py"),
        ])
        .arg(model_dir)
        .args([
            "--decode-ids",
            &ids.join(","),
            "--steps",
            &steps.to_string(),
            "--gen-tokens",
            &tokens.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    serde_json::from_str(&last).unwrap()
}

#[test]
fn engine_tokens_match_a_transformers_decoding_loop() {
    use t3d::engine::{generate, GenerationParams, SpecialIds};
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::tiny_model(12);
    let model_dir = common::save_with_tokenizer(&loaded, &dir.path().join("m"));
    let special = SpecialIds {
        eos: 256,
        mask: 257,
    };
    // 19 prompt tokens: the first block holds 3 of them (the prompt-tail path).
    let prompt: Vec<i64> = "Hello world, this i".bytes().map(i64::from).collect();
    for steps in [1, 2, 4] {
        let mut params = GenerationParams::default();
        params.denoise.steps_per_block = steps;
        params.stop.max_tokens = 24;
        params.stop.ignore_eos = true;
        let (ours, _) =
            generate(&loaded.model, special, None, &[(prompt.clone(), params)], 1).unwrap();
        assert_eq!(
            ours[0].tokens,
            transformers_decode(&model_dir, &prompt, steps, 24),
            "S={steps}"
        );
    }
}

#[test]
fn output_rows_equal_the_same_rows_of_a_full_forward() {
    let loaded = common::tiny_model(13);
    let ids = Tensor::from_slice(&[5i64, 9, 44, 200, 17, 3, 3, 120, 7, 8, 9, 10]).view([2, 6]);
    let positions = Tensor::arange(6, (Kind::Int64, Device::Cpu))
        .view([1, 6])
        .repeat([2, 1]);
    let zeros = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
    let lens = Tensor::full([2], 6, (Kind::Int64, Device::Cpu));
    let mask = block_causal_mask(&positions, &zeros, &lens, 2, 6);
    let rows = Tensor::from_slice(&[4i64, 5, 7, 9]).view([2, 2]); // flattened (B·T) rows
    let full = ForwardInput::new(&ids, &positions, &mask);
    let some = ForwardInput {
        output_rows: Some(&rows),
        ..full
    };
    let (all, picked) = tch::no_grad(|| {
        (
            loaded.model.hidden_states(&full),
            loaded.model.hidden_states(&some),
        )
    });
    let expected = Tensor::stack(
        &[
            all.get(0).index_select(0, &Tensor::from_slice(&[4i64, 5])),
            all.get(1).index_select(0, &Tensor::from_slice(&[1i64, 3])),
        ],
        0,
    );
    assert_eq!(picked.size(), vec![2, 2, 64]);
    assert!(common::max_relative_error(&picked, &expected) < 1e-6);
}
