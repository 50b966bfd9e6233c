//! The node's own tools, driven as an administrator would: apt and dpkg for packages and
//! diversions, systemctl and journalctl for units. The agent never edits dpkg's or systemd's
//! databases itself; it asks their tools and reads their answers.
//!
//! What the agent may do depends on the root it manages: packages and units only on the
//! running system (`--root /`, where apt, dpkg and a booted systemd are there to ask);
//! diversions wherever a dpkg database is (`dpkg-divert --root`); on any other root (a
//! directory of a test, an image being prepared) files are laid over with backups only.

pub mod apt;
pub mod dpkg;
pub mod systemd;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// What the managed root offers.
#[derive(Debug, Clone)]
pub struct Host {
    pub root: PathBuf,
}

impl Host {
    pub fn new(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
        }
    }

    /// The running system, not a directory standing for one.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// A dpkg database under the root: package ownership and diversions can be asked.
    pub fn has_dpkg(&self) -> bool {
        self.root.join("var/lib/dpkg/status").is_file()
    }

    /// apt can install on this root: the running system with apt-get and dpkg.
    pub fn has_apt(&self) -> bool {
        self.is_live() && self.has_dpkg() && Path::new("/usr/bin/apt-get").is_file()
    }

    /// A booted systemd manages this root (`/run/systemd/system` exists only then).
    pub fn has_systemd(&self) -> bool {
        self.is_live() && Path::new("/run/systemd/system").is_dir()
    }
}

/// A tool's failure, with what it said.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {status}: {said}")]
pub struct ToolError {
    pub command: String,
    pub status: String,
    /// The last lines of its standard error (or output, when it wrote its errors there).
    pub said: String,
}

/// Runs a tool to completion, with the C locale (its messages are parsed and reported) and
/// no terminal.
pub fn run(cmd: &mut Command) -> Result<Output, ToolError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .env("LC_ALL", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ToolError {
            command: shown.clone(),
            status: "could not start".into(),
            said: e.to_string(),
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(ToolError {
            command: shown,
            status: out.status.to_string(),
            said: tail(&out, 12),
        })
    }
}

/// The last `n` non-empty lines of what a tool said (stderr, else stdout).
pub fn tail(out: &Output, n: usize) -> String {
    let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
