//! fs-verity digests of large files on both cores.
//!
//! composefs' `FsVerityHasher` hashes one 4 KiB block after another on one thread. In a
//! `build`, a module's largest file dominates: its fs-verity digest must be known before the
//! tar (whose first entry, `index.json`, carries it) can be written and hashed, so that one
//! file's hashing sits on the critical path while the second core idles. The leaf level of
//! the Merkle tree (one SHA-256 per data block) is 128 times the work of all the levels
//! above it and every leaf is independent, so [`ParallelVerity`] splits the leaves of each
//! chunk across two threads and folds the levels above in order on the calling thread.
//!
//! The construction is fs-verity's (Linux `Documentation/filesystems/fsverity.rst`):
//! SHA-256, 4 KiB blocks, no salt; blocks of hashes zero-padded; the digest is the SHA-256 of
//! the 256-byte descriptor. Tests check it against composefs' hasher and fsverity-utils for
//! sizes on every level boundary. Only the hash primitive comes from a crate (`sha2`); this
//! is the tree around it, which no crate offers in a form that can be split.

use sha2::{Digest as _, Sha256};

const BLOCK: usize = 4096;
/// log2 of [`BLOCK`], as the descriptor records it.
const LOG_BLOCK: u8 = 12;
/// `FS_VERITY_HASH_ALG_SHA256`.
const ALG_SHA256: u8 = 1;
/// Below this many blocks (1 MiB) per chunk a second thread costs more than it saves.
const PARALLEL_MIN_BLOCKS: usize = 256;

type Hash = [u8; 32];

/// The SHA-256 of one data block, zero-padded to [`BLOCK`] (only the last block is short).
fn leaf(block: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(block);
    if block.len() < BLOCK {
        h.update(&[0u8; BLOCK][..BLOCK - block.len()]);
    }
    h.finalize().into()
}

/// One level above the leaves: the block of hashes being filled.
#[derive(Debug)]
struct Level {
    ctx: Sha256,
    filled: usize,
}

impl Level {
    fn new() -> Self {
        Self {
            ctx: Sha256::new(),
            filled: 0,
        }
    }

    fn add(&mut self, h: &Hash) {
        self.ctx.update(h);
        self.filled += h.len();
    }

    /// The hash of this level's block, zero-padded; the level starts a new block.
    fn complete(&mut self) -> Hash {
        self.ctx.update(&[0u8; BLOCK][..BLOCK - self.filled]);
        self.filled = 0;
        self.ctx.finalize_reset().into()
    }
}

/// The levels above the leaves, fed leaf hashes in file order.
///
/// `top` is the root of the tree so far when every level is complete: the next leaf then
/// needs one more level, seeded with it (the same incremental shape as composefs' hasher).
#[derive(Debug, Default)]
struct Levels {
    levels: Vec<Level>,
    top: Option<Hash>,
}

impl Levels {
    fn push(&mut self, mut h: Hash) {
        if let Some(top) = self.top.take() {
            let mut l = Level::new();
            l.add(&top);
            self.levels.push(l);
        }
        for level in &mut self.levels {
            level.add(&h);
            if level.filled < BLOCK {
                return;
            }
            h = level.complete();
        }
        self.top = Some(h);
    }

    /// The root hash: all zeros for an empty file, else the partial levels completed
    /// bottom-up (an empty level's content has already moved up).
    fn root(mut self) -> Hash {
        if let Some(top) = self.top {
            return top;
        }
        let mut carry: Option<Hash> = None;
        for level in &mut self.levels {
            if let Some(h) = carry {
                level.add(&h);
            }
            carry = (level.filled > 0).then(|| level.complete());
        }
        carry.unwrap_or([0; 32])
    }
}

/// An fs-verity digest computed from data given in any chunking, leaves on two threads.
#[derive(Debug, Default)]
pub struct ParallelVerity {
    levels: Levels,
    /// Bytes of a block not yet complete (less than [`BLOCK`]).
    tail: Vec<u8>,
    len: u64,
}

