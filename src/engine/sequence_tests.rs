use super::*;
use crate::engine::params::DenoiseParams;

const IDS: SpecialIds = SpecialIds { eos: 0, mask: 99 };

fn params(steps: usize, max_tokens: usize) -> GenerationParams {
    let mut p = GenerationParams {
        denoise: DenoiseParams {
            steps_per_block: steps,
            ..DenoiseParams::default()
        },
        ..GenerationParams::default()
    };
    p.stop.max_tokens = max_tokens;
    p
}

#[test]
fn prompt_tail_shares_the_first_block_and_is_never_overwritten() {
    let mut seq = Sequence::new(1, &[5, 6, 7, 8, 9, 10], params(1, 8), IDS);
    assert_eq!(seq.query_tokens(), vec![5, 6, 7, 8, 9, 10, 99, 99]);
    assert_eq!(seq.block_row(), 4);
    let out = seq.apply_step(&[1, 1, 21, 22], &[0.9; 4], &[0.0; 4]);
    assert_eq!(
        out.committed,
        vec![21, 22],
        "prompt tail (9, 10) kept, not overwritten"
    );
    assert_eq!(seq.trajectory(), &[1, 1]);
    // Fused commit: the finished block rides along with the next block's first step.
    assert_eq!(seq.query_tokens(), vec![9, 10, 21, 22, 99, 99, 99, 99]);
    assert_eq!(seq.cached_len(), 4);
}

#[test]
fn full_step_records_one_token_per_step_in_confidence_order() {
    let mut seq = Sequence::new(1, &[5, 6, 7, 8], params(4, 8), IDS);
    let conf = [0.1, 0.9, 0.5, 0.7];
    for step in 0..3 {
        assert!(
            seq.apply_step(&[11, 12, 13, 14], &conf, &conf)
                .committed
                .is_empty(),
            "step {step}"
        );
    }
    let out = seq.apply_step(&[11, 12, 13, 14], &conf, &conf);
    assert_eq!(out.committed, vec![11, 12, 13, 14]);
    assert_eq!(seq.trajectory(), &[4, 1, 3, 2]);
    assert_eq!(seq.forwards(), 4);
}

#[test]
fn eos_in_slot_two_accepts_three_tokens_and_finishes() {
    let mut seq = Sequence::new(1, &[5, 6, 7, 8], params(1, 16), IDS);
    let out = seq.apply_step(&[11, 12, 0, 14], &[0.5; 4], &[0.0; 4]);
    assert_eq!(out.committed, vec![11, 12, 0]);
    assert_eq!(out.finished, Some(FinishReason::Stop));
}

#[test]
fn max_tokens_cuts_inside_a_block() {
    let mut seq = Sequence::new(1, &[5, 6, 7, 8], params(1, 6), IDS);
    assert_eq!(
        seq.apply_step(&[1, 2, 3, 4], &[0.5; 4], &[0.0; 4]).finished,
        None
    );
    let out = seq.apply_step(&[5, 6, 7, 8], &[0.5; 4], &[0.0; 4]);
    assert_eq!(
        (out.committed, out.finished),
        (vec![5, 6], Some(FinishReason::Length))
    );
    assert_eq!(seq.completion(), &[1, 2, 3, 4, 5, 6]);
}

#[test]
fn stop_token_ids_end_the_sequence() {
    let mut p = params(2, 16);
    p.stop.stop_token_ids = vec![42];
    let mut seq = Sequence::new(1, &[5, 6, 7, 8], p, IDS);
    seq.apply_step(&[42, 2, 3, 4], &[0.9, 0.8, 0.1, 0.1], &[0.0; 4]);
    let out = seq.apply_step(&[42, 2, 3, 4], &[0.9; 4], &[0.0; 4]);
    assert_eq!(
        (out.committed, out.finished),
        (vec![42], Some(FinishReason::Stop))
    );
}

#[test]
fn the_token_that_ends_a_sequence_is_not_text() {
    let dir = tempfile::tempdir().unwrap();
    crate::model::tokenizer::write_byte_tokenizer(dir.path()).unwrap();
    let cfg = crate::model::SdarConfig::tiny(260);
    let tok = TextTokenizer::from_dir(dir.path(), &cfg).unwrap();
    let x = i64::from(b'x');
    let mut p = params(1, 16);
    p.stop.stop_token_ids = vec![x];
    let ids = SpecialIds {
        eos: 256,
        mask: 257,
    };
    let mut seq = Sequence::new(1, &[5, 6, 7, 8], p, ids);
    let (a, b) = (i64::from(b'a'), i64::from(b'b'));
    let out = seq.apply_step(&[a, b, x, a], &[0.5; 4], &[0.0; 4]);
    assert_eq!(
        (out.committed.as_slice(), out.finished),
        (&[a, b, x][..], Some(FinishReason::Stop))
    );
    seq.push_text(&tok, &out.committed).unwrap();
    assert_eq!(
        seq.text(),
        "ab",
        "the stop token `x` is a token of the completion, not text"
    );
}
