//! `index.json`: the first entry of every artifact. It lists every later entry with its type,
//! mode, size and fs-verity digest, so a reader can verify each file while streaming, before
//! it has seen the whole tar.
//!
//! The per-file content address is the fs-verity digest (SHA-256, 4 KiB blocks, no salt), the
//! one composefs records and the kernel checks at mount time. Files of at most
//! [`INLINE_MAX`](super::hash::INLINE_MAX) bytes also carry their bytes (`inline`, base64),
//! because composefs stores those in the image instead of referring to an object. With both,
//! the composefs digest of any composition of modules can be computed from indexes alone.

use crate::digest::Digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The index's own format version. Version 1 carried a per-file SHA-256 instead of the
/// fs-verity digest; readers refuse it with a request to rebuild.
pub const INDEX_SCHEMA_VERSION: u32 = 2;

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
    File {
        size: u64,
        /// fs-verity digest of the content.
        fsverity: Digest,
        /// The bytes of a file of at most 64 bytes, which composefs stores inline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inline: Option<Inline>,
    },
    Symlink {
        target: String,
    },
}

/// Bytes carried in the index, as standard base64 in JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct Inline(pub Box<[u8]>);

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inline({} bytes)", self.0.len())
    }
}

impl Serialize for Inline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Inline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("inline: invalid base64: {e}")))?;
        if bytes.len() as u64 > super::hash::INLINE_MAX {
            return Err(serde::de::Error::custom(format!(
                "inline: {} bytes, at most {} allowed",
                bytes.len(),
                super::hash::INLINE_MAX
            )));
        }
        Ok(Inline(bytes.into_boxed_slice()))
    }
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
