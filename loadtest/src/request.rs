//! One HTTP request as a client sees it: streaming (time to the first content chunk and the
//! gaps between chunks, from the SSE stream) or not, its final status, and, with back-off, the
//! retries a 429 or 503 asks for through `Retry-After` (jittered by up to half again).

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use rand::Rng;
use serde_json::Value;

use crate::stats::Sample;

/// Most tries of one request with back-off.
pub const MAX_TRIES: u32 = 5;

/// Where and how requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server base URL.
    pub url: String,
    /// Bearer key.
    pub api_key: Option<String>,
    /// Honour `Retry-After` on 429 / 503.
    pub backoff: bool,
}

/// Sends `body` to `path` and measures it.
pub async fn send(client: &reqwest::Client, target: &Target, path: &str, body: &Value) -> Sample {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut req = client.post(format!("{}{path}", target.url)).json(body);
        if let Some(key) = &target.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return with_attempts(Sample::failed(start.elapsed(), error_chain(&e)), attempts)
            }
        };
        let status = resp.status().as_u16();
        if status == 200 {
            let sample = if body["stream"] == true {
                read_stream(resp, start).await
            } else {
                read_whole(resp, start).await
            };
            return with_attempts(sample, attempts);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<f64>().ok());
        let _ = resp.bytes().await;
        match retry_after {
            Some(secs) if target.backoff && attempts < MAX_TRIES && matches!(status, 429 | 503) => {
                // Up to half again as long, as client libraries jitter: retries that all wake
                // at the same instant would arrive as one burst.
                let jitter = 1.0 + rand::rng().random_range(0.0..0.5);
                tokio::time::sleep(Duration::from_secs_f64(secs.clamp(0.0, 30.0) * jitter)).await;
            }
            _ => return with_attempts(Sample::refused(status, start.elapsed()), attempts),
        }
    }
}

/// `error` and its causes, outermost first ("error sending request: …: Connection reset by
/// peer"): reqwest's own message alone does not say what failed.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn with_attempts(mut sample: Sample, attempts: u32) -> Sample {
    sample.attempts = attempts;
    sample
}

async fn read_whole(resp: reqwest::Response, start: Instant) -> Sample {
    match resp.json::<Value>().await {
        Ok(body) => {
            let tokens = body["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize;
            Sample::ok(start.elapsed(), start.elapsed(), tokens)
        }
        Err(e) => Sample::failed(start.elapsed(), format!("bad body: {}", error_chain(&e))),
    }
}

async fn read_stream(resp: reqwest::Response, start: Instant) -> Sample {
    let failed = |why: &str| Sample::failed(start.elapsed(), why.to_string());
    let mut events = resp.bytes_stream().eventsource();
    let (mut first, mut last, mut gaps, mut tokens) = (None, None, Vec::new(), 0);
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            return failed("broken stream");
        };
        if event.data == "[DONE]" {
            break;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
            return failed("bad chunk");
        };
        if chunk.get("error").is_some() {
            return failed("error event");
        }
        if chunk["choices"].as_array().is_some_and(|c| !c.is_empty()) {
            let now = start.elapsed();
            first.get_or_insert(now);
            if let Some(prev) = last.replace(now) {
                gaps.push(now - prev);
            }
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = n as usize;
        }
    }
    let mut sample = Sample::ok(
        first.unwrap_or_else(|| start.elapsed()),
        start.elapsed(),
        tokens,
    );
    sample.gaps = gaps;
    sample
}
