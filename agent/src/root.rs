//! The managed root: every file of the active generation is visible at its path under
//! `--root` as a symlink through `current` (one rename of `current` switches them all, as
//! NixOS does for /etc), and whatever was at such a path before is taken over the way
//! Debian does it, so that releasing the path restores the node exactly:
//!
//! - a file a package owns is diverted with `dpkg-divert` (renamed to `<path>.distrib`; the
//!   package's upgrades write there, never over the module's file);
//! - a file no package owns is moved to `backup/<path>` in the state directory;
//! - a missing parent directory is created, and removed again once empty and unneeded.
//!
//! `managed.json` records every path and how it was taken over. It is written *before* each
//! batch of changes (the intent), so a crash at any point leaves a record from which
//! [`Root::prepare`] and [`Root::finish`] converge again: both are idempotent.

use crate::{
    files::write_atomic,
    system::{Host, dpkg},
};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::ErrorKind,
    os::unix::fs::{MetadataExt, symlink},
    path::{Path, PathBuf},
};

/// How a managed path was taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Takeover {
    /// Nothing was there.
    Created,
    /// A package's file, diverted to `<path>.distrib`.
    Diverted,
    /// A file no package owns, kept in `backup/<path>`.
    Backup,
    /// A directory made for a managed file's parent.
    Dir,
}

/// Path under the root (relative, no leading `/`) → how it was taken over.
pub type Managed = BTreeMap<String, Takeover>;

#[derive(Debug, Clone)]
pub struct Root {
    pub host: Host,
    pub state: PathBuf,
}

impl Root {
    pub fn new(host: Host, state: &Path) -> Root {
        Root {
            host,
            state: state.to_path_buf(),
        }
    }

    fn record(&self) -> PathBuf {
        self.state.join("managed.json")
    }

