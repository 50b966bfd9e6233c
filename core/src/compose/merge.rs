//! The composefs digest of the merged tree: what a node's composed generation must hash to.
//!
//! Every inode gets mtime 0. The layers were built with different SOURCE_DATE_EPOCHs, and a
//! merged image that took any one of them would change its digest whenever an unrelated
//! module is rebuilt; 0 is what "no meaningful time" means in the artifact format too.
//! Owners are uid/gid 0 and the root is 0755, as in every module image.

use super::owners::Merged;
use crate::{
    artifact::composefs::Tree,
    diagnostics::{Code, Finding},
    digest::Digest,
};

/// The merged tree's mtime (see the module documentation).
const MERGED_MTIME: u64 = 0;

/// `merged` must be sorted by path, so parents are added before their children.
pub(super) fn digest(merged: &[Merged]) -> Result<Digest, Finding> {
    Ok(tree(merged.iter().map(|m| (m.path, m.entry)))?.digest())
}

/// The merged tree in composefs' form, from (path, entry) pairs sorted by path.
pub(super) fn tree<'a>(
    merged: impl Iterator<Item = (&'a str, &'a super::Entry)>,
) -> Result<Tree, Finding> {
    let mut tree = Tree::new(MERGED_MTIME);
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
    Ok(tree)
}
