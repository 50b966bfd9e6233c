//! Logs go to stderr (stdout is for results): human-readable on a terminal, JSON lines
//! otherwise, so CI log collectors can parse them. `RUST_LOG` overrides the level.

use std::io::IsTerminal;
use tracing_subscriber::{EnvFilter, fmt};

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.compact().init();
    } else {
        builder.json().init();
    }
}
