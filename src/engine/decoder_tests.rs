//! What one decoding step moves between host and device: exactly one upload (index arrays,
//! sampling settings) and one download (the sampled rows), whatever the mix of
//! requests in the batch; and no other transfer anywhere on the decoding path's source.

use tch::{Device, Kind};

use super::*;
use crate::engine::generate::generate;
use crate::engine::params::{DenoiseParams, Penalties, SamplingParams, StopParams};
use crate::engine::transfer::{counts, TransferCounts};
use crate::model::{checkpoint, SdarConfig};

const SPECIAL: SpecialIds = SpecialIds { eos: -1, mask: 1 };

fn request(steps: usize, remasking: Remasking, sampling: SamplingParams) -> GenerationParams {
    GenerationParams {
        denoise: DenoiseParams {
            steps_per_block: steps,
            remasking,
            ..DenoiseParams::default()
        },
        sampling,
        stop: StopParams {
            max_tokens: 40,
            ignore_eos: true,
            ..StopParams::default()
        },
    }
}

/// Greedy, plain sampling, top-k + top-p, and entropy-bounded rows in one batch, with prompts of
/// different lengths (padding, prompt tails) and pages first handed out mid-run.
fn mixed_batch() -> Vec<Sequence> {
    mixed_requests()
        .into_iter()
        .enumerate()
        .map(|(i, (prompt, params))| Sequence::new(i as u64, &prompt, params, SPECIAL))
        .collect()
}

/// The prompts and settings of [`mixed_batch`].
fn mixed_requests() -> Vec<(Vec<i64>, GenerationParams)> {
    let warm = |top_k, top_p| SamplingParams {
        temperature: 0.8,
        top_k,
        top_p,
        seed: Some(3),
        ..SamplingParams::default()
    };
    let reported = SamplingParams {
        logprobs: Some(0),
        ..SamplingParams::default()
    };
    let cut_and_reported = SamplingParams {
        min_p: 0.05,
        logprobs: Some(3),
        ..warm(0, 1.0)
    };
    let penalised = SamplingParams {
        penalties: Penalties {
            presence: 0.5,
            frequency: 0.2,
            repetition: 1.3,
        },
        ..SamplingParams::default()
    };
    let settings = [
        request(1, Remasking::LowConfidenceStatic, reported),
        request(2, Remasking::LowConfidenceStatic, cut_and_reported),
        request(4, Remasking::LowConfidenceDynamic, warm(5, 0.9)),
        request(4, Remasking::EntropyBounded, penalised),
    ];
    settings
        .into_iter()
        .enumerate()
        .map(|(i, params)| ((0..5 + 3 * i as i64).map(|t| 2 + t % 50).collect(), params))
        .collect()
}

#[test]
fn every_step_makes_one_upload_and_one_download() {
    let loaded = checkpoint::random(&SdarConfig::tiny(64), Device::Cpu, Kind::Float, 5);
    let mut decoder = BlockDecoder::new(&loaded.model, SPECIAL, None, 4, 96);
    let mut seqs = mixed_batch();
    for seq in &mut seqs {
        decoder.admit(seq).unwrap();
    }
    let (pages_at_start, mut steps) = (decoder.cache().pages_in_use(), 0);
    loop {
        let mut running: Vec<&mut Sequence> = seqs
            .iter_mut()
            .filter(|s| s.finish_reason().is_none())
            .collect();
        if running.is_empty() {
            break;
        }
        let before = counts();
        decoder.step(&mut running).unwrap();
        let one_each = TransferCounts {
            uploads: 1,
            downloads: 1,
        };
        assert_eq!(counts() - before, one_each, "step {steps}");
        steps += 1;
    }
    assert!(steps > 10, "the batch decoded over {steps} steps");
    assert!(
        decoder.cache().pages_in_use() > pages_at_start,
        "pages were handed out during the run"
    );
    assert!(seqs.iter().all(|s| s.completion().len() == 40));
}

/// Every committed token of a request that asks for log-probabilities gets one, from the forward
/// that unmasked it: its step is the token's trajectory entry, a greedy token is its forward's
/// likeliest, and the alternatives come best first, as many as asked.
#[test]
fn committed_tokens_carry_their_forwards_logprobs() {
    let loaded = checkpoint::random(&SdarConfig::tiny(64), Device::Cpu, Kind::Float, 5);
    let mut decoder = BlockDecoder::new(&loaded.model, SPECIAL, None, 1, 96);
    let mut params = request(2, Remasking::LowConfidenceStatic, SamplingParams::default());
    params.sampling.logprobs = Some(3);
    let mut seq = Sequence::new(0, &[2, 3, 4, 5, 6], params, SPECIAL);
    decoder.admit(&mut seq).unwrap();
    let mut logprobs = Vec::new();
    while seq.finish_reason().is_none() {
        let outcome = decoder.step(&mut [&mut seq]).unwrap().remove(0);
        assert_eq!(outcome.logprobs.len(), outcome.committed.len());
        logprobs.extend(outcome.logprobs);
    }
    let tokens: Vec<i64> = logprobs.iter().map(|l| l.token).collect();
    let steps: Vec<u32> = logprobs.iter().map(|l| l.step).collect();
    assert_eq!(tokens, seq.completion());
    assert_eq!(steps, seq.trajectory());
    for l in &logprobs {
        assert_eq!(l.top.len(), 3);
        assert_eq!(l.top[0], (l.token, l.logprob), "greedy takes the likeliest");
        assert!(l.top.windows(2).all(|w| w[0].1 >= w[1].1) && l.logprob <= 0.0);
    }
}

