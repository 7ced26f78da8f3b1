//! Prometheus metrics (`t3d_*`), registered in one [`Registry`] shared by the engine thread and
//! the HTTP layer. Diffusion-native figures (tokens per forward, denoising steps per block,
//! forwards per request) sit beside the usual latency and queue metrics; the README lists them.

use prometheus::{
    exponential_buckets, linear_buckets, Encoder, Histogram, HistogramOpts, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What the metrics say of the model serving now.
pub struct ServingModel<'a> {
    /// Its version (weights digest and load time).
    pub version: &'a str,
    /// Its directory.
    pub path: &'a str,
    /// Tokens per block.
    pub block_size: usize,
    /// Default denoising steps per block.
    pub steps_per_block: usize,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Enqueue to last event, per request.
    pub request_duration: Histogram,
    /// Enqueue to the first committed block.
    pub time_to_first_block: Histogram,
    /// Between consecutive committed blocks of one request.
    pub inter_block_latency: Histogram,
    /// Enqueue to admission into the batch.
    pub queue_time: Histogram,
    /// Prompt tokens per request.
    pub prompt_tokens: Histogram,
    /// Completion tokens per request.
    pub generation_tokens: Histogram,
    /// Sequences per engine forward.
    pub batch_size: Histogram,
    /// Completion tokens per forward pass, per request.
    pub tokens_per_forward: Histogram,
    /// Forward passes per committed block, per request.
    pub steps_per_block: Histogram,
    /// Forward passes per request.
    pub forwards_per_request: Histogram,
    /// Wall time of one engine step (one forward and its bookkeeping).
    pub engine_step: Histogram,
    /// Engine steps taken.
    pub engine_steps: IntCounter,
    /// Completion tokens produced.
    pub generated_tokens_total: IntCounter,
    /// Sequences in the running batch.
    pub running: IntGauge,
    /// Requests waiting for a batch slot.
    pub waiting: IntGauge,
    /// KV-cache sequence slots in use.
    pub kv_slots_used: IntGauge,
    /// KV-cache slots in all.
    pub kv_slots_total: IntGauge,
    /// KV-cache pages held by running sequences.
    pub kv_pages_used: IntGauge,
    /// KV-cache pages in all.
    pub kv_pages_total: IntGauge,
    /// Positions per KV-cache page.
    pub kv_page_size: IntGauge,
    /// Requests that ended without a normal finish, by reason.
    pub failures: IntCounterVec,
    /// HTTP responses by route and status.
    pub http_requests: IntCounterVec,
    /// Client connections open on the API port.
    pub http_connections: IntGauge,
    /// Connections refused (503) because `--max-connections` were open.
    pub http_connections_refused: IntCounter,
    /// 1 for the model serving now, by version and path.
    pub model_info: IntGaugeVec,
    /// Tokens per block of the model serving now.
    pub model_block_size: IntGauge,
    /// Default denoising steps per block of the model serving now (what it promises:
    /// `block_size / steps` tokens per forward).
    pub model_steps_per_block: IntGauge,
    /// Distillation jobs by state.
    pub admin_jobs: IntGaugeVec,
    /// Model hot-swaps by result (`swapped`, `refused`, `rolled_back`).
    pub model_swaps: IntCounterVec,
    /// gRPC calls by method and status code.
    pub grpc_requests: IntCounterVec,
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("static histogram options are valid");
    registry
        .register(Box::new(h.clone()))
        .expect("metric names are unique");
    h
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        // process_resident_memory_bytes, process_cpu_seconds_total, open fds, threads…
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let secs = exponential_buckets(0.001, 2.0, 16).expect("static buckets");
        let tokens = exponential_buckets(1.0, 2.0, 14).expect("static buckets");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("static opts");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("static opts");
        let labelled = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("static opts")
        };
        Self {
            request_duration: histogram(
                &r,
                "t3d_request_duration_seconds",
                "Request latency from enqueue to the last event.",
                secs.clone(),
            ),
            time_to_first_block: histogram(
                &r,
                "t3d_time_to_first_block_seconds",
                "Time from enqueue to the first committed block.",
                secs.clone(),
            ),
            inter_block_latency: histogram(
                &r,
                "t3d_inter_block_latency_seconds",
                "Time between consecutive committed blocks of a request.",
                secs.clone(),
            ),
            queue_time: histogram(
                &r,
                "t3d_queue_time_seconds",
                "Time from enqueue to admission into the running batch.",
                secs.clone(),
            ),
            prompt_tokens: histogram(
                &r,
                "t3d_request_prompt_tokens",
                "Prompt tokens per request.",
                tokens.clone(),
            ),
            generation_tokens: histogram(
                &r,
                "t3d_request_generation_tokens",
                "Completion tokens per request.",
                tokens.clone(),
            ),
            batch_size: histogram(
                &r,
                "t3d_batch_size",
                "Sequences in one engine forward.",
                tokens.clone(),
            ),
            tokens_per_forward: histogram(
                &r,
                "t3d_tokens_per_forward",
                "Completion tokens per forward pass, per request.",
                linear_buckets(0.25, 0.25, 16).expect("static buckets"),
            ),
            steps_per_block: histogram(
                &r,
                "t3d_denoising_steps_per_block",
                "Forward passes per committed block, per request.",
                linear_buckets(0.5, 0.5, 16).expect("static buckets"),
            ),
            forwards_per_request: histogram(
                &r,
                "t3d_forwards_per_request",
                "Forward passes per request.",
                tokens,
            ),
            engine_step: histogram(
                &r,
                "t3d_engine_step_seconds",
                "Wall time of one engine step.",
                secs,
            ),
            engine_steps: register(
                &r,
                counter(
                    "t3d_engine_steps_total",
                    "Engine steps (batched forwards) taken.",
                ),
            ),
            generated_tokens_total: register(
                &r,
                counter("t3d_generated_tokens_total", "Completion tokens produced."),
            ),
            running: register(
                &r,
                gauge("t3d_running_requests", "Sequences in the running batch."),
            ),
            waiting: register(
                &r,
                gauge("t3d_waiting_requests", "Requests waiting for a batch slot."),
            ),
            kv_slots_used: register(
                &r,
                gauge("t3d_kv_cache_slots_used", "KV-cache slots in use."),
            ),
            kv_slots_total: register(&r, gauge("t3d_kv_cache_slots", "KV-cache slots in all.")),
            kv_pages_used: register(
                &r,
                gauge(
                    "t3d_kv_cache_pages_used",
                    "KV-cache pages held by running sequences.",
                ),
            ),
            kv_pages_total: register(&r, gauge("t3d_kv_cache_pages", "KV-cache pages in all.")),
            kv_page_size: register(
                &r,
                gauge("t3d_kv_cache_page_size", "Positions per KV-cache page."),
            ),
            failures: register(
                &r,
                labelled(
                    "t3d_request_failures_total",
                    "Requests that ended abnormally, by reason.",
                    &["reason"],
                ),
            ),
            http_requests: register(
                &r,
                labelled(
                    "t3d_http_requests_total",
                    "HTTP responses by route and status.",
                    &["route", "status"],
                ),
            ),
            http_connections: register(
                &r,
                gauge(
                    "t3d_http_connections",
                    "Client connections open on the API port.",
                ),
            ),
            http_connections_refused: register(
                &r,
                counter(
                    "t3d_http_connections_refused_total",
                    "Connections answered 503 because --max-connections were open.",
                ),
            ),
            model_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("t3d_model_info", "The model serving now (value 1)."),
                    &["version", "path"],
                )
                .expect("static opts"),
            ),
            model_block_size: register(
                &r,
                gauge(
                    "t3d_model_block_size",
                    "Tokens per block of the model serving now.",
                ),
            ),
            model_steps_per_block: register(
                &r,
                gauge(
                    "t3d_model_steps_per_block",
                    "Default denoising steps per block of the model serving now.",
                ),
            ),
            admin_jobs: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("t3d_admin_jobs", "Distillation jobs by state."),
                    &["state"],
                )
                .expect("static opts"),
            ),
            model_swaps: register(
                &r,
                labelled(
                    "t3d_model_swaps_total",
                    "Model hot-swaps by result.",
                    &["result"],
                ),
            ),
            grpc_requests: register(
                &r,
                labelled(
                    "t3d_grpc_requests_total",
                    "gRPC calls by method and status code.",
                    &["method", "code"],
                ),
            ),
            registry: r,
        }
    }

    /// Marks `model` as the one serving now (and no other).
    pub fn set_model(&self, model: &ServingModel) {
        self.model_info.reset();
        self.model_info
            .with_label_values(&[model.version, model.path])
            .set(1);
        self.model_block_size.set(model.block_size as i64);
        self.model_steps_per_block.set(model.steps_per_block as i64);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_the_t3d_prefix() {
        let m = Metrics::new();
        m.tokens_per_forward.observe(3.5);
        m.failures.with_label_values(&["forward"]).inc();
        m.http_requests
            .with_label_values(&["/v1/completions", "200"])
            .inc();
        let model = |version, path| ServingModel {
            version,
            path,
            block_size: 4,
            steps_per_block: 1,
        };
        m.set_model(&model("old", "/m/a"));
        m.set_model(&model("abc-1", "/m/b"));
        m.admin_jobs.with_label_values(&["training"]).set(1);
        m.model_swaps.with_label_values(&["swapped"]).inc();
        let text = m.render();
        assert!(
            !text.contains("version=\"old\""),
            "the old model's info is gone"
        );
        for name in [
            "t3d_tokens_per_forward_bucket",
            "t3d_denoising_steps_per_block_count",
            "t3d_request_failures_total{reason=\"forward\"} 1",
            "t3d_http_requests_total{route=\"/v1/completions\",status=\"200\"} 1",
            "t3d_running_requests 0",
            "t3d_model_info{path=\"/m/b\",version=\"abc-1\"} 1",
            "t3d_admin_jobs{state=\"training\"} 1",
            "t3d_model_block_size 4",
            "t3d_model_steps_per_block 1",
            "t3d_model_swaps_total{result=\"swapped\"} 1",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
        assert!(text.contains("process_resident_memory_bytes"));
        let families = text
            .lines()
            .filter(|l| l.starts_with("# TYPE t3d_"))
            .count();
        assert_eq!(
            families, 29,
            "labelled families without samples are not rendered"
        );
    }
}
