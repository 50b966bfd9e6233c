//! Streams an artifact and verifies it against its own `index.json`: every entry's path,
//! type, mode, size and fs-verity digest, canonical ownership and mtimes, and safe paths. On the way
//! it recomputes the composefs digest, so a receiver can compare it with the signed value.
//!
//! Memory stays bounded: file contents are hashed in chunks and never held, except
//! `manifest.yaml` and `module-release`, which are capped.

use super::{
    INDEX_JSON, MANIFEST_YAML, MODULE_RELEASE, ROOTFS,
    composefs::Tree,
    hash::{Content, INLINE_MAX, to_digest},
    index::{EntryKind, INDEX_SCHEMA_VERSION, Index, Inline},
    release::Release,
};
use crate::digest::Digest;
use composefs::fsverity::{FsVerityHasher, Sha256HashValue};
use sha2::{Digest as _, Sha256};
use std::{
    collections::HashSet,
    io::{self, Read, Write},
};
use tar::EntryType;

/// Caps on the entries the reader buffers.
const MAX_INDEX: u64 = 64 << 20;
const MAX_SMALL: u64 = 1 << 20;

/// How many entries an `index.json` may list unless the caller says otherwise. Large
/// modules have a few thousand; the cap keeps a hostile index from costing more than a
/// moment of CPU before it is refused.
pub const DEFAULT_MAX_INDEX_ENTRIES: usize = 200_000;

/// Limits on what [`read_and_verify_with`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadLimits {
    /// The most entries `index.json` may list; more is refused before any entry is checked.
    pub max_index_entries: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_index_entries: DEFAULT_MAX_INDEX_ENTRIES,
        }
    }
}

impl ReadLimits {
    pub fn with_max_index_entries(mut self, n: usize) -> Self {
        self.max_index_entries = n;
        self
    }
}

/// What a verified artifact contains.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub index: Index,
    pub manifest_text: String,
    pub release: Release,
    pub tar_sha256: Digest,
    pub tar_size: u64,
    pub composefs_digest: Digest,
    pub file_count: usize,
}

/// Why an artifact was refused. Each names the entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the artifact: {0}")]
    Io(#[from] io::Error),
    #[error("the first entry must be index.json, found {0:?}")]
    IndexFirst(String),
    #[error("index.json is invalid: {0}")]
    IndexInvalid(String),
    #[error(
        "index.json lists {count} entries, more than the limit of {max}; the artifact is refused before its entries are checked"
    )]
    IndexTooLarge { count: usize, max: usize },
    #[error("entry {path:?}: {why}")]
    Entry { path: String, why: String },
    #[error("index.json lists {0:?}, which the tar does not contain")]
    Missing(String),
    #[error("module-release is invalid: {0}")]
    Release(String),
}

