//! The paged KV cache: short requests share the memory that fixed slots reserved for the
//! worst case, decode exactly as they do alone, and the server's cache memory is committed as
//! sequences use it, within its budget.

mod common;

use std::time::Duration;

use t3d::engine::kv_cache::CacheShape;
use t3d::engine::{generate, BlockDecoder, EngineError, GenerationParams, Sequence, SpecialIds};

const SPECIAL: SpecialIds = SpecialIds {
    eos: 256,
    mask: 257,
};

fn params(max_tokens: usize) -> GenerationParams {
    common::decode_params(2, max_tokens)
}

#[test]
fn short_requests_share_the_memory_of_four_fixed_slots_and_decode_as_alone() {
    let loaded = common::tiny_model(3);
    // The memory the fixed-slot cache gave 4 sequences of 1088 positions (the old defaults).
    let fixed = CacheShape::worst_case(4, 1088);
    let shape = CacheShape {
        max_sequences: 64,
        ..fixed
    };
    let mut decoder = BlockDecoder::with_cache(&loaded.model, SPECIAL, None, shape);
    let mut seqs: Vec<Sequence> = (0..48)
        .map(|i| {
            Sequence::new(
                i,
                &common::test_prompt(6 + i as usize % 5, i as i64),
                params(12),
                SPECIAL,
            )
        })
        .collect();
    for seq in &mut seqs {
        decoder.admit(seq).unwrap();
    }
    assert_eq!(
        decoder.cache().free_slots(),
        16,
        "48 short requests admitted where 4 fitted"
    );
    while seqs.iter().any(|s| s.finish_reason().is_none()) {
        let mut running: Vec<&mut Sequence> = seqs
            .iter_mut()
            .filter(|s| s.finish_reason().is_none())
            .collect();
        decoder.step(&mut running).unwrap();
    }
    assert!(
        decoder.cache().pages_in_use() <= 48 * 2,
        "two pages each at most"
    );
    for seq in &mut seqs {
        let alone = generate(
            &loaded.model,
            SPECIAL,
            None,
            &[(
                common::test_prompt(6 + seq.id as usize % 5, seq.id as i64),
                params(12),
            )],
            1,
        )
        .unwrap()
        .0;
        assert_eq!(
            seq.completion(),
            alone[0].tokens.as_slice(),
            "sequence {}",
            seq.id
        );
        decoder.release(seq);
    }
    assert_eq!(decoder.cache().pages_in_use(), 0, "every page came back");
    let mut long = Sequence::new(
        99,
        &common::test_prompt(8, 1),
        params(fixed.pages * 16),
        SPECIAL,
    );
    assert!(matches!(
        decoder.admit(&mut long),
        Err(EngineError::TooLong { .. })
    ));
}

fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn the_server_commits_cache_memory_as_sequences_use_it_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::save_with_tokenizer(&common::tiny_model(4), &dir.path().join("m"));
    let port = common::free_port();
    let mut child = common::spawn_serve(&[
        "--model",
        model.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--max-batch-size",
        "64",
        "--kv-cache-memory",
        "1GiB",
    ]);
    common::wait_until("the server never became ready", 120, || {
        common::http(port, "GET", "/ready", "", None).is_some_and(|(s, _)| s == 200)
    });
    let metric = |name: &str| -> f64 {
        let (_, text) = common::http(port, "GET", "/metrics", "", None).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap()
    };
    // Tiny model: 2 layers x 2 KV heads x 16 wide x K and V x 4 bytes = 512 bytes a position.
    let spanned = metric("t3d_kv_cache_pages") * metric("t3d_kv_cache_page_size") * 512.0;
    assert!(
        spanned > 1000e6 && spanned <= 1024.0 * 1024.0 * 1024.0,
        "{spanned}"
    );
    let at_start = rss_bytes(child.id());
    let body = r#"{"prompt": "abcdefgh", "max_tokens": 256, "ignore_eos": true, "temperature": 0}"#;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || common::http(port, "POST", "/v1/completions", body, None))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().map(|r| r.0), Some(200));
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_bytes(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        (at_start as f64) < spanned / 2.0,
        "the 1 GiB cache is not committed up front: RSS {at_start} at start"
    );
    assert!(
        ((after - at_start.min(after)) as f64) < spanned / 4.0,
        "16 requests of 264 positions hold ~2 MiB of cache, not the budget: RSS {at_start} -> {after}"
    );
}
