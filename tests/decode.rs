//! The batched block decoder against a from-scratch reference (full forwards, no KV cache, a
//! separate commit per block, spec §3.8), plus batch invariance, forward counts, trajectories,
//! seeded sampling and stopping.

mod common;

use common::{decode_params as params, test_prompt as prompt};

use t3d::engine::denoise::transfer_schedule;
use t3d::engine::{generate, DecodeStats, FinishReason, Generation, GenerationParams, SpecialIds};
use t3d::model::qwen3::ForwardInput;
use t3d::model::Sdar;
use tch::{Device, Kind, Tensor};

const SPECIAL: SpecialIds = SpecialIds {
    eos: 256,
    mask: 257,
};

/// Decodes one prompt alone.
fn solo(
    model: &Sdar,
    prompt: Vec<i64>,
    params: GenerationParams,
) -> (Vec<Generation>, DecodeStats) {
    generate(model, SPECIAL, None, &[(prompt, params)], 1).unwrap()
}

/// Spec §3.8 with full forwards over the whole sequence (no cache), greedy, static remasking.
fn reference_decode(
    model: &Sdar,
    prompt: &[i64],
    b: usize,
    steps: usize,
    max_tokens: usize,
) -> Vec<i64> {
    let whole = prompt.len() / b * b;
    let mut ctx = prompt[..whole].to_vec();
    let mut block = prompt[whole..].to_vec();
    let mut tail = block.len();
    let mut out = Vec::new();
    while out.len() < max_tokens {
        block.resize(b, SPECIAL.mask);
        for n in transfer_schedule(b, steps) {
            let masked: Vec<usize> = (tail..b).filter(|&i| block[i] == SPECIAL.mask).collect();
            if masked.is_empty() {
                break;
            }
            let (tokens, conf) = full_forward_block(model, &ctx, &block);
            let mut order = masked.clone();
            order.sort_by(|&x, &y| conf[y].total_cmp(&conf[x]).then(x.cmp(&y)));
            for &i in order.iter().take(n) {
                block[i] = tokens[i];
            }
        }
        for &t in &block[tail..] {
            if out.len() < max_tokens {
                out.push(t);
            }
        }
        ctx.extend_from_slice(&block);
        block.clear();
        tail = 0;
    }
    out
}

fn full_forward_block(model: &Sdar, ctx: &[i64], block: &[i64]) -> (Vec<i64>, Vec<f32>) {
    let seq: Vec<i64> = [ctx, block].concat();
    let n = seq.len() as i64;
    let b = block.len() as i64;
    let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let blocks = pos.floor_divide_scalar(b);
    let mask = blocks
        .view([1, n])
        .le_tensor(&blocks.view([n, 1]))
        .view([1, 1, n, n]);
    let ids = Tensor::from_slice(&seq).view([1, n]);
    let positions = pos.view([1, n]);
    let input = ForwardInput::new(&ids, &positions, &mask);
    let logits = tch::no_grad(|| model.forward(&input))
        .get(0)
        .narrow(0, n - b, b);
    let (conf, tokens) = logits.softmax(-1, Kind::Float).max_dim(-1, false);
    (
        Vec::<i64>::try_from(tokens).unwrap(),
        Vec::<f32>::try_from(conf).unwrap(),
    )
}

#[test]
fn cached_fused_decoder_matches_the_uncached_reference() {
    let loaded = common::tiny_model(1);
    for (steps, len) in [(1, 6), (2, 9), (4, 8), (4, 3)] {
        let p = prompt(len, steps as i64);
        let (out, _) = solo(&loaded.model, p.clone(), params(steps, 14));
        let expected = reference_decode(&loaded.model, &p, 4, steps, 14);
        assert_eq!(out[0].tokens, expected, "S={steps}, prompt length {len}");
    }
}

