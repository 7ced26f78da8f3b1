//! Training: the bundled `arith` task ([`task`]), dual-stream masks ([`masks`]), batches
//! ([`batch`], [`data`]), AdamW and the LR schedule ([`optim`]), the block-diffusion trainer
//! ([`trainer`]) with resumable checkpoints ([`state`]), evaluation ([`eval`]), and T3D:
//! teacher rollouts ([`rollout`]), noisy states ([`noise`]), losses ([`ddo`]) and the
//! distillation trainer ([`distill`]).

pub mod batch;
pub mod config;
pub mod data;
pub mod ddo;
pub mod distill;
pub mod distill_batch;
pub mod distill_config;
pub mod distill_log;
pub mod eval;
pub mod masks;
pub mod noise;
pub mod optim;
pub mod plot;
pub mod rollout;
pub mod state;
pub mod task;
pub mod trainer;
