//! `module-webhook serve [--config FILE]`.

use clap::{Parser, Subcommand};
use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

#[derive(Debug, Parser)]
#[command(
    name = "module-webhook",
    // `module-webhook 0.1.0 (abc1234 2026-12-04)`: the commit, from build.rs.
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("POWERNODE_BUILD_COMMIT"), ")"),
    about = "Receive registry push events, verify and ingest node modules as draft versions",
    long_about = "module-webhook receives push events from a registry (CNCF Distribution \
notifications, Gitea package webhooks, Harbor webhooks), verifies each module artifact's \
signature against the module's pinned signer, checks its content and records it as a draft \
version. A reconciler lists the registry periodically to catch missed events.\n\n\
Configuration: a TOML file (--config) plus MODULE_WEBHOOK__SECTION__KEY environment variables \
(e.g. MODULE_WEBHOOK__HOOKS__DISTRIBUTION_TOKEN); DATABASE_URL selects PostgreSQL."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the receiver, the workers and the reconciler.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, env = "MODULE_WEBHOOK_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        b.compact().init();
    } else {
        b.json().init();
    }
}

/// Composition (desired-state recomputation here, a generation's tree on the agent) spends
/// most of its time in composefs' allocation-heavy image writer: mimalloc about halves it
/// against glibc's malloc (`bench/fleet.sh`, ARCHITECTURE.md "Performance").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let Command::Serve { config } = cli.command;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let cfg = module_webhook::config::Config::load(config.as_deref())?;
        module_webhook::app::App::new(cfg).await?.serve().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
