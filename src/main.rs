use std::process::ExitCode;

use clap::Parser;
use podcert_signer::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => podcert_signer::cli::run::run(*args),
        Command::Sign(args) => podcert_signer::cli::sign::run(args),
        Command::Inspect(args) => podcert_signer::cli::inspect::run(args),
        Command::Ca(cmd) => podcert_signer::cli::ca::run(cmd),
        Command::Crd => podcert_k8s::crd::crd_yaml()
            .map(|y| print!("{y}"))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, never a backtrace or a panic.
            eprintln!("podcert-signer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