#[test]
fn batched_greedy_decoding_equals_decoding_alone() {
    let loaded = common::tiny_model(2);
    let reqs: Vec<_> = [3, 8, 13, 5, 21]
        .iter()
        .enumerate()
        .map(|(i, &len)| (prompt(len, i as i64), params(2, 20)))
        .collect();
    let (batched, stats) = generate(&loaded.model, SPECIAL, None, &reqs, reqs.len()).unwrap();
    for (i, req) in reqs.iter().enumerate() {
        let (alone, _) =
            generate(&loaded.model, SPECIAL, None, std::slice::from_ref(req), 1).unwrap();
        assert_eq!(batched[i].tokens, alone[0].tokens, "sequence {i}");
        assert_eq!(batched[i].trajectory, alone[0].trajectory, "sequence {i}");
    }
    // All five share every forward: 20 tokens = 5 or 6 blocks of 2 steps.
    assert!(stats.forwards <= 12, "forwards {}", stats.forwards);
}

#[test]
fn forwards_per_block_equal_steps_per_block() {
    let loaded = common::tiny_model(3);
    for steps in [1, 2, 4] {
        let (out, stats) = solo(&loaded.model, prompt(8, 0), params(steps, 32));
        assert_eq!(out[0].tokens.len(), 32);
        assert_eq!(
            stats.forwards,
            8 * steps as u64,
            "8 blocks at S={steps}: no extra commit pass"
        );
        assert_eq!(out[0].forwards as u64, stats.forwards);
    }
}

#[test]
fn full_step_trajectory_visits_each_step_of_a_block_once() {
    let loaded = common::tiny_model(4);
    let (out, _) = solo(&loaded.model, prompt(8, 1), params(4, 16));
    for (block, steps) in out[0].trajectory.chunks(4).enumerate() {
        let mut sorted = steps.to_vec();
        sorted.sort_unstable();
        let first = block as u32 * 4 + 1;
        assert_eq!(
            sorted,
            (first..first + 4).collect::<Vec<_>>(),
            "block {block}"
        );
    }
    let (one_step, _) = solo(&loaded.model, prompt(8, 1), params(1, 16));
    assert_eq!(
        one_step[0].trajectory,
        vec![1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]
    );
}

#[test]
fn seeded_sampling_is_reproducible_and_batch_independent() {
    let loaded = common::tiny_model(5);
    let sampled = |seed: u64| {
        let mut p = params(2, 16);
        p.sampling.temperature = 1.0;
        p.sampling.top_p = 0.9;
        p.sampling.seed = Some(seed);
        p
    };
    let a = (prompt(7, 1), sampled(42));
    let other = (prompt(11, 2), sampled(7));
    let (alone, _) = generate(&loaded.model, SPECIAL, None, std::slice::from_ref(&a), 1).unwrap();
    let (together, _) = generate(&loaded.model, SPECIAL, None, &[other, a.clone()], 2).unwrap();
    assert_eq!(alone[0].tokens, together[1].tokens);
    let (reseeded, _) = solo(&loaded.model, a.0, sampled(43));
    assert_ne!(
        alone[0].tokens, reseeded[0].tokens,
        "a different seed gives a different sample"
    );
}

#[test]
fn stop_token_ids_and_eos_finish_with_stop() {
    let loaded = common::tiny_model(6);
    let (free, _) = solo(&loaded.model, prompt(8, 3), params(4, 16));
    let stop_at = free[0].tokens[6];
    let mut p = params(4, 16);
    p.stop.stop_token_ids = vec![stop_at];
    let (stopped, _) = solo(&loaded.model, prompt(8, 3), p);
    let first = free[0].tokens.iter().position(|&t| t == stop_at).unwrap();
    assert_eq!(stopped[0].tokens, free[0].tokens[..=first].to_vec());
    assert_eq!(stopped[0].finish_reason, FinishReason::Stop);
    assert_eq!(free[0].finish_reason, FinishReason::Length);
}

