//! Writing the agent's own records (journals, pins, package lists, verified records): whole or
//! not at all, and on disk before the caller goes on. Its own module because every part of
//! the agent writes records and none of them should import another part to do it.

use anyhow::Context as _;
use std::{fs, io::Write as _, path::Path};

/// Writes a file whole: a temporary name, flushed to disk, renamed over `path`, and the
/// directory flushed, so a crash leaves the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("flushing {}", dir.display()))?;
    }
    Ok(())
}
