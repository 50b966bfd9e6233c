//! A generation's composefs image, mounted the way composefs mounts it: the EROFS image
//! (`image.cfs`, metadata only) as overlayfs' lower layer and the object store as its
//! data-only layer, read-only, mounted over the generation's materialised `tree/`. What
//! services read through the root's links is then what the signed state says, as the kernel
//! serves it from the image, not a copy the agent wrote.
//!
//! Where the object store's file system supports fs-verity, every object the image needs gets
//! fs-verity enabled (the kernel then measures it; it must measure to its name) and the
//! overlay is mounted with `verity=require`: a flipped byte in an object fails the read with
//! EIO. Where the kernel cannot mount at all (no EROFS or overlayfs, no privilege), the plain
//! tree underneath is what is read, and the generation's `mount.json` says so. The mount code
//! is the composefs crate's (`composefs::mount`), not a home-made reader.

use crate::objects::Objects;
use composefs::{
    fsverity::{
        EnableVerityError, FsVerityHashValue as _, Sha256HashValue, enable_verity_raw,
        measure_verity,
    },
    mount::{MountOptions, VerityRequirement, composefs_fsmount, mount_at},
};
use powernode_module::digest::Digest;
use serde::{Deserialize, Serialize};
use std::{
    fs::{self, File},
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

/// How a generation is served (`generations/<n>/mount.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountState {
    /// The image is mounted over `tree/`.
    pub mounted: bool,
    pub verity: Verity,
    /// Why not mounted, or not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verity {
    /// Every object has fs-verity and the overlay requires it.
    Enforced,
    /// The object store's file system has no fs-verity (or the image is not mounted).
    Unsupported,
}

impl std::fmt::Display for Verity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verity::Enforced => "enforced",
            Verity::Unsupported => "unsupported",
        })
    }
}

/// Whether `path` is a mount point (by `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let want = path.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes space, tab, newline and backslash as octal.
        .any(|m| {
            m.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\134", "\\")
                == want
        })
}

/// The generation's recorded mount state.
pub fn state(gen_dir: &Path) -> Option<MountState> {
    serde_json::from_slice(&fs::read(gen_dir.join("mount.json")).ok()?).ok()
}

/// Enables fs-verity on each object and checks the kernel's measurement against its name.
/// `Ok(false)` when the file system has no fs-verity.
fn enable_verity(objects: &Objects, digests: &[Digest]) -> anyhow::Result<bool> {
    // Nothing to enforce proves nothing about the file system.
    if digests.is_empty() {
        return Ok(false);
    }
    for d in digests {
        let path = objects.path(d);
        let f = File::open(&path)?;
        match enable_verity_raw::<Sha256HashValue>(f.as_fd()) {
            Ok(()) | Err(EnableVerityError::AlreadyEnabled) => {}
            Err(EnableVerityError::FilesystemNotSupported) => return Ok(false),
            Err(e) => anyhow::bail!("enabling fs-verity on {}: {e}", path.display()),
        }
        let measured = measure_verity::<Sha256HashValue>(f.as_fd())
            .map_err(|e| anyhow::anyhow!("measuring {}: {e}", path.display()))?;
        let hex = measured.to_hex();
        if hex != d.hex() {
            anyhow::bail!(
                "object {} measures sha256:{hex} with fs-verity: altered",
                path.display()
            );
        }
    }
    Ok(true)
}

/// Mounts generation `gen_dir`'s image over its `tree/`, with the objects it references
/// (`digests`) as the data layer. Never fails: what could not be done is in the answer.
pub fn mount(gen_dir: &Path, objects: &Objects, digests: &[Digest]) -> MountState {
    let tree = gen_dir.join("tree");
    if is_mounted(&tree)
        && let Some(s) = state(gen_dir)
    {
        return s;
    }
    let result = (|| -> anyhow::Result<MountState> {
        let verity = enable_verity(objects, digests)?;
        let image = OwnedFd::from(File::open(gen_dir.join("image.cfs"))?);
        let data = File::open(objects.dir())?;
        let name = gen_dir
            .file_name()
            .map(|n| format!("module-agent-generation-{}", n.to_string_lossy()))
            .unwrap_or_default();
        let requirement = if verity {
            VerityRequirement::Required
        } else {
            VerityRequirement::Disabled
        };
        let fs = composefs_fsmount(
            image,
            &name,
            &[data.as_fd()],
            requirement,
            &MountOptions::default(),
        )?;
        mount_at(fs, File::open(gen_dir)?, "tree")?;
        Ok(MountState {
            mounted: true,
            verity: if verity {
                Verity::Enforced
            } else {
                Verity::Unsupported
            },
            note: (!verity).then(|| {
                "the object store's file system has no fs-verity: objects are checked when \
                 fetched and by `module-agent verify`, not on every read"
                    .to_owned()
            }),
        })
    })();
    let s = result.unwrap_or_else(|e| MountState {
        mounted: false,
        verity: Verity::Unsupported,
        note: Some(format!(
            "the composefs image could not be mounted ({e:#}); the materialised tree is used"
        )),
    });
    match &s.note {
        Some(note) if !s.mounted => {
            tracing::warn!(generation = %gen_dir.display(), note, "composefs")
        }
        Some(note) => tracing::info!(generation = %gen_dir.display(), note, "composefs"),
        None => {}
    }
    let _ = crate::files::write_atomic(
        &gen_dir.join("mount.json"),
        &serde_json::to_vec_pretty(&s).unwrap_or_default(),
    );
    s
}

/// Detaches the image mounted over `gen_dir/tree`, if any (lazily: a process still reading
/// it keeps its files until it closes them).
pub fn unmount(gen_dir: &Path) {
    let tree = gen_dir.join("tree");
    if is_mounted(&tree)
        && let Err(e) =
            crate::system::run(std::process::Command::new("umount").arg("-l").arg(&tree))
    {
        tracing::warn!(error = %e, "unmounting a generation");
    }
}
