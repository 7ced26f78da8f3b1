//! `loadtest`: load against a t3d server on loopback, the tool to run before going live.
//!
//! Closed loop (`--concurrency`: N workers back to back; far past capacity and without
//! `--backoff` that is a flood that ignores `Retry-After`) or open loop (`--rates` / a ramp:
//! Poisson arrivals), streaming or not, over HTTP or gRPC, from the command line or a TOML
//! scenario (request mixes, steps-per-block mixes, rate ramps). Per level: p50/p90/p99 of time to
//! first block, time between blocks and end-to-end latency, tokens/s, goodput within a latency
//! SLO, answers by status, and the server's own count from `/metrics` before and after (they
//! must agree: a lost request shows), and the generator's own CPU (on loopback it shares the
//! server's cores). `--soak MINUTES` runs one long open-loop level and reports
//! the server's memory and KV slots before and after. `--report DIR` writes JSON, Markdown and
//! PNG plots. Bounded in count and time, loopback only.

mod grpc;
mod load;
mod own_cpu;
mod report;
mod request;
mod scenario;
mod scrape;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

use load::Load;
use request::Target;
use scenario::{Mix, Scenario};
use stats::Report;

/// Command-line options.
#[derive(Debug, Parser)]
struct Args {
    /// Server base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Closed-loop concurrency levels, one after the other.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Open-loop Poisson rates (requests per second), one level each.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// A TOML scenario (mix, concurrency / rates / ramp, stream, backoff, duration_s,
    /// requests, slo_ms); the other load flags are then ignored.
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
    /// Requests per level.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Longest time per level (seconds).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// max_tokens per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Non-streaming requests (one JSON answer each).
    #[arg(long)]
    no_stream: bool,
    /// Honour Retry-After on 429 / 503 (retry, up to 5 tries) instead of counting a rejection.
    #[arg(long)]
    backoff: bool,
    /// Latency SLO (ms) for goodput.
    #[arg(long, default_value_t = 2000.0)]
    slo_ms: f64,
    /// One open-loop level of this many minutes at the first of --rates (a soak).
    #[arg(long)]
    soak: Option<f64>,
    /// Extra JSON merged into every request body (e.g. '{"steps_per_block": 1}').
    #[arg(long, default_value = "{}")]
    extra: String,
    /// Use /v1/chat/completions with arithmetic questions instead of /v1/completions.
    #[arg(long)]
    chat: bool,
    /// Send prompts of this many random token ids (ids 1..=90) instead of arithmetic text, to
    /// match `t3d bench --prompt-len`.
    #[arg(long)]
    prompt_len: Option<usize>,
    /// Bearer key.
    #[arg(long, env = "T3D_API_KEY")]
    api_key: Option<String>,
    /// Write the reports as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write report.json, report.md, latency.png and goodput.png into this directory.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Send the same requests over gRPC to this address (`http://127.0.0.1:PORT`, the server's
    /// `--grpc-port`) instead of HTTP (closed loop only).
    #[arg(long)]
    grpc: Option<String>,
}

fn check_loopback(url: &str) -> anyhow::Result<()> {
    let host = reqwest::Url::parse(url)?
        .host_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        ["127.0.0.1", "localhost", "[::1]", "::1"].contains(&host.as_str()),
        "loadtest only targets loopback, not `{host}`"
    );
    Ok(())
}

/// The scenario of the command line (or its file).
fn scenario_of(args: &Args) -> anyhow::Result<Scenario> {
    if let Some(path) = &args.scenario {
        return Scenario::from_toml(&std::fs::read_to_string(path)?);
    }
    let mut rates = args.rates.clone();
    let (mut duration_s, mut requests) = (args.duration, args.requests);
    if let Some(minutes) = args.soak {
        anyhow::ensure!(!rates.is_empty(), "--soak needs a rate (--rates R)");
        rates.truncate(1);
        duration_s = minutes * 60.0;
        requests = usize::MAX;
    }
    let concurrency = if args.concurrency.is_empty() && rates.is_empty() {
        vec![1, 8, 32]
    } else {
        args.concurrency.clone()
    };
    let scenario = Scenario {
        mix: vec![Mix {
            weight: 1.0,
            prompt_tokens: args.prompt_len,
            chat: args.chat,
            max_tokens: args.max_tokens,
            steps_per_block: None,
        }],
        concurrency,
        rates,
        ramp: None,
        stream: !args.no_stream,
        backoff: args.backoff,
        duration_s,
        requests,
        slo_ms: args.slo_ms,
    };
    scenario.check()?;
    Ok(scenario)
}

