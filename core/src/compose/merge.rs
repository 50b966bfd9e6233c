//! The composefs digest of the merged tree: what a node's composed generation must hash to.
//!
//! Every inode gets mtime 0. The layers were built with different SOURCE_DATE_EPOCHs, and a
//! merged image that took any one of them would change its digest whenever an unrelated
//! module is rebuilt; 0 is what "no meaningful time" means in the artifact format too.
//! Owners are uid/gid 0 and the root is 0755, as in every module image.

use crate::{
    artifact::composefs::{Tree, TreeBuilder},
    diagnostics::{Code, Finding},
    digest::Digest,
};
use std::sync::mpsc::Receiver;

/// The merged tree's mtime (see the module documentation).
const MERGED_MTIME: u64 = 0;

/// The digest of the tree `merged` yields as it is resolved (sorted by path, so parents
/// come before their children), or `None` when `go` says a conflict withholds it (or is
/// dropped). The tree is built while the paths arrive; only the image waits for `go`.
pub(super) fn digest<'a>(
    merged: impl Iterator<Item = (&'a str, &'a super::Entry)>,
    go: Receiver<bool>,
) -> Option<Result<Digest, Finding>> {
    let tree = tree(merged);
    if !go.recv().unwrap_or(false) {
        return None;
    }
    Some(tree.map(|t| t.digest()))
}

/// The merged tree in composefs' form, from (path, entry) pairs sorted by path.
pub(super) fn tree<'a>(
    merged: impl Iterator<Item = (&'a str, &'a super::Entry)>,
) -> Result<Tree, Finding> {
    let mut tree = TreeBuilder::new(MERGED_MTIME);
    for (path, entry) in merged {
        let rel = path.strip_prefix('/').unwrap_or(path);
        let added = match &entry.kind {
            super::EntryKind::Dir => tree.add_dir(rel, entry.mode),
            super::EntryKind::File { size, content } => {
                tree.add_file(rel, entry.mode, *size, content.clone())
            }
            super::EntryKind::Symlink { target } => tree.add_symlink(rel, target),
        };
        // Unreachable for checked layers without conflicts; reported rather than trusted.
        added.map_err(|e| {
            Finding::new(
                Code::EntryInvalid,
                "composition",
                format!("the merged tree cannot hold {path}: {}", e.reason),
            )
            .field(path)
        })?;
    }
    Ok(tree.finish())
}
