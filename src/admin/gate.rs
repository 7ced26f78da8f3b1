//! The acceptance gate of a swap: the candidate decodes held-out problems of its bundled task
//! through its own engine (the path requests take), at its served block size and steps per
//! block, greedy; the share with the right final answer is its accuracy.

use tokio::sync::mpsc::unbounded_channel;

use crate::engine::request::{collect, EngineRequest};
use crate::model::SdarConfig;
use crate::server::served::ServedModel;
use crate::train::data::prompt_ids;
use crate::train::eval::{eval_params, max_completion_tokens, task_of};
use crate::train::task::{check, test_set};

/// Requests in flight at once (well under any queue limit).
const WINDOW: usize = 16;

/// Answer accuracy of `model` on the first `n` held-out problems.
pub async fn held_out_accuracy(model: &ServedModel, n: usize) -> Result<f64, String> {
    let config =
        SdarConfig::from_file(&model.path.join("config.json")).map_err(|e| e.to_string())?;
    let task = task_of(&config).map_err(|e| format!("{e:#}"))?;
    let problems = test_set(&task, n);
    let params = eval_params(
        model.limits.decoding.clone(),
        0.0,
        max_completion_tokens(&task),
    );
    params.validate()?;
    let mut correct = 0usize;
    for chunk in problems.chunks(WINDOW) {
        let mut receivers = Vec::with_capacity(chunk.len());
        for problem in chunk {
            let prompt = prompt_ids(&model.tokenizer, problem).map_err(|e| e.to_string())?;
            let (events, rx) = unbounded_channel();
            let request = EngineRequest {
                prompt,
                params: params.clone(),
                events,
                enqueued: std::time::Instant::now(),
                request_id: "admin-gate".into(),
            };
            model.engine.submit(request).map_err(|e| e.to_string())?;
            receivers.push(rx);
        }
        for (problem, mut rx) in chunk.iter().zip(receivers) {
            let text = collect(&mut rx)
                .await
                .map_err(|e| format!("decoding failed: {e}"))?
                .text;
            correct += usize::from(check(problem, &text).answer_correct);
        }
    }
    Ok(correct as f64 / problems.len().max(1) as f64)
}