/// Penalties change what a greedy decode writes: with strong presence and frequency penalties
/// a random model repeats itself less.
#[test]
fn penalties_steer_a_greedy_decode_away_from_repeats() {
    let loaded = checkpoint::random(&SdarConfig::tiny(64), Device::Cpu, Kind::Float, 5);
    let decode = |penalties: Penalties| {
        let mut params = request(1, Remasking::LowConfidenceStatic, SamplingParams::default());
        params.sampling.penalties = penalties;
        let requests = [(vec![2, 3, 4, 5, 6], params)];
        let (mut out, _) = generate(&loaded.model, SPECIAL, None, &requests, 1).unwrap();
        out.remove(0).tokens
    };
    let distinct = |tokens: &[i64]| {
        tokens
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let plain = decode(Penalties::default());
    let penalised = decode(Penalties {
        presence: 2.0,
        frequency: 2.0,
        repetition: 1.0,
    });
    assert_ne!(plain, penalised);
    assert!(
        distinct(&penalised) > distinct(&plain),
        "{} distinct tokens penalised, {} not",
        distinct(&penalised),
        distinct(&plain)
    );
}

/// Non-test source of the decoding path: `src/engine/*.rs` (test files and test modules cut
/// off) and the model's forward.
fn decoding_path_sources() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("src/engine"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with("_tests.rs"))
        .collect();
    files.push(root.join("src/model/qwen3.rs"));
    files
        .into_iter()
        .filter(|p| !p.ends_with("transfer.rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            (path.display().to_string(), code.to_string())
        })
        .collect()
}

#[test]
fn only_the_transfer_module_crosses_between_host_and_device() {
    let crossings = [
        "Tensor::from_slice",
        "to_device(",
        ">::try_from(",
        "int64_value(",
        "double_value(",
        "copy_(",
        ".to(",
    ];
    let sources = decoding_path_sources();
    assert!(sources.len() > 10, "found the engine's sources");
    for (path, code) in sources {
        for crossing in crossings {
            assert!(
                !code.contains(crossing),
                "{path} calls `{crossing}`: go through engine::transfer (one upload and one \
                 download per step)"
            );
        }
    }
}

#[test]
fn key_positions_count_the_keys_each_forward_attends_over() {
    let loaded = checkpoint::random(&SdarConfig::tiny(64), Device::Cpu, Kind::Float, 5);
    let mut params = request(1, Remasking::LowConfidenceStatic, SamplingParams::default());
    params.stop.max_tokens = 8;
    let prompt = [2, 3, 4, 5, 6];
    let (_, stats) = generate(
        &loaded.model,
        SPECIAL,
        None,
        &[(prompt.to_vec(), params)],
        1,
    )
    .unwrap();
    // b = 4, S = 1, a 5-token prompt (one whole block, one token in the first generated block):
    // forward 1 reads the prompt block and the first block (keys 0..8); forward 2 stores that
    // block and decodes the next (keys 0..12); forward 3 likewise (0..16) and reaches 8 tokens.
    assert_eq!((stats.forwards, stats.tokens), (3, 8));
    assert_eq!(stats.key_positions, 8 + 12 + 16);
}

/// Decode steps padded to the graphs' shapes (batch rows up to a bucket from slot 0, keys up to
/// a power of two) commit exactly the tokens of unpadded steps: greedy and seeded sampling,
/// S = 1, 2 and 4, more requests than slots (slots freed and reused mid-run).
#[test]
fn padded_steps_commit_the_same_tokens() {
    let loaded = checkpoint::random(&SdarConfig::tiny(64), Device::Cpu, Kind::Float, 9);
    let mut requests = mixed_requests();
    let more = requests.clone();
    requests.extend(
        more.into_iter()
            .map(|(p, params)| (p[..3].to_vec(), params)),
    );
    let run = |padded: bool| {
        let decoder = BlockDecoder::new(&loaded.model, SPECIAL, None, 3, 96);
        let mut decoder = if padded {
            decoder.with_padded_steps()
        } else {
            decoder
        };
        let (generations, stats) = decoder.generate(&requests).unwrap();
        let tokens: Vec<Vec<i64>> = generations.into_iter().map(|g| g.tokens).collect();
        (tokens, stats.forwards)
    };
    let (plain, plain_forwards) = run(false);
    let (padded, padded_forwards) = run(true);
    assert_eq!(plain.len(), 8);
    assert!(plain.iter().all(|t| t.len() == 40));
    assert_eq!(plain, padded);
    assert_eq!(plain_forwards, padded_forwards);
}
