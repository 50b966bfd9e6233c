//! `mask`: a config module removes paths that LOWER modules contribute (a masked directory
//! takes its subtree with it); its own entries and those of higher modules stay. Only config
//! modules may mask, because masking is an override and config modules are the override
//! modules; a mask anywhere else is `MASK_FORBIDDEN` and ignored.

use super::Layer;
use crate::{
    diagnostics::{Code, Finding},
    manifest::Variety,
};
use std::collections::HashMap;

/// The masks of one composition, consulted path by path in sorted order.
pub(super) struct Masks<'a> {
    /// Config modules that mask, as (rank, layer), lowest first.
    maskers: Vec<(usize, &'a Layer)>,
    /// Per masker, per pattern: whether it removed anything.
    used: Vec<Vec<bool>>,
    /// Paths a mask matched itself → the highest rank masking them. Their subtrees inherit
    /// the cut-off, so a masked directory empties below the masking module.
    cut: HashMap<&'a str, usize>,
}

impl<'a> Masks<'a> {
    /// `ordered` is in composition order (index = rank).
    pub(super) fn new(ordered: &[&'a Layer], findings: &mut Vec<Finding>) -> Self {
        let mut maskers = Vec::new();
        for (rank, l) in ordered.iter().enumerate() {
            let m = &l.manifest;
            if m.mask.is_empty() {
                continue;
            }
            if m.identity.variety == Variety::Config {
                maskers.push((rank, *l));
                continue;
            }
            let name = &m.identity.name;
            for (i, pattern) in m.mask.iter().enumerate() {
                findings.push(
                    Finding::new(
                        Code::MaskForbidden,
                        name.as_str(),
                        format!(
                            "{name} is a {} module but masks {:?}; only config-variety \
                             modules may mask paths, so move the mask into a config module \
                             or remove it (it is ignored)",
                            m.identity.variety, pattern.value
                        ),
                    )
                    .field(format!("mask[{i}]")),
                );
            }
        }
        let used = maskers
            .iter()
            .map(|(_, l)| vec![false; l.manifest.mask.len()])
            .collect();
        Masks {
            maskers,
            used,
            cut: HashMap::new(),
        }
    }

    /// Entries at `path` from layers ranked below the returned rank are masked. `lowest` is
    /// the lowest rank contributing `path`: a mask is only matched against paths some lower
    /// module ships, once per (masker, path). Paths must come parents first.
    pub(super) fn cutoff(&mut self, path: &'a str, lowest: usize) -> usize {
        if self.maskers.is_empty() {
            return 0;
        }
        let mut own = 0;
        for (k, (rank, layer)) in self.maskers.iter().enumerate() {
            if *rank <= lowest {
                continue;
            }
            for i in layer.manifest.selector.mask_hits(path) {
                if let Some(u) = self.used[k].get_mut(i) {
                    *u = true;
                }
                own = own.max(*rank);
            }
        }
        if own > 0 {
            self.cut.insert(path, own);
        }
        if self.cut.is_empty() {
            return own;
        }
        path.match_indices('/')
            .skip(1)
            .filter_map(|(i, _)| self.cut.get(&path[..i]))
            .fold(own, |a, &b| a.max(b))
    }

    /// `MASK_UNUSED` for every pattern that removed nothing.
    pub(super) fn finish(self, findings: &mut Vec<Finding>) {
        for ((_, layer), used) in self.maskers.iter().zip(&self.used) {
            let name = &layer.manifest.identity.name;
            for (i, pattern) in layer.manifest.mask.iter().enumerate() {
                if used.get(i).copied().unwrap_or(true) {
                    continue;
                }
                findings.push(
                    Finding::new(
                        Code::MaskUnused,
                        name.as_str(),
                        format!(
                            "{name} masks {:?}, but no module before {name} in the \
                             composition order ships a matching path; remove the mask or \
                             check the pattern",
                            pattern.value
                        ),
                    )
                    .field(format!("mask[{i}]")),
                );
            }
        }
    }
}
