//! Packages with the node's own apt: what is installed (`dpkg-query`), installing what a
//! desired state wants (`apt-get install`, non-interactive, the node's configuration files
//! kept: the module's files are laid over them afterwards), and purging what the agent
//! installed once no module wants it.
//!
//! `packages.json` in the state directory records every package that appeared on the node
//! because the agent ran apt (the ones it asked for and their dependencies). Only those are
//! ever removed: a package that was on the node before the agent stays, wanted or not. The
//! record is written before apt runs (with the list of what was installed then), so a crash
//! mid-install is finished on the next run (`dpkg --configure -a`) and nothing it brought in
//! is forgotten.

use super::{ToolError, run, tail};
use crate::files::write_atomic;
use powernode_module::package::PackageSpec;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

/// How long apt waits for the dpkg lock (unattended-upgrades, an operator's apt) before
/// giving up; the agent's retry budget then takes over.
const LOCK_TIMEOUT_SECS: u32 = 120;

/// Installed packages: name → version, for the names asked about that dpkg has installed.
pub fn installed<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, ToolError> {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    query(&names)
}

/// Every installed package (name → version).
pub fn all_installed() -> Result<BTreeMap<String, String>, ToolError> {
    query(&[])
}

fn query(names: &[&str]) -> Result<BTreeMap<String, String>, ToolError> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}\t${db:Status-Abbrev}\t${Version}\n",
            "--",
        ])
        .args(names)
        .env("LC_ALL", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ToolError {
            command: "dpkg-query -W".into(),
            status: "could not start".into(),
            said: e.to_string(),
        })?;
    // Exit 1: some name is unknown; the others are still listed.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(ToolError {
            command: "dpkg-query -W".into(),
            status: out.status.to_string(),
            said: tail(&out, 8),
        });
    }
    let out = out.stdout;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, status, version) = (f.next()?, f.next()?, f.next()?);
            // `ii `: wanted install, installed, no error. Half-installed or config-files
            // only is not installed.
            status
                .starts_with("ii")
                .then(|| (name.to_owned(), version.to_owned()))
        })
        .collect())
}

/// The specs not satisfied by what is installed: absent, or pinned to another version.
pub fn missing(wanted: &[PackageSpec]) -> Result<Vec<PackageSpec>, ToolError> {
    let have = installed(wanted.iter().map(|p| p.name.as_str()))?;
    Ok(wanted
        .iter()
        .filter(|p| match (have.get(&p.name), &p.version) {
            (None, _) => true,
            (Some(v), Some(want)) => v != want,
            (Some(_), None) => false,
        })
        .cloned()
        .collect())
}

/// `packages.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Packages that appeared on the node because the agent ran apt.
    installed: BTreeSet<String>,
    /// Set while apt runs: what was installed before it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<BTreeSet<String>>,
}

/// The agent's record of the packages it installed, and the operations on it.
#[derive(Debug, Clone)]
pub struct Packages {
    file: PathBuf,
}

/// What apt did, for the log and the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    pub installed: Vec<String>,
    pub removed: Vec<String>,
}

impl Packages {
    pub fn new(state: &Path) -> Packages {
        Packages {
            file: state.join("packages.json"),
        }
    }

    fn load(&self) -> Record {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, r: &Record) -> anyhow::Result<()> {
        write_atomic(&self.file, &serde_json::to_vec_pretty(r)?)
    }

    /// The packages the agent installed (and may remove).
    pub fn recorded(&self) -> BTreeSet<String> {
        self.load().installed
    }

    /// After a crash during apt: lets dpkg finish what it was doing and records what the
    /// interrupted run brought in.
    pub fn recover(&self) -> anyhow::Result<()> {
        let mut r = self.load();
        let Some(before) = r.before.take() else {
            return Ok(());
        };
        let _ = run(Command::new("dpkg")
            .args(["--configure", "-a"])
            .envs(apt_env()));
        let now = all_installed()?;
        r.installed
            .extend(now.into_keys().filter(|p| !before.contains(p)));
        self.save(&r)
    }

    /// Installs `specs` (those [`missing`] found) with the node's apt. On failure the error
    /// carries apt's own words; whatever it did install is recorded all the same.
    pub fn install(&self, specs: &[PackageSpec]) -> anyhow::Result<Changed> {
        if specs.is_empty() {
            return Ok(Changed::default());
        }
        let before: BTreeSet<String> = all_installed()?.into_keys().collect();
        let mut r = self.load();
        r.before = Some(before.clone());
        self.save(&r)?;
        // Lists may be missing or stale; an unreachable repository shows in the install's
        // own error below, which is the one worth reporting.
        let update = run(Command::new("apt-get")
            .args(["update", "-q"])
            .arg(format!("-oDPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"))
            .envs(apt_env()));
        let result = run(Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .arg(format!("-oDPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"))
            .args([
                "-oDpkg::Options::=--force-confdef",
                "-oDpkg::Options::=--force-confold",
                "--",
            ])
            .args(specs.iter().map(|s| s.to_string()))
            .envs(apt_env()));
        let now = all_installed()?;
        let appeared: Vec<String> = now.into_keys().filter(|p| !before.contains(p)).collect();
        r.installed.extend(appeared.iter().cloned());
        r.before = None;
        self.save(&r)?;
        if let Ok(out) = &result {
            note_lock_wait(out);
        }
        match result {
            Ok(_) => Ok(Changed {
                installed: appeared,
                removed: Vec::new(),
            }),
            Err(e) => {
                let mut msg = format!("apt-get install {}: {}", list(specs), e.said);
                if let Err(u) = update {
                    msg.push_str(&format!("\n(apt-get update: {})", u.said));
                }
                Err(anyhow::anyhow!(msg))
            }
        }
    }

