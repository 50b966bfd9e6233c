//! Generations: a composed tree, its composefs image and its metadata under
//! `generations/<n>/`, made active by switching the `current` symlink with one rename (the
//! previous generation stays for rollback). `--root` sees the active tree through per-file
//! symlinks into `current`, as NixOS does for /etc: one rename switches every file at once.

use crate::objects::Objects;
use anyhow::Context as _;
use powernode_module::{
    artifact::hash::{Content, to_digest},
    compose::{Composition, EntryKind},
    desired_state::DesiredState,
    digest::Digest,
};
use serde::{Deserialize, Serialize};
use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
};

/// `generations/<n>/generation.json`: what the generation is, as built and measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub number: u64,
    pub state_id: String,
    pub template_id: String,
    pub modules: Vec<ModuleMeta>,
    /// Measured from the written image (fs-verity digest of `image.cfs`).
    pub composefs_digest: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleMeta {
    pub name: String,
    pub version: String,
    pub composefs_digest: String,
    pub manifest_digest: String,
    /// The packages the module names (apt's `name` or `name=version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<powernode_module::package::PackageSpec>,
    /// The units the module ships or changes itself (unit files, drop-ins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub state: PathBuf,
    pub root: PathBuf,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Layout {
    pub fn generations(&self) -> PathBuf {
        self.state.join("generations")
    }

    fn link(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// The generation `name` (`current`, `previous`) points at.
    pub fn pointed(&self, name: &str) -> Option<u64> {
        let t = fs::read_link(self.link(name)).ok()?;
        t.file_name()?.to_str()?.parse().ok()
    }

    pub fn meta(&self, n: u64) -> anyhow::Result<Meta> {
        let p = self
            .generations()
            .join(n.to_string())
            .join("generation.json");
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    pub fn current(&self) -> Option<Meta> {
        self.meta(self.pointed("current")?).ok()
    }

    pub fn list(&self) -> Vec<u64> {
        let mut v: Vec<u64> = fs::read_dir(self.generations())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        v.sort();
        v
    }

    /// Builds generation `n` from `composition` (checked against `doc`): the materialised
    /// tree, the image, and the metadata, in a temporary directory renamed into place when
    /// complete. The image's measured digest must equal the predicted one: `Ok(Err(why))`
    /// when it does not (a refusal, not worth retrying).
    pub fn build(
        &self,
        doc: &DesiredState,
        state_id: &str,
        composition: &Composition,
        objects: &Objects,
        units: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> anyhow::Result<Result<Meta, String>> {
        let n = self.list().last().copied().unwrap_or(0) + 1;
        fs::create_dir_all(self.generations())?;
        let tmp = tempfile::Builder::new()
            .prefix(".building-")
            .tempdir_in(self.generations())?;
        let tree = tmp.path().join("tree");
        fs::create_dir(&tree)?;
        fs::set_permissions(&tree, fs::Permissions::from_mode(0o755))?;
        let root_user = is_root();
        let entries = composition.entries();
        // Directories first (parents before children), their modes last, so a read-only
        // directory does not stop its own files from being written.
        for e in entries.iter().filter(|e| matches!(e.kind, EntryKind::Dir)) {
            let dest = tree.join(e.path.trim_start_matches('/'));
            fs::create_dir(&dest).with_context(|| format!("creating {}", dest.display()))?;
        }
        // Files and symlinks on two threads while a third computes the image.
        let leaves: Vec<_> = entries
            .iter()
            .filter(|e| !matches!(e.kind, EntryKind::Dir))
            .collect();
        let half = leaves.len().div_ceil(2);
        let (parts, image) = std::thread::scope(|s| {
            let image = s.spawn(|| composition.image());
            let workers: Vec<_> = leaves
                .chunks(half.max(1))
                .map(|chunk| s.spawn(|| materialise(chunk, &tree, objects, root_user)))
                .collect();
            let parts: Vec<_> = workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect();
            (
                parts,
                image
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            )
        });
        // Path → fs-verity digest of every regular file, for `module-agent verify`.
        let mut files = std::collections::BTreeMap::new();
        for p in parts {
            files.extend(p?);
        }
        for e in entries
            .iter()
            .rev()
            .filter(|e| matches!(e.kind, EntryKind::Dir))
        {
            let dest = tree.join(e.path.trim_start_matches('/'));
            // Owner first: chown clears the setuid and setgid bits the mode may carry.
            if root_user {
                std::os::unix::fs::lchown(&dest, Some(0), Some(0))?;
            }
            fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode))?;
        }
        let (image, measured) =
            image.ok_or_else(|| anyhow::anyhow!("the composition is blocked: no image"))?;
        if measured != doc.composefs_digest {
            return Ok(Err(format!(
                "the composed image measures {measured}, not the predicted {}: generation refused",
                doc.composefs_digest
            )));
        }
        fs::write(tmp.path().join("image.cfs"), &image)?;
        fs::write(tmp.path().join("files.json"), serde_json::to_vec(&files)?)?;
        // Every entry's mode as the signed index gives it, for `module-agent verify`.
        let modes: std::collections::BTreeMap<&str, u32> = entries
            .iter()
            .filter(|e| !matches!(e.kind, EntryKind::Symlink { .. }))
            .map(|e| (e.path.trim_start_matches('/'), e.mode))
            .collect();
        fs::write(tmp.path().join("modes.json"), serde_json::to_vec(&modes)?)?;
        let meta = Meta {
            number: n,
            state_id: state_id.to_owned(),
            template_id: doc.template_id.clone(),
            modules: doc
                .modules
                .iter()
                .map(|m| ModuleMeta {
                    name: m.name.clone(),
                    version: m.version.clone(),
                    composefs_digest: m.composefs_digest.to_string(),
                    manifest_digest: m.manifest_digest.to_string(),
                    packages: m.packages.clone(),
                    units: units.get(&m.name).cloned().unwrap_or_default(),
                })
                .collect(),
            composefs_digest: measured.to_string(),
            created_at: now(),
        };
        fs::write(
            tmp.path().join("generation.json"),
            serde_json::to_vec_pretty(&meta)?,
        )?;
        let dir = self.generations().join(n.to_string());
        // Services read the module's files through the root's links into this directory
        // (as their own users: redis, www-data): it is world-readable like /etc, and
        // each file keeps the mode the signed index gives it.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
        let kept = tmp.keep();
        fs::rename(&kept, &dir).with_context(|| format!("placing {}", dir.display()))?;
        Ok(Ok(meta))
    }

    /// Points `name` at generation `n` atomically (a new symlink renamed over the old).
    pub fn point(&self, name: &str, n: u64) -> anyhow::Result<()> {
        let tmp = self.link(&format!(".{name}.new"));
        let _ = fs::remove_file(&tmp);
        symlink(format!("generations/{n}"), &tmp)?;
        fs::rename(&tmp, self.link(name))?;
        Ok(())
    }

    /// Removes the `name` link (no generation is `current`, or none is `previous`).
    pub fn unpoint(&self, name: &str) -> anyhow::Result<()> {
        match fs::remove_file(self.link(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The fs-verity digests of generation `n`'s regular files (`files.json`).
    pub fn file_digests(&self, n: u64) -> Vec<Digest> {
        let files: std::collections::BTreeMap<String, String> =
            fs::read(self.generations().join(n.to_string()).join("files.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
        let mut v: Vec<Digest> = files.values().filter_map(|d| d.parse().ok()).collect();
        v.sort_by_key(|d| d.to_string());
        v.dedup();
        v
    }

    /// Waits for and takes the state directory's lock (`.lock`, an advisory file lock the
    /// kernel drops with the process): one reconcile, rollback or collection at a time.
    pub fn lock(&self) -> anyhow::Result<fs::File> {
        fs::create_dir_all(&self.state)?;
        let f = fs::File::create(self.state.join(".lock"))?;
        f.lock().context("locking the state directory")?;
        Ok(f)
    }

    /// Generation `n`'s materialised tree.
    pub fn tree(&self, n: u64) -> PathBuf {
        self.generations().join(n.to_string()).join("tree")
    }
}

/// Writes `leaves` (files and symlinks) under `tree`; returns path → fs-verity digest of
/// each regular file.
fn materialise(
    leaves: &[&powernode_module::compose::Entry],
    tree: &Path,
    objects: &Objects,
    root_user: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut buf = vec![0u8; 1 << 16];
    let mut out = Vec::new();
    for e in leaves {
        let rel = e.path.trim_start_matches('/');
        let dest = tree.join(rel);
        match &e.kind {
            EntryKind::File { content, .. } => {
                let mut f = fs::File::create(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                let digest = match content {
                    Content::Inline(bytes) => {
                        std::io::Write::write_all(&mut f, bytes)?;
                        powernode_module::artifact::hash::fsverity_of(bytes)
                    }
                    Content::External(id) => {
                        let d = to_digest(id);
                        objects
                            .copy_verified(&d, &mut f, &mut buf)
                            .with_context(|| e.path.clone())?;
                        d
                    }
                };
                // Owner first: chown clears the setuid and setgid bits the mode may carry,
                // and the tree must follow the signed index exactly (`verify` checks).
                if root_user {
                    std::os::unix::fs::fchown(&f, Some(0), Some(0))?;
                }
                f.set_permissions(fs::Permissions::from_mode(e.mode))?;
                out.push((rel.to_owned(), digest.to_string()));
            }
            EntryKind::Symlink { target } => {
                symlink(target, &dest)?;
                if root_user {
                    std::os::unix::fs::lchown(&dest, Some(0), Some(0))?;
                }
            }
            EntryKind::Dir => {}
        }
    }
    Ok(out)
}

/// Whether the agent runs as root (then the tree is owned by 0:0, as in the image). Read
/// from /proc to avoid a libc dependency for one call.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The digest recorded in a generation's metadata, parsed.
pub fn parse(d: &str) -> Option<Digest> {
    d.parse().ok()
}
