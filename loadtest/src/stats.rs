//! Samples, percentiles and the per-level report: latency (time to first block, between
//! blocks, end to end) of the completed requests, goodput within a latency SLO, answers by
//! status, and the server's own count of the same requests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// One request's outcome.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// HTTP status of the final answer (gRPC: 200 or 500); 0 when no answer came (transport).
    pub status: u16,
    first_block: Duration,
    latency: Duration,
    /// Gaps between consecutive content chunks.
    pub gaps: Vec<Duration>,
    tokens: usize,
    error: Option<String>,
    /// Tries it took (more than one only with back-off).
    pub attempts: u32,
    /// When it ended, from the start of its level.
    pub ended: Duration,
    /// How long after its scheduled arrival its first try went out (open loop; zero in a closed
    /// loop): a generator that cannot keep its schedule offers less than its rate.
    pub sent_late: Duration,
}

impl Sample {
    /// A completed request.
    pub fn ok(first_block: Duration, latency: Duration, tokens: usize) -> Self {
        Self {
            status: 200,
            first_block,
            latency,
            tokens,
            attempts: 1,
            ..Self::default()
        }
    }

    /// A failed request (`status` 0 when nothing was answered).
    pub fn failed(latency: Duration, why: String) -> Self {
        Self {
            first_block: latency,
            latency,
            error: Some(why),
            attempts: 1,
            ..Self::default()
        }
    }

    /// A request the server answered with an error status.
    pub fn refused(status: u16, latency: Duration) -> Self {
        Self {
            status,
            ..Self::failed(latency, format!("HTTP {status}"))
        }
    }

    /// Whether it completed.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
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

/// Arrival lag (p99, ms) past which a level is flagged: the generator did not offer the load
/// it was asked to, so the level measures the client as much as the server.
pub const ARRIVAL_LAG_LIMIT_MS: f64 = 50.0;

/// What the server's `/metrics` said about one level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerView {
    /// Generation requests the server answered during the level (any status).
    pub requests_answered: f64,
    /// Resident memory before and after (bytes).
    pub rss_before: f64,
    /// See `rss_before`.
    pub rss_after: f64,
    /// KV-cache sequence slots in use before and after.
    pub kv_slots_used_before: f64,
    /// See `kv_slots_used_before`.
    pub kv_slots_used_after: f64,
    /// Whether the server answered exactly the requests the client got answers to.
    pub counts_agree: bool,
}

/// The results of one load level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `c=16`, `rate=200/s`, …
    pub level: String,
    /// Requests per second offered (open loop: the rate; closed loop: what was sent).
    pub offered_rps: f64,
    /// Requests sent (first tries).
    pub sent: usize,
    /// Requests completed.
    pub completed: usize,
    /// Requests with no answer at all (socket error, timeout): lost.
    pub lost: usize,
    /// Final answers by HTTP status (0: no answer).
    pub by_status: BTreeMap<u16, usize>,
    /// First error message, if any.
    pub first_error: Option<String>,
    /// Why the first lost request got no answer, if one did not.
    pub first_lost: Option<String>,
    /// Lost requests by why they got no answer (the innermost cause of the client's error).
    pub lost_by_cause: BTreeMap<String, usize>,
    /// Wall time of the level (s).
    pub seconds: f64,
    /// Completed requests per second (over the whole wall time, the drain after the offered
    /// window included).
    pub completed_rps: f64,
    /// Requests completed while the load was offered, per second of that window: the server's
    /// rate under the load (with back-off, retries keep arriving after the window and stretch
    /// the wall time, so `completed_rps` understates it).
    pub completed_in_window_rps: f64,
    /// Completed within the SLO, per second.
    pub goodput_rps: f64,
    /// The latency SLO of `goodput_rps` (ms).
    pub slo_ms: f64,
    /// Completion tokens per second.
    pub tokens_per_second: f64,
    /// Time to first block of completed requests (ms).
    pub time_to_first_block_ms: Percentiles,
    /// Time between blocks of completed requests (ms).
    pub inter_block_ms: Percentiles,
    /// End-to-end latency of completed requests (ms).
    pub latency_ms: Percentiles,
    /// How late requests went out against their scheduled arrival (ms; open loop).
    pub arrival_lag_ms: Percentiles,
    /// Whether the generator kept its schedule (arrival lag p99 within
    /// [`ARRIVAL_LAG_LIMIT_MS`]).
    pub generator_kept_up: bool,
    /// The server's own view, when `/metrics` was scraped.
    pub server: Option<ServerView>,
    /// The load generator's own CPU over the level's wall time, in cores (None where it could
    /// not be read): on loopback it is taken from the server's cores.
    pub generator_cpu_cores: Option<f64>,
}

