//! The `t3d` binary: parse arguments, dispatch to the library, print errors as one line.

use clap::Parser;

use t3d::cli::args::{Cli, Command};
use t3d::cli::{bench, compare, distill, generate, serve, train};

fn main() {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_format == "json");
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: logs written to files and collectors stay plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match &cli.command {
        Command::Generate(args) => generate::run_generate(args),
        Command::Init(args) => generate::run_init(args),
        Command::Convert(args) => generate::run_convert(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Train(args) => train::run_train(args),
        Command::Eval(args) => train::run_eval(args),
        Command::Dataset(args) => train::run_dataset(args),
        Command::Rollout(args) => distill::run_rollout(args),
        Command::Distill(args) => distill::run_distill(args),
        Command::Compare(args) => compare::run_compare(args),
        Command::Serve(args) => serve::run_serve(args),
        Command::Health(args) => serve::run_health(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
