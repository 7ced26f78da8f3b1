//! What one decoding forward costs in ATen ops and in KV bytes copied, counted (not timed) at a
//! tiny shape: the op count of a step does not depend on the shape, so these are the counts a
//! GPU pays in kernel launches at SDAR shapes too.

use t3d::engine::{BlockDecoder, GenerationParams, Sequence, SpecialIds};
use t3d::model::op_count::{count_ops, OpCounts};
use t3d::model::{checkpoint, SdarConfig};
use tch::{Device, Kind};

const SPECIAL: SpecialIds = SpecialIds { eos: -1, mask: 1 };

/// Ops of one steady-state step (a block being denoised, the previous block's commit riding
/// along) for `batch` greedy sequences, and the decoder's counters after it.
fn one_step(batch: usize, layers: i64) -> (OpCounts, u64) {
    let mut config = SdarConfig::tiny(64);
    config.num_hidden_layers = layers;
    let loaded = checkpoint::random(&config, Device::Cpu, Kind::Float, 1);
    let mut decoder = BlockDecoder::new(&loaded.model, SPECIAL, None, batch, 128);
    let mut params = GenerationParams::default();
    params.denoise.steps_per_block = 1;
    params.stop.max_tokens = 64;
    params.stop.ignore_eos = true;
    let mut seqs: Vec<Sequence> = (0..batch)
        .map(|i| {
            let prompt: Vec<i64> = (0..9 + 2 * i as i64).map(|t| 2 + t % 50).collect();
            Sequence::new(i as u64, &prompt, params.clone(), SPECIAL)
        })
        .collect();
    for seq in &mut seqs {
        decoder.admit(seq).unwrap();
    }
    let step = |decoder: &mut BlockDecoder, seqs: &mut [Sequence]| {
        let mut running: Vec<&mut Sequence> = seqs.iter_mut().collect();
        decoder.step(&mut running).unwrap();
    };
    for _ in 0..3 {
        // Prefill, then blocks: every page the counted step reads is handed out already.
        step(&mut decoder, &mut seqs);
    }
    let before = decoder.stats().kv_bytes_materialised;
    let ((), counts) = count_ops(|| step(&mut decoder, &mut seqs));
    (counts, decoder.stats().kv_bytes_materialised - before)
}

#[test]
fn a_decoding_step_launches_few_kernels_per_layer_and_copies_no_kv() {
    let (layers, batch) = (4, 8);
    let (counts, kv_bytes) = one_step(batch, layers);
    let per_layer = counts.in_sections as f64 / layers as f64;
    let kernels_per_layer = (counts.in_sections - counts.views_in_sections) as f64 / layers as f64;
    let outside = counts.ops - counts.in_sections;
    let kernels_outside = outside - (counts.views - counts.views_in_sections);
    eprintln!(
        "ops per layer {per_layer:.2} ({kernels_per_layer:.2} kernels), outside the layers \
         {outside} ({kernels_outside} kernels), KV bytes copied {kv_bytes}\n{:#?}",
        counts.by_name
    );
    assert!(kernels_per_layer <= 24.0, "{kernels_per_layer}");
    assert!(kernels_outside <= 40, "{kernels_outside}");
    assert_eq!(
        counts.calls_of("aten::scaled_dot_product_attention"),
        layers as u64
    );
    assert_eq!(kv_bytes, 0, "attention reads the cache in place");
    // The rope tables' two look-ups and the q/k norm table's spread, once per step (the
    // sequences are the batch rows in order, so no row pick for the LM head): no gather.
    assert_eq!(counts.calls_of("aten::index_select"), 3);
}