    /// Purges the packages the agent installed that nothing needs any more: those `wanted`
    /// no longer names, and the dependencies and recommendations apt brought in with them.
    ///
    /// apt decides what is needed: the agent's own installs that no module wants are marked
    /// automatically installed (`apt-mark auto`), then apt's autoremove list is asked for,
    /// with recommendations not counting as needs (a package the node had before may
    /// recommend what the agent's install brought in; before the agent, it was not there).
    /// Only what the agent installed is ever purged, and never a wanted package: a package
    /// that was on the node before, or that an operator's own install now depends on, stays.
    pub fn prune(&self, wanted: &BTreeSet<String>) -> anyhow::Result<Changed> {
        let mut r = self.load();
        let have = all_installed()?;
        // Forget what is gone (removed by an operator, or purged before a crash).
        r.installed.retain(|p| have.contains_key(p));
        let auto = auto_installed()?;
        let unwanted: Vec<String> = r
            .installed
            .iter()
            .filter(|p| !wanted.contains(*p) && !auto.contains(*p))
            .cloned()
            .collect();
        if !unwanted.is_empty() {
            let out = run(Command::new("apt-mark")
                .arg(format!("-oDPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"))
                .arg("auto")
                .arg("--")
                .args(&unwanted))
            .map_err(|e| anyhow::anyhow!("apt-mark auto: {}", e.said))?;
            note_lock_wait(&out);
        }
        let removable: Vec<String> = autoremovable()?
            .into_iter()
            .filter(|p| r.installed.contains(p) && !wanted.contains(p))
            .collect();
        let result = if removable.is_empty() {
            Ok(())
        } else {
            purge(&removable)
        };
        let have = all_installed()?;
        r.installed.retain(|p| have.contains_key(p));
        self.save(&r)?;
        result?;
        Ok(Changed {
            installed: Vec::new(),
            removed: removable,
        })
    }
}

/// The packages apt marked as installed only as dependencies.
fn auto_installed() -> Result<BTreeSet<String>, ToolError> {
    let out = run(Command::new("apt-mark").arg("showauto"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect())
}

/// What `apt-get autoremove` would remove (simulated).
fn autoremovable() -> Result<Vec<String>, ToolError> {
    let out = run(Command::new("apt-get")
        .args([
            "-s",
            "-q",
            "-oAPT::AutoRemove::RecommendsImportant=false",
            "-oAPT::AutoRemove::SuggestsImportant=false",
            "autoremove",
        ])
        .envs(apt_env()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Remv ")?.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Purges `names` in one apt run; when that fails (one package's removal script refusing
/// stops dpkg for all), each on its own, so one refusal keeps only that package.
fn purge(names: &[String]) -> anyhow::Result<()> {
    let once = |names: &[String]| {
        run(Command::new("apt-get")
            .args(["purge", "-y", "-q"])
            .arg(format!("-oDPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"))
            .arg("--")
            .args(names)
            .envs(apt_env())
            // sudo's prerm refuses removal without it (a lock-out guard for people); the
            // agent installed it for a module, and no module wants it any more.
            .env("SUDO_FORCE_REMOVE", "yes"))
    };
    if let Ok(out) = once(names) {
        note_lock_wait(&out);
        return Ok(());
    }
    let mut refused = Vec::new();
    for n in names {
        if let Err(e) = once(std::slice::from_ref(n)) {
            refused.push(format!("{n}: {}", e.said));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "apt-get purge refused: {}",
            refused.join("; ")
        ))
    }
}

/// Logs that apt had to wait for the dpkg lock (unattended-upgrades, an operator's apt):
/// worth knowing when a switch took long.
fn note_lock_wait(out: &std::process::Output) {
    // apt writes its "Waiting for cache lock" progress to standard output.
    let said = [&out.stdout, &out.stderr].map(|b| String::from_utf8_lossy(b).into_owned());
    if let Some(line) = said
        .iter()
        .flat_map(|s| s.lines())
        .find(|l| l.contains("Could not get lock"))
    {
        tracing::info!(apt = line.trim(), "waited for the dpkg lock");
    }
}

fn list(specs: &[PackageSpec]) -> String {
    specs
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// No prompts, no pagers, no change lists: apt run by a service.
fn apt_env() -> [(&'static str, &'static str); 3] {
    [
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("APT_LISTCHANGES_FRONTEND", "none"),
        ("NEEDRESTART_MODE", "l"),
    ]
}
