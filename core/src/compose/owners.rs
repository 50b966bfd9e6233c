//! Who owns each path of the merged tree.
//!
//! Per path, after masking: directories merge (the highest layer's metadata wins); a file or
//! symlink comes from the highest layer, unless a lower module protects the path. Then the
//! highest protector keeps it, lower entries are dropped (`PROTECTED_DROPPED`), and only a
//! config module above the protector may override it (`FILE_SHADOWED`); a subscription
//! module above it is `PROTECTED_OVERRIDDEN`. A directory in one layer and a file or symlink
//! in another is `TYPE_CONFLICT` (the highest layer's entry is shown as owner).
//!
//! Protection applies to files and symlinks a module ships, as the manifest lint counts it.

use super::{Entry, Layer, and_list, mask::Masks};
use crate::{
    diagnostics::{Code, Finding},
    manifest::{ModuleName, Variety},
};

/// One path of the merged tree and the layer (by rank) whose entry it holds.
pub(super) struct Merged<'a> {
    pub path: &'a str,
    pub rank: usize,
    pub entry: &'a Entry,
}

/// Resolves every path, in sorted order. `checked[rank]` holds that layer's valid entries,
/// sorted by path. `emit` sees each merged path as soon as it is resolved (composition feeds
/// the digest's tree to a second thread that way).
pub(super) fn resolve<'a>(
    ordered: &[&'a Layer],
    checked: &[Vec<&'a Entry>],
    mut masks: Masks<'a>,
    findings: &mut Vec<Finding>,
    mut emit: impl FnMut(&Merged<'a>),
) -> Vec<Merged<'a>> {
    let mut all: Vec<(&'a Entry, usize)> = checked
        .iter()
        .enumerate()
        .flat_map(|(rank, es)| es.iter().map(move |e| (*e, rank)))
        .collect();
    // Stable, and the input is a concatenation of sorted runs in rank order: a merge of runs,
    // leaving each path's contributors lowest rank first.
    all.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let mut out = Vec::with_capacity(all.len());
    let mut live: Vec<(&'a Entry, usize)> = Vec::new();
    for group in all.chunk_by(|a, b| a.0.path == b.0.path) {
        let path = group[0].0.path.as_str();
        let cut = masks.cutoff(path, group[0].1);
        live.clear();
        live.extend(group.iter().filter(|(_, rank)| *rank >= cut));
        if let Some(w) = winner(path, &live, ordered, findings) {
            let (entry, rank) = live[w];
            let m = Merged { path, rank, entry };
            emit(&m);
            out.push(m);
        }
    }
    masks.finish(findings);
    out
}

/// The position in `live` (contributors of `path`, lowest first) of the entry the merged tree
/// takes, reporting what the others lose.
fn winner(
    path: &str,
    live: &[(&Entry, usize)],
    ordered: &[&Layer],
    findings: &mut Vec<Finding>,
) -> Option<usize> {
    let top = live.len().checked_sub(1)?;
    if top == 0 {
        return Some(0);
    }
    let layer = |i: usize| ordered[live[i].1];
    let name = |i: usize| &layer(i).manifest.identity.name;
    let kind = |i: usize| &live[i].0.kind;
    let report = |findings: &mut Vec<Finding>, code, about: usize, message: String| {
        findings.push(Finding::new(code, name(about).as_str(), message).field(path));
    };

    let dirs: Vec<usize> = (0..live.len()).filter(|&i| kind(i).is_dir()).collect();
    if dirs.len() == live.len() {
        return Some(top);
    }
    if let Some(&d) = dirs.last() {
        let f = (0..live.len())
            .rev()
            .find(|&i| !kind(i).is_dir())
            .unwrap_or(top);
        let message = format!(
            "{path} is a directory in {} but a {} in {}; one of the two modules must \
             ship it as the other does, or not at all",
            name(d),
            kind(f).noun(),
            name(f)
        );
        report(findings, Code::TypeConflict, d.max(f), message);
        return Some(top);
    }

    let protectors: Vec<usize> = (0..live.len())
        .filter(|&i| {
            let m = &layer(i).manifest;
            !m.protected_spec.is_empty() && !m.selector.protected_hits(path).is_empty()
        })
        .collect();
    let is_config = |i: usize| layer(i).manifest.identity.variety == Variety::Config;
    let Some(&guard) = protectors.last() else {
        for i in 0..top {
            shadowed(findings, path, name(i), name(top), false);
        }
        return Some(top);
    };
    if protectors.len() > 1 {
        let names: Vec<&ModuleName> = protectors.iter().map(|&i| name(i)).collect();
        let message = format!(
            "{path} is protected by {}; only one module may protect a path, so remove it \
             from the protected_spec of all but one",
            and_list(&names)
        );
        report(findings, Code::ProtectedDuplicate, guard, message);
    }
    // Config modules are override modules: the highest one above the protector wins.
    let win = (guard + 1..live.len())
        .rev()
        .find(|&i| is_config(i))
        .unwrap_or(guard);
    for i in (0..live.len()).filter(|&i| i != win) {
        if i > guard && !is_config(i) {
            let message = format!(
                "{who} ships {path}, which {owner} protects, and {who} comes later in the \
                 composition order; a {variety} module cannot override a protected path, so \
                 remove it from {who}'s file_spec or move the override into a config module",
                who = name(i),
                owner = name(guard),
                variety = layer(i).manifest.identity.variety,
            );
            report(findings, Code::ProtectedOverridden, i, message);
        } else if i < guard {
            if protectors.binary_search(&i).is_err() {
                let message = format!(
                    "{who}'s {path} is dropped: {owner}, later in the composition order, \
                     protects it; stop shipping it from {who}, or change it through {owner}",
                    who = name(i),
                    owner = name(guard),
                );
                report(findings, Code::ProtectedDropped, i, message);
            }
        } else {
            shadowed(findings, path, name(i), name(win), i == guard);
        }
    }
    Some(win)
}

fn shadowed(
    findings: &mut Vec<Finding>,
    path: &str,
    lower: &ModuleName,
    higher: &ModuleName,
    was_protected: bool,
) {
    let why = if was_protected {
        format!(", overriding {lower}'s protection (config modules may)")
    } else {
        String::new()
    };
    findings.push(
        Finding::new(
            Code::FileShadowed,
            lower.as_str(),
            format!(
                "{lower}'s {path} is replaced by {higher}'s, which comes later in the \
                 composition order{why}; drop it from one of them if that is not intended"
            ),
        )
        .field(path),
    );
}