fn entry_err(path: &str, why: impl Into<String>) -> ReadError {
    ReadError::Entry {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// Counts and hashes everything read through it: the digest of the whole tar.
struct Counting<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// Whether `path` is a safe, normal relative path: no `..`, `.`, empty components or
/// leading `/`.
fn is_safe(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// Reads `schema_version` alone first, so an index of another version is refused for what it
/// is rather than for the first field that changed.
fn check_schema_version(bytes: &[u8]) -> Result<(), ReadError> {
    #[derive(serde::Deserialize)]
    struct Head {
        schema_version: u32,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| ReadError::IndexInvalid(e.to_string()))?;
    match head.schema_version {
        INDEX_SCHEMA_VERSION => Ok(()),
        1 => Err(ReadError::IndexInvalid(
            "schema_version 1 (per-file sha256) is no longer read: rebuild the module with this module-builder, whose index carries fs-verity digests".into(),
        )),
        v => Err(ReadError::IndexInvalid(format!(
            "schema_version {v} is not supported (expected {INDEX_SCHEMA_VERSION})"
        ))),
    }
}

fn check_index(index: &Index) -> Result<(), ReadError> {
    if index.schema_version != INDEX_SCHEMA_VERSION {
        return Err(ReadError::IndexInvalid(format!(
            "schema_version {} is not supported (expected {INDEX_SCHEMA_VERSION})",
            index.schema_version
        )));
    }
    let fixed = [MANIFEST_YAML, MODULE_RELEASE, ROOTFS];
    for (i, want) in fixed.iter().enumerate() {
        if index.entries.get(i).map(|e| e.path.as_str()) != Some(*want) {
            return Err(ReadError::IndexInvalid(format!(
                "entry {i} must be {want:?}"
            )));
        }
    }
    let mut seen = HashSet::new();
    for e in &index.entries {
        if !is_safe(&e.path) {
            return Err(ReadError::IndexInvalid(format!("unsafe path {:?}", e.path)));
        }
        if !seen.insert(e.path.as_str()) {
            return Err(ReadError::IndexInvalid(format!(
                "duplicate path {:?}",
                e.path
            )));
        }
    }
    let dirs: HashSet<&str> = index
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.path.as_str())
        .collect();
    for e in &index.entries[3..] {
        let Some(rel) = e.path.strip_prefix("rootfs/") else {
            return Err(ReadError::IndexInvalid(format!(
                "{:?} is outside rootfs/",
                e.path
            )));
        };
        let parent = match rel.rsplit_once('/') {
            Some((p, _)) => &e.path[..ROOTFS.len() + 1 + p.len()],
            None => ROOTFS,
        };
        if !dirs.contains(parent) {
            return Err(ReadError::IndexInvalid(format!(
                "{:?} has no parent directory entry",
                e.path
            )));
        }
    }
    Ok(())
}

/// Counts `index.json`'s entries without building them, so an oversized index is refused
/// for the price of one scan of its bytes.
fn count_entries(bytes: &[u8]) -> Result<usize, ReadError> {
    struct Count(usize);
    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a list of entries")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Entries {
        #[serde(default)]
        entries: Option<Count>,
    }
    let e: Entries =
        serde_json::from_slice(bytes).map_err(|e| ReadError::IndexInvalid(e.to_string()))?;
    Ok(e.entries.map_or(0, |c| c.0))
}

/// Reads a whole artifact from `r`, verifying it, with the default [`ReadLimits`]. Fails on
/// the first problem.
pub fn read_and_verify(r: impl Read) -> Result<Inspection, ReadError> {
    read_and_verify_with(r, &ReadLimits::default())
}

/// Reads a whole artifact from `r`, verifying it under `limits`. Fails on the first problem.
pub fn read_and_verify_with(r: impl Read, limits: &ReadLimits) -> Result<Inspection, ReadError> {
    let mut counting = Counting {
        inner: r,
        hash: Sha256::new(),
        n: 0,
    };
    let mut archive = tar::Archive::new(&mut counting);
    let mut entries = archive.entries()?;

    // index.json first.
    let mut first = entries
        .next()
        .ok_or_else(|| ReadError::IndexFirst("an empty archive".into()))??;
    let first_path = path_of(&first)?;
    if first_path != INDEX_JSON || first.header().entry_type() != EntryType::Regular {
        return Err(ReadError::IndexFirst(first_path));
    }
    let mtime = first.header().mtime()?;
    check_header(&first, INDEX_JSON, 0o644, mtime)?;
    let index_bytes = read_capped(&mut first, MAX_INDEX, INDEX_JSON)?;
    let count = count_entries(&index_bytes)?;
    if count > limits.max_index_entries {
        return Err(ReadError::IndexTooLarge {
            count,
            max: limits.max_index_entries,
        });
    }
    check_schema_version(&index_bytes)?;
    let index: Index =
        serde_json::from_slice(&index_bytes).map_err(|e| ReadError::IndexInvalid(e.to_string()))?;
    check_index(&index)?;

    let mut manifest_text = None;
    let mut release_text = None;
    let mut tree = Tree::new(mtime);
    let mut expected = index.entries.iter();
    let mut file_count = 0;
    let mut buf = vec![0u8; 1 << 20];
    for entry in entries {
        let mut entry = entry?;
        let path = path_of(&entry)?;
        let Some(want) = expected.next() else {
            return Err(entry_err(&path, "is not listed in index.json"));
        };
        if want.path != path {
            return Err(entry_err(
                &path,
                format!(
                    "out of order or unlisted: index.json expects {:?} here",
                    want.path
                ),
            ));
        }
        check_header(&entry, &path, want.mode, mtime)?;
        let et = entry.header().entry_type();
        let rel = path.strip_prefix("rootfs/");
        match (&want.kind, et) {
            (EntryKind::Dir, EntryType::Directory) => {
                if let Some(rel) = rel {
                    tree.add_dir(rel, want.mode)
                        .map_err(|e| entry_err(&path, e.to_string()))?;
                }
            }
            (EntryKind::Symlink { target }, EntryType::Symlink) => {
                let got = entry
                    .link_name()?
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if &got != target {
                    return Err(entry_err(
                        &path,
                        format!("symlink target {got:?} differs from index.json ({target:?})"),
                    ));
                }
                if let Some(rel) = rel {
                    if super::walk::escapes(rel, target) {
                        return Err(entry_err(
                            &path,
                            format!("symlink to {target:?} escapes the module root"),
                        ));
                    }
                    tree.add_symlink(rel, target)
                        .map_err(|e| entry_err(&path, e.to_string()))?;
                }
            }
            (
                EntryKind::File {
                    size,
                    fsverity,
                    inline,
                },
                EntryType::Regular,
            ) => {
                if entry.header().size()? != *size {
                    return Err(entry_err(
                        &path,
                        format!(
                            "size {} differs from index.json ({size})",
                            entry.header().size()?
                        ),
                    ));
                }
                let small = matches!(path.as_str(), MANIFEST_YAML | MODULE_RELEASE);
                let mut verity = FsVerityHasher::<Sha256HashValue, 12>::new();
                let mut kept = Vec::new();
                let keep = small || *size <= INLINE_MAX;
                if small && *size > MAX_SMALL {
                    return Err(entry_err(&path, "is too large"));
                }
                if inline.is_some() != (*size <= INLINE_MAX) {
                    return Err(entry_err(
                        &path,
                        format!(
                            "index.json must carry the bytes of files of at most {INLINE_MAX} bytes, and only those"
                        ),
                    ));
                }
                let mut n = 0u64;
                loop {
                    let k = entry.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    let c = &buf[..k];
                    let _ = verity.write_all(c);
                    if keep {
                        kept.extend_from_slice(c);
                    }
                    n += k as u64;
                }
                if n != *size {
                    return Err(entry_err(&path, "is truncated"));
                }
                let id = verity.digest();
                let got = to_digest(&id);
                if got != *fsverity {
                    return Err(entry_err(
                        &path,
                        format!(
                            "content fs-verity digest {got} differs from index.json ({fsverity})"
                        ),
                    ));
                }
                if let Some(Inline(bytes)) = inline
                    && **bytes != kept[..]
                {
                    return Err(entry_err(
                        &path,
                        "content differs from the inline bytes in index.json",
                    ));
                }
                match path.as_str() {
                    MANIFEST_YAML => manifest_text = Some(utf8(kept, &path)?),
                    MODULE_RELEASE => release_text = Some(utf8(kept, &path)?),
                    _ => {
                        let rel = rel.unwrap_or_default();
                        let content = if *size <= INLINE_MAX {
                            Content::Inline(kept.into_boxed_slice())
                        } else {
                            Content::External(id)
                        };
                        tree.add_file(rel, want.mode, *size, content)
                            .map_err(|e| entry_err(&path, e.to_string()))?;
                        file_count += 1;
                    }
                }
            }
            (_, et) => {
                return Err(entry_err(
                    &path,
                    format!(
                        "has tar type {et:?}, but index.json says {:?}",
                        kind_name(&want.kind)
                    ),
                ));
            }
        }
    }
    if let Some(missing) = expected.next() {
        return Err(ReadError::Missing(missing.path.clone()));
    }
    // Hash whatever follows the end-of-archive marker too: the digest covers every byte.
    io::copy(&mut counting, &mut io::sink())?;

    let release_text = release_text.ok_or_else(|| ReadError::Missing(MODULE_RELEASE.into()))?;
    let release = Release::parse(&release_text).map_err(ReadError::Release)?;
    if release.source_date_epoch != mtime {
        return Err(ReadError::Release(format!(
            "SOURCE_DATE_EPOCH {} differs from the entries' mtime {mtime}",
            release.source_date_epoch
        )));
    }
    if release.name != index.module {
        return Err(ReadError::Release(format!(
            "NAME {:?} differs from index.json's module {:?}",
            release.name, index.module
        )));
    }
    Ok(Inspection {
        composefs_digest: tree.digest(),
        index,
        manifest_text: manifest_text.ok_or_else(|| ReadError::Missing(MANIFEST_YAML.into()))?,
        release,
        tar_sha256: Digest::from_bytes(counting.hash.finalize().into()),
        tar_size: counting.n,
        file_count,
    })
}

fn kind_name(k: &EntryKind) -> &'static str {
    match k {
        EntryKind::Dir => "dir",
        EntryKind::File { .. } => "file",
        EntryKind::Symlink { .. } => "symlink",
    }
}

