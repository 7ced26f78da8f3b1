//! Load scenarios: what requests look like (a weighted mix of prompt and output lengths, steps
//! per block, chat or completion) and how load is offered (closed-loop concurrency levels, or
//! open-loop Poisson rates, given as a list or a ramp), from a TOML file or the command line.

use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

/// One kind of request in the mix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Relative share of requests of this kind.
    #[serde(default = "one")]
    pub weight: f64,
    /// Prompt of this many random token ids (ids 1..=90); absent: an arithmetic question.
    #[serde(default)]
    pub prompt_tokens: Option<usize>,
    /// Use `/v1/chat/completions`.
    #[serde(default)]
    pub chat: bool,
    /// `max_tokens`.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// `steps_per_block` (the model's default when absent).
    #[serde(default)]
    pub steps_per_block: Option<usize>,
}

/// A rate ramp: `steps` rates evenly from `from` to `to` (requests per second).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// First rate.
    pub from: f64,
    /// Last rate.
    pub to: f64,
    /// Number of rates.
    pub steps: usize,
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The request mix.
    #[serde(default = "default_mix")]
    pub mix: Vec<Mix>,
    /// Closed-loop concurrency levels.
    #[serde(default)]
    pub concurrency: Vec<usize>,
    /// Open-loop Poisson rates (requests per second).
    #[serde(default)]
    pub rates: Vec<f64>,
    /// Open-loop rates as a ramp (appended to `rates`).
    #[serde(default)]
    pub ramp: Option<Ramp>,
    /// Stream (SSE) or not.
    #[serde(default = "yes")]
    pub stream: bool,
    /// Honour `Retry-After`: a 429/503 is retried after the time it names (up to 5 tries).
    #[serde(default)]
    pub backoff: bool,
    /// Most seconds per level.
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    /// Most requests per level.
    #[serde(default = "default_requests")]
    pub requests: usize,
    /// Latency SLO for goodput (ms).
    #[serde(default = "default_slo")]
    pub slo_ms: f64,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_max_tokens() -> usize {
    64
}
fn default_duration() -> f64 {
    60.0
}
fn default_requests() -> usize {
    200
}
fn default_slo() -> f64 {
    2000.0
}
fn default_mix() -> Vec<Mix> {
    vec![Mix {
        weight: 1.0,
        prompt_tokens: None,
        chat: false,
        max_tokens: default_max_tokens(),
        steps_per_block: None,
    }]
}

impl Scenario {
    /// Reads a TOML scenario.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let scenario: Self = toml::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Checks the values make sense.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.mix.is_empty(), "the mix is empty");
        anyhow::ensure!(
            self.mix.iter().all(|m| m.weight > 0.0 && m.max_tokens > 0),
            "mix weights and max_tokens must be positive"
        );
        anyhow::ensure!(
            self.open_loop_rates().iter().all(|&r| r > 0.0),
            "rates must be positive"
        );
        anyhow::ensure!(self.duration_s > 0.0 && self.requests > 0, "empty levels");
        Ok(())
    }

    /// Every open-loop rate: `rates`, then the ramp.
    pub fn open_loop_rates(&self) -> Vec<f64> {
        let mut rates = self.rates.clone();
        if let Some(r) = self.ramp {
            let steps = r.steps.max(1);
            rates.extend(
                (0..steps).map(|i| r.from + (r.to - r.from) * i as f64 / (steps - 1).max(1) as f64),
            );
        }
        rates
    }

    /// Draws one request of the mix: (path, body).
    pub fn draw(&self, extra: &Value) -> (&'static str, Value) {
        let mut rng = rand::rng();
        let total: f64 = self.mix.iter().map(|m| m.weight).sum();
        let mut pick = rng.random_range(0.0..total);
        let mix = self
            .mix
            .iter()
            .find(|m| {
                pick -= m.weight;
                pick < 0.0
            })
            .unwrap_or(&self.mix[0]);
        let question: Vec<String> = (0..rng.random_range(3..=4))
            .map(|_| rng.random_range(1..20).to_string())
            .collect();
        let question = question.join("+");
        let (path, mut body) = match (mix.prompt_tokens, mix.chat) {
            (Some(len), _) => (
                "/v1/completions",
                json!({"prompt": (0..len).map(|_| rng.random_range(1..=90)).collect::<Vec<i64>>()}),
            ),
            (None, true) => (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": question}]}),
            ),
            (None, false) => ("/v1/completions", json!({"prompt": question})),
        };
        body["max_tokens"] = json!(mix.max_tokens);
        body["temperature"] = json!(0);
        body["stream"] = json!(self.stream);
        if self.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(steps) = mix.steps_per_block {
            body["steps_per_block"] = json!(steps);
        }
        if let (Some(obj), Some(more)) = (body.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        (path, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_scenario_with_a_mix_and_a_ramp() {
        let s = Scenario::from_toml(
            r#"
            stream = false
            backoff = true
            slo_ms = 500
            ramp = { from = 100, to = 500, steps = 5 }
            [[mix]]
            weight = 3
            max_tokens = 16
            steps_per_block = 1
            [[mix]]
            prompt_tokens = 200
            max_tokens = 128
            "#,
        )
        .unwrap();
        assert_eq!(s.open_loop_rates(), vec![100.0, 200.0, 300.0, 400.0, 500.0]);
        assert!(!s.stream && s.backoff && s.slo_ms == 500.0);
        let (path, body) = s.draw(&json!({"seed": 1}));
        assert_eq!(path, "/v1/completions");
        assert_eq!(body["seed"], 1);
        assert!(body.get("stream_options").is_none());
        assert!(Scenario::from_toml("[[mix]]\nmax_tokens = 0").is_err());
        assert!(Scenario::from_toml("rates = [-1.0]").is_err());
        assert!(
            Scenario::from_toml("speed = 3").is_err(),
            "unknown keys are refused"
        );
    }
}
