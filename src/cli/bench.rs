//! `t3d bench`: engine-only decoding throughput (no HTTP) over batch sizes and steps per block,
//! for a checkpoint or a random model of a named shape. Prints a table and writes JSON.

use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use super::args::BenchArgs;
use super::common::resolve_model;
use crate::engine::device_memory::cuda_free_and_total;
use crate::engine::sequence::context_needed;
use crate::engine::{
    BlockDecoder, DecodeStats, DenoiseParams, Generation, GenerationParams, SpecialIds, StopParams,
};
use crate::model::op_count::count_ops;
use crate::model::{checkpoint, parse_device, parse_dtype, Sdar, SdarConfig};

/// One measured setting.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Sequences decoded together.
    pub batch: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// Denoising steps per block.
    pub steps_per_block: usize,
    /// Completion tokens produced (all sequences).
    pub tokens: u64,
    /// Model forward passes.
    pub forwards: u64,
    /// Completion tokens per sequence per forward.
    pub tokens_per_forward: f64,
    /// Median wall time of one run, seconds.
    pub seconds: f64,
    /// Completion tokens per second (all sequences).
    pub tokens_per_second: f64,
    /// Milliseconds per forward.
    pub ms_per_forward: f64,
    /// Mean bytes one forward must read: the weights plus the KV cache it attends over.
    pub bytes_per_forward: f64,
    /// Time those bytes take at `--hbm-bandwidth-gbs`, as % of the measured time.
    pub hbm_bound_percent: Option<f64>,
    /// Top-level ATen ops per forward (one counted run after the timed ones).
    pub aten_ops_per_forward: f64,
    /// Of those, ops that do work (not views): on a GPU, kernel launches.
    pub kernel_ops_per_forward: f64,
    /// Top-level ATen ops per transformer layer per forward.
    pub aten_ops_per_layer: f64,
    /// Of those, ops that do work.
    pub kernel_ops_per_layer: f64,
    /// Bytes of keys/values copied out of the cache per forward for attention.
    pub kv_bytes_copied_per_forward: f64,
    /// The attention kernel libtorch picks at this setting's shapes (`_fused_sdp_choice`).
    pub sdpa_backend: String,
    /// Forwards of the timed run that replayed a CUDA graph, %.
    pub cuda_graph_replays_percent: f64,
    /// FNV-1a of every completion token of the timed run, in order: equal digests across
    /// settings (graphs on and off, say) mean the same tokens.
    pub tokens_digest: String,
    /// Memory in use on the CUDA device after the setting ran (the caching allocator keeps
    /// what it reserved, so this is the peak, CUDA context included).
    pub gpu_memory_used_bytes: Option<u64>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Checkpoint path or `random:<shape>`.
    pub model: String,
    /// Parameters.
    pub parameters: i64,
    /// Device name.
    pub device: String,
    /// dtype name.
    pub dtype: String,
    /// Prompt length.
    pub prompt_len: usize,
    /// Completion tokens per sequence.
    pub gen_tokens: usize,
    /// One row per (batch, steps).
    pub rows: Vec<BenchRow>,
}

/// Runs the benchmark described by `args`.
pub fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let device = parse_device(&args.device.device).map_err(anyhow::Error::msg)?;
    let kind = parse_dtype(&args.device.dtype, device).map_err(anyhow::Error::msg)?;
    let (loaded, name) = match &args.model {
        Some(given) => (
            checkpoint::load(
                &resolve_model(Some(given), args.revision.as_deref())?,
                device,
                kind,
            )?,
            given.display().to_string(),
        ),
        None => {
            let cfg = SdarConfig::named_shape(&args.shape, 260).map_err(anyhow::Error::msg)?;
            (
                checkpoint::random(&cfg, device, kind, 0),
                format!("random:{}", args.shape),
            )
        }
    };
    let special = SpecialIds {
        eos: -1,
        mask: loaded.config.mask_token_id.unwrap_or(0),
    };
    let mut report = BenchReport {
        model: name,
        parameters: loaded.config.num_parameters(),
        device: format!("{device:?}"),
        dtype: args.device.dtype.clone(),
        prompt_len: args.prompt_len,
        gen_tokens: args.gen_tokens,
        rows: Vec::new(),
    };
    let traffic = MemoryTraffic::of(&loaded.config, kind);
    for &batch in &args.batch_sizes {
        for &steps in &args.steps {
            let (mut row, stats) = measure(&loaded.model, special, args, batch, steps)?;
            let bytes = traffic.bytes(&stats);
            row.bytes_per_forward = bytes / stats.forwards.max(1) as f64;
            row.hbm_bound_percent = args
                .hbm_bandwidth_gbs
                .map(|gbs| bound_percent(bytes, gbs, row.seconds));
            row.gpu_memory_used_bytes = gpu_memory_used(device);
            eprintln!("{}", format_row(&row));
            report.rows.push(row);
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
            }
        }
    }
    Ok(report)
}

