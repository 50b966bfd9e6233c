//! `index.json`: the first entry of every artifact. It lists every later entry with its type,
//! mode, size and SHA-256, so a reader can verify each file while streaming, before it has
//! seen the whole tar.

use crate::digest::Digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The index's own format version.
pub const INDEX_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub schema_version: u32,
    /// The module name from the manifest.
    pub module: String,
    /// Every entry after `index.json`, in tar order.
    pub entries: Vec<IndexEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Path inside the tar, without a trailing slash (`rootfs/etc/redis`).
    pub path: String,
    #[serde(serialize_with = "ser_mode", deserialize_with = "de_mode")]
    pub mode: u32,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File { size: u64, sha256: Digest },
    Symlink { target: String },
}

fn ser_mode<S: Serializer>(m: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{m:04o}"))
}

fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    u32::from_str_radix(&s, 8)
        .ok()
        .filter(|m| *m <= 0o7777 && s.len() == 4)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid mode {s:?}")))
}

impl Index {
    /// The canonical bytes: pretty JSON with a trailing newline, fields in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
