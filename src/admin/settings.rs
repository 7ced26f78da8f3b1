//! `POST /admin/v1/jobs` bodies: parsing and validation before anything starts. Trainer
//! settings use the dotted keys of `t3d distill --set`; each key is checked on its own first
//! so a bad one gets a 400 naming it, then all together with the trainer's own validation.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::distill::config::{apply_override, DistillConfig, Objective};
use crate::server::error::ApiError;

/// Rollout prompts when a job names none (the CLI's default).
pub const DEFAULT_PROMPT_COUNT: usize = crate::cli::train_args::DEFAULT_NUM_PROMPTS;
/// The most prompts a job may ask for.
pub const MAX_PROMPT_COUNT: usize = 1_000_000;

/// The body of `POST /admin/v1/jobs` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A checkpoint directory under `--models-dir` (default: the served model).
    pub teacher: Option<String>,
    /// `t3d` (default), `ddo`, `td` or `sft`.
    pub objective: Option<String>,
    /// Where rollout prompts come from.
    pub prompts: Option<PromptsRequest>,
    /// Trainer settings by dotted key.
    #[serde(default)]
    pub settings: BTreeMap<String, Value>,
    /// The student's directory name under `--models-dir` (default: derived from the job).
    pub output: Option<String>,
}

/// `prompts`: a count from the bundled task's training split, or a JSONL file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsRequest {
    /// Problems drawn from the training split.
    pub count: Option<usize>,
    /// A JSONL file under `--data-dir`, one `{"question": …}` per line.
    pub file: Option<String>,
}

/// Parses the objective's name.
pub fn objective(name: Option<&str>) -> Result<Objective, ApiError> {
    let name = name.unwrap_or("t3d");
    serde_json::from_value(Value::from(name)).map_err(|_| {
        ApiError::invalid(
            "objective",
            format!("`{name}` is not one of t3d, ddo, td, sft"),
        )
    })
}

/// The `--set` items of `settings`, in key order.
pub fn set_items(settings: &BTreeMap<String, Value>) -> Vec<String> {
    settings.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The trainer config the job will run with: `base` (a JSON config file, or the defaults),
/// then `objective`, then `settings`. A key that does not exist or has the wrong type is a 400
/// naming `settings.KEY`; settings that are each fine but cannot train together name
/// `settings`.
pub fn resolve_config(
    base: Option<&Path>,
    objective: Objective,
    settings: &BTreeMap<String, Value>,
) -> Result<DistillConfig, ApiError> {
    let defaults = serde_json::to_value(DistillConfig::default())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for (key, value) in settings {
        let mut probe = defaults.clone();
        let checked = apply_override(&mut probe, &format!("{key}={value}")).and_then(|()| {
            serde_json::from_value::<DistillConfig>(probe)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        if let Err(message) = checked {
            return Err(ApiError::invalid(
                &format!("settings.{key}"),
                format!("settings.{key}: {message}"),
            ));
        }
    }
    let mut items = vec![format!("objective=\"{}\"", objective.as_str())];
    items.extend(set_items(settings));
    DistillConfig::load(base, &items).map_err(|m| ApiError::invalid("settings", m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn dotted_settings_reach_the_trainer_config() {
        let cfg = resolve_config(
            None,
            Objective::Td,
            &settings(serde_json::json!({"steps": 200, "lr": 1e-3,
                "noise.trace_order": "code", "rollout.temperature": 0})),
        )
        .unwrap();
        assert_eq!(cfg.steps, 200);
        assert_eq!(cfg.lr, 1e-3);
        assert_eq!(cfg.objective, Objective::Td);
        assert_eq!(cfg.rollout.temperature, 0.0);
        assert_eq!(
            cfg.noise.trace_order,
            crate::distill::noise::TraceOrder::Code
        );
    }

    #[test]
    fn a_bad_key_or_type_is_named() {
        for (json, field) in [
            (serde_json::json!({"stepz": 3}), "settings.stepz"),
            (serde_json::json!({"steps": "many"}), "settings.steps"),
            (
                serde_json::json!({"noise.bogus": 1}),
                "settings.noise.bogus",
            ),
            (serde_json::json!({"lr": 1e-3, "min_lr": 1.0}), "settings"),
        ] {
            let err = resolve_config(None, Objective::T3d, &settings(json.clone())).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(field), "{json}");
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn objectives_parse_by_name() {
        assert_eq!(objective(None).unwrap(), Objective::T3d);
        assert_eq!(objective(Some("sft")).unwrap(), Objective::Sft);
        assert_eq!(
            objective(Some("gan")).unwrap_err().param.as_deref(),
            Some("objective")
        );
    }

    #[test]
    fn set_items_are_json_values() {
        let items = set_items(&settings(serde_json::json!({"a.b": "code", "c": 2})));
        assert_eq!(items, vec!["a.b=\"code\"".to_string(), "c=2".to_string()]);
    }
}
