//! Checks of a manifest against the target paths it would ship.

use super::{FILE_NAME, Manifest};
use crate::diagnostics::{Code, Finding};

/// A shipped path as the lint sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShippedKind {
    Dir,
    File,
    Symlink,
}

/// Lints `m` against the shipped target paths (absolute, like `/etc/redis/redis.conf`).
pub fn lint<'a>(
    m: &Manifest,
    shipped: impl IntoIterator<Item = (&'a str, ShippedKind)> + Clone,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let sel = &m.selector;

    let mut include_used = vec![false; m.file_spec.include.len()];
    let mut protected_used = vec![false; m.protected_spec.len()];
    let mut files = 0usize;
    for (path, kind) in shipped.clone() {
        for i in sel.include_hits(path) {
            include_used[i] = true;
        }
        if kind != ShippedKind::Dir {
            files += 1;
            for i in sel.protected_hits(path) {
                protected_used[i] = true;
            }
            for i in sel.mask_hits(path) {
                out.push(
                    Finding::new(
                        Code::MaskShipped,
                        FILE_NAME,
                        format!("masks {path}, which this module ships itself"),
                    )
                    .field(format!("mask[{i}]"))
                    .at(m.mask[i].pos),
                );
            }
        }
    }
    for (i, used) in include_used.iter().enumerate() {
        if !used {
            let p = &m.file_spec.include[i];
            out.push(
                Finding::new(
                    Code::IncludeMatchesNothing,
                    FILE_NAME,
                    format!(
                        "{:?} matches nothing under rootfs/ (or only excluded paths)",
                        p.value
                    ),
                )
                .field(format!("file_spec.include[{i}]"))
                .at(p.pos),
            );
        }
    }
    for (i, used) in protected_used.iter().enumerate() {
        if !used {
            let p = &m.protected_spec[i];
            out.push(
                Finding::new(
                    Code::ProtectedNotShipped,
                    FILE_NAME,
                    format!(
                        "{:?} is protected but this module does not ship it",
                        p.value
                    ),
                )
                .field(format!("protected_spec[{i}]"))
                .at(p.pos),
            );
        }
    }
    for (path, mode) in &m.modes {
        let shipped_file = shipped
            .clone()
            .into_iter()
            .any(|(p, k)| p == path && k == ShippedKind::File);
        let shipped_dir = shipped
            .clone()
            .into_iter()
            .any(|(p, k)| p == path && k == ShippedKind::Dir);
        if !shipped_file && !shipped_dir {
            out.push(
                Finding::new(
                    Code::ModeNotShipped,
                    FILE_NAME,
                    format!(
                        "sets the mode of {path}, which this module does not ship as a file or directory"
                    ),
                )
                .field(format!("modes.{path:?}"))
                .at(mode.pos),
            );
        }
    }
    if files == 0 {
        out.push(Finding::new(
            Code::NothingShipped,
            FILE_NAME,
            "file_spec selects no files from rootfs/: the module would be empty",
        ));
    }
    out
}
