//! `loadtest`: closed-loop load against a t3d server on loopback (HTTP, or gRPC with `--grpc`). For each concurrency level,
//! that many workers send streaming completions back to back until the request count or the
//! duration is reached; it reports p50/p90/p99 time to first block and latency, completion
//! tokens per second and errors, as a table and JSON.

mod grpc;
mod stats;

use std::time::{Duration, Instant};

use clap::Parser;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};

use stats::{Report, Sample};

/// Command-line options.
#[derive(Debug, Parser)]
struct Args {
    /// Server base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Concurrency levels to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Requests per level.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Longest time per level (seconds).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// max_tokens per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
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
    /// Send the same requests over gRPC to this address (`http://127.0.0.1:PORT`, the server's
    /// `--grpc-port`) instead of HTTP.
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

fn body(args: &Args, extra: &Value) -> Value {
    let mut rng = rand::rng();
    let n = rng.random_range(3..=4);
    let question: Vec<String> = (0..n)
        .map(|_| rng.random_range(1..20).to_string())
        .collect();
    let question = question.join("+");
    let mut body = if let Some(len) = args.prompt_len {
        json!({"prompt": (0..len).map(|_| rng.random_range(1..=90)).collect::<Vec<i64>>()})
    } else if args.chat {
        json!({"messages": [{"role": "user", "content": question}]})
    } else {
        json!({"prompt": question})
    };
    body["max_tokens"] = json!(args.max_tokens);
    body["temperature"] = json!(0);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    if let (Some(obj), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    body
}

/// One streaming request: time to the first content chunk, latency, completion tokens.
async fn one_request(client: &reqwest::Client, args: &Args, extra: &Value) -> Sample {
    let path = if args.chat {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let start = Instant::now();
    let mut req = client
        .post(format!("{}{path}", args.url))
        .json(&body(args, extra));
    if let Some(key) = &args.api_key {
        req = req.bearer_auth(key);
    }
    let failed = |why: String| Sample::failed(start.elapsed(), why);
    let resp = match req.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return failed(format!("HTTP {}", r.status().as_u16())),
        Err(e) => return failed(e.to_string()),
    };
    let mut events = resp.bytes_stream().eventsource();
    let (mut first, mut tokens) = (None, 0);
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            return failed("broken stream".into());
        };
        if event.data == "[DONE]" {
            break;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
            return failed("bad chunk".into());
        };
        if chunk.get("error").is_some() {
            return failed("error event".into());
        }
        if first.is_none() && chunk["choices"].as_array().is_some_and(|c| !c.is_empty()) {
            first = Some(start.elapsed());
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = n as usize;
        }
    }
    Sample::ok(
        first.unwrap_or_else(|| start.elapsed()),
        start.elapsed(),
        tokens,
    )
}

async fn run_level(
    client: &reqwest::Client,
    grpc_client: Option<&grpc::Client>,
    args: &Args,
    extra: &Value,
    concurrency: usize,
) -> Report {
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let issued = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let mut grpc_client = grpc_client.cloned();
        let issued = &issued;
        async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline
                && issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < args.requests
            {
                let sample = match grpc_client.as_mut() {
                    Some(c) => {
                        grpc::one_request(c, &body(args, extra), args.api_key.as_deref()).await
                    }
                    None => one_request(client, args, extra).await,
                };
                samples.push(sample);
            }
            samples
        }
    });
    let samples: Vec<Sample> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    Report::new(concurrency, &samples, start.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check_loopback(&args.url)?;
    if let Some(url) = &args.grpc {
        check_loopback(url)?;
    }
    let extra: Value = serde_json::from_str(&args.extra)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let grpc_client = match &args.grpc {
        Some(url) => Some(grpc::connect(url.clone()).await?),
        None => None,
    };
    let mut reports = Vec::new();
    println!("{}", Report::header());
    for &c in &args.concurrency {
        let report = run_level(&client, grpc_client.as_ref(), &args, &extra, c).await;
        println!("{}", report.row());
        reports.push(report);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(())
}