fn utf8(v: Vec<u8>, path: &str) -> Result<String, ReadError> {
    String::from_utf8(v).map_err(|_| entry_err(path, "is not valid UTF-8"))
}

fn path_of<R: Read>(e: &tar::Entry<'_, R>) -> Result<String, ReadError> {
    let raw = e.path_bytes();
    let s = std::str::from_utf8(&raw)
        .map_err(|_| entry_err(&String::from_utf8_lossy(&raw), "path is not UTF-8"))?;
    let s = s.strip_suffix('/').unwrap_or(s);
    if !is_safe(s) {
        return Err(entry_err(
            s,
            "unsafe path (absolute, empty or with . / .. components)",
        ));
    }
    Ok(s.to_owned())
}

fn check_header<R: Read>(
    e: &tar::Entry<'_, R>,
    path: &str,
    mode: u32,
    mtime: u64,
) -> Result<(), ReadError> {
    let h = e.header();
    let et = h.entry_type();
    if !matches!(
        et,
        EntryType::Regular | EntryType::Directory | EntryType::Symlink
    ) {
        return Err(entry_err(
            path,
            format!(
                "tar type {et:?} is not allowed in a module (only files, directories, symlinks)"
            ),
        ));
    }
    if h.uid()? != 0 || h.gid()? != 0 {
        return Err(entry_err(path, "is not owned by uid/gid 0"));
    }
    if h.mtime()? != mtime {
        return Err(entry_err(
            path,
            format!(
                "mtime {} differs from SOURCE_DATE_EPOCH {mtime}",
                h.mtime()?
            ),
        ));
    }
    let got = h.mode()? & 0o7777;
    if got != mode {
        return Err(entry_err(
            path,
            format!("mode {got:04o} differs from index.json ({mode:04o})"),
        ));
    }
    Ok(())
}

fn read_capped<R: Read>(r: &mut R, cap: u64, path: &str) -> Result<Vec<u8>, ReadError> {
    let mut v = Vec::new();
    r.take(cap + 1).read_to_end(&mut v)?;
    if v.len() as u64 > cap {
        return Err(entry_err(path, "is too large"));
    }
    Ok(v)
}