/// What a forward must read from device memory: the weights once, and each attended key's K/V.
#[derive(Debug, Clone, Copy)]
struct MemoryTraffic {
    weights_per_forward: f64,
    kv_per_key: f64,
}

impl MemoryTraffic {
    fn of(config: &SdarConfig, kind: tch::Kind) -> Self {
        let element = kind.elt_size_in_bytes();
        Self {
            weights_per_forward: config.weight_bytes_per_forward(element) as f64,
            kv_per_key: config.kv_bytes_per_position(element) as f64,
        }
    }

    /// Bytes a run with these counters read at the least.
    fn bytes(&self, stats: &DecodeStats) -> f64 {
        self.weights_per_forward * stats.forwards as f64
            + self.kv_per_key * stats.key_positions as f64
    }
}

/// The time `bytes` take at `gbs` GB/s, as % of the measured `seconds`.
fn bound_percent(bytes: f64, gbs: f64, seconds: f64) -> f64 {
    bytes / (gbs * 1e9) / seconds * 100.0
}

fn gpu_memory_used(device: tch::Device) -> Option<u64> {
    let tch::Device::Cuda(index) = device else {
        return None;
    };
    let (free, total) = cuda_free_and_total(index)?;
    Some((total - free) as u64)
}

fn requests(
    args: &BenchArgs,
    vocab: i64,
    batch: usize,
    steps: usize,
) -> Vec<(Vec<i64>, GenerationParams)> {
    let mut rng = StdRng::seed_from_u64(7);
    let params = GenerationParams {
        denoise: DenoiseParams {
            block_size: args.block_size,
            steps_per_block: steps,
            ..DenoiseParams::default()
        },
        stop: StopParams {
            max_tokens: args.gen_tokens,
            ignore_eos: true,
            ..StopParams::default()
        },
        ..GenerationParams::default()
    };
    (0..batch)
        .map(|_| {
            (
                (0..args.prompt_len)
                    .map(|_| rng.random_range(0..vocab.min(256)))
                    .collect(),
                params.clone(),
            )
        })
        .collect()
}

fn measure(
    model: &Sdar,
    special: SpecialIds,
    args: &BenchArgs,
    batch: usize,
    steps: usize,
) -> anyhow::Result<(BenchRow, DecodeStats)> {
    let reqs = requests(args, model.config().vocab_size, batch, steps);
    // One decoder for every run of the setting: its CUDA graphs are captured in the warm-up.
    let capacity = reqs
        .iter()
        .map(|(prompt, params)| context_needed(prompt.len(), params))
        .max()
        .unwrap_or(1);
    let mut decoder = BlockDecoder::new(model, special, None, batch, capacity)
        .with_cuda_graphs(args.device.cuda_graphs);
    for _ in 0..args.warmup {
        decoder.generate(&reqs)?;
    }
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..args.repeats.max(1) {
        let start = Instant::now();
        let (generations, stats) = decoder.generate(&reqs)?;
        sync(model.device());
        times.push(start.elapsed().as_secs_f64());
        last = Some((stats, tokens_digest(&generations)));
    }
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    let (stats, digest) = last.unwrap_or_default();
    let mut row = BenchRow {
        batch,
        block_size: args.block_size,
        steps_per_block: steps,
        tokens: stats.tokens,
        forwards: stats.forwards,
        tokens_per_forward: stats.tokens as f64 / batch as f64 / stats.forwards.max(1) as f64,
        seconds,
        tokens_per_second: stats.tokens as f64 / seconds,
        ms_per_forward: seconds * 1e3 / stats.forwards.max(1) as f64,
        bytes_per_forward: 0.0,
        hbm_bound_percent: None,
        gpu_memory_used_bytes: None,
        aten_ops_per_forward: 0.0,
        kernel_ops_per_forward: 0.0,
        aten_ops_per_layer: 0.0,
        kernel_ops_per_layer: 0.0,
        kv_bytes_copied_per_forward: 0.0,
        cuda_graph_replays_percent: 0.0,
        tokens_digest: digest,
        sdpa_backend: model
            .attention_backend(
                batch as i64,
                2 * args.block_size as i64,
                (args.prompt_len + args.gen_tokens) as i64,
            )
            .to_string(),
    };
    row.cuda_graph_replays_percent =
        100.0 * stats.graph_replays as f64 / row.forwards.max(1) as f64;
    count_forward_cost(&mut row, &mut decoder, &reqs)?;
    Ok((row, stats))
}

