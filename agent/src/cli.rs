//! The command line, and building an [`Agent`] from flags, a TOML file and the environment.

use crate::{apply::Agent, fetch::LocalTrust, generation::Layout, receiver::Receiver};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use figment::{
    Figment,
    providers::{Env, Format as _, Serialized, Toml},
};
use powernode_module::desired_state;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "module-agent",
    // `module-agent 0.1.0 (abc1234 2026-12-04)`: the commit, from build.rs.
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("POWERNODE_BUILD_COMMIT"), ")"),
    about = "Apply this instance's signed desired state and report what runs",
    long_about = "module-agent makes an instance converge on its template's desired state.\n\n\
Each reconcile it reads the desired state from the receiver (If-None-Match), verifies its \
signature with the pinned receiver key, fetches every module by digest and verifies its cosign \
signature on the node, stores files by fs-verity digest, composes a new generation \
(composefs image + materialised tree), checks the image measures to the predicted digest, \
switches `current` atomically, runs the health command (rolling back on failure) and reports.\n\n\
First run, no config file needed:\n\n  module-agent apply --once --receiver https://receiver \\\n    \
--instance node-1 --token-file /etc/module-agent/token --receiver-key /etc/module-agent/receiver.pub \\\n    \
--state-dir /var/lib/module-agent --root /",
    after_help = "Exit status: 0 applied or unchanged, 1 failed or rejected, 2 usage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub opts: Opts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile in a loop (every `--interval` seconds).
    Run,
    /// Reconcile once (tests, CI, a systemd timer).
    Apply {
        #[arg(long, required = true)]
        once: bool,
    },
    /// Generations, current/previous and the last report.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Make the previous generation current again (its packages, files and units; the
    /// generation left becomes `previous`).
    Rollback,
    /// Re-hash the active generation's files and objects; exit 1 on any tampering.
    Verify,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// The essentials as flags (each also in the TOML file and as `MODULE_AGENT__<KEY>`).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Opts {
    /// A TOML file with any of the keys below (flags and environment win).
    #[arg(long, global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The receiver's base URL.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// This instance's id at the receiver.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A file holding the instance token (shown once at registration).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The template this instance belongs to: desired states for another are refused
    /// [default: the template of the first state applied, kept in the state directory].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Allow a plain-http receiver that is not on loopback (the instance token would cross
    /// the network in the clear).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// A PEM CA certificate the receiver's TLS certificate must chain to (in addition to the
    /// system's roots), for a receiver with a private CA.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_ca: Option<PathBuf>,
    /// The receiver's public key (PEM, from GET /api/v1/signing-key), pinned. Repeat it (a
    /// TOML array, or several PEM blocks in one file) to trust several keys during a
    /// rotation: a state is accepted if a signature by any of them verifies.
    #[arg(long, global = true)]
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub receiver_key: Vec<PathBuf>,
    /// Where the active tree is visible [default: /].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Objects, generations and the agent's own state [default: /var/lib/module-agent].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Sigstore trusted_root.json, for modules signed keyless.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_root: Option<PathBuf>,
    /// Allow plain-HTTP registries that are not on loopback.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_registry: bool,
    /// Run after each activation (`sh -c`); failure rolls back.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_command: Option<String>,
    /// Seconds the units an activation restarted may take to become active before it is
    /// rolled back [default: 60].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_timeout: Option<u64>,
    /// Do not mount generations' composefs images (serve the materialised tree): for a root
    /// that is not the running system, or a kernel without EROFS/overlayfs.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_mount: bool,
    /// Generations kept besides `current` and `previous`; older ones and the objects only
    /// they use are removed after each switch [default: 1].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_generations: Option<usize>,
    /// Attempts per desired state before it is reported `rejected` [default: 3].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<u32>,
    /// While nothing changes, report at most every this many seconds [default: 300].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_every: Option<u64>,
    /// Seconds between reconciles for `run` [default: 60].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
}

/// A path or a list of paths (`receiver_key = "/a"` or `receiver_key = ["/a", "/b"]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

impl Opts {
    /// Flags over environment over file.
    pub fn resolve(&self) -> anyhow::Result<Opts> {
        let mut f = Figment::new();
        if let Some(c) = &self.config {
            f = f.merge(Toml::file_exact(c));
        }
        let mut o: Opts = f
            .merge(Env::prefixed("MODULE_AGENT__").lowercase(true))
            .merge(Serialized::defaults(self))
            .extract()
            .context("configuration")?;
        o.config = self.config.clone();
        Ok(o)
    }

