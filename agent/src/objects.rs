//! The content-addressed object store: `objects/<first two hex>/<rest>` by fs-verity digest,
//! shared by every module and version. An object is written under a temporary name and
//! renamed into place only after its digest was checked, so a present object is complete.

use anyhow::Context as _;
use powernode_module::digest::Digest;
use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
};

#[derive(Debug, Clone)]
pub struct Objects {
    dir: PathBuf,
}

impl Objects {
    pub fn new(state_dir: &Path) -> Objects {
        Objects {
            dir: state_dir.join("objects"),
        }
    }

    /// The store's directory (composefs' data layer: `<2 hex>/<62 hex>`, as composefs lays
    /// out its own object store).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Stores `size` bytes read from `r` as the object `want`, checking its fs-verity digest
    /// first. Objects already present are not written again.
    pub fn put(&self, want: &Digest, size: u64, r: &mut impl Read) -> anyhow::Result<bool> {
        if self.has(want) {
            std::io::copy(&mut r.take(size), &mut std::io::sink())?;
            return Ok(false);
        }
        let dest = self.path(want);
        let parent = dest.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
        let mut hasher =
            composefs::fsverity::FsVerityHasher::<composefs::fsverity::Sha256HashValue, 12>::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let want_n = left.min(buf.len() as u64) as usize;
            let n = r.read(&mut buf[..want_n])?;
            if n == 0 {
                anyhow::bail!("object {want}: content ended early");
            }
            hasher.write_all(&buf[..n])?;
            tmp.write_all(&buf[..n])?;
            left -= n as u64;
        }
        let got = powernode_module::artifact::hash::to_digest(&hasher.digest());
        if got != *want {
            anyhow::bail!("object {want}: content hashes to {got}");
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&dest)
            .with_context(|| format!("storing {}", dest.display()))?;
        Ok(true)
    }

    /// Copies object `d` to `dest`, hashing it on the way: an object altered on disk is
    /// never copied into a generation (it is removed, so the next apply fetches it again).
    pub fn copy_verified(
        &self,
        d: &Digest,
        to: &mut fs::File,
        buf: &mut [u8],
    ) -> anyhow::Result<()> {
        let src = self.path(d);
        let mut from = fs::File::open(&src)
            .with_context(|| format!("object {d} is missing from the store"))?;
        let mut hasher =
            composefs::fsverity::FsVerityHasher::<composefs::fsverity::Sha256HashValue, 12>::new();
        loop {
            let n = from.read(buf)?;
            if n == 0 {
                break;
            }
            hasher.write_all(&buf[..n])?;
            to.write_all(&buf[..n])?;
        }
        let got = powernode_module::artifact::hash::to_digest(&hasher.digest());
        if got != *d {
            let _ = fs::remove_file(&src);
            anyhow::bail!(
                "object {d} was altered on disk (hashes to {got}); removed, it is fetched again next time"
            );
        }
        Ok(())
    }

    /// Re-hashes object `d`: `Ok(false)` when it is missing or was altered.
    pub fn check(&self, d: &Digest) -> anyhow::Result<bool> {
        match fs::File::open(self.path(d)) {
            Ok(f) => Ok(fsverity_of_reader(f)? == *d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The fs-verity digest of a stream, read in chunks.
pub fn fsverity_of_reader(mut r: impl Read) -> anyhow::Result<Digest> {
    let mut hasher =
        composefs::fsverity::FsVerityHasher::<composefs::fsverity::Sha256HashValue, 12>::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.write_all(&buf[..n])?;
    }
    Ok(powernode_module::artifact::hash::to_digest(
        &hasher.digest(),
    ))
}
