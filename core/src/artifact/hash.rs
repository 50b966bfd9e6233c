//! Per-file digests, computed before the tar is written because `index.json` (the first
//! entry) carries them. Two threads share the work: one computes SHA-256 for the index, the
//! other the fs-verity digests composefs needs, so one large file keeps both cores busy.

use super::walk::{Node, Stamp, WalkError};
use crate::digest::Digest;
use composefs::fsverity::{FsVerityHasher, Sha256HashValue};
use sha2::{Digest as _, Sha256};
use std::{
    fs::File,
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
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
    pub sha256: Digest,
    pub content: Content,
}

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

fn sha256_of(rootfs: &Path, node: &Node, buf: &mut [u8]) -> Result<Digest, WalkError> {
    let path = rootfs.join(&node.rel);
    let mut file = open_checked(&path, &node.stamp)?;
    let mut h = Sha256::new();
    for_each_chunk(&mut file, &path, &node.stamp, buf, |c| h.update(c))?;
    Ok(Digest::from_bytes(h.finalize().into()))
}

fn content_of(rootfs: &Path, node: &Node, buf: &mut [u8]) -> Result<Content, WalkError> {
    let path = rootfs.join(&node.rel);
    let mut file = open_checked(&path, &node.stamp)?;
    if node.stamp.size <= INLINE_MAX {
        let mut data = Vec::with_capacity(node.stamp.size as usize);
        for_each_chunk(&mut file, &path, &node.stamp, buf, |c| {
            data.extend_from_slice(c)
        })?;
        return Ok(Content::Inline(data.into_boxed_slice()));
    }
    let mut h = FsVerityHasher::<Sha256HashValue, 12>::new();
    for_each_chunk(&mut file, &path, &node.stamp, buf, |c| {
        // Writing to the hasher cannot fail: it only buffers and hashes.
        let _ = h.write_all(c);
    })?;
    Ok(Content::External(h.digest()))
}

/// Computes [`FileHash`] for each regular file in `files`, in the same order.
pub fn hash_files(rootfs: &Path, files: &[&Node]) -> Result<Vec<FileHash>, WalkError> {
    let (shas, contents) = std::thread::scope(|s| {
        let shas = s.spawn(|| {
            let mut buf = vec![0u8; CHUNK];
            files
                .iter()
                .map(|n| sha256_of(rootfs, n, &mut buf))
                .collect::<Result<Vec<_>, _>>()
        });
        let mut buf = vec![0u8; CHUNK];
        let contents = files
            .iter()
            .map(|n| content_of(rootfs, n, &mut buf))
            .collect::<Result<Vec<_>, _>>();
        (shas.join(), contents)
    });
    let shas = shas.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    Ok(shas
        .into_iter()
        .zip(contents?)
        .map(|(sha256, content)| FileHash { sha256, content })
        .collect())
}
