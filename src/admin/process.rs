//! The job's child process: `t3d distill …` of this same binary in its own process group, with
//! a bounded libtorch thread count, stdout/stderr in the job's directory, and the admin
//! secrets removed from its environment. A monitor task follows its phase (the `status.json`
//! the child writes) and records how it ended; cancelling sends SIGTERM to the group, then
//! SIGKILL after a grace period, so no orphan remains.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::jobs::{unix_now, JobRecord, JobState, JobStore, PromptSource};

/// How children are started.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// The `t3d` binary.
    pub exe: PathBuf,
    /// `--threads` of the child.
    pub threads: usize,
    /// `--device` of the child.
    pub device: String,
    /// A base distillation config (`--config`) every job starts from.
    pub base_config: Option<PathBuf>,
    /// SIGTERM to SIGKILL.
    pub kill_grace: Duration,
    /// The child's niceness (0 = as the server): the engine keeps the CPU it needs.
    pub nice: u8,
}

/// The file the child writes its phase to.
pub const STATUS_FILE: &str = "status.json";
/// The child's stderr.
pub const STDERR_FILE: &str = "stderr.log";

/// The child's command line for `record` (program first).
pub fn command_line(
    cfg: &ChildConfig,
    record: &JobRecord,
    job_dir: &Path,
    resume: bool,
) -> Vec<String> {
    let mut args = Vec::new();
    if cfg.nice > 0 {
        args.extend(["nice".into(), "-n".into(), cfg.nice.to_string()]);
    }
    args.extend([
        cfg.exe.display().to_string(),
        "distill".into(),
        "--teacher".into(),
        record.teacher.display().to_string(),
    ]);
    match &record.prompts {
        PromptSource::Count(n) => args.extend(["--num-prompts".into(), n.to_string()]),
        PromptSource::File(path) => args.extend(["--prompts".into(), path.display().to_string()]),
    }
    args.extend(["--objective".into(), record.objective.clone()]);
    if let Some(base) = &cfg.base_config {
        args.extend(["--config".into(), base.display().to_string()]);
    }
    for (key, value) in &record.settings {
        args.extend(["--set".into(), format!("{key}={value}")]);
    }
    args.extend([
        "--out".into(),
        record.output.display().to_string(),
        "--run-dir".into(),
        record.run_dir.display().to_string(),
        "--status-file".into(),
        job_dir.join(STATUS_FILE).display().to_string(),
        "--threads".into(),
        cfg.threads.to_string(),
        "--device".into(),
        cfg.device.clone(),
    ]);
    if resume {
        args.push("--resume".into());
    }
    args
}

/// A running child: its pid and the switch that asks it to stop.
pub struct RunningChild {
    /// Process id (= its process group id).
    pub pid: u32,
    cancel: watch::Sender<bool>,
}

impl RunningChild {
    /// Asks the monitor to stop the child (SIGTERM, then SIGKILL after the grace period).
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
    }
}

/// Starts `record`'s child and its monitor; `on_change` runs after every stored change.
pub fn start(
    cfg: &ChildConfig,
    store: Arc<JobStore>,
    record: &JobRecord,
    resume: bool,
    on_change: Arc<dyn Fn() + Send + Sync>,
) -> anyhow::Result<RunningChild> {
    let job_dir = store.job_dir(&record.id);
    std::fs::create_dir_all(&job_dir)?;
    let _ = std::fs::remove_file(job_dir.join(STATUS_FILE));
    let command = command_line(cfg, record, &job_dir, resume);
    // Appended across resumes, so the first run's lines stay in the tail.
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(job_dir.join(STDERR_FILE))?;
    let stdout = std::fs::File::create(job_dir.join("stdout.log"))?;
    let child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env_remove("T3D_ADMIN_TOKEN")
        .env_remove("T3D_API_KEY")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("starting {}", command[0]))?;
    let pid = child.id().context("the child exited at once")?;
    store.update(&record.id, |r| {
        r.state = JobState::Rollout;
        r.pid = Some(pid);
        r.command = command.clone();
        r.started_at = Some(unix_now());
        r.ended_at = None;
        r.exit_code = None;
        r.error = None;
    })?;
    on_change();
    tracing::info!(job = %record.id, pid, "distillation job started");
    let (cancel, cancelled) = watch::channel(false);
    let monitor = Monitor {
        store,
        id: record.id.clone(),
        job_dir,
        pid,
        kill_grace: cfg.kill_grace,
        on_change,
    };
    tokio::spawn(monitor.run(child, cancelled));
    Ok(RunningChild { pid, cancel })
}

