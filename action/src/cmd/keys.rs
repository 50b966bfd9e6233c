//! `module-builder generate-key-pair`.

use crate::cli::KeyPairArgs;
use anyhow::{Context, bail};
use std::{io::Write, os::unix::fs::OpenOptionsExt, process::ExitCode};

/// The password from $COSIGN_PASSWORD (empty allowed, as cosign allows).
pub fn password() -> Vec<u8> {
    std::env::var("COSIGN_PASSWORD")
        .unwrap_or_default()
        .into_bytes()
}

pub fn run(a: KeyPairArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os("COSIGN_PASSWORD").is_none() {
        bail!("set COSIGN_PASSWORD to the password that will encrypt the private key");
    }
    let key_path = format!("{}.key", a.output_key_prefix);
    let pub_path = format!("{}.pub", a.output_key_prefix);
    let (private, public) = powernode_module::trust::keys::generate(&password())?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if a.force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    opts.open(&key_path)
        .and_then(|mut f| f.write_all(private.as_bytes()))
        .with_context(|| format!("writing {key_path} (use --force to overwrite)"))?;
    std::fs::write(&pub_path, public).with_context(|| format!("writing {pub_path}"))?;
    println!("Private key written to {key_path}");
    println!("Public key written to {pub_path}");
    Ok(ExitCode::SUCCESS)
}