#[test]
fn stop_strings_cut_the_text_before_the_match() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = common::tiny_model(7);
    let model_dir = common::save_with_tokenizer(&loaded, &dir.path().join("m"));
    let tok = common::tokenizer(&model_dir);
    let ascii_prompt: Vec<i64> = "The answer is".bytes().map(i64::from).collect();
    let (free, _) = generate(
        &loaded.model,
        SPECIAL,
        Some(&tok),
        &[(ascii_prompt.clone(), params(2, 24))],
        1,
    )
    .unwrap();
    let text = &free[0].text;
    let (at, stop) = text
        .char_indices()
        .skip(3)
        .find(|(_, c)| c.is_ascii_graphic())
        .expect("an ASCII char");
    let mut p = params(2, 24);
    p.stop.stop_strings = vec![stop.to_string()];
    let (cut, _) = generate(&loaded.model, SPECIAL, Some(&tok), &[(ascii_prompt, p)], 1).unwrap();
    assert_eq!(cut[0].text, text[..text.find(stop).unwrap_or(at)]);
    assert_eq!(cut[0].finish_reason, FinishReason::Stop);
}

#[test]
fn a_failing_forward_is_an_error_and_the_decoder_keeps_working() {
    use t3d::engine::{BlockDecoder, EngineError, Sequence};
    let loaded = common::tiny_model(8);
    let mut decoder = BlockDecoder::new(&loaded.model, SPECIAL, None, 2, 64);
    let mut bad = Sequence::new(0, &[1, 2, 9_999], params(1, 8), SPECIAL);
    decoder.admit(&mut bad).unwrap();
    let err = decoder.step(&mut [&mut bad]).unwrap_err();
    assert!(matches!(err, EngineError::Forward(_)), "{err}");
    decoder.release(&mut bad);
    let mut good = Sequence::new(1, &[1, 2, 3], params(1, 8), SPECIAL);
    decoder.admit(&mut good).unwrap();
    let outcome = decoder.step(&mut [&mut good]).unwrap();
    assert_eq!(
        outcome[0].committed.len(),
        1,
        "first block holds 3 prompt tokens and 1 new one"
    );
    let (free, total) = (decoder.cache().free_slots(), decoder.cache().slots());
    assert_eq!((free, total), (1, 2));
}

#[test]
fn out_of_vocabulary_prompts_are_rejected_before_decoding() {
    let loaded = common::tiny_model(8);
    let err = generate(
        &loaded.model,
        SPECIAL,
        None,
        &[(vec![1, 2, 300], params(1, 8))],
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("token id 300"), "{err}");
}

#[test]
fn dynamic_remasking_unmasks_everything_above_the_threshold_at_once() {
    let loaded = common::tiny_model(9);
    let mut p = params(4, 16);
    p.denoise.remasking = t3d::engine::Remasking::LowConfidenceDynamic;
    p.denoise.confidence_threshold = 0.0;
    let (out, stats) = solo(&loaded.model, prompt(8, 1), p.clone());
    assert_eq!(
        (out[0].tokens.len(), stats.forwards),
        (16, 4),
        "one forward per block"
    );
    p.denoise.confidence_threshold = 1.0;
    let (strict, stats) = solo(&loaded.model, prompt(8, 1), p);
    assert_eq!(
        stats.forwards, 16,
        "nothing is above 1.0: one token per step"
    );
    let (static_out, _) = solo(&loaded.model, prompt(8, 1), params(4, 16));
    assert_eq!(
        strict[0].tokens, static_out[0].tokens,
        "then it is static remasking"
    );
}

#[test]
fn every_remasking_policy_decodes_whole_blocks() {
    use t3d::engine::Remasking::*;
    let loaded = common::tiny_model(10);
    for remasking in [
        LowConfidenceStatic,
        LowConfidenceDynamic,
        Sequential,
        EntropyBounded,
    ] {
        let mut p = params(2, 12);
        p.denoise.remasking = remasking;
        let (out, stats) = solo(&loaded.model, prompt(5, 2), p);
        assert_eq!(out[0].tokens.len(), 12, "{remasking:?}");
        assert!(
            out[0].tokens.iter().all(|&t| t != SPECIAL.mask),
            "{remasking:?} committed a mask"
        );
        assert!(
            stats.forwards <= 8,
            "{remasking:?}: at most S = 2 forwards per block"
        );
    }
}