/// Runs one level and attaches the server's view.
async fn level(
    load: &Load,
    name: String,
    rate: Option<f64>,
    run: impl std::future::Future<Output = Vec<stats::Sample>>,
) -> Report {
    let before = scrape::scrape(&load.client, &load.target.url).await;
    let cpu_before = own_cpu::process_cpu_time();
    let start = Instant::now();
    let samples = run.await;
    let wall = start.elapsed();
    let cpu_after = own_cpu::process_cpu_time();
    // Let the server finish counting the last answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = scrape::scrape(&load.client, &load.target.url).await;
    let slo = Duration::from_secs_f64(load.scenario.slo_ms / 1000.0);
    let window = Duration::from_secs_f64(load.scenario.duration_s);
    let mut report = Report::new(name, rate, &samples, (window, wall), slo);
    report.generator_cpu_cores = own_cpu::cores(cpu_before, cpu_after, wall);
    for (cause, n) in &report.lost_by_cause {
        eprintln!("{}: {n} lost: {cause}", report.level);
    }
    if !report.generator_kept_up {
        eprintln!(
            "{}: the load generator fell behind its schedule (arrival lag p99 {:.0} ms): it offered less than asked, so this level measures the client as well as the server",
            report.level, report.arrival_lag_ms.p99
        );
    }
    if let (Some(b), Some(a), None) = (before, after, &load.grpc) {
        report.server = Some(scrape::view(b, a, Report::answered_attempts(&samples)));
    }
    report
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check_loopback(&args.url)?;
    if let Some(url) = &args.grpc {
        check_loopback(url)?;
    }
    let scenario = Arc::new(scenario_of(&args)?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(120))
        .build()?;
    let grpc = match &args.grpc {
        Some(url) => Some(grpc::connect(url.clone()).await?),
        None => None,
    };
    let load = Load {
        client,
        grpc,
        target: Target {
            url: args.url.clone(),
            api_key: args.api_key.clone(),
            backoff: scenario.backoff,
        },
        scenario: scenario.clone(),
        extra: Arc::new(serde_json::from_str::<Value>(&args.extra)?),
    };
    let mut reports = Vec::new();
    println!("{}", Report::header());
    for &c in &scenario.concurrency {
        let report = level(&load, format!("c={c}"), None, load.closed_loop(c)).await;
        println!("{}", report.row());
        reports.push(report);
    }
    anyhow::ensure!(
        load.grpc.is_none() || scenario.open_loop_rates().is_empty(),
        "open-loop rates are HTTP only"
    );
    for rate in scenario.open_loop_rates() {
        let report = level(
            &load,
            format!("rate={rate}/s"),
            Some(rate),
            load.open_loop(rate),
        )
        .await;
        println!("{}", report.row());
        if let Some(s) = report.server.as_ref().filter(|_| args.soak.is_some()) {
            println!(
                "soak: sent {} answered {} lost {}; server RSS {:.1} -> {:.1} MiB, KV slots in use {} -> {}",
                report.sent,
                report.sent - report.lost,
                report.lost,
                s.rss_before / 1048576.0,
                s.rss_after / 1048576.0,
                s.kv_slots_used_before,
                s.kv_slots_used_after
            );
        }
        reports.push(report);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    if let Some(dir) = &args.report {
        let command: Vec<String> = std::env::args().collect();
        report::write(dir, &command.join(" "), &reports)?;
    }
    Ok(())
}
