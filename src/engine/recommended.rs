//! The decoding a checkpoint recommends for itself: `t3d_decoding` in its `config.json`, written
//! by the distiller from its accuracy / tokens-per-forward frontier; older checkpoints say only
//! `t3d_steps_per_block` (static), and plain SDAR checkpoints nothing (full-step, static).
//! `serve`, `generate` and `eval` start from it; flags and requests override it.

use serde::{Deserialize, Serialize};

use super::params::{DenoiseParams, Remasking};
use crate::model::SdarConfig;

/// The config key.
pub const KEY: &str = "t3d_decoding";

/// What `t3d_decoding` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommendation {
    /// The remasking policy.
    pub remasking: Remasking,
    /// Steps per block (the most a threshold policy may take).
    pub steps_per_block: usize,
    /// The threshold of `low_confidence_dynamic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_threshold: Option<f64>,
    /// The bound of `entropy_bounded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy_bound: Option<f64>,
}

impl Recommendation {
    /// The recommendation `d` makes (its threshold only where its policy reads one).
    pub fn of(d: &DenoiseParams) -> Self {
        Self {
            remasking: d.remasking,
            steps_per_block: d.steps_per_block,
            confidence_threshold: (d.remasking == Remasking::LowConfidenceDynamic)
                .then_some(d.confidence_threshold),
            entropy_bound: (d.remasking == Remasking::EntropyBounded).then_some(d.entropy_bound),
        }
    }
}

/// The decoding `config` recommends, checked: a bad `t3d_decoding` is an error, not ignored.
pub fn recommended(config: &SdarConfig) -> Result<DenoiseParams, String> {
    let mut d = DenoiseParams {
        block_size: config.block_size.unwrap_or(4),
        steps_per_block: config.default_steps_per_block(),
        ..DenoiseParams::default()
    };
    let Some(value) = config.extra.get(KEY) else {
        return Ok(d);
    };
    let r: Recommendation =
        serde_json::from_value(value.clone()).map_err(|e| format!("{KEY} in config.json: {e}"))?;
    if r.steps_per_block == 0 || r.steps_per_block > d.block_size {
        return Err(format!(
            "{KEY}.steps_per_block {} must be in 1..={}",
            r.steps_per_block, d.block_size
        ));
    }
    d.remasking = r.remasking;
    d.steps_per_block = r.steps_per_block;
    if let Some(t) = r.confidence_threshold {
        d.confidence_threshold = t;
    }
    if let Some(b) = r.entropy_bound {
        d.entropy_bound = b;
    }
    Ok(d)
}

/// Writes `d` into `config` as its recommendation (and `t3d_steps_per_block` to match, for
/// readers that know only that key).
pub fn set_recommended(config: &mut SdarConfig, d: &DenoiseParams) {
    let value = serde_json::to_value(Recommendation::of(d)).expect("plain data serialises");
    config.extra.insert(KEY.into(), value);
    config
        .extra
        .insert("t3d_steps_per_block".into(), d.steps_per_block.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &serde_json::Value) -> SdarConfig {
        let mut cfg = SdarConfig::tiny(64);
        cfg.extra = extra.as_object().unwrap().clone();
        cfg
    }

    #[test]
    fn falls_back_to_steps_per_block_then_full_step() {
        let plain = recommended(&config(&serde_json::json!({}))).unwrap();
        assert_eq!(
            (plain.remasking, plain.steps_per_block),
            (Remasking::LowConfidenceStatic, 4)
        );
        let old = recommended(&config(&serde_json::json!({"t3d_steps_per_block": 1}))).unwrap();
        assert_eq!(old.steps_per_block, 1);
    }

    #[test]
    fn reads_a_threshold_policy_and_round_trips_it() {
        let cfg = config(&serde_json::json!({"t3d_decoding": {
            "remasking": "low_confidence_dynamic", "steps_per_block": 4, "confidence_threshold": 0.7}}));
        let d = recommended(&cfg).unwrap();
        assert_eq!(d.remasking, Remasking::LowConfidenceDynamic);
        assert_eq!((d.steps_per_block, d.confidence_threshold), (4, 0.7));
        let mut written = SdarConfig::tiny(64);
        set_recommended(&mut written, &d);
        assert_eq!(recommended(&written).unwrap(), d);
        assert_eq!(written.default_steps_per_block(), 4);
        // A static recommendation carries no threshold.
        let stat = DenoiseParams {
            steps_per_block: 1,
            ..DenoiseParams::default()
        };
        let json = serde_json::to_value(Recommendation::of(&stat)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"remasking": "low_confidence_static", "steps_per_block": 1})
        );
    }

    #[test]
    fn rejects_a_bad_recommendation() {
        let bad_steps = config(&serde_json::json!({"t3d_decoding": {
            "remasking": "low_confidence_static", "steps_per_block": 9}}));
        assert!(recommended(&bad_steps).unwrap_err().contains("1..=4"));
        let bad_name = config(&serde_json::json!({"t3d_decoding": {
            "remasking": "fastest", "steps_per_block": 1}}));
        assert!(recommended(&bad_name).unwrap_err().contains("t3d_decoding"));
    }
}