impl Report {
    /// Summarises `samples` offered for `window` (their level's duration) and ended within
    /// `wall` at `offered_rps` (None: the send rate).
    pub fn new(
        level: String,
        offered_rps: Option<f64>,
        samples: &[Sample],
        (window, wall): (Duration, Duration),
        slo: Duration,
    ) -> Self {
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.is_ok()).collect();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let tokens: usize = ok.iter().map(|s| s.tokens).sum();
        let seconds = wall.as_secs_f64().max(1e-9);
        let mut by_status = BTreeMap::new();
        for s in samples {
            *by_status.entry(s.status).or_insert(0) += 1;
        }
        let good = ok.iter().filter(|s| s.latency <= slo).count();
        let window = window.min(wall);
        let in_window = ok.iter().filter(|s| s.ended <= window).count();
        let lag = percentiles(samples.iter().map(|s| ms(&s.sent_late)).collect());
        Self {
            level,
            offered_rps: offered_rps.unwrap_or(samples.len() as f64 / seconds),
            sent: samples.len(),
            completed: ok.len(),
            lost: by_status.get(&0).copied().unwrap_or(0),
            by_status,
            first_error: samples.iter().find_map(|s| s.error.clone()),
            first_lost: samples
                .iter()
                .filter(|s| s.status == 0)
                .find_map(|s| s.error.clone()),
            lost_by_cause: lost_by_cause(samples),
            seconds,
            completed_rps: ok.len() as f64 / seconds,
            completed_in_window_rps: in_window as f64 / window.as_secs_f64().max(1e-9),
            goodput_rps: good as f64 / seconds,
            slo_ms: ms(&slo),
            tokens_per_second: tokens as f64 / seconds,
            time_to_first_block_ms: percentiles(ok.iter().map(|s| ms(&s.first_block)).collect()),
            inter_block_ms: percentiles(ok.iter().flat_map(|s| s.gaps.iter().map(ms)).collect()),
            latency_ms: percentiles(ok.iter().map(|s| ms(&s.latency)).collect()),
            arrival_lag_ms: lag,
            generator_kept_up: lag.p99 <= ARRIVAL_LAG_LIMIT_MS,
            server: None,
            generator_cpu_cores: None,
        }
    }

    /// Answers the client got from the server (every status but "no answer"), counting retries.
    pub fn answered_attempts(samples: &[Sample]) -> usize {
        samples
            .iter()
            .map(|s| s.attempts as usize - usize::from(s.status == 0))
            .sum()
    }

    /// Markdown table header.
    pub fn header() -> String {
        "| level | offered/s | arrival lag p99 ms | sent | done | lost | statuses | done/s | done/s in window | goodput/s | tokens/s | TTFB p50/p90/p99 ms | between blocks p50/p90/p99 ms | latency p50/p90/p99 ms | server agrees | generator CPU (cores) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into()
    }

    /// One table row.
    pub fn row(&self) -> String {
        let p = |x: &Percentiles| format!("{:.1}/{:.1}/{:.1}", x.p50, x.p90, x.p99);
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        let agree = self
            .server
            .as_ref()
            .map_or("-", |s| if s.counts_agree { "yes" } else { "NO" });
        let lag = if self.generator_kept_up {
            format!("{:.1}", self.arrival_lag_ms.p99)
        } else {
            format!("**{:.1} (behind)**", self.arrival_lag_ms.p99)
        };
        format!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} | {} |",
            self.level,
            self.offered_rps,
            lag,
            self.sent,
            self.completed,
            self.lost,
            statuses.join(" "),
            self.completed_rps,
            self.completed_in_window_rps,
            self.goodput_rps,
            self.tokens_per_second,
            p(&self.time_to_first_block_ms),
            p(&self.inter_block_ms),
            p(&self.latency_ms),
            agree,
            self.generator_cpu_cores
                .map_or_else(|| "-".to_string(), |c| format!("{c:.2}"))
        )
    }
}

