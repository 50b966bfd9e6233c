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
        let file = regular_file(size, content);
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

/// Builds a [`Tree`] from paths given parents first, keeping the directories being filled
/// open on a stack instead of walking from the root for every path (a merged tree has
/// 100,000). Any parents-first order works; in plain byte order (`etc/a`, `etc/a-b`,
/// `etc/a/x`) a directory closed too early is taken out of its parent again. The tree is the
/// one [`Tree`]'s own `add_*` calls would build from the same paths.
#[derive(Debug)]
pub struct TreeBuilder {
    tree: Tree,
    /// The open directories below the root, outermost first, with their paths relative to
    /// rootfs/ (`etc`, `etc/redis`). The innermost is where the next path most likely goes.
    open: Vec<(String, Directory<Sha256HashValue>)>,
}

impl TreeBuilder {
    /// As [`Tree::new`].
    pub fn new(mtime: u64) -> Self {
        TreeBuilder {
            tree: Tree::new(mtime),
            open: Vec::new(),
        }
    }

    /// Adds a directory at `rel` (relative to rootfs/, e.g. `etc/redis`).
    pub fn add_dir(&mut self, rel: &str, mode: u32) -> Result<(), TreeError> {
        let name = self.seek_parent(rel)?;
        if self.top().lookup(OsStr::new(name)).is_some() {
            return Err(error(rel, "duplicate path".into()));
        }
        let dir = Directory::new(self.tree.stat(mode));
        self.open.push((rel.to_owned(), dir));
        Ok(())
    }

    pub fn add_file(
        &mut self,
        rel: &str,
        mode: u32,
        size: u64,
        content: Content,
    ) -> Result<(), TreeError> {
        let file = regular_file(size, content);
        self.add_leaf(rel, mode, LeafContent::Regular(file))
    }

    pub fn add_symlink(&mut self, rel: &str, target: &str) -> Result<(), TreeError> {
        self.add_leaf(
            rel,
            0o777,
            LeafContent::Symlink(Box::from(OsStr::new(target))),
        )
    }

    /// The tree, every open directory closed into its parent.
    pub fn finish(mut self) -> Tree {
        while !self.open.is_empty() {
            self.close();
        }
        self.tree
    }

    fn add_leaf(
        &mut self,
        rel: &str,
        mode: u32,
        content: LeafContent<RegularFile<Sha256HashValue>>,
    ) -> Result<(), TreeError> {
        let name = self.seek_parent(rel)?;
        let stat = self.tree.stat(mode);
        let id = self.tree.fs.push_leaf(stat, content);
        if !self.top().insert(OsStr::new(name), Inode::leaf(id)) {
            return Err(error(rel, "duplicate path".into()));
        }
        Ok(())
    }

    /// Opens `rel`'s parent directory and returns `rel`'s last component.
    fn seek_parent<'r>(&mut self, rel: &'r str) -> Result<&'r str, TreeError> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() || name == "." || name == ".." {
            return Err(error(
                rel,
                format!("Invalid filename {:?}", OsStr::new(rel)),
            ));
        }
        self.seek(parent).map_err(|reason| error(rel, reason))?;
        Ok(name)
    }

    /// The innermost open directory (the root when none is).
    fn top(&mut self) -> &mut Directory<Sha256HashValue> {
        match self.open.last_mut() {
            Some((_, dir)) => dir,
            None => &mut self.tree.fs.root,
        }
    }

    /// Makes the directory at `path` (`""`: the root) the innermost open one: closes open
    /// directories it is not inside, then opens its missing ancestors and itself, each taken
    /// out of its parent.
    fn seek(&mut self, path: &str) -> Result<(), String> {
        loop {
            let top = self.open.last().map_or("", |(p, _)| p.as_str());
            if top == path {
                return Ok(());
            }
            let below = if top.is_empty() {
                Some(path)
            } else {
                path.strip_prefix(top).and_then(|r| r.strip_prefix('/'))
            };
            let Some(below) = below else {
                self.close();
                continue;
            };
            let name = below.split('/').next().unwrap_or(below);
            let full = if top.is_empty() {
                name.to_owned()
            } else {
                format!("{top}/{name}")
            };
            let os = OsStr::new(name);
            match self.top().pop(os) {
                Some(Inode::Directory(dir)) => self.open.push((full, *dir)),
                Some(other) => {
                    self.top().insert(os, other);
                    return Err(format!("Directory entry {os:?} is not a subdirectory"));
                }
                None => return Err(format!("Directory entry {os:?} does not exist")),
            }
        }
    }

    /// Closes the innermost open directory into its parent.
    fn close(&mut self) {
        if let Some((path, dir)) = self.open.pop() {
            let name = path.rsplit('/').next().unwrap_or(&path);
            self.top()
                .insert(OsStr::new(name), Inode::Directory(Box::new(dir)));
        }
    }
}

