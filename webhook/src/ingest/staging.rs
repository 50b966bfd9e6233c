//! Where blobs are staged while they are checked: `DATA_DIR/staging/<claim>/`, one claim per
//! running receiver, each held by an exclusive lock on its `lock` file for the process's
//! life. A receiver killed mid-download leaves its claim behind with a partial blob in it;
//! the next receiver to start on the data directory finds that claim's lock free (the
//! kernel dropped it with the process) and removes it. Claims of live receivers sharing the
//! directory (replicas, in-process test apps) stay locked, so they are never swept.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

/// This receiver's claim on the staging directory.
#[derive(Debug)]
pub struct Staging {
    /// The claimed directory blobs are written into.
    pub dir: PathBuf,
    /// Held (locked) for as long as this value lives.
    _lock: File,
}

const LOCK: &str = "lock";

impl Staging {
    /// Sweeps the claims of dead receivers under `root`, then makes and locks a new one.
    /// Returns the claim and how many dead claims were removed.
    pub fn claim(root: &Path) -> io::Result<(Staging, usize)> {
        let swept = sweep(root)?;
        static CLAIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = root.join(format!(
            "{}-{nanos:x}-{}",
            std::process::id(),
            CLAIMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let lock = File::create(dir.join(LOCK))?;
        lock.try_lock().map_err(io::Error::other)?;
        Ok((Staging { dir, _lock: lock }, swept))
    }
}

/// Removes every claim under `root` whose lock nobody holds, and any stray file directly in
/// `root` (an older receiver staged there). Returns how many were removed.
pub fn sweep(root: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let dead = match File::options().write(true).open(path.join(LOCK)) {
                // Free: its owner is gone (the lock is dropped again with `f`).
                Ok(f) => f.try_lock().is_ok(),
                // No lock file: a claim that died between mkdir and lock.
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => return Err(e),
            };
            if dead {
                std::fs::remove_dir_all(&path)?;
                n += 1;
            }
        } else {
            std::fs::remove_file(&path)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Blob files staged under `root` now, in every claim (what tests count).
pub fn staged_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(staged_files(&p));
        } else if p.file_name().is_some_and(|n| n != LOCK) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_claims_are_swept_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let (live, swept) = Staging::claim(root.path()).unwrap();
        assert_eq!(swept, 0);
        std::fs::write(live.dir.join(".tmpLIVE"), b"downloading").unwrap();
        // A claim whose process died: its lock file exists, nobody holds it.
        let dead = root.path().join("1-dead");
        std::fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK)).unwrap();
        std::fs::write(dead.join(".tmpDEAD"), b"partial").unwrap();
        std::fs::write(root.path().join(".tmpOLD"), b"from an older layout").unwrap();
        assert_eq!(staged_files(root.path()).len(), 3);

        let (other, swept) = Staging::claim(root.path()).unwrap();
        assert_eq!(swept, 2, "the dead claim and the stray file");
        assert!(!dead.exists());
        assert!(live.dir.join(".tmpLIVE").exists(), "a live claim is kept");
        assert_eq!(staged_files(root.path()), [live.dir.join(".tmpLIVE")]);
        drop(live);
        drop(other);
        // Both owners gone: a third receiver sweeps both.
        let (_third, swept) = Staging::claim(root.path()).unwrap();
        assert_eq!(swept, 2);
        assert!(staged_files(root.path()).is_empty());
    }
}
