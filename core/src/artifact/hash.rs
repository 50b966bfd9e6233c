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

/// Files at least this large are hashed by both threads at once (one computes SHA-256, the
/// other fs-verity); smaller files go to one thread, which computes both from one read.
const SHARED_MIN: u64 = 4 << 20;

#[derive(Default)]
struct Partial {
    sha256: Option<Digest>,
    content: Option<Content>,
    data: Option<Box<[u8]>>,
}

/// Reads a file once, feeding the requested digests.
fn digest_file(
    rootfs: &Path,
    node: &Node,
    buf: &mut [u8],
    want_sha: bool,
    want_content: bool,
    keep: bool,
) -> Result<Partial, WalkError> {
    let path = rootfs.join(&node.rel);
    let mut file = open_checked(&path, &node.stamp)?;
    let inline = node.stamp.size <= INLINE_MAX;
    let keep = keep || (want_content && inline);
    let mut sha = want_sha.then(Sha256::new);
    let mut verity = (want_content && !inline).then(FsVerityHasher::<Sha256HashValue, 12>::new);
    let mut data = Vec::new();
    for_each_chunk(&mut file, &path, &node.stamp, buf, |c| {
        if let Some(h) = sha.as_mut() {
            h.update(c);
        }
        if let Some(v) = verity.as_mut() {
            // Writing to the hasher cannot fail: it only buffers and hashes.
            let _ = v.write_all(c);
        }
        if keep {
            data.extend_from_slice(c);
        }
    })?;
    let data = keep.then(|| data.into_boxed_slice());
    Ok(Partial {
        sha256: sha.map(|h| Digest::from_bytes(h.finalize().into())),
        content: want_content.then(|| match verity {
            Some(mut v) => Content::External(v.digest()),
            None => Content::Inline(data.clone().unwrap_or_default()),
        }),
        data,
    })
}

/// One of the two hashing threads: `me` is 0 or 1.
fn worker(rootfs: &Path, files: &[&Node], me: usize) -> Result<Vec<(usize, Partial)>, WalkError> {
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::new();
    let mut budget = KEEP_BUDGET;
    for (i, n) in files.iter().enumerate() {
        let size = n.stamp.size;
        let (sha, content) = if size >= SHARED_MIN {
            (me == 0, me == 1)
        } else if i % 2 == me {
            (true, true)
        } else {
            continue;
        };
        let keep = sha && size <= KEEP_FILE_MAX && size <= budget;
        if keep {
            budget -= size;
        }
        out.push((i, digest_file(rootfs, n, &mut buf, sha, content, keep)?));
    }
    Ok(out)
}

/// Computes [`FileHash`] for each regular file in `files`, in the same order, on two threads.
pub fn hash_files(rootfs: &Path, files: &[&Node]) -> Result<Vec<FileHash>, WalkError> {
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| worker(rootfs, files, 1));
        let mine = worker(rootfs, files, 0);
        (mine, other.join())
    });
    let b = b.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    let mut parts: Vec<Partial> = files.iter().map(|_| Partial::default()).collect();
    for (i, p) in a?.into_iter().chain(b) {
        let slot = &mut parts[i];
        if p.sha256.is_some() {
            slot.sha256 = p.sha256;
            slot.data = p.data;
        }
        if p.content.is_some() {
            slot.content = p.content;
        }
    }
    parts
        .into_iter()
        .zip(files)
        .map(|(p, n)| match (p.sha256, p.content) {
            (Some(sha256), Some(content)) => Ok(FileHash {
                sha256,
                content,
                data: p.data,
            }),
            _ => Err(WalkError::Changed {
                path: rootfs.join(&n.rel),
                what: "not hashed",
            }),
        })
        .collect()
}
