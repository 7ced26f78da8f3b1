//! Samples, percentiles and the per-level report.

use std::time::Duration;

use serde::Serialize;

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    first_block: Duration,
    latency: Duration,
    tokens: usize,
    error: Option<String>,
}

impl Sample {
    /// A completed request.
    pub fn ok(first_block: Duration, latency: Duration, tokens: usize) -> Self {
        Self {
            first_block,
            latency,
            tokens,
            error: None,
        }
    }

    /// A failed request.
    pub fn failed(latency: Duration, why: String) -> Self {
        Self {
            first_block: latency,
            latency,
            tokens: 0,
            error: Some(why),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Nearest-rank percentiles of `values` (milliseconds).
pub fn percentiles(mut values: Vec<f64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

/// The results of one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Concurrent workers.
    pub concurrency: usize,
    /// Requests finished (ok + errors).
    pub requests: usize,
    /// Failed requests.
    pub errors: usize,
    /// First error message, if any.
    pub first_error: Option<String>,
    /// Wall time of the level (s).
    pub seconds: f64,
    /// Completion tokens per second over the level.
    pub tokens_per_second: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Time to first block (ms).
    pub time_to_first_block_ms: Percentiles,
    /// Request latency (ms).
    pub latency_ms: Percentiles,
}

impl Report {
    /// Summarises `samples` taken over `wall`.
    pub fn new(concurrency: usize, samples: &[Sample], wall: Duration) -> Self {
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let tokens: usize = ok.iter().map(|s| s.tokens).sum();
        let seconds = wall.as_secs_f64();
        Self {
            concurrency,
            requests: samples.len(),
            errors: samples.len() - ok.len(),
            first_error: samples.iter().find_map(|s| s.error.clone()),
            seconds,
            tokens_per_second: tokens as f64 / seconds,
            requests_per_second: samples.len() as f64 / seconds,
            time_to_first_block_ms: percentiles(ok.iter().map(|s| ms(s.first_block)).collect()),
            latency_ms: percentiles(ok.iter().map(|s| ms(s.latency)).collect()),
        }
    }

    /// Table header.
    pub fn header() -> String {
        "| conc | requests | errors | tokens/s | req/s | TTFB p50/p90/p99 ms | latency p50/p90/p99 ms |\n|---|---|---|---|---|---|---|".into()
    }

    /// One table row.
    pub fn row(&self) -> String {
        let p = |x: &Percentiles| format!("{:.1}/{:.1}/{:.1}", x.p50, x.p90, x.p99);
        format!(
            "| {} | {} | {} | {:.1} | {:.2} | {} | {} |",
            self.concurrency,
            self.requests,
            self.errors,
            self.tokens_per_second,
            self.requests_per_second,
            p(&self.time_to_first_block_ms),
            p(&self.latency_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        let one = percentiles(vec![7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
    }

    #[test]
    fn reports_count_errors_and_tokens() {
        let s = [
            Sample::ok(Duration::from_millis(10), Duration::from_millis(100), 40),
            Sample::failed(Duration::from_millis(5), "HTTP 429".into()),
        ];
        let r = Report::new(2, &s, Duration::from_secs(2));
        assert_eq!((r.requests, r.errors, r.tokens_per_second), (2, 1, 20.0));
        assert_eq!(r.first_error.as_deref(), Some("HTTP 429"));
    }
}
