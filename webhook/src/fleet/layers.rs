//! A stored version as a composition layer: its manifest and its file index (`index.json`,
//! kept at ingest), with paths turned into absolute target paths.

use super::resolve::Candidate;
use crate::store::VersionRow;
use powernode_module::{
    artifact::{
        ROOTFS,
        hash::{Content, to_hash_value},
        index::{EntryKind as IndexKind, Index},
    },
    compose::{Entry, EntryKind, Layer},
};

/// The layer of a live version. Fails only when the stored index is unreadable or of an
/// older format (it was verified at ingest).
pub fn layer_of(c: &Candidate<VersionRow>) -> Result<Layer, String> {
    let index = c
        .data
        .file_index
        .as_ref()
        .ok_or("no file index was stored at ingest")?;
    let index: Index = serde_json::from_value(index.clone()).map_err(|e| {
        format!("stored file index: {e} (ingested by an older receiver? re-ingest it)")
    })?;
    Ok(Layer {
        manifest: c.manifest.clone(),
        version: c.version.clone(),
        entries: entries(&index),
    })
}

/// The rootfs entries of an index as absolute target paths (`rootfs/etc/x` → `/etc/x`).
pub fn entries(index: &Index) -> Vec<Entry> {
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
