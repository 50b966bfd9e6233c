//! A module's `index.json` as composition entries: the rootfs entries with absolute target
//! paths (`rootfs/etc/x` → `/etc/x`) and the content composefs records (inline bytes of
//! small files, else the fs-verity digest). The receiver and the node agent both compose
//! from this, so they predict and build the same tree.

use super::{Entry, EntryKind};
use crate::artifact::{
    ROOTFS,
    hash::{Content, to_hash_value},
    index::{EntryKind as IndexKind, Index},
};

/// The rootfs entries of `index`, in index order (parents first).
pub fn entries_of(index: &Index) -> Vec<Entry> {
    let prefix = format!("{ROOTFS}/");
    index
        .entries
        .iter()
        .filter_map(|e| {
            let rel = e.path.strip_prefix(&prefix)?;
            let kind = match &e.kind {
                IndexKind::Dir => EntryKind::Dir,
                IndexKind::Symlink { target } => EntryKind::Symlink {
                    target: target.clone(),
                },
                IndexKind::File {
                    size,
                    fsverity,
                    inline,
                } => EntryKind::File {
                    size: *size,
                    content: match inline {
                        Some(b) => Content::Inline(b.0.clone()),
                        None => Content::External(to_hash_value(fsverity)),
                    },
                },
            };
            Some(Entry {
                path: format!("/{rel}"),
                mode: e.mode,
                kind,
            })
        })
        .collect()
}
