//! `module-builder`: validate, build and inspect powernode node modules.

mod ci;
mod cli;
mod cmd;
mod git;
mod logging;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.verbose);
    // `arg_required_else_help` leaves a bare `--dry-run` as the only way to get here
    // without a subcommand.
    let command = cli
        .command
        .unwrap_or_else(|| cli::Command::Build(cli::Cli::dry_run_build()));
    let result = match command {
        cli::Command::Validate(a) => cmd::validate::run(a),
        cli::Command::Build(a) => cmd::build::run(a),
        cli::Command::Inspect(a) => cmd::inspect::run(a),
        cli::Command::GenerateKeyPair(a) => cmd::keys::run(a),
        cli::Command::Push(a) => cmd::push::run(a),
        cli::Command::Sign(a) => cmd::sign::run(a),
        cli::Command::Verify(a) => cmd::verify::run(a),
        cli::Command::Release(a) => cmd::release::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
