//! Per-file digests, computed before the tar is written because `index.json` (the first
//! entry) carries them. One digest per file, the fs-verity digest: it is both the index's
//! content address and what composefs records, so every file is read and hashed once. Two
//! threads take files from a shared counter, and a large file's blocks are split between
//! two threads as well.

use super::{
    verity::ParallelVerity,
    walk::{Node, Stamp, WalkError},
};
use crate::digest::Digest;
use composefs::fsverity::{FsVerityHashValue, FsVerityHasher, Sha256HashValue};
use std::{
    fs::File,
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Files up to this size are stored inline in the composefs image (as `mkcomposefs` does).
pub const INLINE_MAX: u64 = composefs::INLINE_CONTENT_MAX_V0 as u64;

/// How composefs refers to a file's content.
#[derive(Debug, Clone)]
pub enum Content {
    Inline(Box<[u8]>),
    External(Sha256HashValue),
}

/// Digests of one regular file.
#[derive(Debug, Clone)]
pub struct FileHash {
    /// fs-verity digest of the content (also inside `content` for external files).
    pub fsverity: Digest,
    pub content: Content,
    /// The bytes that were hashed, kept for small files so the tar writer packs exactly
    /// what was hashed without opening the file again.
    pub data: Option<Box<[u8]>>,
}

/// Files up to this size are kept in memory between hashing and writing …
const KEEP_FILE_MAX: u64 = 64 << 10;
/// … up to this many bytes per hashing thread, which bounds memory whatever the module.
const KEEP_BUDGET: u64 = 8 << 20;

const CHUNK: usize = 1 << 20;

/// Opens a file without following symlinks and checks it is the file the scan saw.
pub fn open_checked(path: &Path, stamp: &Stamp) -> Result<File, WalkError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| WalkError::io(path, e))?;
    check_unchanged(&file, path, stamp)?;
    Ok(file)
}

/// Checks an open file still matches what the scan recorded.
pub fn check_unchanged(file: &File, path: &Path, stamp: &Stamp) -> Result<(), WalkError> {
    let now = Stamp::of(&file.metadata().map_err(|e| WalkError::io(path, e))?);
    let what = if (now.dev, now.ino) != (stamp.dev, stamp.ino) {
        "replaced by another file"
    } else if now.size != stamp.size {
        "size changed"
    } else if now.mtime != stamp.mtime || now.ctime != stamp.ctime {
        "modified"
    } else {
        return Ok(());
    };
    Err(WalkError::Changed {
        path: path.to_owned(),
        what,
    })
}

/// Reads exactly `size` bytes of `file` in chunks, then checks it did not grow or change.
pub fn for_each_chunk(
    file: &mut File,
    path: &Path,
    stamp: &Stamp,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> Result<(), WalkError> {
    let mut left = stamp.size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(WalkError::Changed {
                    path: path.to_owned(),
                    what: "shorter than when scanned",
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(WalkError::io(path, e)),
        };
        f(&buf[..n]);
        left -= n as u64;
    }
    check_unchanged(file, path, stamp)
}

/// The fs-verity digest (SHA-256, 4 KiB blocks, no salt) of bytes already in memory.
pub fn fsverity_of(data: &[u8]) -> Digest {
    let mut v = FsVerityHasher::<Sha256HashValue, 12>::new();
    // Writing to the hasher cannot fail: it only buffers and hashes.
    let _ = v.write_all(data);
    to_digest(&v.digest())
}

/// Our digest type for a composefs hash value (both are 32 bytes of SHA-256).
pub fn to_digest(id: &Sha256HashValue) -> Digest {
    Digest::from_hex(&id.to_hex()).unwrap_or_else(|_| Digest::from_bytes([0; 32]))
}

/// The composefs hash value for one of our digests (the inverse of [`to_digest`]).
pub fn to_hash_value(d: &Digest) -> Sha256HashValue {
    Sha256HashValue::from_hex(d.hex()).unwrap_or(Sha256HashValue::EMPTY)
}

/// Reads a file once, computing its fs-verity digest (a large file's on both cores, see
/// [`super::verity`]) and keeping its bytes when asked.
fn digest_file(
    rootfs: &Path,
    node: &Node,
    buf: &mut [u8],
    keep: bool,
) -> Result<FileHash, WalkError> {
    let path = rootfs.join(&node.rel);
    let mut file = open_checked(&path, &node.stamp)?;
    let inline = node.stamp.size <= INLINE_MAX;
    let keep = keep || inline;
    let mut verity = ParallelVerity::new();
    let mut data = Vec::new();
    for_each_chunk(&mut file, &path, &node.stamp, buf, |c| {
        verity.update(c);
        if keep {
            data.extend_from_slice(c);
        }
    })?;
    let fsverity = Digest::from_bytes(verity.digest());
    let data = keep.then(|| data.into_boxed_slice());
    Ok(FileHash {
        fsverity,
        content: if inline {
            Content::Inline(data.clone().unwrap_or_default())
        } else {
            Content::External(to_hash_value(&fsverity))
        },
        data,
    })
}

/// One of the two hashing threads: takes the next unhashed file until none is left, so one
/// large file on one thread does not leave the other idle behind it.
fn worker(
    rootfs: &Path,
    files: &[&Node],
    next: &AtomicUsize,
) -> Result<Vec<(usize, FileHash)>, WalkError> {
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::new();
    let mut budget = KEEP_BUDGET;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(n) = files.get(i) else {
            return Ok(out);
        };
        let size = n.stamp.size;
        let keep = size <= KEEP_FILE_MAX && size <= budget;
        if keep {
            budget -= size;
        }
        out.push((i, digest_file(rootfs, n, &mut buf, keep)?));
    }
}

/// Computes [`FileHash`] for each regular file in `files`, in the same order, on two threads.
pub fn hash_files(rootfs: &Path, files: &[&Node]) -> Result<Vec<FileHash>, WalkError> {
    let next = AtomicUsize::new(0);
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| worker(rootfs, files, &next));
        let mine = worker(rootfs, files, &next);
        (mine, other.join())
    });
    let b = b.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    let mut slots: Vec<Option<FileHash>> = files.iter().map(|_| None).collect();
    for (i, h) in a?.into_iter().chain(b) {
        slots[i] = Some(h);
    }
    slots
        .into_iter()
        .zip(files)
        .map(|(h, n)| {
            h.ok_or_else(|| WalkError::Changed {
                path: rootfs.join(&n.rel),
                what: "not hashed",
            })
        })
        .collect()
}
