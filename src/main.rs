//! `podcert-signer`: the command line. Everything it runs lives in the library crates
//! (podcert-core, podcert-k8s, podcert-runtime); see ARCHITECTURE.md.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // The report is the output; failed checks are not an error line, only exit status 1.
        Command::Check(args) => match cli::check::run(*args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Run(args) => cli::run::run(*args),
        Command::Sign(args) => cli::sign::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Ca(cmd) => cli::ca::run(cmd),
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