    pub fn layout(&self) -> Layout {
        Layout {
            state: self
                .state_dir
                .clone()
                .unwrap_or_else(|| "/var/lib/module-agent".into()),
            root: self.root.clone().unwrap_or_else(|| "/".into()),
        }
    }

    /// Switching generations on this node, without a receiver (`module-agent rollback`).
    pub fn switch(&self) -> crate::switch::Switch {
        let layout = self.layout();
        crate::switch::Switch {
            host: crate::system::Host::new(&layout.root),
            layout,
            health_command: self.health_command.clone(),
            health_timeout: std::time::Duration::from_secs(self.health_timeout.unwrap_or(60)),
            mount: !self.no_mount,
        }
    }

    pub fn agent(&self) -> anyhow::Result<Agent> {
        for (missing, flag) in [
            (self.receiver.is_none(), "--receiver"),
            (self.instance.is_none(), "--instance"),
            (self.token_file.is_none(), "--token-file"),
            (self.receiver_key.is_empty(), "--receiver-key"),
        ] {
            if missing {
                anyhow::bail!(
                    "{flag} is required (a flag, the --config file, or MODULE_AGENT__<KEY> in the environment)"
                );
            }
        }
        let read = |p: &PathBuf, what: &str| {
            std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display()))
        };
        let token = read(
            self.token_file.as_ref().unwrap_or(&PathBuf::new()),
            "--token-file",
        )?;
        let mut keys = Vec::new();
        for p in &self.receiver_key {
            let text = read(p, "--receiver-key")?;
            let blocks = desired_state::pem_blocks(&text);
            if blocks.is_empty() {
                anyhow::bail!("--receiver-key {}: no PEM public key in it", p.display());
            }
            for b in blocks {
                keys.push(
                    desired_state::TrustedKey::from_pem(&b)
                        .map_err(|e| anyhow::anyhow!("--receiver-key {}: {e}", p.display()))?,
                );
            }
        }
        let url = self.receiver.as_deref().unwrap_or_default();
        crate::receiver::check_transport(url, self.insecure)?;
        let ca = match &self.receiver_ca {
            Some(p) => {
                Some(std::fs::read(p).with_context(|| format!("--receiver-ca {}", p.display()))?)
            }
            None => None,
        };
        let trusted_root = match &self.trusted_root {
            Some(p) => Some(
                powernode_module::trust::trusted_root::TrustedRoot::load(p)
                    .map_err(|e| anyhow::anyhow!("--trusted-root {}: {e}", p.display()))?,
            ),
            None => None,
        };
        Ok(Agent {
            receiver: Receiver::new(
                self.receiver.as_deref().unwrap_or_default(),
                self.instance.as_deref().unwrap_or_default(),
                &token,
                keys,
            )?
            .with_ca(ca.as_deref())?,
            layout: self.layout(),
            trust: LocalTrust {
                trusted_root,
                insecure_registry: self.insecure_registry,
            },
            health_command: self.health_command.clone(),
            health_timeout: std::time::Duration::from_secs(self.health_timeout.unwrap_or(60)),
            mount: !self.no_mount,
            keep_generations: self.keep_generations.unwrap_or(1),
            retry_budget: self.retry_budget.unwrap_or(3).max(1),
            report_every: std::time::Duration::from_secs(self.report_every.unwrap_or(300)),
            template: self.template.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_key_is_one_path_or_several() {
        let d = tempfile::tempdir().unwrap();
        for (toml, want) in [
            (r#"receiver_key = "/a.pub""#, vec!["/a.pub"]),
            (
                r#"receiver_key = ["/a.pub", "/b.pub"]"#,
                vec!["/a.pub", "/b.pub"],
            ),
        ] {
            let file = d.path().join("agent.toml");
            std::fs::write(&file, toml).unwrap();
            let o = Opts {
                config: Some(file),
                ..Default::default()
            }
            .resolve()
            .unwrap();
            let want: Vec<PathBuf> = want.into_iter().map(PathBuf::from).collect();
            assert_eq!(o.receiver_key, want, "{toml}");
        }
        let cli = Cli::parse_from([
            "module-agent",
            "--receiver-key",
            "/a.pub",
            "--receiver-key",
            "/b.pub",
            "verify",
        ]);
        assert_eq!(
            cli.opts.resolve().unwrap().receiver_key,
            [PathBuf::from("/a.pub"), PathBuf::from("/b.pub")],
            "flags repeat, and win over the file"
        );
    }
}
