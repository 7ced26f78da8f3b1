//! What `GET /admin/v1/jobs/{id}` shows: the record, plus what the trainer wrote so far:
//! progress with an ETA and the latest losses (its JSONL log), the stderr tail, and the eval
//! table once the student exists.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{json, Value};

use super::jobs::{JobRecord, JobState};
use super::process::STDERR_FILE;
use crate::distill::log::LOG_FILE;

/// Lines of stderr shown.
const STDERR_LINES: usize = 20;

/// The job as JSON; `job_dir` holds its stderr.
pub fn job_json(record: &JobRecord, job_dir: &Path) -> Value {
    let log = read_log(&record.run_dir.join(LOG_FILE));
    let step = log.last().and_then(|l| l["step"].as_u64()).unwrap_or(0);
    let points: Vec<(u64, f64)> = log
        .iter()
        .filter_map(|l| Some((l["step"].as_u64()?, l["elapsed_s"].as_f64()?)))
        .collect();
    let eta = (record.state == JobState::Training)
        .then(|| eta_seconds(&points, record.total_steps))
        .flatten();
    let losses = log.last().map(|l| {
        let mut l = l.clone();
        if let Some(map) = l.as_object_mut() {
            map.remove("step");
            map.remove("elapsed_s");
        }
        l
    });
    let eval = (record.state == JobState::Succeeded)
        .then(|| std::fs::read_to_string(record.output.join("eval.json")).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let eval_table = (record.state == JobState::Succeeded)
        .then(|| std::fs::read_to_string(record.output.join("eval.md")).ok())
        .flatten();
    let mut body = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    body["object"] = json!("admin.job");
    body["url"] = json!(format!("/admin/v1/jobs/{}", record.id));
    body["progress"] = json!({"step": step, "total": record.total_steps, "eta_seconds": eta});
    body["losses"] = losses.unwrap_or(Value::Null);
    body["eval"] = eval.map_or(Value::Null, |e| e["rows"].clone());
    body["eval_table"] = json!(eval_table);
    body["stderr_tail"] = json!(tail_lines(&job_dir.join(STDERR_FILE), STDERR_LINES));
    body["command_line"] = json!(record.command.join(" "));
    body
}

/// Seconds left at the pace of the latest log lines (`(step, elapsed seconds)` points of one
/// invocation, oldest first): the last interval's rate, or the average over one point.
pub fn eta_seconds(points: &[(u64, f64)], total: u64) -> Option<f64> {
    let &(step, elapsed) = points.last()?;
    let per_step = match points.len() {
        1 if step > 0 => elapsed / step as f64,
        1 => return None,
        n => {
            let (prev_step, prev_elapsed) = points[n - 2];
            if step <= prev_step || elapsed < prev_elapsed {
                // A resumed run restarts its clock: fall back to its own average.
                return None;
            }
            (elapsed - prev_elapsed) / (step - prev_step) as f64
        }
    };
    Some(per_step * total.saturating_sub(step) as f64)
}

fn read_log(path: &Path) -> Vec<Value> {
    let Some(text) = read_tail(path, 64 * 1024) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The last `n` lines of a text file (at most its last 64 KiB).
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let text = read_tail(path, 64 * 1024).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The last `max_bytes` of a file, from its first whole line.
fn read_tail(path: &Path, max_bytes: u64) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if start == 0 {
        return Some(text);
    }
    Some(
        text.split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_latest_interval() {
        // 10 steps took 20 s, the next 10 took 10 s: 80 steps left at 1 s each.
        assert_eq!(eta_seconds(&[(10, 20.0), (20, 30.0)], 100), Some(80.0));
        assert_eq!(eta_seconds(&[(10, 20.0)], 100), Some(180.0));
        assert_eq!(eta_seconds(&[], 100), None);
        assert_eq!(eta_seconds(&[(0, 0.0)], 100), None);
        assert_eq!(eta_seconds(&[(40, 90.0), (10, 5.0)], 100), None);
        assert_eq!(eta_seconds(&[(90, 9.0), (100, 10.0)], 100), Some(0.0));
    }

    #[test]
    fn tails_keep_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = tail_lines(&path, 3);
        assert_eq!(tail, vec!["line 9997", "line 9998", "line 9999"]);
        let big = read_tail(&path, 64).unwrap();
        assert!(big.starts_with("line "), "{big}");
        assert!(big.ends_with("line 9999\n"));
        assert!(tail_lines(&dir.path().join("missing"), 3).is_empty());
    }
}
