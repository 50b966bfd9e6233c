//! `module-webhook`: the registry-event receiver and promotion engine.
//!
//! Only the command-line surface exists so far; the receiver is being built (see
//! DESIGN.md section 6). `serve` refuses to start rather than pretend to work.

use clap::{Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};

#[derive(Debug, Parser)]
#[command(
    name = "module-webhook",
    version,
    about = "Receive registry push events, verify and ingest node modules, drive promotion"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the receiver (not available in this build yet).
    Serve {
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => {
            let _ = config;
            eprintln!(
                "module-webhook serve: the receiver is not part of this build yet; \
                 module-builder {} can validate and build modules today",
                powernode_module::VERSION
            );
            ExitCode::from(2)
        }
    }
}
