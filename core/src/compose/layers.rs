//! The shape every layer must have before paths are compared: absolute, normal paths, each
//! once, each inside a directory the same layer ships. Artifacts built by this crate always
//! have that shape; a caller that assembles layers by hand gets `ENTRY_INVALID` instead of
//! a merged tree with holes.

use super::{Entry, Layer};
use crate::diagnostics::{Code, Finding};

/// Each layer's valid entries, sorted by path (byte order, so parents before children).
/// Layers are independent: the upper half is checked on a second thread.
pub(super) fn check<'a>(layers: &[&'a Layer], findings: &mut Vec<Finding>) -> Vec<Vec<&'a Entry>> {
    let run = |half: &[&'a Layer]| {
        let mut found = Vec::new();
        let kept: Vec<Vec<&'a Entry>> = half.iter().map(|l| check_one(l, &mut found)).collect();
        (kept, found)
    };
    let (lower, upper) = layers.split_at(layers.len() / 2);
    let ((mut kept, found_lower), upper) = std::thread::scope(|s| {
        let other = s.spawn(|| run(upper));
        (run(lower), other.join())
    });
    let (kept_upper, found_upper) = upper.unwrap_or_else(|p| std::panic::resume_unwind(p));
    kept.extend(kept_upper);
    findings.extend(found_lower);
    findings.extend(found_upper);
    kept
}

fn check_one<'a>(layer: &'a Layer, findings: &mut Vec<Finding>) -> Vec<&'a Entry> {
    let module = layer.manifest.identity.name.as_str();
    let mut invalid = |path: &str, why: String| {
        findings.push(
            Finding::new(
                Code::EntryInvalid,
                module,
                format!("{module} ships {path:?}, which {why}"),
            )
            .field(path),
        );
    };
    let mut sorted: Vec<&Entry> = layer.entries.iter().collect();
    // Stable: of two entries for one path, the first given is kept.
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut kept: Vec<&Entry> = Vec::with_capacity(sorted.len());
    for e in sorted {
        let path = e.path.as_str();
        if path == "/" {
            if !e.kind.is_dir() {
                invalid(path, "is the root and must be a directory".into());
            }
            // The merged root is always 0755 (as in every module image): nothing to keep.
            continue;
        }
        let Some(parent) = parent_of(path) else {
            invalid(
                path,
                "is not an absolute, normal target path (like /etc/redis/redis.conf)".into(),
            );
            continue;
        };
        if kept.last().is_some_and(|k| k.path == path) {
            invalid(
                path,
                "appears more than once; the first entry is used".into(),
            );
            continue;
        }
        if parent != "/" {
            // `kept` is sorted, and the parent sorts before its children.
            let dir = kept
                .binary_search_by(|k| k.path.as_str().cmp(parent))
                .ok()
                .map(|i| kept[i].kind.is_dir());
            match dir {
                Some(true) => {}
                Some(false) => {
                    invalid(
                        path,
                        format!("lies under {parent}, which is not a directory"),
                    );
                    continue;
                }
                None => {
                    invalid(
                        path,
                        format!("lies under {parent}, which the layer does not ship"),
                    );
                    continue;
                }
            }
        }
        kept.push(e);
    }
    kept
}

/// The parent of a normal absolute path (`/etc` → `/`, `/etc/x` → `/etc`); `None` when the
/// path is not absolute or has empty, `.` or `..` components or a NUL byte.
pub(super) fn parent_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let normal = !rest.is_empty()
        && !rest.contains('\0')
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !normal {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}