/// Counts the requests with no answer by the last link of their error chain (`a: b: cause`).
fn lost_by_cause(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut causes = BTreeMap::new();
    for s in samples.iter().filter(|s| s.status == 0) {
        let why = s.error.as_deref().unwrap_or("unknown");
        let cause = why.rsplit(": ").next().unwrap_or(why).to_string();
        *causes.entry(cause).or_insert(0) += 1;
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        assert_eq!(percentiles(vec![]).p99, 0.0);
    }

    #[test]
    fn reports_count_statuses_goodput_and_lost_requests() {
        let ms = Duration::from_millis;
        let mut slow = Sample::ok(ms(100), ms(3000), 8);
        slow.gaps = vec![ms(40), ms(60)];
        // Ended after the 1.5 s the load was offered (a retried request, say).
        slow.ended = ms(1600);
        let samples = vec![
            Sample::ok(ms(10), ms(100), 32),
            slow,
            Sample::refused(429, ms(1)),
            Sample::failed(
                ms(5),
                "error sending request: client error (Connect): Too many open files".into(),
            ),
            Sample::failed(ms(7), "error sending request: connection reset".into()),
            Sample::failed(ms(9), "Too many open files".into()),
        ];
        let r = Report::new(
            "c=4".into(),
            None,
            &samples,
            (ms(1500), Duration::from_secs(2)),
            ms(2000),
        );
        assert_eq!((r.sent, r.completed, r.lost), (6, 2, 3));
        assert_eq!(r.by_status, BTreeMap::from([(0, 3), (200, 2), (429, 1)]));
        let causes = BTreeMap::from([
            ("Too many open files".to_string(), 2),
            ("connection reset".to_string(), 1),
        ]);
        assert_eq!(r.lost_by_cause, causes);
        assert_eq!(
            (r.completed_rps, r.goodput_rps, r.tokens_per_second),
            (1.0, 0.5, 20.0)
        );
        // One of the two completions ended inside the 1.5 s window.
        assert!((r.completed_in_window_rps - 1.0 / 1.5).abs() < 1e-12);
        // A window longer than the wall time (the level ended on its request count) is cut
        // to the wall time.
        let r = Report::new("c=4".into(), None, &samples, (ms(9000), ms(2000)), ms(2000));
        assert_eq!(r.completed_in_window_rps, 1.0);
        assert_eq!(r.inter_block_ms.p99, 60.0);
        assert_eq!(Report::answered_attempts(&samples), 3);
        assert!(r.row().contains("200:2 429:1"));
        assert!(r.generator_kept_up && r.row().contains("| 0.0 |"));
        // The generator's CPU is the last column: "-" until measured, then in cores.
        assert!(r.row().ends_with("| - | - |"));
        let mut r = r;
        r.generator_cpu_cores = Some(0.123);
        assert!(r.row().ends_with("| - | 0.12 |"));
    }

    #[test]
    fn a_generator_behind_its_schedule_is_flagged() {
        let ms = Duration::from_millis;
        let mut samples: Vec<Sample> = (0..100).map(|_| Sample::ok(ms(5), ms(50), 4)).collect();
        let window = (Duration::from_secs(1), Duration::from_secs(1));
        let on_time = Report::new("rate=100/s".into(), Some(100.0), &samples, window, ms(500));
        assert!(on_time.generator_kept_up);
        // Two arrivals in a hundred went out 80 ms late: p99 is past the limit.
        for s in &mut samples[..2] {
            s.sent_late = ms(80);
        }
        let behind = Report::new("rate=100/s".into(), Some(100.0), &samples, window, ms(500));
        assert_eq!(behind.arrival_lag_ms.p99, 80.0);
        assert!(!behind.generator_kept_up);
        assert!(behind.row().contains("**80.0 (behind)**"));
        // One late arrival in a hundred is past the (nearest-rank) p99: not flagged.
        samples[0].sent_late = ms(0);
        let one_late = Report::new("rate=100/s".into(), Some(100.0), &samples, window, ms(500));
        assert_eq!(one_late.arrival_lag_ms.p99, 0.0);
        assert!(one_late.generator_kept_up);
    }
}
