//! The composefs digest: fs-verity SHA-256 of the EROFS image (format 1) of `rootfs/`, as
//! `mkcomposefs --min-version=1 --print-digest-only` prints it for the normalised tree
//! (uid/gid 0, every mtime = SOURCE_DATE_EPOCH, normalised modes, no xattrs).
//!
//! The builder feeds it from disk and the reader from the tar, so a receiver can recompute
//! the digest an author signed without trusting the author's numbers.

use super::hash::Content;
use crate::digest::Digest;
use composefs::{
    erofs::format::FormatVersion,
    fsverity::{FsVerityHashValue, Sha256HashValue},
    generic_tree::{LeafContent, Stat},
    tree::{Directory, FileSystem, Inode, RegularFile},
};
use std::{collections::BTreeMap, ffi::OsStr};

/// A composefs tree being assembled, parents before children.
#[derive(Debug)]
pub struct Tree {
    fs: FileSystem<Sha256HashValue>,
    mtime: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("composefs: cannot add {path}: {reason}")]
pub struct TreeError {
    pub path: String,
    pub reason: String,
}

impl Tree {
    /// A tree whose root directory (rootfs/ itself) has mode 0755.
    pub fn new(mtime: u64) -> Self {
        let mtime = i64::try_from(mtime).unwrap_or(i64::MAX);
        let mut t = Tree {
            fs: FileSystem::new(Stat::uninitialized()),
            mtime,
        };
        t.fs.set_root_stat(t.stat(0o755));
        t
    }

    fn stat(&self, mode: u32) -> Stat {
        Stat {
            st_mode: mode & 0o7777,
            st_uid: 0,
            st_gid: 0,
            st_mtim_sec: self.mtime,
            st_mtim_nsec: 0,
            xattrs: BTreeMap::new(),
        }
    }

    fn insert(&mut self, rel: &str, inode: Inode<Sha256HashValue>) -> Result<(), TreeError> {
        let err = |reason: String| TreeError {
            path: rel.to_owned(),
            reason,
        };
        let (dir, name) = self
            .fs
            .root
            .split_mut(OsStr::new(rel))
            .map_err(|e| err(e.to_string()))?;
        if !dir.insert(name, inode) {
            return Err(err("duplicate path".into()));
        }
        Ok(())
    }

    /// Adds a directory at `rel` (relative to rootfs/, e.g. `etc/redis`).
    pub fn add_dir(&mut self, rel: &str, mode: u32) -> Result<(), TreeError> {
        let dir = Directory::new(self.stat(mode));
        self.insert(rel, Inode::Directory(Box::new(dir)))
    }

    pub fn add_file(
        &mut self,
        rel: &str,
        mode: u32,
        size: u64,
        content: Content,
    ) -> Result<(), TreeError> {
        let file = match content {
            Content::Inline(data) => RegularFile::Inline(data),
            Content::External(id) => RegularFile::External(id, size),
        };
        let id = self
            .fs
            .push_leaf(self.stat(mode), LeafContent::Regular(file));
        self.insert(rel, Inode::leaf(id))
    }

    pub fn add_symlink(&mut self, rel: &str, target: &str) -> Result<(), TreeError> {
        let id = self.fs.push_leaf(
            self.stat(0o777),
            LeafContent::Symlink(Box::from(OsStr::new(target))),
        );
        self.insert(rel, Inode::leaf(id))
    }

    /// The fs-verity digest of the format-1 EROFS image.
    pub fn digest(&self) -> Digest {
        let id = self.fs.compute_image_id(FormatVersion::V1);
        Digest::from_hex(&id.to_hex()).unwrap_or_else(|_| Digest::from_bytes([0; 32]))
    }

    /// The format-1 EROFS image itself and its fs-verity digest (what a node mounts, and
    /// what [`Tree::digest`] predicts).
    pub fn image(&self) -> (Box<[u8]>, Digest) {
        let (bytes, id) = self.fs.compute_image_bytes(FormatVersion::V1);
        let d = Digest::from_hex(&id.to_hex()).unwrap_or_else(|_| Digest::from_bytes([0; 32]));
        (bytes, d)
    }

    /// The tree in composefs dumpfile format (what `mkcomposefs --from-file` reads), so a
    /// digest can be cross-checked with the C tools.
    pub fn dumpfile(&self) -> String {
        let mut out = Vec::new();
        let _ = composefs::dumpfile::write_dumpfile(&mut out, &self.fs);
        String::from_utf8_lossy(&out).into_owned()
    }
}
