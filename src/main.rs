//! The `t3d` binary: parse arguments, dispatch to the library, print errors as one line.

use clap::Parser;

use t3d::config::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_format == "json");
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match &cli.command {
        Command::Generate(args) => t3d::cli::run_generate(args),
        Command::Init(args) => t3d::cli::run_init(args),
        Command::Bench(args) => run_bench(args),
        Command::Train(args) => t3d::train_cli::run_train(args),
        Command::Eval(args) => t3d::train_cli::run_eval(args),
        Command::Dataset(args) => t3d::train_cli::run_dataset(args),
        Command::Rollout(args) => t3d::distill_cli::run_rollout(args),
        Command::Distill(args) => t3d::distill_cli::run_distill(args),
        Command::Compare(args) => t3d::distill_cli::run_compare(args),
        Command::Serve(args) => t3d::serve_cli::run_serve(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run_bench(args: &t3d::config::BenchArgs) -> anyhow::Result<()> {
    t3d::cli::setup_device(&args.device)?;
    eprintln!("{}", t3d::bench::header());
    let report = t3d::bench::run(args)?;
    println!("{}", t3d::bench::header());
    for row in &report.rows {
        println!("{}", t3d::bench::format_row(row));
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("[t3d] wrote {}", path.display());
    }
    Ok(())
}
