//! Composition: several module layers become one system tree, with findings that say why each
//! path ended up where it did (DESIGN §8).
//!
//! Pure on purpose: values in, values out. The receiver predicts the merged composefs digest a
//! node will build without touching a disk, `validate` can explain a template, and the node
//! agent checks its own result against the same function.
//!
//! - `order`: dependency order with deterministic tie-breaks;
//! - `layers`: checks each layer's entries (absolute, normal, parents first, no duplicates);
//! - `mask`: which lower-layer paths a config module's `mask` removes;
//! - `owners`: who owns each path (protection, shadowing, type conflicts);
//! - `merge`: the composefs digest of the merged tree.

mod from_index;
mod layers;
mod mask;
mod merge;
mod order;
mod owners;
#[cfg(test)]
mod tests;

pub use from_index::entries_of;

use crate::{
    Version,
    artifact::hash::Content,
    diagnostics::{Code, Finding, Severity},
    digest::Digest,
    manifest::{Manifest, ModuleName},
};
use serde::{Serialize, Serializer};
use std::{collections::BTreeMap, sync::mpsc};

/// Merged paths per message to the digest thread.
const BATCH: usize = 4096;

/// One module version as composition sees it: its manifest and every path it ships.
#[derive(Debug, Clone)]
pub struct Layer {
    pub manifest: Manifest,
    /// Carried through to [`Composition::versions`]; composition never compares versions
    /// except to pick one of several copies of the same module.
    pub version: Version,
    /// Absolute target paths (`/etc`, `/etc/redis`, `/etc/redis/redis.conf`), parents
    /// included, in any order. The root (`/`) is implied; a directory entry for it is ignored.
    pub entries: Vec<Entry>,
}

/// One shipped path with the metadata the composefs image records.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    /// Permission bits (`0o644`); anything above `0o7777` is ignored.
    pub mode: u32,
    pub kind: EntryKind,
}

#[derive(Debug, Clone)]
pub enum EntryKind {
    Dir,
    /// `content` is what composefs stores: the bytes of files up to
    /// [`INLINE_MAX`](crate::artifact::hash::INLINE_MAX), else the fs-verity digest.
    File {
        size: u64,
        content: Content,
    },
    Symlink {
        target: String,
    },
}

impl EntryKind {
    fn is_dir(&self) -> bool {
        matches!(self, EntryKind::Dir)
    }

    /// How findings name this kind of entry.
    fn noun(&self) -> &'static str {
        match self {
            EntryKind::Dir => "directory",
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
        }
    }
}

/// The outcome of [`compose`]. Built only by it, so the digest is present exactly when no
/// conflict blocks the composition.
#[derive(Debug, Clone, Serialize)]
pub struct Composition {
    order: Vec<ModuleName>,
    #[serde(serialize_with = "versions_as_text")]
    versions: BTreeMap<ModuleName, Version>,
    owners: BTreeMap<String, ModuleName>,
    findings: Vec<Finding>,
    merged_digest: Option<Digest>,
    /// The merged tree's entries, sorted by path (what a node materialises).
    #[serde(skip)]
    entries: Vec<Entry>,
}

fn versions_as_text<S: Serializer>(
    v: &BTreeMap<ModuleName, Version>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v.to_string())))
}

impl Composition {
    /// Composition order, lowest first: a later module overrides an earlier one.
    pub fn order(&self) -> &[ModuleName] {
        &self.order
    }

    /// The version of each composed module, as its layer gave it.
    pub fn versions(&self) -> &BTreeMap<ModuleName, Version> {
        &self.versions
    }

    /// For every path in the merged tree, the module whose entry it holds.
    pub fn owners(&self) -> &BTreeMap<String, ModuleName> {
        &self.owners
    }

    /// The module whose entry is at `path` in the merged tree, if the path is in it.
    pub fn owner(&self, path: &str) -> Option<&ModuleName> {
        self.owners.get(path)
    }

    /// Every finding, sorted (severity, code, path or field, module, message).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The findings that block the composition.
    pub fn conflicts(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Conflict)
    }

    /// Whether a conflict blocks the composition (the served state must then not change).
    pub fn is_blocked(&self) -> bool {
        self.conflicts().next().is_some()
    }

    /// The composefs digest of the merged tree; `None` exactly when [`Self::is_blocked`].
    pub fn merged_digest(&self) -> Option<Digest> {
        self.merged_digest
    }

    /// The merged tree's entries (absolute paths, sorted, parents first): what a node
    /// materialises. Empty when blocked, and unless composed with [`compose_tree`].
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The merged tree's composefs image (EROFS format 1) and its measured fs-verity
    /// digest, which equals [`Self::merged_digest`]. `None` when blocked, and unless
    /// composed with [`compose_tree`].
    pub fn image(&self) -> Option<(Box<[u8]>, Digest)> {
        self.merged_digest?;
        if self.entries.is_empty() && !self.owners.is_empty() {
            return None;
        }
        let tree = merge::tree(self.entries.iter().map(|e| (e.path.as_str(), e))).ok()?;
        Some(tree.image())
    }
}

