//! How load is offered: closed loop (N workers, each sending its next request when the last one
//! is answered: a flood when N is far past capacity and nobody backs off) and open loop
//! (Poisson arrivals at a fixed rate, whatever the server answers; each request records how late
//! it went out against its schedule). Both stop at the level's request count or duration,
//! whichever comes first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::grpc;
use crate::request::{send, Target};
use crate::scenario::Scenario;
use crate::stats::Sample;

/// Everything a level needs.
#[derive(Clone)]
pub struct Load {
    /// HTTP client (connection pool).
    pub client: reqwest::Client,
    /// gRPC client, when the load goes over gRPC.
    pub grpc: Option<grpc::Client>,
    /// Where requests go.
    pub target: Target,
    /// The requests.
    pub scenario: Arc<Scenario>,
    /// JSON merged into every body.
    pub extra: Arc<Value>,
}

impl Load {
    /// One request, stamped with when it ended from `level_start`.
    async fn one(&self, grpc_client: Option<&mut grpc::Client>, level_start: Instant) -> Sample {
        let (path, body) = self.scenario.draw(&self.extra);
        let mut sample = match grpc_client {
            Some(c) => grpc::one_request(c, &body, self.target.api_key.as_deref()).await,
            None => send(&self.client, &self.target, path, &body).await,
        };
        sample.ended = level_start.elapsed();
        sample
    }

    /// The level's start, its deadline and its request count.
    fn limits(&self) -> (Instant, Instant, usize) {
        let duration = Duration::from_secs_f64(self.scenario.duration_s);
        let start = Instant::now();
        (start, start + duration, self.scenario.requests)
    }

    /// `concurrency` workers back to back.
    pub async fn closed_loop(&self, concurrency: usize) -> Vec<Sample> {
        let (start, deadline, requests) = self.limits();
        let issued = AtomicUsize::new(0);
        let workers = (0..concurrency).map(|_| {
            let mut grpc_client = self.grpc.clone();
            let issued = &issued;
            async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::SeqCst) < requests
                {
                    samples.push(self.one(grpc_client.as_mut(), start).await);
                }
                samples
            }
        });
        futures::future::join_all(workers)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Poisson arrivals at `rate` per second (HTTP only).
    pub async fn open_loop(&self, rate: f64) -> Vec<Sample> {
        let (start, deadline, requests) = self.limits();
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = start;
        for _ in 0..requests {
            let gap: f64 = -(1.0 - rand::rng().random_range(0.0..1.0f64)).ln() / rate;
            next += Duration::from_secs_f64(gap);
            if next >= deadline {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
            let late = Instant::now().saturating_duration_since(next);
            let load = self.clone();
            tasks.spawn(async move {
                let mut sample = load.one(None, start).await;
                sample.sent_late = late;
                sample
            });
        }
        let mut samples = Vec::with_capacity(tasks.len());
        while let Some(done) = tasks.join_next().await {
            samples.push(done.unwrap_or_else(|e| Sample::failed(Duration::ZERO, e.to_string())));
        }
        samples
    }
}
