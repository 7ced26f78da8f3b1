//! The base block-diffusion trainer: the bundled `arith` task ([`task`]), dual-stream masks
//! ([`masks`]), batches ([`batch`], [`data`]), AdamW and the LR schedule ([`optim`]), the trainer
//! ([`trainer`]) with resumable checkpoints ([`state`]), evaluation ([`eval`]) and plots
//! ([`plot`]). T3D distillation builds on these in [`crate::distill`].

pub mod batch;
pub mod config;
pub mod data;
pub mod eval;
pub mod frontier;
pub mod masks;
pub mod optim;
pub mod plot;
pub mod state;
pub mod task;
pub mod trainer;
