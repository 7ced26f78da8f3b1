//! T3D trajectory self-distillation (spec §4–§5): teacher rollouts that record each token's
//! decode step ([`rollout`]), noisy states built from those trajectories ([`noise`]), the DDO
//! and path losses ([`ddo`]), the distillation config ([`config`]) and batches ([`batch`]), the
//! rejection filter that keeps only correct trajectories ([`filter`]),
//! the trainer with its self-play reference refresh ([`trainer`]) and its JSONL log ([`log`]).

pub mod batch;
pub mod config;
pub mod ddo;
pub mod filter;
pub mod log;
pub mod noise;
pub mod rollout;
pub mod trainer;
