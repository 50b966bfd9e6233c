//! Scans `rootfs/` with `lstat` only: nothing is followed, and anything that could smuggle
//! host state into an artifact (devices, fifos, sockets, hardlinks, escaping symlinks, odd
//! names) is refused with the path that caused it.

use std::{
    fs, io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

/// What an entry is. Only these three kinds can ever be in an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: String },
}

/// Identity and change markers of a file, compared again when it is read, so a file that is
/// replaced or modified during the build is caught (as GNU tar's "file changed as we read it").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Self {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// One scanned entry, relative to `rootfs/` (`etc/redis/redis.conf`).
#[derive(Debug, Clone)]
pub struct Node {
    pub rel: String,
    pub kind: Kind,
    /// Permission bits as found on disk (before normalisation).
    pub disk_mode: u32,
    pub stamp: Stamp,
}

impl Node {
    /// The absolute target path the manifest's globs match (`/etc/redis/redis.conf`).
    pub fn target(&self) -> String {
        format!("/{}", self.rel)
    }
}

/// Why the rootfs cannot be packed. Every variant names the offending path.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(
        "{0}: no rootfs/ directory; put the files the module ships under rootfs/ (e.g. rootfs/etc/…)"
    )]
    Missing(PathBuf),
    #[error("{0}: rootfs/ must be a real directory, not a symlink or a file")]
    NotADirectory(PathBuf),
    #[error(
        "{path}: {kind} cannot be shipped in a module (only directories, regular files and symlinks)"
    )]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error(
        "{path}: is a hardlink ({nlink} links); modules cannot carry hardlinks, copy the file instead"
    )]
    Hardlink { path: PathBuf, nlink: u64 },
    #[error(
        "{path}: symlink to {target:?} points outside the module's root; use a path that stays inside it"
    )]
    SymlinkEscapes { path: PathBuf, target: String },
    #[error("{path}: {why}")]
    NameInvalid { path: PathBuf, why: &'static str },
    #[error("{path}: vanished during the build")]
    Vanished { path: PathBuf },
    #[error(
        "{path}: changed during the build ({what}); stop whatever is writing to rootfs/ and build again"
    )]
    Changed { path: PathBuf, what: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl WalkError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            WalkError::Vanished {
                path: path.to_owned(),
            }
        } else {
            WalkError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    /// The stable finding code for this error.
    pub fn code(&self) -> crate::diagnostics::Code {
        use crate::diagnostics::Code;
        match self {
            WalkError::Missing(_) | WalkError::NotADirectory(_) => Code::RootfsMissing,
            WalkError::UnsupportedType { .. } => Code::RootfsUnsupportedType,
            WalkError::Hardlink { .. } => Code::RootfsHardlink,
            WalkError::SymlinkEscapes { .. } => Code::RootfsSymlinkEscapes,
            WalkError::NameInvalid { .. } => Code::RootfsNameInvalid,
            WalkError::Vanished { .. } | WalkError::Changed { .. } | WalkError::Io { .. } => {
                Code::RootfsUnreadable
            }
        }
    }
}

/// Scans `rootfs`, depth-first, each directory's entries in byte order of their names.
pub fn walk(rootfs: &Path) -> Result<Vec<Node>, WalkError> {
    let meta = match fs::symlink_metadata(rootfs) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(WalkError::Missing(rootfs.to_owned()));
        }
        Err(e) => return Err(WalkError::io(rootfs, e)),
    };
    if !meta.file_type().is_dir() {
        return Err(WalkError::NotADirectory(rootfs.to_owned()));
    }
    let mut out = Vec::new();
    walk_dir(rootfs, "", &mut out)?;
    Ok(out)
}

fn walk_dir(dir: &Path, rel: &str, out: &mut Vec<Node>) -> Result<(), WalkError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| WalkError::io(dir, e))? {
        let entry = entry.map_err(|e| WalkError::io(dir, e))?;
        names.push(entry.file_name());
    }
    // Byte order of the raw names: independent of locale and of the directory's read order.
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(WalkError::NameInvalid {
                path,
                why: "name is not valid UTF-8",
            });
        };
        if name.chars().any(char::is_control) {
            return Err(WalkError::NameInvalid {
                path,
                why: "name contains a control character (newline, tab, …)",
            });
        }
        let child_rel = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(|e| WalkError::io(&path, e))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                return Err(WalkError::Hardlink {
                    path,
                    nlink: meta.nlink(),
                });
            }
            Kind::File { size: meta.size() }
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| WalkError::io(&path, e))?;
            let Some(target) = target.to_str().map(str::to_owned) else {
                return Err(WalkError::NameInvalid {
                    path,
                    why: "symlink target is not valid UTF-8",
                });
            };
            if target.is_empty() || escapes(&child_rel, &target) {
                return Err(WalkError::SymlinkEscapes { path, target });
            }
            Kind::Symlink { target }
        } else {
            let kind = if ft.is_block_device() {
                "a block device node"
            } else if ft.is_char_device() {
                "a character device node"
            } else if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "an unknown file type"
            };
            return Err(WalkError::UnsupportedType { path, kind });
        };
        let is_dir = kind == Kind::Dir;
        out.push(Node {
            rel: child_rel.clone(),
            kind,
            disk_mode: meta.mode() & 0o7777,
            stamp: Stamp::of(&meta),
        });
        if is_dir {
            walk_dir(&path, &child_rel, out)?;
        }
    }
    Ok(())
}

/// Whether a relative symlink at `link_rel` climbs above the module root when resolved.
/// Absolute targets name paths in the target system (where the module is the root), so they
/// cannot leave it; `..` at `/` stays at `/` as in the kernel. Relative targets are resolved
/// lexically from the link's directory.
pub fn escapes(link_rel: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: i64 = link_rel.matches('/').count() as i64;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::escapes;

    #[test]
    fn relative_symlinks_must_stay_inside() {
        assert!(!escapes(
            "etc/nginx/sites-enabled/default",
            "../sites-available/default"
        ));
        assert!(!escapes("etc/a", "/etc/b"));
        assert!(!escapes("etc/a", "b/../c"));
        assert!(escapes("etc/a", "../../etc/shadow"));
        assert!(escapes("a", "../x"));
        assert!(!escapes("etc/x/a", "y/../../../z"));
        assert!(escapes("etc/x/a", "y/../../../../z"));
    }
}
