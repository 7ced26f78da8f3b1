//! Training: the bundled `arith` task ([`task`]), dual-stream masks ([`masks`]), batches
//! ([`batch`], [`data`]), AdamW and the LR schedule ([`optim`]), the block-diffusion trainer
//! ([`trainer`]) with resumable checkpoints ([`state`]), and evaluation ([`eval`]).

pub mod batch;
pub mod config;
pub mod data;
pub mod eval;
pub mod masks;
pub mod optim;
pub mod plot;
pub mod state;
pub mod task;
pub mod trainer;
