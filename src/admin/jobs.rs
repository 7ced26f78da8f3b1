//! Distillation job records: their states, and the store that keeps one JSON file per job
//! (`JOBS_DIR/ID/job.json`, written atomically) so the list survives a server restart. A job
//! that was running when the server died is found on start-up and marked `interrupted`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, the child not started yet.
    Queued,
    /// The teacher decodes the training prompts.
    Rollout,
    /// The student trains.
    Training,
    /// The student is scored on held-out problems and written.
    Evaluating,
    /// The student is on disk.
    Succeeded,
    /// The child failed (see `error` and the stderr tail).
    Failed,
    /// Cancelled by `DELETE`.
    Cancelled,
    /// The server stopped while the job ran; `resume` continues it.
    Interrupted,
}

impl JobState {
    /// Every state, for the `t3d_admin_jobs{state}` gauge.
    pub const ALL: [JobState; 8] = [
        Self::Queued,
        Self::Rollout,
        Self::Training,
        Self::Evaluating,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Interrupted,
    ];

    /// Its name in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Rollout => "rollout",
            Self::Training => "training",
            Self::Evaluating => "evaluating",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// The job has a child process (or is about to).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Queued | Self::Rollout | Self::Training | Self::Evaluating
        )
    }

    /// The phase a `status.json` written by `t3d distill --status-file` names.
    pub fn from_phase(phase: &str) -> Option<Self> {
        match phase {
            "rollout" => Some(Self::Rollout),
            "training" => Some(Self::Training),
            "evaluating" => Some(Self::Evaluating),
            _ => None,
        }
    }
}

/// Where the rollout prompts come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// This many problems of the bundled task's training split.
    Count(usize),
    /// A JSONL file inside `--data-dir` (resolved).
    File(PathBuf),
}

/// Everything known about one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `job-…`.
    pub id: String,
    /// Current state.
    pub state: JobState,
    /// Teacher checkpoint (resolved inside `--models-dir`).
    pub teacher: PathBuf,
    /// `t3d`, `ddo`, `td` or `sft`.
    pub objective: String,
    /// Rollout prompts.
    pub prompts: PromptSource,
    /// Trainer settings by dotted key, as given.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Where the student is written (inside `--models-dir`).
    pub output: PathBuf,
    /// The trainer's run directory (checkpoints, log, trajectories).
    pub run_dir: PathBuf,
    /// Optimizer steps the run takes.
    pub total_steps: u64,
    /// The child's command line, program first.
    pub command: Vec<String>,
    /// The child's pid while it runs.
    pub pid: Option<u32>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds the latest child started.
    pub started_at: Option<u64>,
    /// Unix seconds it ended.
    pub ended_at: Option<u64>,
    /// The child's exit code.
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// Times it was resumed.
    pub resumes: u32,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` through a temporary file and a rename (never half-written).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The job records, in memory and on disk.
pub struct JobStore {
    dir: PathBuf,
    jobs: Mutex<BTreeMap<String, JobRecord>>,
}

impl JobStore {
    /// Opens (creating) `dir` and reads every job in it; active jobs become `interrupted`
    /// (their orphaned child, if still running, is stopped by `stop_orphan`).
    pub fn open(dir: &Path, stop_orphan: impl Fn(&JobRecord)) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let mut jobs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path().join("job.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut record: JobRecord = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            if record.state.is_active() {
                stop_orphan(&record);
                record.state = JobState::Interrupted;
                record.pid = None;
                record.ended_at = Some(unix_now());
                write_atomic(&path, &serde_json::to_vec_pretty(&record)?)?;
                tracing::warn!(job = %record.id, "job was running when the server stopped; marked interrupted");
            }
            jobs.insert(record.id.clone(), record);
        }
        Ok(Self {
            dir,
            jobs: Mutex::new(jobs),
        })
    }

    /// The directory of job `id`.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Stores `record` (memory and disk).
    pub fn put(&self, record: &JobRecord) -> anyhow::Result<()> {
        let dir = self.job_dir(&record.id);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("job.json"), &serde_json::to_vec_pretty(record)?)?;
        self.lock().insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Applies `change` to job `id` and stores it; returns the new record.
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut JobRecord),
    ) -> anyhow::Result<Option<JobRecord>> {
        let Some(mut record) = self.get(id) else {
            return Ok(None);
        };
        change(&mut record);
        self.put(&record)?;
        Ok(Some(record))
    }

    /// Job `id`.
    pub fn get(&self, id: &str) -> Option<JobRecord> {
        self.lock().get(id).cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self.lock().values().cloned().collect();
        jobs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        jobs
    }

    /// The job that has a child now, if any.
    pub fn active(&self) -> Option<JobRecord> {
        self.lock().values().find(|j| j.state.is_active()).cloned()
    }

    /// Jobs per state.
    pub fn counts(&self) -> BTreeMap<JobState, usize> {
        let mut counts: BTreeMap<JobState, usize> = JobState::ALL.iter().map(|&s| (s, 0)).collect();
        for job in self.lock().values() {
            *counts.entry(job.state).or_default() += 1;
        }
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobRecord>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, state: JobState) -> JobRecord {
        JobRecord {
            id: id.into(),
            state,
            teacher: "/m/teacher".into(),
            objective: "t3d".into(),
            prompts: PromptSource::Count(8),
            settings: BTreeMap::new(),
            output: "/m/student".into(),
            run_dir: "/j/run".into(),
            total_steps: 4,
            command: vec!["t3d".into(), "distill".into()],
            pid: Some(12345),
            created_at: 1,
            started_at: Some(1),
            ended_at: None,
            exit_code: None,
            error: None,
            resumes: 0,
        }
    }

    #[test]
    fn records_survive_a_reopen_and_running_ones_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path(), |_| {}).unwrap();
        store.put(&record("job-a", JobState::Succeeded)).unwrap();
        store.put(&record("job-b", JobState::Training)).unwrap();
        assert_eq!(store.active().unwrap().id, "job-b");
        drop(store);
        let stopped = Mutex::new(Vec::new());
        let reopened = JobStore::open(dir.path(), |j| {
            stopped.lock().unwrap().push(j.id.clone());
        })
        .unwrap();
        assert_eq!(*stopped.lock().unwrap(), vec!["job-b".to_string()]);
        let b = reopened.get("job-b").unwrap();
        assert_eq!(b.state, JobState::Interrupted);
        assert_eq!(b.pid, None);
        assert_eq!(reopened.get("job-a").unwrap().state, JobState::Succeeded);
        assert!(reopened.active().is_none());
        let counts = reopened.counts();
        assert_eq!(counts[&JobState::Interrupted], 1);
        assert_eq!(counts[&JobState::Succeeded], 1);
        assert_eq!(counts[&JobState::Training], 0);
    }

    #[test]
    fn states_serialise_by_their_names() {
        for state in JobState::ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, serde_json::Value::from(state.as_str()));
        }
        assert_eq!(JobState::from_phase("training"), Some(JobState::Training));
        assert_eq!(JobState::from_phase("done"), None);
    }
}
