//! The engine thread without HTTP: a failing forward fails only its batch and the engine keeps
//! serving; block-size groups take turns.

mod common;

use std::sync::Arc;
use std::time::Instant;

use t3d::engine::kv_cache::CacheShape;
use t3d::engine::runner::{spawn, EngineEvent, EngineHandle, EngineRequest, RunnerLimits};
use t3d::engine::GenerationParams;
use t3d::metrics::Metrics;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn engine(max_queue: usize) -> (EngineHandle, Arc<Metrics>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = common::save_with_tokenizer(&common::tiny_model(5), &dir.path().join("m"));
    let metrics = Arc::new(Metrics::new());
    let limits = RunnerLimits {
        max_queue,
        cache: CacheShape::worst_case(4, 256),
        cuda_graphs: false,
    };
    let handle = spawn(
        move || {
            let loaded =
                t3d::model::checkpoint::load(&model_dir, tch::Device::Cpu, tch::Kind::Float)?;
            let tokenizer = common::tokenizer(&model_dir);
            Ok((loaded.model, tokenizer))
        },
        limits,
        metrics.clone(),
    )
    .unwrap();
    (handle, metrics, dir)
}

fn submit(handle: &EngineHandle, prompt: Vec<i64>, block: usize) -> UnboundedReceiver<EngineEvent> {
    let (tx, rx) = unbounded_channel();
    let mut params = GenerationParams::default();
    params.denoise.block_size = block;
    params.denoise.steps_per_block = block;
    params.stop.max_tokens = 24;
    let request = EngineRequest {
        prompt,
        params,
        events: tx,
        enqueued: Instant::now(),
        request_id: "test".into(),
    };
    handle.submit(request).unwrap();
    rx
}

fn last_event(mut rx: UnboundedReceiver<EngineEvent>) -> EngineEvent {
    let mut last = None;
    while let Some(e) = rx.blocking_recv() {
        last = Some(e);
    }
    last.expect("at least one event")
}

#[test]
fn a_failing_forward_fails_only_its_batch_and_the_engine_keeps_serving() {
    let (handle, metrics, _dir) = engine(8);
    let start = Instant::now();
    while !handle.is_ready() {
        assert!(start.elapsed().as_secs() < 30, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // An id past the embedding table makes the forward of its group (block size 2) fail.
    let bad = submit(&handle, vec![1, 2, 1_000_000], 2);
    let good = submit(&handle, vec![1, 2, 3], 4);
    match last_event(bad) {
        EngineEvent::Error(message) => assert!(message.contains("forward"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        matches!(last_event(good), EngineEvent::Done(_)),
        "the other group is unaffected"
    );
    let after = submit(&handle, vec![4, 5, 6], 2);
    match last_event(after) {
        EngineEvent::Done(done) => assert_eq!(done.completion_tokens, 24),
        other => panic!("engine stopped serving: {other:?}"),
    }
    assert!(handle.is_alive());
    assert!(metrics
        .render()
        .contains("t3d_request_failures_total{reason=\"forward\"} 1"));
}
