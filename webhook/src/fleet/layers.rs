//! A stored version as a composition layer: its manifest and its file index (`index.json`,
//! kept at ingest), with paths turned into absolute target paths.

use super::resolve::Candidate;
use crate::store::VersionRow;
use powernode_module::{
    artifact::index::Index,
    compose::{self, Layer},
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
        entries: compose::entries_of(&index),
    })
}
