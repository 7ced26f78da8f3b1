//! Command-line arguments of the training subcommands (`train`, `eval`, `dataset`, `rollout`,
//! `distill`, `compare`); every flag with a `T3D_*` variable reads it too.

use std::path::PathBuf;

use clap::Args;

use super::args::DeviceArgs;
use crate::engine::Remasking;

/// Rollout prompts drawn from the training split when none are named.
pub const DEFAULT_NUM_PROMPTS: usize = 16384;

/// `t3d train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The bundled task (only `arith` exists).
    #[arg(long, default_value = "arith")]
    pub task: String,
    /// JSON training config (fields default when absent); see `configs/`.
    #[arg(long, env = "T3D_TRAIN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: RunArgs,
    /// Override the config's number of optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Start from this model's weights (a second training stage with a fresh optimizer).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub device: DeviceArgs,
}

/// Where a training run writes, and how it stops and resumes (`train` and `distill`).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Final model directory (Hugging Face layout), replaced atomically at the end.
    #[arg(long)]
    pub out: PathBuf,
    /// Checkpoints and the JSONL log (default: `runs/<name of --out>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimizer steps in total, keeping a checkpoint to `--resume` from.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Write the run report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

impl RunArgs {
    /// `--run-dir`, else `runs/<name of --out>`.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone().unwrap_or_else(|| {
            let name = self
                .out
                .file_name()
                .map_or("model".into(), |n| n.to_os_string());
            PathBuf::from("runs").join(name)
        })
    }
}

/// `t3d eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint directory (default: the bundled model).
    #[arg(long, env = "T3D_MODEL")]
    pub model: Option<PathBuf>,
    /// The bundled task (only `arith` exists).
    #[arg(long, default_value = "arith")]
    pub task: String,
    /// Held-out problems to score.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Tokens per block.
    #[arg(long, default_value_t = 4)]
    pub block_size: usize,
    /// Static steps per block to evaluate (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub steps: Vec<usize>,
    /// Confidence thresholds to evaluate with `low_confidence_dynamic` (at most `b` steps).
    #[arg(long, value_delimiter = ',')]
    pub thresholds: Vec<f64>,
    /// Entropy bounds to evaluate with `entropy_bounded` (at most `b` steps).
    #[arg(long, value_delimiter = ',')]
    pub entropy_bounds: Vec<f64>,
    /// Remasking policy of the static settings.
    #[arg(long, default_value = "low_confidence_static")]
    pub remasking: Remasking,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a PNG plot of accuracy against steps per block here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the most accurate setting at ≥ 3 tokens per forward (else the fastest) into the
    /// model's config.json as its recommended decoding, as the distiller does.
    #[arg(long)]
    pub recommend: bool,
    /// Print the first N questions with the served default's answers and whether they are right.
    #[arg(long, default_value_t = 0)]
    pub show: usize,
    /// Write every completion with its score as JSONL here (one line per problem and setting).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub device: DeviceArgs,
}

/// `t3d dataset`.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// The bundled task (only `arith` exists).
    #[arg(long, default_value = "arith")]
    pub task: String,
    /// Training config whose task knobs to use (default knobs without it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `train` or `test` (the held-out evaluation set: the same problems `t3d eval` scores).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Number of problems.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Seed of the train stream (the test split always uses the evaluation seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSONL file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Where rollout prompts come from (shared by `rollout` and `distill`).
#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// Teacher checkpoint (default: the bundled `models/arith-teacher`).
    #[arg(long, env = "T3D_TEACHER")]
    pub teacher: Option<PathBuf>,
    /// JSONL prompt file, one `{"question": …}` per line (e.g. `t3d dataset --split train`).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Without `--prompts`: this many problems from the teacher task's training split.
    #[arg(long, default_value_t = DEFAULT_NUM_PROMPTS)]
    pub num_prompts: usize,
    /// Seed of the training-split problems drawn without `--prompts`.
    #[arg(long, default_value_t = 1)]
    pub prompt_seed: u64,
    /// JSON distillation config (fields default when absent); see `configs/distill.json`.
    #[arg(long, env = "T3D_DISTILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override any config field by its dotted path, e.g. `--set beta=0.2 --set rollout.temperature=0`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub device: DeviceArgs,
}

/// `t3d rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: PromptArgs,
    /// Output trajectory JSONL.
    #[arg(long)]
    pub out: PathBuf,
}

/// `t3d distill`.
#[derive(Debug, Args)]
pub struct DistillArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: PromptArgs,
    /// Train on these trajectories (from `t3d rollout`) instead of rolling out again.
    #[arg(long)]
    pub trajectories: Option<PathBuf>,
    /// The loss (overrides the config's `objective`).
    #[arg(long, value_enum)]
    pub objective: Option<crate::distill::config::Objective>,
    /// Override the config's number of optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Write the current phase (`rollout`, `training`, `evaluating`) here as JSON (the admin
    /// API follows jobs this way).
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// The student directory gets `eval.json`, `eval.md` and `distill_config.json` too.
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: RunArgs,
}

/// `t3d compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// `LABEL=PATH/eval.json`, in table order; several with one label are seeds (pooled).
    #[arg(long = "eval", value_name = "LABEL=FILE", required = true)]
    pub evals: Vec<String>,
    /// Write the PNG plot (accuracy against steps per block) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the PNG frontier plot (accuracy against tokens per forward, Pareto points filled).
    #[arg(long)]
    pub frontier: Option<PathBuf>,
    /// Say whether each other model's frontier dominates this label's from 1 to 4 tokens per
    /// forward (at every speed, at least as accurate).
    #[arg(long)]
    pub baseline: Option<String>,
}