/// FNV-1a over the completion tokens of `generations`, as 16 hex digits.
fn tokens_digest(generations: &[Generation]) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for token in generations.iter().flat_map(|g| g.tokens.iter()) {
        for byte in token.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Fills `row`'s op and KV-copy figures from one more run, counted.
fn count_forward_cost(
    row: &mut BenchRow,
    decoder: &mut BlockDecoder,
    reqs: &[(Vec<i64>, GenerationParams)],
) -> anyhow::Result<()> {
    let model = decoder.model();
    let (run, ops) = count_ops(|| decoder.generate(reqs));
    let (_, stats) = run?;
    let forwards = stats.forwards.max(1) as f64;
    let layers = model.config().num_hidden_layers.max(1) as f64;
    row.aten_ops_per_forward = ops.ops as f64 / forwards;
    row.kernel_ops_per_forward = ops.kernels() as f64 / forwards;
    row.aten_ops_per_layer = ops.in_sections as f64 / forwards / layers;
    row.kernel_ops_per_layer = (ops.in_sections - ops.views_in_sections) as f64 / forwards / layers;
    row.kv_bytes_copied_per_forward = stats.kv_bytes_materialised as f64 / forwards;
    Ok(())
}

fn sync(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The table header matching [`format_row`].
pub fn header() -> String {
    format!(
        "{:>5} {:>3} {:>3} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>9} {:>10} {:>9} {:>7}  {}",
        "batch",
        "b",
        "S",
        "tokens",
        "forwards",
        "tok/fwd",
        "tok/s",
        "ms/fwd",
        "%bound",
        "ops/layer",
        "kvMB/fwd",
        "sdpa",
        "graphs%",
        "tokens"
    )
}

/// One table line.
pub fn format_row(r: &BenchRow) -> String {
    format!(
        "{:>5} {:>3} {:>3} {:>8} {:>8} {:>9.2} {:>10.1} {:>9.2} {:>8} {:>9.1} {:>10.2} {:>9} {:>7.0}  {}",
        r.batch,
        r.block_size,
        r.steps_per_block,
        r.tokens,
        r.forwards,
        r.tokens_per_forward,
        r.tokens_per_second,
        r.ms_per_forward,
        r.hbm_bound_percent
            .map_or_else(|| "-".to_string(), |p| format!("{p:.1}")),
        r.aten_ops_per_layer,
        r.kv_bytes_copied_per_forward / 1e6,
        r.sdpa_backend,
        r.cuda_graph_replays_percent,
        r.tokens_digest
    )
}

/// `t3d bench`: prints the table (header on stderr too, as rows arrive) and writes `--json`.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    super::common::setup_device(&args.device)?;
    eprintln!("{}", header());
    let report = run(args)?;
    println!("{}", header());
    for row in &report.rows {
        println!("{}", format_row(row));
    }
    if let Some(path) = &args.json {
        eprintln!("[t3d] wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_read_of_sdar_1_7b_at_h200_bandwidth_is_the_bound() {
        // SDAR-1.7B in bf16 is ~3.44 GB; at 4.8 TB/s one read takes ~0.72 ms.
        let traffic = MemoryTraffic::of(&SdarConfig::sdar_1_7b(), tch::Kind::BFloat16);
        let one_forward = DecodeStats {
            forwards: 1,
            ..DecodeStats::default()
        };
        let weights = traffic.bytes(&one_forward);
        assert_eq!(weights, 1_720_574_976.0 * 2.0);
        assert!((bound_percent(weights, 4800.0, 0.000_717) - 100.0).abs() < 0.1);
        assert!((bound_percent(weights, 4800.0, 0.001_434) - 50.0).abs() < 0.1);
        // 28 layers x (K + V) x 8 heads x 128 x 2 bytes per attended key.
        let with_keys = DecodeStats {
            key_positions: 1000,
            ..one_forward
        };
        assert_eq!(traffic.bytes(&with_keys) - weights, 1000.0 * 114_688.0);
    }
}