impl ParallelVerity {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < BLOCK {
                return;
            }
            let block = std::mem::take(&mut self.tail);
            self.levels.push(leaf(&block));
        }
        let whole = data.len() / BLOCK * BLOCK;
        self.blocks(&data[..whole]);
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// Hashes whole blocks, the second half on another thread when there are enough.
    fn blocks(&mut self, data: &[u8]) {
        let n = data.len() / BLOCK;
        if n < PARALLEL_MIN_BLOCKS {
            data.chunks(BLOCK).for_each(|b| self.levels.push(leaf(b)));
            return;
        }
        let (first, second) = data.split_at(n / 2 * BLOCK);
        let hashes = |d: &[u8]| d.chunks(BLOCK).map(leaf).collect::<Vec<_>>();
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| hashes(second));
            let mine = hashes(first);
            (mine, other.join())
        });
        let b = b.unwrap_or_else(|p| std::panic::resume_unwind(p));
        a.into_iter().chain(b).for_each(|h| self.levels.push(h));
    }

    /// The fs-verity digest: SHA-256 of the descriptor (version 1, SHA-256, 4 KiB blocks,
    /// no salt, the data size and the root hash).
    pub fn digest(mut self) -> Hash {
        if !self.tail.is_empty() {
            self.levels.push(leaf(&self.tail));
        }
        let root = self.levels.root();
        let mut d = Sha256::new();
        d.update([1, ALG_SHA256, LOG_BLOCK, 0]);
        d.update([0u8; 4]);
        d.update(self.len.to_le_bytes());
        d.update(root);
        d.update([0u8; 32]); // root hash field is 64 bytes
        d.update([0u8; 32]); // salt
        d.update([0u8; 144]); // reserved
        d.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use composefs::fsverity::{FsVerityHashValue, FsVerityHasher, Sha256HashValue};
    use std::io::Write;

    fn theirs(data: &[u8]) -> String {
        let mut h = FsVerityHasher::<Sha256HashValue, 12>::new();
        h.write_all(data).unwrap();
        h.digest().to_hex()
    }

    fn hex(h: Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn ours(data: &[u8], chunk: usize) -> Hash {
        let mut v = ParallelVerity::new();
        data.chunks(chunk.max(1)).for_each(|c| v.update(c));
        if data.is_empty() {
            v.update(&[]);
        }
        v.digest()
    }

    /// Sizes on and around every boundary of the first three levels (one block, one full
    /// block of hashes, a full second level), in chunkings that split blocks and that hand
    /// over enough blocks at once for the two-thread path.
    #[test]
    fn matches_composefs_on_every_level_boundary() {
        let b = BLOCK;
        let mut sizes = vec![0, 1, 64, 65, b - 1, b, b + 1, 2 * b, 127 * b + 3];
        for n in [128 * b, 128 * 128 * b] {
            sizes.extend([n - 1, n, n + 1, n + b]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..128 * 128 * b + b)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        for size in sizes {
            let d = &data[..size];
            let want = theirs(d);
            for chunk in [1000, b, 1 << 20, usize::MAX] {
                if chunk == 1000 && size > 4 * 128 * b {
                    continue; // the 1000-byte chunking is covered by the smaller sizes
                }
                assert_eq!(
                    hex(ours(d, chunk.min(size.max(1)))),
                    want,
                    "size {size}, chunk {chunk}"
                );
            }
        }
    }

    /// The two-thread path against an implementation nobody here wrote: fsverity-utils.
    #[test]
    fn matches_fsverity_utils_on_a_multi_level_file() {
        let data: Vec<u8> = (0..(129 * 128 * BLOCK + 77) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        let ours = format!("sha256:{}", hex(ours(&data, 1 << 20)));
        assert_eq!(powernode_testkit::fsverity_utils_digest(file.path()), ours);
    }
}
