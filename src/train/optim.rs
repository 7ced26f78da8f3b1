//! AdamW with fp32 master weights, global-norm gradient clipping, and the warmup + cosine
//! learning-rate schedule with a real floor (spec §5.8, without its `min_lr` and first-step bugs).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Learning-rate schedule: linear warmup from 0, then half a cosine down to `min_lr`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate, reached at the end of warmup.
    pub peak: f64,
    /// Floor the cosine decays to.
    pub min: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Total optimizer steps (the cosine reaches `min` here and stays).
    pub total: u64,
}

impl LrSchedule {
    /// The learning rate at optimizer step `step` (1-based: the first update uses `at(1)`, so
    /// no update is wasted at rate 0).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min + (self.peak - self.min) * cosine
    }
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not to norm gains).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter's optimizer state.
struct ParamState {
    name: String,
    param: Tensor,
    /// fp32 copy the updates accumulate into (the parameter itself when it is fp32).
    master: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over named parameters.
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<ParamState>,
    /// Updates taken so far.
    pub step: u64,
}

impl AdamW {
    /// An optimizer over `params` (name, trainable tensor), with zero moments.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        let params = params
            .into_iter()
            .map(|(name, param)| {
                let master = if param.kind() == Kind::Float {
                    param.shallow_clone()
                } else {
                    param.detach().to_kind(Kind::Float)
                };
                let exp_avg = master.zeros_like();
                let exp_avg_sq = master.zeros_like();
                ParamState {
                    name,
                    param,
                    master,
                    exp_avg,
                    exp_avg_sq,
                }
            })
            .collect();
        Self {
            config,
            params,
            step: 0,
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let squares: Vec<Tensor> = self
                .params
                .iter()
                .map(|p| p.param.grad())
                .filter(Tensor::defined)
                .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
                .collect();
            if squares.is_empty() {
                return 0.0;
            }
            let norm = Tensor::stack(&squares, 0)
                .sum(Kind::Float)
                .sqrt()
                .double_value(&[]);
            if norm.is_finite() && norm > max_norm {
                let scale = max_norm / (norm + 1e-6);
                for p in &self.params {
                    let mut g = p.param.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            }
            norm
        })
    }

    /// One AdamW update at learning rate `lr`, then zeroes the gradients.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        tch::no_grad(|| {
            for p in &mut self.params {
                let mut grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let g = grad.to_kind(Kind::Float);
                if c.weight_decay > 0.0 && p.master.dim() > 1 {
                    let _ = p.master.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = p.exp_avg.g_mul_scalar_(c.beta1);
                let _ = p.exp_avg.g_add_(&(&g * (1.0 - c.beta1)));
                let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = p.exp_avg_sq.g_add_(&(&g * &g * (1.0 - c.beta2)));
                let denom = (&p.exp_avg_sq / bias2).sqrt() + c.eps;
                let update = &p.exp_avg / &denom * (lr / bias1);
                let _ = p.master.g_sub_(&update);
                if p.param.kind() != Kind::Float {
                    p.param.copy_(&p.master);
                }
                let _ = grad.zero_();
            }
        });
    }

    /// The moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`, `master.NAME` when the
    /// parameter is not fp32), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2);
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            out.push((
                format!("exp_avg_sq.{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
            if p.param.kind() != Kind::Float {
                out.push((format!("master.{}", p.name), p.master.shallow_clone()));
            }
        }
        out
    }

    /// Restores moments saved by [`state_tensors`](Self::state_tensors) after `step` updates.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<(), String> {
        let find = |key: String| {
            tensors
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, t)| t)
                .ok_or(format!("optimizer state has no `{key}`"))
        };
        tch::no_grad(|| {
            for p in &mut self.params {
                p.exp_avg.copy_(find(format!("exp_avg.{}", p.name))?);
                p.exp_avg_sq.copy_(find(format!("exp_avg_sq.{}", p.name))?);
                if p.param.kind() != Kind::Float {
                    p.master.copy_(find(format!("master.{}", p.name))?);
                }
            }
            Ok::<(), String>(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §9 test 11 (warmup 20, floor 0) and the floor of our schedule.
    #[test]
    fn schedule_values_match_the_spec() {
        let s = LrSchedule {
            peak: 1e-3,
            min: 0.0,
            warmup: 20,
            total: 120,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.at(0), 0.0));
        assert!(close(s.at(10), 0.5e-3));
        assert!(close(s.at(20), 1e-3));
        assert!(close(s.at(70), 0.5e-3), "half-way through the cosine");
        assert!(close(s.at(120), 0.0));
        let floored = LrSchedule { min: 1e-4, ..s };
        assert!(close(floored.at(70), 1e-4 + 0.9e-3 * 0.5));
        assert!(close(floored.at(120), 1e-4));
        assert!(
            close(floored.at(500), 1e-4),
            "stays at the floor after the end"
        );
    }

    /// One step against the AdamW formula worked by hand: with zero moments the first update
    /// is `lr·sign(g)` (bias-corrected) plus decoupled decay.
    #[test]
    fn first_update_matches_the_formula() {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5])
            .view([2, 2])
            .set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("w".into(), w.shallow_clone())],
            AdamWConfig::default(),
        );
        let loss =
            (&w * Tensor::from_slice(&[2.0f32, -1.0, 0.5, 4.0]).view([2, 2])).sum(Kind::Float);
        loss.backward();
        let norm = opt.clip_grad_norm(100.0);
        assert!((norm - (4.0f64 + 1.0 + 0.25 + 16.0).sqrt()).abs() < 1e-5);
        opt.step(0.1);
        let got: Vec<f32> = Vec::try_from(w.flatten(0, -1)).unwrap();
        let decay = 1.0 - 0.1 * 0.01;
        let expect = [
            1.0 * decay - 0.1,
            -2.0 * decay + 0.1,
            3.0 * decay - 0.1,
            0.5 * decay - 0.1,
        ];
        for (g, e) in got.iter().zip(expect) {
            assert!((f64::from(*g) - e).abs() < 1e-6, "{got:?} vs {expect:?}");
        }
        assert_eq!(
            w.grad().abs().sum(Kind::Float).double_value(&[]),
            0.0,
            "grads zeroed"
        );
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_state_round_trips() {
        let w = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let opt = AdamW::new(
            vec![("w".into(), w.shallow_clone())],
            AdamWConfig::default(),
        );
        (&w * &w).sum(Kind::Float).backward(); // grad = 2w = (6, 8), norm 10
        assert!((opt.clip_grad_norm(1.0) - 10.0).abs() < 1e-5);
        let g = w.grad();
        assert!((g.norm().double_value(&[]) - 1.0).abs() < 1e-5);
        let saved = opt.state_tensors();
        let w2 = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut other = AdamW::new(vec![("w".into(), w2)], AdamWConfig::default());
        other.load_state(&saved, 7).unwrap();
        assert_eq!(other.step, 7);
        assert!(other.load_state(&[], 1).unwrap_err().contains("exp_avg.w"));
    }
}
