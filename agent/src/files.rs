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

/// Bytes the files under `dir` take (their lengths; hard links counted once, symbolic links
/// not followed): what the agent reports as its state directory's size.
pub fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = e.path().symlink_metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_once_and_skips_links() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        fs::write(t.path().join("a/one"), [0u8; 100]).unwrap();
        fs::write(t.path().join("a/b/two"), [0u8; 20]).unwrap();
        fs::hard_link(t.path().join("a/one"), t.path().join("again")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("link")).unwrap();
        assert_eq!(disk_usage(t.path()).unwrap(), 120);
        write_atomic(&t.path().join("a/b/two"), b"xyz").unwrap();
        assert_eq!(disk_usage(t.path()).unwrap(), 103);
    }
}
