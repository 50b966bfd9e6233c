//! Command-line interface. Flag names follow cosign and oras where they overlap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "module-builder",
    // `module-builder 0.1.0 (abc1234 2026-12-04)`: the commit, from build.rs.
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("POWERNODE_BUILD_COMMIT"), ")"),
    about = "Validate, build and inspect powernode node modules",
    long_about = "module-builder turns a module repository (manifest.yaml + rootfs/) into a \
bit-for-bit reproducible artifact, dist/module.tar, ready to push to an OCI registry.\n\n\
A module directory looks like:\n\n  manifest.yaml      what the module is and which rootfs paths it ships\n  \
rootfs/            the files, at their target paths (rootfs/etc/redis/redis.conf)\n\n\
Typical use:\n\n  module-builder validate            # check manifest.yaml and rootfs/\n  \
module-builder build --dry-run     # list what would be packed\n  \
module-builder build               # write dist/module.tar and dist/module.json\n  \
module-builder inspect dist/module.tar",
    after_help = "Exit status: 0 success, 1 invalid module or failed command, 2 usage error.",
    args_conflicts_with_subcommands = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Without a subcommand: validate the module in the current directory and list what
    /// would be packed, writing nothing (`build --dry-run .`; exit status as `validate`).
    /// The builder image's default mode, for a read-only mount:
    /// `docker run --rm -v $PWD:/work:ro IMAGE --dry-run`.
    #[arg(long)]
    pub dry_run: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// What a bare `--dry-run` runs: `build --dry-run .`.
    pub fn dry_run_build() -> BuildArgs {
        BuildArgs {
            dir: PathBuf::from("."),
            output: None,
            source_date_epoch: None,
            version: None,
            architecture: "all".into(),
            dry_run: true,
            format: Format::default(),
        }
    }
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
    /// Write a cosign key pair (cosign.key encrypted with $COSIGN_PASSWORD, cosign.pub).
    GenerateKeyPair(KeyPairArgs),
    /// Push dist/module.tar to an OCI registry as a module artifact; prints HOST/REPO@sha256:….
    ///
    /// The blob is streamed and skipped when the registry already has it; pushing the same
    /// build twice changes nothing.
    Push(PushArgs),
    /// Sign a pushed artifact (cosign-compatible), with a key or keyless (OIDC + Fulcio).
    Sign(SignArgs),
    /// Verify an artifact's signatures against a key or a pinned keyless identity.
    Verify(VerifyArgs),
    /// validate → build → push → sign in one step: the CI entry point.
    ///
    /// In Actions (GITHUB_ACTIONS or GITEA_ACTIONS set) it writes digest, reference,
    /// composefs-digest and version to $GITHUB_OUTPUT and a summary to $GITHUB_STEP_SUMMARY.
    /// The version comes from the tag (v0.1.0 → 0.1.0); a non-tag ref needs --version.
    Release(ReleaseArgs),
}

/// How to reach the registry.
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Registry user name (else REGISTRY_USERNAME, else docker's config.json).
    #[arg(short = 'u', long, env = "REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Registry password or token (else REGISTRY_PASSWORD, else docker's config.json).
    #[arg(short = 'p', long, env = "REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Allow plain HTTP to a non-loopback registry (loopback registries always may).
    #[arg(long)]
    pub insecure: bool,
}

/// How to sign: a key, or keyless.
#[derive(Debug, Args, Clone)]
pub struct SigningArgs {
    /// Sign with this cosign private key (password from $COSIGN_PASSWORD). Without it,
    /// signing is keyless.
    #[arg(long, value_name = "FILE", env = "COSIGN_KEY")]
    pub key: Option<PathBuf>,
    /// Fulcio to get a keyless signing certificate from.
    #[arg(
        long,
        value_name = "URL",
        env = "FULCIO_URL",
        default_value = "https://fulcio.sigstore.dev"
    )]
    pub fulcio_url: String,
    /// Rekor to log the signature in (none: no transparency-log entry).
    #[arg(long, value_name = "URL", env = "REKOR_URL")]
    pub rekor_url: Option<String>,
    /// OIDC identity token (else $SIGSTORE_ID_TOKEN, else the Actions runner's).
    #[arg(long, value_name = "JWT", hide_env_values = true)]
    pub identity_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyPairArgs {
    /// Writes PREFIX.key and PREFIX.pub.
    #[arg(long, default_value = "cosign", value_name = "PREFIX")]
    pub output_key_prefix: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The module directory; pushes DIR/dist/module.tar described by DIR/dist/module.json.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Target HOST/REPO[:TAG]; the tag defaults to v<version>.
    #[arg(long = "ref", value_name = "HOST/REPO[:TAG]")]
    pub reference: String,
    /// Where module.tar and module.json are [default: DIR/dist].
    #[arg(long, value_name = "DIR")]
    pub artifact_dir: Option<PathBuf>,
    /// Source repository URL for org.opencontainers.image.source [default: from Actions
    /// env or git remote origin].
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// What to sign: HOST/REPO@sha256:… (a tag is resolved to its digest first).
    pub reference: String,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// What to verify: HOST/REPO:TAG or HOST/REPO@sha256:….
    pub reference: String,
    /// Accept signatures by this public key (cosign.pub); repeatable.
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,
    /// Keyless: the certificate identity (SAN URI or email) must match this regexp.
    #[arg(
        long,
        value_name = "REGEXP",
        requires = "certificate_oidc_issuer_regexp"
    )]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the certificate's OIDC issuer must match this regexp.
    #[arg(long, value_name = "REGEXP", requires = "certificate_identity_regexp")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Sigstore trusted_root.json with the Fulcio CA chains and Rekor keys to trust.
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// Accept keyless signatures without a transparency-log entry.
    #[arg(long)]
    pub insecure_ignore_tlog: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The module directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Target HOST/REPO[:TAG]; the tag defaults to v<version>.
    #[arg(long = "ref", value_name = "HOST/REPO[:TAG]")]
    pub reference: String,
    /// Release this version even when not building a tag (SemVer 2.0: 1.2.0, 1.2.0-rc.1).
    #[arg(long, value_name = "V")]
    pub version: Option<powernode_module::Version>,
    /// Timestamp for every entry (see `build --help`).
    #[arg(long, value_name = "N")]
    pub source_date_epoch: Option<u64>,
    /// Source repository URL for org.opencontainers.image.source.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Where module.tar and module.json are written [default: DIR/dist]. The Actions step
    /// points it at a private temporary directory when the runner's workspace is not
    /// writable by the image's user.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// Also check the manifest against the live modules of a receiver (module-webhook's
    /// base URL, e.g. https://receiver.example.org): a path another module protects shows
    /// here as PROTECTED_OVERRIDDEN or PROTECTED_DROPPED before anything is pushed.
    #[arg(long, value_name = "URL")]
    pub against: Option<String>,
    /// With --against: compose with the modules of this template only.
    #[arg(long, value_name = "ID", requires = "against")]
    pub template: Option<String>,
    /// With --against: an API token with the read role.
    #[arg(
        long,
        env = "POWERNODE_API_TOKEN",
        hide_env_values = true,
        requires = "against"
    )]
    pub token: Option<String>,
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
    /// leading "v" (v0.1.0 → 0.1.0), then 0.0.0-dev. Always SemVer 2.0.
    #[arg(long = "version", value_name = "V")]
    pub version: Option<powernode_module::Version>,
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