    /// The record; a state directory from before takeovers (`links.json`, the links the
    /// agent created) is read as links over nothing.
    pub fn managed(&self) -> Managed {
        if let Ok(b) = fs::read(self.record()) {
            return serde_json::from_slice(&b).unwrap_or_default();
        }
        let legacy: BTreeSet<String> = fs::read(self.state.join("links.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        legacy.into_iter().map(|p| (p, Takeover::Created)).collect()
    }

    fn save(&self, m: &Managed) -> anyhow::Result<()> {
        write_atomic(&self.record(), &serde_json::to_vec_pretty(m)?)?;
        let _ = fs::remove_file(self.state.join("links.json"));
        Ok(())
    }

    /// What a managed file's symlink points at: the path through `current`.
    fn target(&self, rel: &str) -> PathBuf {
        self.state.join("current").join("tree").join(rel)
    }

    fn backup(&self, rel: &str) -> PathBuf {
        self.state.join("backup").join(rel)
    }

    fn is_ours(&self, at: &Path, rel: &str) -> bool {
        fs::read_link(at).is_ok_and(|t| t == self.target(rel))
    }

    /// Makes every file of `tree` a managed symlink, taking over what is at its path. Before
    /// `current` points at `tree` the new links dangle; [`Root::finish`] after the switch
    /// releases the paths `tree` no longer has. A directory where the module ships a file is
    /// refused before anything changes.
    pub fn prepare(&self, tree: &Path) -> anyhow::Result<()> {
        let want = files_of(tree)?;
        fs::create_dir_all(&self.host.root)
            .with_context(|| format!("creating the root {}", self.host.root.display()))?;
        let mut managed = self.managed();
        let mut plan: Vec<(String, Takeover)> = Vec::new();
        for rel in &want {
            if managed.contains_key(rel) {
                continue;
            }
            let mut parent = String::new();
            for part in rel
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, d)| d)
                .unwrap_or(&[])
            {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
                match fs::symlink_metadata(self.host.root.join(&parent)) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => anyhow::bail!(
                        "/{parent} is not a directory on this node, and the state ships /{rel}"
                    ),
                    Err(_) => {
                        if !managed.contains_key(&parent) && !plan.iter().any(|(p, _)| *p == parent)
                        {
                            plan.push((parent.clone(), Takeover::Dir));
                        }
                    }
                }
            }
            let at = self.host.root.join(rel);
            let how = match fs::symlink_metadata(&at) {
                Err(e) if e.kind() == ErrorKind::NotFound => Takeover::Created,
                Err(e) => return Err(e).with_context(|| at.display().to_string()),
                Ok(m) if m.is_dir() => anyhow::bail!(
                    "/{rel} is a directory on this node; the state ships a file there"
                ),
                Ok(_) if self.is_ours(&at, rel) => Takeover::Created,
                Ok(_) if !dpkg::owners(&self.host, &format!("/{rel}"))?.is_empty() => {
                    Takeover::Diverted
                }
                Ok(_) => Takeover::Backup,
            };
            plan.push((rel.clone(), how));
        }
        if !plan.is_empty() {
            managed.extend(plan.iter().cloned());
            self.save(&managed)?;
        }
        for (rel, how) in &plan {
            let at = self.host.root.join(rel);
            match how {
                Takeover::Dir => match fs::create_dir(&at) {
                    Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                        return Err(e).with_context(|| format!("creating {}", at.display()));
                    }
                    _ => {}
                },
                Takeover::Created => {}
                Takeover::Diverted => dpkg::divert(&self.host, &format!("/{rel}"))?,
                Takeover::Backup => {
                    let b = self.backup(rel);
                    let here = fs::symlink_metadata(&at).is_ok() && !self.is_ours(&at, rel);
                    if fs::symlink_metadata(&b).is_ok() {
                        // Kept aside already; a copy interrupted before the original was
                        // removed leaves both, the same.
                        if here && same(&at, &b) {
                            fs::remove_file(&at)?;
                        }
                    } else if here {
                        fs::create_dir_all(b.parent().unwrap_or(&self.state))?;
                        move_file(&at, &b)
                            .with_context(|| format!("moving {} aside", at.display()))?;
                    }
                }
            }
        }
        for rel in &want {
            let at = self.host.root.join(rel);
            if self.is_ours(&at, rel) {
                continue;
            }
            match fs::symlink_metadata(&at) {
                Err(_) => {}
                // Written by something else since it was taken over (an upgrade of a package
                // whose file was not diverted, an operator): not the agent's to delete.
                Ok(_) => anyhow::bail!(
                    "/{rel} changed on the node while the agent took it over; not replacing it"
                ),
            }
            symlink(self.target(rel), &at).with_context(|| format!("linking {}", at.display()))?;
        }
        Ok(())
    }

    /// Releases every managed path that `tree` (the generation now current, or none) does
    /// not have: the symlink removed, then the diversion undone or the backup put back, and
    /// directories the agent made removed once empty.
    pub fn finish(&self, tree: Option<&Path>) -> anyhow::Result<()> {
        let want = match tree {
            Some(t) => files_of(t)?,
            None => BTreeSet::new(),
        };
        let mut managed = self.managed();
        let gone: Vec<(String, Takeover)> = managed
            .iter()
            .filter(|(p, t)| **t != Takeover::Dir && !want.contains(*p))
            .map(|(p, t)| (p.clone(), *t))
            .collect();
        for (rel, how) in gone {
            self.release(&rel, how)?;
            managed.remove(&rel);
            self.save(&managed)?;
        }
        // Deepest first: in byte order a directory's subdirectories follow it.
        let dirs: Vec<String> = managed
            .iter()
            .filter(|(_, t)| **t == Takeover::Dir)
            .map(|(p, _)| p.clone())
            .rev()
            .collect();
        for d in dirs {
            let prefix = format!("{d}/");
            if want.iter().any(|w| w.starts_with(&prefix)) {
                continue;
            }
            match fs::remove_dir(self.host.root.join(&d)) {
                Ok(()) => {
                    managed.remove(&d);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    managed.remove(&d);
                }
                // Something else put files there: the directory stays, and stays recorded.
                Err(_) => {}
            }
        }
        self.save(&managed)
    }

    fn release(&self, rel: &str, how: Takeover) -> anyhow::Result<()> {
        let at = self.host.root.join(rel);
        if self.is_ours(&at, rel) {
            fs::remove_file(&at).with_context(|| format!("removing {}", at.display()))?;
        }
        match how {
            Takeover::Created | Takeover::Dir => {}
            Takeover::Diverted => dpkg::undivert(&self.host, &format!("/{rel}"))?,
            Takeover::Backup => {
                let b = self.backup(rel);
                if fs::symlink_metadata(&b).is_ok() {
                    if fs::symlink_metadata(&at).is_ok() {
                        // A restore interrupted after the copy: the original is back.
                        if same(&at, &b) {
                            fs::remove_file(&b)?;
                            return Ok(());
                        }
                        anyhow::bail!(
                            "/{rel} was replaced on the node; its original stays in {}",
                            b.display()
                        );
                    }
                    move_file(&b, &at).with_context(|| format!("restoring {}", at.display()))?;
                }
            }
        }
        Ok(())
    }
}

/// Moves a file or symlink, keeping its mode, owner and modification time. A rename where it
/// can be; across mounts (a service's state directory is its own mount when systemd sets up
/// a namespace for it) a copy placed with a rename, synced, and only then the original
/// removed: a crash leaves the original, or both the same (see [`same`]), never neither.
fn move_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(18) => {}
        other => return Ok(other?),
    }
    let meta = fs::symlink_metadata(from)?;
    let tmp = to.with_file_name(format!(
        ".{}.moving",
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = fs::remove_file(&tmp);
    if meta.is_symlink() {
        symlink(fs::read_link(from)?, &tmp)?;
    } else {
        fs::copy(from, &tmp)?;
        let f = fs::File::options().write(true).open(&tmp)?;
        f.set_modified(meta.modified()?)?;
        f.sync_all()?;
    }
    std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.is_symlink() {
        // chown clears setuid/setgid bits: the mode goes on last.
        fs::set_permissions(&tmp, meta.permissions())?;
    }
    fs::rename(&tmp, to)?;
    fs::remove_file(from)?;
    Ok(())
}

/// Whether two paths hold the same file: both symlinks to the same target, or both regular
/// files with the same bytes.
fn same(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) if x.is_symlink() && y.is_symlink() => {
            fs::read_link(a).ok() == fs::read_link(b).ok()
        }
        (Ok(x), Ok(y)) if x.is_file() && y.is_file() && x.len() == y.len() => {
            fs::read(a).ok() == fs::read(b).ok()
        }
        _ => false,
    }
}

/// Every non-directory path under `tree`, relative to it.
pub fn files_of(tree: &Path) -> anyhow::Result<BTreeSet<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(base, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(tree, tree, &mut out)?;
    Ok(out)
}