struct Monitor {
    store: Arc<JobStore>,
    id: String,
    job_dir: PathBuf,
    pid: u32,
    kill_grace: Duration,
    on_change: Arc<dyn Fn() + Send + Sync>,
}

impl Monitor {
    async fn run(self, mut child: tokio::process::Child, mut cancelled: watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        let mut cancel_requested = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = cancelled.changed(), if !cancel_requested => {
                    cancel_requested = true;
                    self.terminate(&mut child).await;
                }
                _ = poll.tick() => self.follow_phase(),
            }
        };
        let cancelled_now = cancel_requested || *cancelled.borrow();
        self.finish(&status, cancelled_now);
    }

    /// SIGTERM to the group; SIGKILL if it has not exited after the grace period.
    async fn terminate(&self, child: &mut tokio::process::Child) {
        signal_group(self.pid, Signal::SIGTERM);
        if tokio::time::timeout(self.kill_grace, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(job = %self.id, "child ignored SIGTERM; killing it");
            signal_group(self.pid, Signal::SIGKILL);
        }
    }

    fn follow_phase(&self) {
        let Some(phase) = read_phase(&self.job_dir) else {
            return;
        };
        let changed = self
            .store
            .get(&self.id)
            .is_some_and(|r| r.state.is_active() && r.state != phase);
        if changed && self.store.update(&self.id, |r| r.state = phase).is_ok() {
            (self.on_change)();
        }
    }

    fn finish(&self, status: &std::io::Result<std::process::ExitStatus>, cancelled: bool) {
        let exit_code = status
            .as_ref()
            .ok()
            .and_then(std::process::ExitStatus::code);
        let ok = status.as_ref().is_ok_and(std::process::ExitStatus::success);
        let error_line = last_line(&self.job_dir.join(STDERR_FILE));
        let result = self.store.update(&self.id, |r| {
            r.pid = None;
            r.ended_at = Some(unix_now());
            r.exit_code = exit_code;
            if r.state == JobState::Interrupted {
                return; // the server is shutting down: keep it resumable
            }
            r.state = if cancelled {
                JobState::Cancelled
            } else if ok && r.output.join("config.json").exists() {
                JobState::Succeeded
            } else {
                r.error = Some(error_line.unwrap_or_else(|| format!("exit status {exit_code:?}")));
                JobState::Failed
            };
        });
        match result {
            Ok(Some(r)) => {
                tracing::info!(job = %r.id, state = r.state.as_str(), "distillation job ended")
            }
            Ok(None) => {}
            Err(e) => tracing::error!(job = %self.id, error = %e, "could not record the job's end"),
        }
        (self.on_change)();
    }
}

/// Sends `signal` to process group `pid` (errors, e.g. already gone, are ignored).
pub fn signal_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// On start-up: a job's child that outlived its server (same pid, its run directory on the
/// command line) is killed.
pub fn stop_orphan(record: &JobRecord) {
    let Some(pid) = record.pid else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let run_dir = record.run_dir.display().to_string();
    let ours = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .any(|arg| arg == run_dir);
    if ours {
        tracing::warn!(job = %record.id, pid, "killing the orphaned child of an earlier server");
        signal_group(pid, Signal::SIGKILL);
    }
}

fn read_phase(job_dir: &Path) -> Option<JobState> {
    let text = std::fs::read_to_string(job_dir.join(STATUS_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    JobState::from_phase(value.get("phase")?.as_str()?)
}

/// The last non-empty line of a text file.
pub fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}
