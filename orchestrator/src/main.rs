//! `orch`: run autoscaling experiment matrices. Parses the command line and hands each subcommand to its handler in
//! orchestrator::cli.

use std::process::ExitCode;

use clap::Parser;
use orchestrator::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Report(args) => cli::report::run(args),
        Command::Train(args) => cli::train::rl_exit(cli::train::train(&args)),
        Command::Eval(args) => cli::train::rl_exit(cli::eval::eval(&args)),
        Command::Plan { matrix } => cli::plan::plan(&matrix),
        Command::Status { run_tag, logs_dir } => cli::status::run(&logs_dir, &run_tag),
        Command::Logs { cell, run, logs_dir } => cli::logs::run(&logs_dir, &cell, run.as_deref()),
        Command::Cell { run_dir, cell, attempt } => cli::cell::run(&run_dir, &cell, attempt),
        Command::CellJob { run_dir, cell, attempt } => cli::cell_job::run(&run_dir, &cell, attempt),
        Command::Emulate(args) => cli::emulate::emulate(args),
        Command::Run(args) => cli::run::run(args),
        Command::Calibrate(args) => cli::calibrate::run(args),
    }
}