/// Composes `layers` (in any order) into one tree. Never fails and never panics: everything
/// wrong with the input becomes a finding, and a conflict withholds the digest.
pub fn compose(layers: &[Layer]) -> Composition {
    compose_inner(layers, false)
}

/// As [`compose`], keeping the merged tree's entries ([`Composition::entries`],
/// [`Composition::image`]) for a node that materialises it. The receiver, which only
/// predicts the digest, does not pay for the copy.
pub fn compose_tree(layers: &[Layer]) -> Composition {
    compose_inner(layers, true)
}

fn compose_inner(layers: &[Layer], keep_entries: bool) -> Composition {
    let mut findings = Vec::new();
    let unique = unique_by_name(layers, &mut findings);
    let ranks = order::order(&unique, &mut findings);
    let ordered: Vec<&Layer> = ranks.iter().map(|&i| unique[i]).collect();

    let checked = layers::check(&ordered, &mut findings);
    let masks = mask::Masks::new(&ordered, &mut findings);

    let name = |rank: usize| ordered[rank].manifest.identity.name.clone();
    // The digest (composefs' image writer, most of the work) runs on a second thread. That
    // thread builds composefs' tree from the merged paths in batches while this one resolves
    // them, then writes the image and hashes it (unless a conflict blocks) while this one
    // builds the owner map and the entry copy.
    let (digest, owners, entries) = std::thread::scope(|s| {
        let (paths, arriving) = mpsc::channel::<Vec<(&str, &Entry)>>();
        let (go, ready) = mpsc::channel::<bool>();
        let digest = s.spawn(move || merge::digest(arriving.into_iter().flatten(), ready));
        let mut batch = Vec::with_capacity(BATCH);
        let merged = owners::resolve(&ordered, &checked, masks, &mut findings, |m| {
            batch.push((m.path, m.entry));
            if batch.len() == BATCH {
                // A send fails only when the digest thread is gone (it panicked): its
                // join below says so.
                let _ = paths.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
            }
        });
        let _ = paths.send(batch);
        drop(paths);
        let blocked = findings.iter().any(|f| f.severity == Severity::Conflict);
        let _ = go.send(!blocked);

        let owners: BTreeMap<String, ModuleName> = merged
            .iter()
            .map(|m| (m.path.to_owned(), name(m.rank)))
            .collect();
        let entries: Vec<Entry> = if keep_entries && !blocked {
            merged
                .iter()
                .map(|m| Entry {
                    path: m.path.to_owned(),
                    ..m.entry.clone()
                })
                .collect()
        } else {
            Vec::new()
        };
        let digest = digest
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (digest, owners, entries)
    });
    let merged_digest = match digest {
        Some(Ok(d)) => Some(d),
        Some(Err(f)) => {
            findings.push(f);
            None
        }
        None => None,
    };
    let entries = if merged_digest.is_some() {
        entries
    } else {
        Vec::new()
    };
    sort_findings(&mut findings);
    Composition {
        order: ordered
            .iter()
            .map(|l| l.manifest.identity.name.clone())
            .collect(),
        versions: ordered
            .iter()
            .map(|l| (l.manifest.identity.name.clone(), l.version.clone()))
            .collect(),
        owners,
        findings,
        merged_digest,
        entries,
    }
}

/// One layer per module name, sorted by name. Of several copies the highest version is kept
/// (the first given among equal versions), and the duplicate is a conflict: a composition
/// that silently picked one would hide a template bug.
fn unique_by_name<'a>(layers: &'a [Layer], findings: &mut Vec<Finding>) -> Vec<&'a Layer> {
    let mut by_name: BTreeMap<&ModuleName, Vec<&Layer>> = BTreeMap::new();
    for l in layers {
        by_name
            .entry(&l.manifest.identity.name)
            .or_default()
            .push(l);
    }
    by_name
        .into_iter()
        .map(|(name, copies)| {
            // max_by keeps the last of equals; reverse so the first given wins ties.
            let kept = copies
                .iter()
                .rev()
                .max_by(|a, b| a.version.cmp(&b.version))
                .copied()
                .unwrap_or(copies[0]);
            if copies.len() > 1 {
                let mut versions: Vec<&Version> = copies.iter().map(|l| &l.version).collect();
                versions.sort();
                let versions: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
                findings.push(
                    Finding::new(
                        Code::ModuleDuplicate,
                        name.as_str(),
                        format!(
                            "{name} is given {} times (versions {}); a composition takes one \
                             version of each module, so pass {name} once",
                            copies.len(),
                            versions.join(", "),
                        ),
                    )
                    .field("identity.name"),
                );
            }
            kept
        })
        .collect()
}

/// A stable order that does not depend on the order layers were given in.
fn sort_findings(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.field, &a.file, &a.message)
            .cmp(&(b.severity, b.code, &b.field, &b.file, &b.message))
    });
    findings.dedup();
}

/// `a`, `a and b`, `a, b and c`: module lists in messages.
fn and_list<T: std::fmt::Display>(items: &[T]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|x| x.to_string()).collect();
            format!("{} and {last}", init.join(", "))
        }
    }
}