fn error(rel: &str, reason: String) -> TreeError {
    TreeError {
        path: rel.to_owned(),
        reason,
    }
}

/// A regular file's content as composefs holds it: inline bytes, or an object by digest.
fn regular_file(size: u64, content: Content) -> RegularFile<Sha256HashValue> {
    match content {
        Content::Inline(data) => RegularFile::Inline(data),
        Content::External(id) => RegularFile::External(id, size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths whose byte order is not depth-first (`a-b` and `a.conf` sort between `a` and
    /// `a/x`), with every kind of entry.
    fn paths() -> Vec<(&'static str, u8)> {
        let mut v = vec![
            ("a", 0),
            ("a-b", 1),
            ("a.conf", 2),
            ("a/x", 0),
            ("a/x-y", 1),
            ("a/x/z", 2),
            ("a/x/z.d", 0),
            ("a/x/z.d/deep", 1),
            ("a/x/zz", 3),
            ("b", 0),
            ("b/c", 3),
            ("ba", 1),
        ];
        v.sort();
        v
    }

    fn add<T>(
        t: &mut T,
        rel: &str,
        kind: u8,
        dir: fn(&mut T, &str, u32) -> Result<(), TreeError>,
        file: fn(&mut T, &str, u32, u64, Content) -> Result<(), TreeError>,
        link: fn(&mut T, &str, &str) -> Result<(), TreeError>,
    ) -> Result<(), TreeError> {
        match kind {
            0 => dir(t, rel, 0o750),
            1 => file(t, rel, 0o644, 3, Content::Inline(Box::from(&b"abc"[..]))),
            2 => {
                let id = Sha256HashValue::from_hex(format!("{:064x}", rel.len())).unwrap();
                file(t, rel, 0o755, 9000, Content::External(id))
            }
            _ => link(t, rel, "../target"),
        }
    }

    fn by_walk(paths: &[(&str, u8)]) -> Tree {
        let mut t = Tree::new(0);
        for (rel, kind) in paths {
            add(
                &mut t,
                rel,
                *kind,
                Tree::add_dir,
                Tree::add_file,
                Tree::add_symlink,
            )
            .unwrap();
        }
        t
    }

    fn by_builder(paths: &[(&str, u8)]) -> Result<Tree, TreeError> {
        let mut b = TreeBuilder::new(0);
        for (rel, kind) in paths {
            add(
                &mut b,
                rel,
                *kind,
                TreeBuilder::add_dir,
                TreeBuilder::add_file,
                TreeBuilder::add_symlink,
            )?;
        }
        Ok(b.finish())
    }

    #[test]
    fn the_builder_builds_the_tree_the_path_walk_builds() {
        let sorted = paths();
        let want = by_walk(&sorted);
        let got = by_builder(&sorted).unwrap();
        assert_eq!(got.dumpfile(), want.dumpfile());
        assert_eq!(got.digest(), want.digest());
        // Depth-first order (as a tar lists it) builds the same tree.
        let mut dfs = sorted.clone();
        dfs.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        assert_ne!(dfs, sorted);
        assert_eq!(by_builder(&dfs).unwrap().digest(), want.digest());
    }

    #[test]
    fn the_builder_refuses_what_the_path_walk_refuses() {
        for bad in [
            vec![("a/x", 1)],                       // parent missing
            vec![("a", 1), ("a/x", 1)],             // parent is a file
            vec![("a", 0), ("a", 0)],               // duplicate directory
            vec![("a", 0), ("a/x", 1), ("a", 1)],   // duplicate, directory closed first
            vec![("a", 0), ("a/x", 1), ("a/x", 3)], // duplicate leaf
            vec![("", 1)],                          // no name
        ] {
            let walk = {
                let mut t = Tree::new(0);
                bad.iter().try_for_each(|(rel, kind)| {
                    add(
                        &mut t,
                        rel,
                        *kind,
                        Tree::add_dir,
                        Tree::add_file,
                        Tree::add_symlink,
                    )
                })
            };
            assert!(walk.is_err(), "{bad:?}");
            assert!(by_builder(&bad).is_err(), "{bad:?}");
        }
    }
}
