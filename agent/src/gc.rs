//! Collecting what no kept generation needs: after each successful switch the agent keeps
//! `current`, `previous` and the newest `keep_generations` others, deletes the rest, then
//! deletes every object no kept generation references and the verification records of
//! modules none of them runs. It runs inside the reconcile, under
//! the state directory's lock, so never while an apply is running.
//!
//! A generation is first renamed to `.deleting-<n>` (one rename: it stops being a generation
//! at once), unmounted, then removed; a crash leaves a `.deleting-*` directory that the next
//! collection removes. Objects are removed only after the generations are, and only those no
//! kept generation lists, so a crash at any point loses nothing kept.

use crate::{generation::Layout, objects::Objects};
use std::{collections::BTreeSet, fs, path::Path};

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub generations: Vec<u64>,
    pub objects: usize,
    pub bytes: u64,
}

/// Keeps `current`, `previous` and the newest `extra` other generations; removes the rest
/// and the objects only they used.
pub fn collect(layout: &Layout, extra: usize) -> anyhow::Result<Collected> {
    let gens = layout.generations();
    let mut out = Collected::default();
    // Leftovers of an interrupted collection.
    for e in fs::read_dir(&gens).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".deleting-") {
            crate::mount::unmount(&e.path());
            out.bytes += size_of(&e.path());
            fs::remove_dir_all(e.path())?;
        }
    }
    let pinned: BTreeSet<u64> = ["current", "previous"]
        .iter()
        .filter_map(|l| layout.pointed(l))
        .collect();
    let mut others: Vec<u64> = layout
        .list()
        .into_iter()
        .filter(|n| !pinned.contains(n))
        .collect();
    others.sort_unstable_by(|a, b| b.cmp(a));
    let kept: BTreeSet<u64> = pinned
        .iter()
        .copied()
        .chain(others.iter().take(extra).copied())
        .collect();
    for n in others.into_iter().skip(extra) {
        let dir = gens.join(n.to_string());
        let doomed = gens.join(format!(".deleting-{n}"));
        crate::mount::unmount(&dir);
        fs::rename(&dir, &doomed)?;
        out.bytes += size_of(&doomed);
        fs::remove_dir_all(&doomed)?;
        out.generations.push(n);
    }
    // Objects: only those no kept generation references.
    let referenced: BTreeSet<String> = kept
        .iter()
        .flat_map(|n| layout.file_digests(*n))
        .map(|d| d.hex())
        .collect();
    let objects = Objects::new(&layout.state);
    for shard in fs::read_dir(objects.dir()).into_iter().flatten().flatten() {
        let prefix = shard.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !shard.path().is_dir() {
            continue;
        }
        for f in fs::read_dir(shard.path())?.flatten() {
            let hex = format!("{prefix}{}", f.file_name().to_string_lossy());
            if !referenced.contains(&hex) {
                out.bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(f.path())?;
                out.objects += 1;
            }
        }
    }
    // Verification records (`verified/<manifest digest>.json`) of modules no kept generation
    // runs: a later state naming one again fetches and verifies it anew.
    let manifests: BTreeSet<String> = kept
        .iter()
        .filter_map(|n| layout.meta(*n).ok())
        .flat_map(|m| m.modules.into_iter().map(|x| x.manifest_digest))
        .filter_map(|d| d.parse::<powernode_module::digest::Digest>().ok())
        .map(|d| d.hex())
        .collect();
    for f in fs::read_dir(layout.state.join("verified"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = f.file_name().to_string_lossy().into_owned();
        let Some(hex) = name.strip_suffix(".json") else {
            continue;
        };
        if !manifests.contains(hex) {
            out.bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(f.path())?;
        }
    }
    Ok(out)
}

/// Bytes used under `dir` (regular files; symlinks and directories are not counted).
pub fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
