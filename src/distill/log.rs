//! Metrics of distillation steps, the JSONL log (`RUN/distill_log.jsonl`, one line per
//! `log_every` steps with window means) and the progress bar.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// The log's file name inside the run directory.
pub const LOG_FILE: &str = "distill_log.jsonl";

/// Named scalar metrics (sums when accumulated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(BTreeMap<&'static str, f64>);

impl Metrics {
    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &'static str, value: f64) {
        self.0.insert(name, value);
    }

    /// Adds `weight · other` into `self`, name by name.
    pub fn add(&mut self, other: &Metrics, weight: f64) {
        for (name, value) in &other.0 {
            *self.0.entry(name).or_default() += weight * value;
        }
    }

    /// Named scalar tensors (any device), read back in one transfer.
    pub fn from_scalars(scalars: &[(&'static str, tch::Tensor)]) -> Self {
        let tensors: Vec<tch::Tensor> = scalars
            .iter()
            .map(|(_, t)| t.to_kind(tch::Kind::Double).reshape([1]))
            .collect();
        let values: Vec<f64> = if tensors.is_empty() {
            Vec::new()
        } else {
            Vec::try_from(tch::Tensor::cat(&tensors, 0).to(tch::Device::Cpu))
                .expect("a 1-D f64 tensor converts")
        };
        Self(scalars.iter().map(|(n, _)| *n).zip(values).collect())
    }

    /// The value of `name` (NaN when absent).
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(f64::NAN)
    }
}

/// The log and progress bar of one invocation.
pub struct RunLog {
    file: std::fs::File,
    bar: indicatif::ProgressBar,
    started: Instant,
    window: Metrics,
    window_steps: u64,
    last_loss: f64,
}

impl RunLog {
    /// Appends to `run_dir/distill_log.jsonl`; the bar spans `total` steps from `start`.
    pub fn open(run_dir: &Path, total: u64, start: u64, progress: bool) -> anyhow::Result<Self> {
        let path = run_dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file,
            bar: crate::train::trainer::progress_bar(total, start, progress),
            started: Instant::now(),
            window: Metrics::default(),
            window_steps: 0,
            last_loss: f64::NAN,
        })
    }

    /// Records step `step`'s metrics; every `every` steps writes the window means.
    pub fn record(
        &mut self,
        step: u64,
        lr: f64,
        metrics: &Metrics,
        every: u64,
    ) -> anyhow::Result<()> {
        self.window.add(metrics, 1.0);
        self.window_steps += 1;
        self.bar.set_position(step);
        if !step.is_multiple_of(every.max(1)) {
            return Ok(());
        }
        let mut means = std::mem::take(&mut self.window);
        let n = std::mem::take(&mut self.window_steps) as f64;
        for v in means.0.values_mut() {
            *v /= n;
        }
        self.last_loss = means.get("loss");
        let mut line = serde_json::Map::new();
        line.insert("step".into(), step.into());
        line.insert("lr".into(), lr.into());
        line.insert(
            "elapsed_s".into(),
            self.started.elapsed().as_secs_f64().into(),
        );
        for (k, v) in &means.0 {
            line.insert((*k).into(), (*v).into());
        }
        writeln!(self.file, "{}", serde_json::Value::Object(line))?;
        self.bar.set_message(format!(
            "loss {:.4} real {:.4} fake {:.4} path {:.4}",
            self.last_loss,
            means.get("loss_real"),
            means.get("loss_fake"),
            means.get("path_loss")
        ));
        Ok(())
    }

    /// Closes the bar; returns the last logged loss and the seconds since `open`.
    pub fn finish(self) -> (f64, f64) {
        self.bar.finish();
        (self.last_loss, self.started.elapsed().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_accumulate_with_weights_and_missing_ones_are_nan() {
        let mut a = Metrics::default();
        a.set("loss", 2.0);
        let mut sum = Metrics::default();
        sum.add(&a, 0.5);
        sum.add(&a, 0.5);
        assert_eq!(sum.get("loss"), 2.0);
        assert!(sum.get("path_loss").is_nan());
        let read = Metrics::from_scalars(&[
            ("a", tch::Tensor::from(1.5f32)),
            ("b", tch::Tensor::from(-2.0f64)),
        ]);
        assert_eq!((read.get("a"), read.get("b")), (1.5, -2.0));
    }
}
