//! Command-line interface. Flag names follow cosign and oras where they overlap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "module-builder",
    version,
    about = "Validate, build and inspect powernode node modules",
    long_about = "module-builder turns a module repository (manifest.yaml + rootfs/) into a \
bit-for-bit reproducible artifact, dist/module.tar, ready to push to an OCI registry.\n\n\
A module directory looks like:\n\n  manifest.yaml      what the module is and which rootfs paths it ships\n  \
rootfs/            the files, at their target paths (rootfs/etc/redis/redis.conf)\n\n\
Typical use:\n\n  module-builder validate            # check manifest.yaml and rootfs/\n  \
module-builder build --dry-run     # list what would be packed\n  \
module-builder build               # write dist/module.tar and dist/module.json\n  \
module-builder inspect dist/module.tar",
    after_help = "Exit status: 0 success, 1 invalid module or failed command, 2 usage error."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifest.yaml and rootfs/ and report errors, conflicts and warnings.
    ///
    /// Every finding has a stable code (NAME_INVALID, INCLUDE_MATCHES_NOTHING, …), the field
    /// and the line it is about. Exit 0 when the module is valid (warnings allowed), 1 when not.
    Validate(ValidateArgs),
    /// Build dist/module.tar (reproducible) and dist/module.json.
    ///
    /// The same manifest, rootfs and SOURCE_DATE_EPOCH give the same bytes, whatever the file
    /// mtimes, owners, umask, checkout path, locale or time zone.
    Build(BuildArgs),
    /// Verify an artifact against its index.json and print what it contains.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The module directory (holding manifest.yaml and rootfs/).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Also require the module to be of this category (firmware, system-base, security,
    /// networking, observability, userland).
    #[arg(long, value_name = "SLUG", value_parser = parse_category)]
    pub category: Option<powernode_module::manifest::Category>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

fn parse_category(s: &str) -> Result<powernode_module::manifest::Category, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The module directory (holding manifest.yaml and rootfs/).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write module.tar and module.json [default: DIR/dist].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Timestamp for every entry. Defaults to $SOURCE_DATE_EPOCH, then the HEAD commit time
    /// of the module's git repository, then 0.
    #[arg(long, value_name = "N")]
    pub source_date_epoch: Option<u64>,
    /// Version recorded in module-release. Defaults to the exact git tag at HEAD without its
    /// leading "v" (v0.1.0 → 0.1.0), then 0.0.0-dev.
    #[arg(long = "version", value_name = "V")]
    pub module_version: Option<String>,
    /// Architecture recorded in module-release ("all" for architecture-independent modules).
    #[arg(long, default_value = "all")]
    pub architecture: String,
    /// Validate and list what would be packed (paths, sizes, total) without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The artifact to inspect (a module.tar).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}
