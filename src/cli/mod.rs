//! The command line: clap arguments ([`args`], [`train_args`]), shared set-up ([`common`]) and
//! one module per subcommand group. `main.rs` only parses and dispatches.

pub mod args;
pub mod bench;
pub mod common;
pub mod compare;
pub mod distill;
pub mod generate;
pub mod serve;
pub mod threads;
pub mod train;
pub mod train_args;
